/* SPDX-License-Identifier: Apache-2.0 */
/*
 * precopy.h — live pre-copy migration of one domain over one or more
 * channels (DESIGN.md §6, §8): iteration 0 sends every populated frame,
 * later iterations what the dirty log reports, until the expected downtime
 * is under the target; then stop-and-copy, and the READY / GO / RUNNING
 * commit.
 *
 * The channels are connected and the handshake (session/wire.h) is done on
 * them. The source writes one ferry stream (kind MIGRATION) on each channel,
 * from one sending thread per channel; frame f always goes on channel
 * stream_stripe(f, n) (checkpoint/send.h), so its copies arrive in order and
 * its delta base is the one that channel sent last. Every pass ends with
 * ITER_END on every channel; channel 0 ends with the context after the last
 * pass, and the destination applies it only when every other channel has
 * reached its END. The destination sends heartbeats and the commit messages
 * back on channel 0.
 * The point of no return is the source handing GO to channel 0. Before it,
 * any failure rolls back: the source runs on as it was (unthrottled, log
 * off, unpaused), the destination discards its copy. After it, a failure is
 * unresolved: the source stays paused and its caller finds out from the
 * destination which copy runs (DESIGN.md §6 step 6).
 *
 * Liveness (the session's): the destination sends a HEARTBEAT every
 * peer_timeout/4; the source's monitor gives up when it has heard nothing
 * for peer_timeout. The source's streams are its heartbeat: the destination
 * gives up when no byte arrived on any channel for peer_timeout.
 */
#ifndef FERRY_MIGRATE_PRECOPY_H
#define FERRY_MIGRATE_PRECOPY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "hv/hv.h"
#include "session/session.h"

/* What to do when the iterations do not converge; the names below are the
 * only table of them (settings, the API, journals, the CLI). */
enum noconv_policy { NOCONV_STOP, NOCONV_THROTTLE, NOCONV_ABORT, NOCONV_POSTCOPY, NOCONV_MAX };
/* "stop", "throttle", "abort". */
const char *mig_policy_name(enum noconv_policy p);
/* 0 and *p, or -EINVAL for a name that is none of them. */
int mig_policy_parse(const char *s, enum noconv_policy *p);
/* "stop, throttle, abort or postcopy", for messages. */
#define MIG_POLICY_NAMES "stop, throttle, abort or postcopy"

enum mig_phase {
	MIG_PH_SETUP,
	MIG_PH_ITERATING,
	MIG_PH_STOP_COPY,
	MIG_PH_COMMIT, /* stream sent, waiting for READY / RUNNING */
	MIG_PH_DONE,
	MIG_PH_POSTCOPY, /* the guest runs at the destination, its missing
			  * frames still coming */
	MIG_PH_PC_PAUSED, /* ... and the link failed: waiting for a new one */
};
const char *mig_phase_name(enum mig_phase p);

/* Journal points: the hook makes the job's state durable before the engine
 * passes the point, or does what the point asks; an error from it fails the
 * migration there. */
enum mig_point {
	MIG_PT_COMMIT,  /* source, before the stop-and-copy's pause: committed
			 * (the last chance to cancel); from here a ferryd that
			 * dies leaves the job to settle with the destination */
	MIG_PT_GO,      /* source, the last pages out, before READY and GO: let go
			 * of what the destination takes on (the guest's address) */
	MIG_PT_READY,   /* destination, before READY (need not be durable: the
			 * job's record is, from its start) */
	MIG_PT_RESUME,  /* destination, GO received, before resuming */
	MIG_PT_RUNNING, /* destination, resumed, after RUNNING (not in the downtime);
			 * in a post-copy, once every frame is here */
	MIG_PT_POSTCOPY, /* both, after RUNNING, before post-copy's transfer (and
			  * again once a paused one goes on): from here the
			  * guest's memory is split between the hosts */
	MIG_PT_PC_PAUSED, /* both: post-copy's session failed; each host keeps its
			   * half and waits for a new one (reconnect) */
};

struct migrate_stats;

