/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replicate.h — continuous replication of one domain to a standby, Remus
 * style (DESIGN.md §7; the wire: docs/stream-format.md, "Replication").
 *
 * The primary first runs an initial sync: a pre-copy migration that does
 * not switch over (migrate_opts.sync_only). From then on, every epoch
 * (epoch_ms) it pauses the guest, harvests the dirty log, copies the dirty
 * pages into a bounded staging area (staging.h), saves the context, marks
 * the output epoch and resumes; then it sends the epoch on every channel
 * (CKPT_BEGIN, the channel's stripe of the pages, CKPT_COMMIT; the context
 * on channel 0) while the guest runs. The backup holds each channel's part
 * apart (stage_sink) until every channel has its COMMIT, applies the epoch
 * whole, and acknowledges it (WIRE_CKPT_ACK); the primary then releases
 * the output the guest produced before that epoch's pause (hv_output).
 *
 * Liveness: the epochs are the primary's heartbeat (an epoch goes out every
 * epoch_ms even when nothing was written); the backup sends HEARTBEATs
 * every heartbeat_ms / 4. Silence for heartbeat_ms is a lost peer.
 *
 * What each engine decides and what it leaves to its caller (the daemon,
 * with the fencing authority): the primary engine returns when the backup
 * is lost or protection ends, with the guest running and its output still
 * held — releasing it without an acknowledgement is the caller's decision
 * (DESIGN.md §7, fencing). The backup engine returns when the primary is
 * lost or protection ends, with its copy paused at the last epoch it
 * applied whole; whether it resumes is the caller's decision.
 */
#ifndef FERRY_REPLICATE_REPLICATE_H
#define FERRY_REPLICATE_REPLICATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "hv/hv.h"
#include "migrate/precopy.h"
#include "session/session.h"

#define REPL_EPOCH_MS_DEFAULT 25
#define REPL_HEARTBEAT_MS_DEFAULT 400
#define REPL_STAGING_DEFAULT (256ull << 20)
#define REPL_PAUSE_SAMPLES 1024 /* pauses kept for the percentiles */

/* Where a pair is; the names are the one table (status, API, journal). */
enum repl_state {
	REPL_SYNCING,    /* the initial sync runs */
	REPL_PROTECTED,  /* epochs commit on the backup */
	REPL_DEGRADED,   /* primary: the backup is lost, the guest runs alone */
	REPL_FAILED_OVER,/* backup: it took over, the guest runs here alone */
	REPL_FENCED,     /* it lost the authority to run: its copy is stopped */
	REPL_STANDBY,    /* backup: it holds the copy, the primary runs */
	REPL_ENDED,      /* protection ended (unprotect) */
	REPL_STATE_MAX
};
const char *repl_state_name(enum repl_state s);

struct repl_stats {
	enum repl_state state;
	uint64_t epoch;            /* primary: last sent; backup: last applied */
	uint64_t acked;            /* primary: last acknowledged */
	uint64_t epochs;           /* epochs sent (or applied) since the sync */
	uint64_t t_start_ns;       /* mono: when epochs began */
	uint64_t last_commit_ns;   /* mono: the last acknowledgement (or apply) */
	uint64_t bytes;            /* stream bytes over all epochs */
	uint64_t dirty_pages;      /* over all epochs */
	uint64_t last_dirty;       /* of the last epoch */
	uint64_t passthrough;      /* epochs too big to stage (sent paused) */
	uint64_t staging_bytes, staging_max;
	uint64_t pause_max_ns;
	uint64_t pause_sum_ns;     /* over every pause recorded */
	uint64_t pause_ns[REPL_PAUSE_SAMPLES]; /* ring of the last pauses */
	uint64_t npause;           /* pauses recorded (index: npause % ring) */
	uint64_t delay_sum_ns;     /* output delay: mark to acknowledgement */
	uint64_t delays;
	uint64_t token;            /* fencing token in force */
	struct migrate_stats sync; /* the initial sync's figures */
};

/* Pause percentile p (0..100) over the kept samples, in ns. */
uint64_t repl_pause_pct(const struct repl_stats *st, unsigned p);

struct repl_hooks {
	void *ctx;
	/* Figures so far, from the engine's thread: every epoch at most every
	 * 100 ms, and at every state change. */
	void (*stats)(void *ctx, const struct repl_stats *st);
	/* Primary, optional: the backup holds the initial sync; no epoch has
	 * been sent and no output released on the backup's word yet (fencing
	 * names the backup in sync here). Non-zero stops protection with that
	 * error. */
	int (*synced)(void *ctx, char *err, size_t errlen);
};

struct repl_opts {
	unsigned epoch_ms;         /* default 25 */
	unsigned heartbeat_ms;     /* silence that counts as a lost peer; default 400 */
	uint64_t staging_max;      /* bytes; default 256 MiB (never over the guest) */
	struct migrate_opts sync;  /* the initial sync (sync_only is set by the engine) */
	uint64_t token;            /* primary: the fencing token sent in every epoch;
				    * backup: the smallest it accepts */
	struct hv_domain *copy;    /* backup, optional: the copy this host kept
				    * from the same pairing, before its
				    * primary's daemon restarted. The sync is
				    * staged apart (shadow.h) and applied to it
				    * whole once complete: until then it stays
				    * the copy a takeover runs */
	const volatile sig_atomic_t *stop; /* non-zero: end protection cleanly */
	struct repl_hooks hooks;
};

void repl_opts_default(struct repl_opts *o);

/*
 * Whether a domain like i can be protected: 0, or -EOPNOTSUPP with why in
 * err. Epochs carry memory only, so a writable disk is refused: writes of an
 * epoch that never commits would stay on the disk while memory rolls back
 * to the last committed epoch.
 */
int repl_can_protect(const struct hv_info *i, char *err, size_t errlen);

/*
 * Primary over session s (connected, the caller keeps it): sync, then
 * epochs until the backup is lost (-ECONNRESET, -ETIMEDOUT, ... with why in
 * err) or *o->stop (0: every channel ended, the backup discards its copy).
 * d runs on return in every case; its dirty log is off and its output is
 * still held (the caller opens it when it may).
 */
int replicate_primary(struct hv_domain *d, struct session *s, const struct repl_opts *o,
		      struct repl_stats *st, char *err, size_t errlen);

/*
 * Backup over session s: receive the sync into a new paused copy named
 * name, then apply epochs whole. Returns with *out the copy (paused, not
 * committed: it ends with its handle) at the last epoch applied
 * (st->epoch) when the primary is lost (-ETIMEDOUT, -ECONNRESET, with why
 * in err); 0 with *out NULL when protection ended (the copy is destroyed);
 * another -errno with *out NULL if the sync failed or the stream was
 * refused (a stale token: -ESTALE).
 *
 * With o->copy, the copy is the caller's until the sync is complete: if
 * the sync fails, *out is o->copy as it was (st->epoch 0, and err says
 * why); from then on o->copy is the engine's copy above (a failed apply
 * tears it: it is destroyed, -EIO).
 */
int replicate_backup(struct session *s, const char *name, const struct repl_opts *o,
		     struct hv_domain **out, struct repl_stats *st, char *err, size_t errlen);

#endif