struct migrate_hooks {
	void *ctx;
	/* The statistics so far, from the migrating thread: at every phase
	 * change and at most every 100 ms during an iteration. */
	void (*stats)(void *ctx, const struct migrate_stats *st);
	int (*journal)(void *ctx, enum mig_point pt);
	/* Destination: the guest runs, RUNNING is not sent yet. d is the handle
	 * migrate_recv will return; the engine no longer uses it, so the caller
	 * may from now on. */
	void (*resumed)(void *ctx, struct hv_domain *d);
	/* Destination: GO came and is journaled; d resumes next (so the caller
	 * may give it what it needs to run here, e.g. its service address). */
	void (*resuming)(void *ctx, struct hv_domain *d);
	/* Source: the guest has just paused for the stop-and-copy (replication
	 * holds its output from here: what it writes after this moment is not
	 * in the copy). */
	void (*stopped)(void *ctx, struct hv_domain *d);
	/*
	 * Post-copy, both sides, optional (NULL: a failed session loses the
	 * guest): the session *s failed; the engine has stopped every thread
	 * on it. Give a new one to the same peer for the same job in its place
	 * — the source connects (HELLO migrate with resume), the destination
	 * waits for that HELLO and answers it — and free the old one: 0 and
	 * *s the new session, or -errno to give up (the guest is lost; *s is
	 * the old one still). It may wait as long as it likes (an operator's
	 * cancel ends it).
	 */
	int (*reconnect)(void *ctx, struct session **s);
};

struct migrate_opts {
	uint64_t downtime_ns;      /* target; default 300 ms */
	unsigned max_iters;        /* default 30 */
	enum noconv_policy on_no_converge;
	struct codec_opts codec;
	uint64_t bandwidth;        /* bytes/s over all channels, 0 = unlimited */
	int peer_timeout_ms;       /* default 15 s */
	/* What a switch-over costs here besides the last pages and the round
	 * trips (pause, final harvest, context, journal, the destination's
	 * apply and resume), as the caller learned it from earlier moves; 0:
	 * MIGRATE_SWITCH_DEFAULT_NS. Part of the expected downtime. */
	uint64_t switch_ns;
	const volatile sig_atomic_t *cancel; /* non-zero: stop, roll back */
	/* Replication's initial sync: a migration that does not switch over.
	 * After READY the source resumes its guest with the dirty log still on
	 * (the copy is the state at the pause; the next harvest has every
	 * write since) and the destination keeps its copy paused and
	 * uncommitted; no GO is said. */
	bool sync_only;
	/* Post-copy (postcopy.h): switch over right after the first pass
	 * rather than when the dirty set is small (NOCONV_POSTCOPY switches
	 * when the iterations do not converge). Needs the session to have
	 * agreed WIRE_CAP_POSTCOPY. */
	bool postcopy;
	/* Destination, optional: receive into this domain (empty, paused, of
	 * the stream's geometry; the caller's, never destroyed or closed here)
	 * instead of creating one. Replication stages a resync this way. */
	struct hv_domain *into;
	struct migrate_hooks hooks;
};

void migrate_opts_default(struct migrate_opts *o);

/* The switch-over's fixed cost until one has been measured: a halted
 * guest's downtime on loopback here was 4-5 ms. */
#define MIGRATE_SWITCH_DEFAULT_NS 5000000ull
/* Round trips inside a downtime: the last pages to the destination and its
 * READY back (one), GO out and half of RUNNING's way back (one half). */
#define MIGRATE_SWITCH_RTTS 1.5

/* One pass of a pre-copy, as the job reports it. */
#define MIGRATE_PASSES_MAX 40
struct migrate_pass {
	unsigned pass;             /* 0 the first; the last one may be the stop-and-copy */
	bool final;                /* the stop-and-copy (the guest paused) */
	uint64_t pages;            /* pages it sent (frames sent as zero not counted) */
	uint64_t bytes;            /* stream bytes it sent */
	uint64_t ns;               /* how long it took */
	uint64_t dirty_rate;       /* pages/s the harvest that made it found (0: pass 0) */
	uint64_t expected_downtime_ns; /* the downtime that harvest predicted */
};

/* Where a downtime went, step by step (ns; 0 for a step not reached). */
struct migrate_downtime {
	uint64_t pause;            /* the guest paused (the hypervisor's call) */
	uint64_t harvest;          /* the final harvest of the dirty log */
	uint64_t pages;            /* the last pages sent */
	uint64_t context;          /* the context saved and sent */
	uint64_t release;          /* the GO hook: the guest's address let go here (the
				    * destination works meanwhile) */
	uint64_t ready;            /* then until it applied all and said READY, to GO */
	uint64_t go_running;       /* GO sent to RUNNING back (the destination's part in it: */
	uint64_t resume;           /* GO to its guest running, as it measured) */
};

struct migrate_stats {
	enum mig_phase phase;
	uint64_t ram_bytes;
	uint64_t setup_ns, total_ns, downtime_ns, expected_downtime_ns;
	/* The expected downtime's parts, at the decision to stop: the last
	 * pages at the last pass's goodput, the fixed cost (opts.switch_ns),
	 * and the round trips at the link's RTT (rtt_ns, channel 0's). */
	uint64_t expected_pages_ns, expected_fixed_ns, expected_rtt_ns, rtt_ns;
	/* Headroom the decision kept besides (a lossy link: the last pages
	 * may take twice as long and a lost message a round trip more). */
	uint64_t margin_ns;
	uint64_t bytes;            /* stream bytes sent */
	uint64_t pages[STREAM_ENC_MAX];
	uint64_t zero_frames;
	unsigned iterations;       /* completed dirty-log iterations (0 = only the first pass) */
	unsigned pass;             /* the pass under way: 0 the first, then one per iteration,
				    * the last one the stop-and-copy */
	uint64_t iter_pos, iter_frames; /* progress through the current pass, in frames */
	uint64_t dirty_pages;      /* found by the last harvest */
	uint64_t dirty_rate;       /* pages/s in the last iteration */
	uint64_t throughput;       /* bytes/s over the pre-copy phase */
	unsigned throttle;         /* percent at the end */
	unsigned channels;         /* streams in use */
	bool committed;            /* GO was sent */
	/* The passes so far: the first MIGRATE_PASSES_MAX - 1, then the
	 * latest in the last slot (npasses counts them all). */
	struct migrate_pass passes[MIGRATE_PASSES_MAX];
	unsigned npasses;
	struct migrate_downtime steps;
	/* Post-copy, if it switched to it: the frames missing at the switch,
	 * how many went on demand and in the background, how long it took
	 * from RUNNING until every frame was there, and the guest's wait on a
	 * missing frame (fault to placement, measured at the destination;
	 * microseconds). */
	bool postcopy;
	uint64_t pc_missing, pc_demand, pc_background, pc_ns;
	uint32_t pc_fault_p50_us, pc_fault_p99_us, pc_fault_max_us;
};

/*
 * Source side over session s (the caller keeps it; the engine runs its
 * monitor). d is open and running; on success it has been destroyed (it
 * runs on the destination). Returns 0 or -errno with a reason in err; if
 * st->committed is set on failure, the result is unresolved and d is left
 * paused. With o->sync_only, success leaves d running here with its dirty
 * log on, and the destination holds a paused copy of it.
 */
int migrate_send(struct hv_domain *d, struct session *s, const struct migrate_opts *o,
		 struct migrate_stats *st, char *err, size_t errlen);

/*
 * Source side of a post-copy whose ferryd restarted (its job was journaled
 * in post-copy): d is the guest, paused here for good. Connect again
 * through o->hooks.reconnect (given a NULL session), learn what the
 * destination still lacks, send it, and destroy d once the destination has
 * every frame. 0, or -errno with err set (the guest is lost; d stays
 * paused). The session the hook made is the caller's to free.
 */
int migrate_postcopy_resume(struct hv_domain *d, const struct migrate_opts *o,
			    struct migrate_stats *st, char *err, size_t errlen);

/*
 * Destination side of a post-copy whose ferryd restarted (its job was
 * journaled in post-copy): d runs here over missing memory. Take its
 * post-copy up again (hv postcopy_reattach), wait for the source through
 * o->hooks.reconnect (given a NULL session), tell it what is missing, and
 * go on until every frame is here (then the RUNNING journal point). 0, or
 * -errno with err set: the guest is lost and d destroyed. The session the
 * hook gave is the caller's to free.
 */
int migrate_postcopy_rejoin(struct hv_domain *d, const struct migrate_opts *o, char *err,
			    size_t errlen);

/*
 * Destination side over session s (the caller keeps it; the engine sends
 * its heartbeats): create the domain from the stream (name overrides the
 * source's), resume it on GO. On success *out is the running domain's
 * handle. On any other return the domain is destroyed, except for
 * -EINPROGRESS: resuming after GO failed and the copy could not be
 * destroyed, so it may run (the source must not resume without an
 * operator). o gives peer_timeout_ms and the journal hook. With
 * o->sync_only, *out is the copy as of the source's pause, paused and not
 * committed (it ends with its handle), once READY is sent. With o->into,
 * the stream fills that domain and *out is it; it is left as it is on
 * failure.
 */
int migrate_recv(struct session *s, const char *name, const struct migrate_opts *o,
		 struct hv_domain **out, char *err, size_t errlen);

#endif
