/* SPDX-License-Identifier: Apache-2.0 */
/*
 * precopy_src.c — the source side of a pre-copy migration; see precopy.h.
 *
 * migrate_send runs four phases in order — setup, iterate, stop-and-copy,
 * commit — each a function below; any failure before GO rolls back in
 * finish(). Threads: the migrating thread drives the passes and sends
 * channel 0's stripe itself; the lanes (checkpoint/lanes.h) send the other
 * stripes from threads of their own; the session's monitor reads the
 * destination's messages on channel 0.
 */
#include "migrate/precopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/lanes.h"
#include "common/bitmap.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "migrate/postcopy.h"

#define THROTTLE_STEP 20
#define THROTTLE_MAX 99
#define NO_PROGRESS_ITERS 3
/* Under the target, another iteration is worth it while the pages left
 * would still cost more than this in the pause and the last one at least
 * halved them. */
#define SETTLED_NS (1 * NSEC_PER_MSEC)
#define FAILURE_GRACE_MS 300

struct src {
	struct hv_domain *d;
	struct session *s;
	const struct migrate_opts *o;
	struct migrate_stats *st;
	char *err;
	size_t errlen;
	struct lanes *lanes;
	struct hv_info info;
	struct bitmap dirty, pop;
	uint64_t t0, t_copy, bytes0, last_report;
	unsigned passes;          /* passes sent so far */
	uint64_t last_bytes, last_ns; /* the last pass sent: its bytes and time */
	bool logging, paused;     /* what finish() undoes on a rollback */
	/* The pass under way, read by the lanes' trailers. */
	unsigned it;
	uint64_t ndirty, pass_t0;
	bool final;               /* the last pass: lanes but 0 end their streams */
	/* Stop-and-copy: when the guest paused, then each step's end. */
	uint64_t tp, t_paused, t_harvest, t_pages, t_context, t_ready, nfinal;
	/* Post-copy: agreed with the destination (pcs is its server), and
	 * chosen (the switch leaves m->dirty to come after RUNNING). */
	struct pc_src *pcs;
	bool postcopy;
	/* The lanes' set-up (a resumed post-copy opens them again), and what
	 * lanes closed on a session's failure had sent. */
	struct lanes_conf lc;
	uint64_t carry_bytes, carry_pages[STREAM_ENC_MAX], carry_zero, carry_demand;
};

static bool cancelled(const struct src *m)
{
	return m->o->cancel && *m->o->cancel;
}

/* Fail with code and a reason; returns code. */
static int fail(struct src *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct src *m, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->err, m->errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* An I/O error while doing what: the session's monitor usually knows the
 * real cause (the destination's ABORT, its silence). */
static int fail_io(struct src *m, int r, const char *what)
{
	char why[WIRE_ABORT_TEXT_MAX + 64];

	if (r == -ECANCELED || cancelled(m))
		return fail(m, -ECANCELED, "cancelled");
	if (session_failure(m->s, FAILURE_GRACE_MS, why, sizeof why))
		return fail(m, r, "%s: %s", what, why);
	return fail(m, r, "%s: %s", what, chan_error(m->s->ch[0], r));
}

/* The lanes' figures, and those of lanes a resumed post-copy closed. */
static void totals(struct src *m)
{
	struct migrate_stats *st = m->st;

	lanes_stats(m->lanes, st->pages, &st->zero_frames);
	st->bytes = lanes_bytes(m->lanes) + m->carry_bytes;
	st->zero_frames += m->carry_zero;
	for (unsigned i = 0; i < STREAM_ENC_MAX; i++)
		st->pages[i] += m->carry_pages[i];
}

static void report(struct src *m, bool force)
{
	uint64_t now = mono_ns();

	if (!m->o->hooks.stats || (!force && now - m->last_report < 100 * NSEC_PER_MSEC))
		return;
	m->last_report = now;
	if (m->lanes)
		totals(m);
	if (m->t_copy && now > m->t_copy)
		m->st->throughput = (uint64_t)((double)(m->st->bytes - m->bytes0) /
					       ns_to_sec(now - m->t_copy));
	m->o->hooks.stats(m->o->hooks.ctx, m->st);
}

static void phase(struct src *m, enum mig_phase p)
{
	m->st->phase = p;
	report(m, true);
}

/* Lane 0's progress through a pass, standing for all. */
static void on_frames(void *ctx, uint64_t done, uint64_t total)
{
	struct src *m = ctx;

	m->st->iter_pos = done;
	m->st->iter_frames = total;
	report(m, false);
}

/* A lane's end of a pass: ITER_END, and END on every channel but 0 after
 * the last pass (channel 0's stream goes on with the context). */
static int trailer(void *ctx, unsigned lane, struct stream_writer *w, uint64_t frames)
{
	struct src *m = ctx;
	struct stream_iter_end ie = { .iteration = htole64(m->it), .pages = htole64(frames),
				      .dirty = htole64(m->ndirty),
				      .duration_ns = htole64(mono_ns() - m->pass_t0) };
	struct iovec v = { &ie, sizeof ie };
	int r = stream_write_record(w, STREAM_REC_ITER_END, 0, &v, 1);

	if (!r && m->final && lane)
		r = stream_write_end(w);
	return r;
}

/* Send one pass (frames in set, or all that pop says exist) on every
 * channel; *ns is how long it took. */
static int run_pass(struct src *m, unsigned it, const struct bitmap *set,
		    const struct bitmap *pop, uint64_t ndirty, bool final, uint64_t *ns)
{
	uint64_t bytes0 = lanes_bytes(m->lanes), pages0 = lanes_pages(m->lanes);
	struct migrate_pass *p;
	int r;

	m->st->pass = it;
	m->it = it;
	m->ndirty = ndirty;
	m->final = final;
	m->pass_t0 = mono_ns();
	if ((r = lanes_send(m->lanes, set, pop, ns)))
		return r;
	m->passes++;
	m->last_bytes = lanes_bytes(m->lanes) - bytes0;
	m->last_ns = *ns;
	p = &m->st->passes[MIN(m->st->npasses, MIGRATE_PASSES_MAX - 1)];
	*p = (struct migrate_pass){ .pass = it, .final = final,
				    .pages = lanes_pages(m->lanes) - pages0,
				    .bytes = lanes_bytes(m->lanes) - bytes0, .ns = *ns,
				    .dirty_rate = it ? m->st->dirty_rate : 0,
				    .expected_downtime_ns = it ? m->st->expected_downtime_ns : 0 };
	m->st->npasses++;
	log_debug("%s: pass %u sent in %.1f ms; %.1f MiB so far", m->d->uri, it, ns_to_ms(*ns),
		  (double)lanes_bytes(m->lanes) / (1 << 20));
	return 0;
}

/* Setup: the monitor, the bitmaps, the lanes' streams, the dirty log, and
 * which frames exist. */
static int setup(struct src *m)
{
	struct lanes_conf lc = { .kind = STREAM_KIND_MIGRATION, .name = hv_uri_name(m->d->uri),
				 .codec = m->o->codec, .bandwidth = m->o->bandwidth,
				 .cancel = m->o->cancel, .ctx = m, .trailer = trailer,
				 .on_frames = on_frames };
	struct session *s = m->s;
	void *dconf = NULL;
	int r;

	if (s->n < 1 || s->n > WIRE_CHANNELS_MAX)
		return fail(m, -EINVAL, "%u channels: 1 to %d", s->n, WIRE_CHANNELS_MAX);
	if ((r = hv_info(m->d, &m->info)))
		return fail(m, r, "%s: %s", m->d->uri, strerror(-r));
	m->st->ram_bytes = m->info.nr_frames * m->info.page_size;
	s->role = "the destination";
	s->timeout_ms = m->o->peer_timeout_ms;
	for (unsigned i = 0; i < s->n; i++)
		chan_set_timeout(s->ch[i], m->o->peer_timeout_ms);
	if ((r = bitmap_init(&m->dirty, m->info.nr_frames)) ||
	    (r = bitmap_init(&m->pop, m->info.nr_frames)))
		return fail(m, r, "out of memory");
	if (m->o->postcopy && !(s->caps & WIRE_CAP_POSTCOPY))
		return fail(m, -EOPNOTSUPP, "the destination does not offer post-copy");
	if (s->caps & WIRE_CAP_POSTCOPY) {
		/* The last channel is post-copy's own. */
		if ((r = pc_src_open(m->d, &m->info, s->ch[s->n - 1], &m->dirty, &m->pcs)))
			return fail_io(m, r, "starting the post-copy channel");
		s->on_msg = pc_src_on_msg;
		s->on_msg_ctx = m->pcs;
	}
	if ((r = session_monitor_start(s)))
		return fail(m, r, "starting the monitor thread: %s", strerror(-r));
	if ((r = hv_domain_config(m->d, &dconf, &lc.domain_config_len)))
		return fail(m, r, "%s: its domain configuration: %s", m->d->uri, strerror(-r));
	m->lc = lc;
	lc.domain_config = dconf;
	r = lanes_open(m->d, &m->info, s->ch, s->n - (m->pcs ? 1 : 0), &lc, &m->lanes);
	free(dconf);
	if (r) {
		if (r == -ENOMEM || r == -EAGAIN)
			return fail(m, r, "setting up %u channels: %s", s->n, strerror(-r));
		return fail_io(m, r, "sending the header");
	}
	/* The log first, then the copy: a page written during iteration 0 is
	 * sent again later. */
	if ((r = hv_logdirty_enable(m->d)))
		return fail(m, r, "%s: cannot enable dirty logging: %s", m->d->uri, strerror(-r));
	m->logging = true;
	if ((r = (int)hv_populated(m->d, &m->pop)) < 0)
		return fail(m, r, "%s: %s", m->d->uri, strerror(-r));
	m->st->setup_ns = mono_ns() - m->t0;
	return 0;
}

/* Auto-converge: slow the guest down one step more. */
static int throttle_more(struct src *m)
{
	struct migrate_stats *st = m->st;
	int r;

	st->throttle = MIN(st->throttle + THROTTLE_STEP, THROTTLE_MAX);
	if ((r = hv_throttle(m->d, st->throttle)))
		return fail(m, r, "%s: throttle: %s", m->d->uri, strerror(-r));
	log_info("%s: throttled to %u%% to converge", m->d->uri, st->throttle);
	return 0;
}

/* A link that has sent more than this share of its segments again. */
#define LOSSY 0.001

/* A pass this large says what the link carries; a smaller one is mostly
 * its latency, and the whole pre-copy's average says more. */
#define GOODPUT_MIN_BYTES (4u << 20)

/*
 * The downtime to expect if the guest paused now with nd pages dirty, into
 * st: those pages and the ones written while the destination catches up
 * (a round trip's worth at the dirty rate), at the goodput of the last pass
 * (the link as it is now: loss and competition show there); the switch-
 * over's fixed cost (o->switch_ns, learned from earlier moves); and its
 * round trips at the RTT TCP measures on channel 0 now.
 */
static void expect(struct src *m, uint64_t nd, double avg_bw, double per_page)
{
	struct migrate_stats *st = m->st;
	double bw = m->last_bytes >= GOODPUT_MIN_BYTES && m->last_ns
			    ? (double)m->last_bytes / ns_to_sec(m->last_ns) : avg_bw;
	uint64_t rtt = chan_rtt_ns(m->s->ch[0]);
	double pages = (double)nd + (double)st->dirty_rate * ns_to_sec(rtt);

	st->rtt_ns = rtt;
	st->expected_pages_ns = bw > 0 ? (uint64_t)(pages * per_page / bw * 1e9) : 0;
	st->expected_fixed_ns = m->o->switch_ns ? m->o->switch_ns : MIGRATE_SWITCH_DEFAULT_NS;
	st->expected_rtt_ns = (uint64_t)((double)rtt * MIGRATE_SWITCH_RTTS);
	st->expected_downtime_ns = st->expected_pages_ns + st->expected_fixed_ns +
				   st->expected_rtt_ns;
	/* A lossy link makes the last burst's time vary (a loss in it costs
	 * round trips, a lost READY or GO a retransmission): decide with room
	 * for the pages taking twice as long and one round trip more, so that
	 * the target holds in most moves, not just in the median one. */
	st->margin_ns = 0;
	for (unsigned i = 0; i < m->s->n; i++)
		if (chan_loss(m->s->ch[i]) > LOSSY) {
			st->margin_ns = st->expected_pages_ns + rtt;
			break;
		}
}

/*
 * Iterate: iteration 0 sends every frame that exists, then each iteration
 * harvests the dirty log and sends what changed, until the expected
 * downtime (expect(): the last pages, the fixed cost and the round trips)
 * is under the target and more iterations would not shorten it much (the
 * target is a limit, not an aim: a guest that converges is stopped when
 * its dirty set has settled, as small as it will get), or the
 * no-convergence policy says stop.
 * On return m->dirty holds what was harvested but not sent.
 */
static int iterate(struct src *m)
{
	const struct migrate_opts *o = m->o;
	struct migrate_stats *st = m->st;
	uint64_t ns, prev_dirty = UINT64_MAX, page = m->info.page_size;
	unsigned stalls = 0, extra = 0;
	int r;

	m->bytes0 = lanes_bytes(m->lanes);
	m->t_copy = mono_ns();
	phase(m, MIG_PH_ITERATING);
	/* Only pages sent again can be deltas: iteration 0 fills no cache. */
	lanes_cache_new_pages(m->lanes, false);
	if ((r = run_pass(m, 0, NULL, &m->pop, m->info.nr_frames, false, &ns)))
		return fail_io(m, r, "iteration 0");
	lanes_cache_new_pages(m->lanes, true);
	if (o->postcopy) {
		/* Switch now: whatever was written since goes after RUNNING. */
		m->postcopy = true;
		return 0;
	}
	for (unsigned it = 1;; it++) {
		uint64_t sent = lanes_bytes(m->lanes) - m->bytes0, pages = lanes_pages(m->lanes);
		double bw = (double)sent / ns_to_sec(mono_ns() - m->t0 - st->setup_ns);
		double per_page = pages ? (double)sent / (double)pages : (double)page;
		uint64_t th = mono_ns();
		int64_t nd;

		if ((r = failpoint("mig-src-iter")))
			return fail(m, r, "failpoint mig-src-iter");
		if (cancelled(m))
			return fail(m, -ECANCELED, "cancelled");
		bitmap_zero(&m->dirty);
		if ((nd = hv_logdirty_harvest(m->d, &m->dirty, 0)) < 0)
			return fail(m, (int)nd, "%s: harvesting the dirty log: %s", m->d->uri,
				    strerror((int)-nd));
		st->dirty_pages = (uint64_t)nd;
		st->dirty_rate = (uint64_t)((double)nd / ns_to_sec(ns + (mono_ns() - th) + 1));
		expect(m, (uint64_t)nd, bw, per_page);
		st->throughput = (uint64_t)bw;
		log_debug("%s: pass %u: %" PRId64 " dirty pages, %.0f MiB/s, expected downtime "
			  "%.1f ms (pages %.1f, fixed %.1f, round trips %.1f; margin %.1f)", m->d->uri,
			  it, nd, bw / (1 << 20), ns_to_ms(st->expected_downtime_ns),
			  ns_to_ms(st->expected_pages_ns), ns_to_ms(st->expected_fixed_ns),
			  ns_to_ms(st->expected_rtt_ns), ns_to_ms(st->margin_ns));
		/* Settled: a smaller dirty set would not shorten the pages' part
		 * by more than SETTLED_NS. */
		if (st->expected_downtime_ns + st->margin_ns <= o->downtime_ns &&
		    (st->expected_pages_ns <= SETTLED_NS || (uint64_t)nd > prev_dirty / 2 ||
		     it > o->max_iters))
			return 0;
		stalls = (uint64_t)nd >= prev_dirty ? stalls + 1 : 0;
		prev_dirty = (uint64_t)nd;
		if (it > o->max_iters + extra || stalls >= NO_PROGRESS_ITERS) {
			if (o->on_no_converge == NOCONV_ABORT)
				return fail(m, -ETIMEDOUT, "did not converge: %" PRId64 " dirty pages, "
					    "expected downtime %.1f ms over the target %.1f ms after %u "
					    "iterations", nd, ns_to_ms(st->expected_downtime_ns),
					    ns_to_ms(o->downtime_ns), it - 1);
			if (o->on_no_converge == NOCONV_POSTCOPY && m->pcs) {
				log_info("%s: not converging; switching to post-copy with %" PRId64
					 " frames to come", m->d->uri, nd);
				m->postcopy = true;
				return 0;
			}
			if (o->on_no_converge == NOCONV_POSTCOPY)
				return fail(m, -ETIMEDOUT, "did not converge, and the destination "
					    "does not offer post-copy");
			if (o->on_no_converge == NOCONV_STOP || st->throttle >= THROTTLE_MAX)
				return 0; /* stop anyway with these pages */
			if ((r = throttle_more(m)))
				return r;
			extra += 2;
			stalls = 0;
		}
		if ((r = run_pass(m, it, &m->dirty, NULL, (uint64_t)nd, false, &ns)))
			return fail_io(m, r, "iteration");
		st->iterations = it;
	}
}

/*
 * Stop and copy: once the destination has applied the last pass, pause,
 * harvest FINAL (on top of what was harvested but not sent), send those
 * pages, then the context and END on channel 0.
 */
static int stop_and_copy(struct src *m)
{
	struct stream_writer *w0 = lanes_writer(m->lanes, 0);
	void *ctx = NULL;
	size_t clen;
	uint64_t ns;
	int r;

	m->st->throughput = (uint64_t)((double)(lanes_bytes(m->lanes) - m->bytes0) /
				       ns_to_sec(mono_ns() - m->t0 - m->st->setup_ns));
	/* Committed before the pause, while the destination applies the last
	 * pass: the durable write is never part of the downtime (it took
	 * 50-160 ms at times on a virtual disk after an idle while). */
	if (!m->o->sync_only && m->o->hooks.journal &&
	    (r = m->o->hooks.journal(m->o->hooks.ctx, MIG_PT_COMMIT)))
		return fail(m, r, "%s", r == -ECANCELED ? "cancelled" : "journaling the commit failed");
	/* Pause only once the destination has caught up: what the socket
	 * buffers hold would otherwise be drained during the downtime. */
	if ((r = session_wait_arg(m->s, WIRE_HEARTBEAT, m->passes)))
		return fail_io(m, r, "waiting for the destination to apply the last iteration");
	hv_warm(m->d);
	m->tp = mono_ns();
	if ((r = hv_pause(m->d)))
		return fail(m, r, "%s: pause: %s", m->d->uri, strerror(-r));
	m->paused = true;
	m->t_paused = mono_ns();
	if (m->o->hooks.stopped)
		m->o->hooks.stopped(m->o->hooks.ctx, m->d);
	phase(m, MIG_PH_STOP_COPY);
	if ((r = failpoint("mig-src-stopcopy")))
		return fail(m, r, "failpoint mig-src-stopcopy");
	/* A peek: no harvest follows this one (a rollback turns the log off,
	 * a post-copy keeps this set), so the pages found need not be write-
	 * protected again, inside the downtime. */
	if ((r = (int)hv_logdirty_harvest(m->d, &m->dirty, HV_HARVEST_FINAL | HV_HARVEST_PEEK)) < 0)
		return fail(m, r, "%s: final harvest: %s", m->d->uri, strerror(-r));
	m->t_harvest = mono_ns();
	m->nfinal = bitmap_count(&m->dirty);
	if (m->postcopy) {
		/* Post-copy: say which frames are still to come, not the frames. */
		m->st->postcopy = true;
		m->st->pc_missing = m->nfinal;
		r = stream_write_postcopy(w0, &m->dirty);
	} else {
		r = run_pass(m, m->st->iterations + 1, &m->dirty, NULL, m->nfinal, true, &ns);
	}
	if (r)
		return fail_io(m, r, "stop-and-copy");
	m->t_pages = mono_ns();
	if ((r = hv_save_context(m->d, &ctx, &clen)))
		return fail(m, r, "%s: saving the context: %s", m->d->uri, strerror(-r));
	r = stream_write_context(w0, ctx, clen);
	free(ctx);
	/* A post-copy's streams go on after RUNNING. */
	if (r || (!m->postcopy && (r = stream_write_end(w0))))
		return fail_io(m, r, "sending the context");
	m->t_context = mono_ns();
	return 0;
}

/* Let go of a failed post-copy session's lanes and demand server, keeping
 * their figures. */
static void pc_drop_session(struct src *m)
{
	uint64_t pages[STREAM_ENC_MAX], zero;

	if (m->s) {
		session_shutdown(m->s);
		session_monitor_stop(m->s);
		m->s->on_msg = NULL;
	}
	if (m->pcs) {
		m->carry_demand += pc_src_demand(m->pcs);
		pc_src_close(m->pcs);
		m->pcs = NULL;
	}
	if (m->lanes) {
		lanes_stats(m->lanes, pages, &zero);
		m->carry_bytes += lanes_bytes(m->lanes);
		m->carry_zero += zero;
		for (unsigned i = 0; i < STREAM_ENC_MAX; i++)
			m->carry_pages[i] += pages[i];
		lanes_close(m->lanes);
		m->lanes = NULL;
	}
}

/* A paused post-copy's new session: learn what the destination still
 * lacks, then the demand server and lanes over its channels again. */
static int pc_resume_session(struct src *m)
{
	struct session *s = m->s;
	int r;

	if (!(s->caps & WIRE_CAP_POSTCOPY) || s->n < 2)
		return fail(m, -EPROTO, "the new session has no post-copy channel");
	s->role = "the destination";
	s->timeout_ms = m->o->peer_timeout_ms;
	for (unsigned i = 0; i < s->n; i++)
		chan_set_timeout(s->ch[i], m->o->peer_timeout_ms);
	if ((r = pc_src_learn(s, s->ch[s->n - 1], &m->info, &m->dirty, m->err, m->errlen)))
		return r;
	m->nfinal = bitmap_count(&m->dirty);
	if ((r = pc_src_open(m->d, &m->info, s->ch[s->n - 1], &m->dirty, &m->pcs)))
		return fail_io(m, r, "starting the post-copy channel");
	s->on_msg = pc_src_on_msg;
	s->on_msg_ctx = m->pcs;
	if ((r = session_monitor_start(s)))
		return fail(m, r, "starting the monitor thread: %s", strerror(-r));
	if ((r = lanes_open(m->d, &m->info, s->ch, s->n - 1, &m->lc, &m->lanes)))
		return fail_io(m, r, "sending the headers");
	lanes_postcopy(m->lanes, pc_src_claim, m->pcs);
	if ((r = pc_src_serve(m->pcs)))
		return fail(m, r, "post-copy: starting its thread: %s", strerror(-r));
	log_info("%s: post-copy goes on over a new session: %" PRIu64 " frames to send",
		 m->d->uri, m->nfinal);
	return 0;
}

/*
 * Post-copy's session failed (m->err says how): each host keeps its half,
 * the guest stays paused here, and the hook connects again (by itself, or
 * when the operator says where: ferry migrate --resume). 0 once it goes
 * on; -EALREADY if the destination has every frame already; or the hook's
 * error (the guest is lost).
 */
static int pc_pause(struct src *m)
{
	int r;

	if (m->s)
		log_warn("%s: post-copy paused: %s; connecting again", m->d->uri, m->err);
	pc_drop_session(m);
	phase(m, MIG_PH_PC_PAUSED);
	if (m->o->hooks.journal && (r = m->o->hooks.journal(m->o->hooks.ctx, MIG_PT_PC_PAUSED)))
		log_error("%s: journaling the pause failed: %s", m->d->uri, strerror(-r));
	for (;;) {
		if ((r = m->o->hooks.reconnect(m->o->hooks.ctx, &m->s)))
			return r;
		if (!(r = pc_resume_session(m)))
			break;
		log_warn("%s: post-copy: the new session failed at once: %s", m->d->uri, m->err);
		pc_drop_session(m);
	}
	phase(m, MIG_PH_POSTCOPY);
	if (m->o->hooks.journal && (r = m->o->hooks.journal(m->o->hooks.ctx, MIG_PT_POSTCOPY)))
		log_error("%s: journaling post-copy failed: %s", m->d->uri, strerror(-r));
	return 0;
}

/*
 * Post-copy, after RUNNING: the guest runs at the destination. Send every
 * frame still missing there once — on demand (pc_src) or in one background
 * pass on the lanes, whichever claims it first — then END on every stream,
 * and wait until the destination has them all (WIRE_PC_DONE). A failed
 * session pauses it until a new one is made (hooks.reconnect); anything
 * else loses the guest: this copy is stale (the destination ran), and the
 * destination's incomplete; this one stays paused, for an operator.
 */
static int postcopy_run(struct src *m);

static int postcopy(struct src *m)
{
	int r;

	phase(m, MIG_PH_POSTCOPY);
	m->paused = true; /* it never runs here again */
	if (m->o->hooks.journal && (r = m->o->hooks.journal(m->o->hooks.ctx, MIG_PT_POSTCOPY)))
		log_error("%s: journaling post-copy failed: %s", m->d->uri, strerror(-r));
	lanes_postcopy(m->lanes, pc_src_claim, m->pcs);
	if ((r = pc_src_serve(m->pcs)))
		return fail(m, r, "post-copy: starting its thread: %s", strerror(-r));
	return postcopy_run(m);
}

/* The background pass and the demands, until PC_DONE, through pauses. */
static int postcopy_run(struct src *m)
{
	struct migrate_stats *st = m->st;
	uint64_t t0 = mono_ns(), ns, lat = 0;
	int r;

	for (;;) {
		int e;

		r = run_pass(m, st->iterations + 1, &m->dirty, NULL, m->nfinal, true, &ns);
		if (!r)
			r = stream_write_end(lanes_writer(m->lanes, 0));
		if (!r)
			r = session_wait_msg(m->s, WIRE_PC_DONE, &lat);
		if (!r)
			break;
		if ((e = pc_src_error(m->pcs)))
			fail(m, e, "post-copy: sending a demanded frame: %s", strerror(-e));
		else
			fail_io(m, r, "post-copy");
		if (!m->o->hooks.reconnect || cancelled(m))
			break;
		if ((r = pc_pause(m)) == -EALREADY) {
			r = 0;
			break;
		}
		if (r)
			break;
	}
	st->pc_demand = m->carry_demand + (m->pcs ? pc_src_demand(m->pcs) : 0);
	st->pc_background = st->passes[MIN(st->npasses, MIGRATE_PASSES_MAX) - 1].pages;
	st->pc_ns = mono_ns() - t0;
	pc_latency_unpack(lat, &st->pc_fault_p50_us, &st->pc_fault_p99_us, &st->pc_fault_max_us);
	if (r == -ESHUTDOWN)
		return fail(m, r, "ferryd stops in the middle of a post-copy");
	if (r) {
		char why[WIRE_ABORT_TEXT_MAX + 128];

		snprintf(why, sizeof why, "%s", m->err);
		return fail(m, r, "%s; the guest ran at the destination with part of its memory "
			    "still here: it is lost (this copy is stale and stays paused)", why);
	}
	log_info("%s: post-copy done in %.0f ms: %" PRIu64 " frames on demand, %" PRIu64
		 " in the background; fault latency p50 %u us, p99 %u us, max %u us", m->d->uri,
		 ns_to_ms(st->pc_ns), st->pc_demand, st->pc_background, st->pc_fault_p50_us,
		 st->pc_fault_p99_us, st->pc_fault_max_us);
	return 0;
}

/*
 * Commit: the GO hook (the guest's address let go) while the destination
 * applies the end of the stream, READY from it, GO sent — the point of no
 * return — then RUNNING, and the source copy ends. The job was journaled
 * committed before the pause (stop_and_copy): a READY that fails to come
 * still rolls back, as GO has not gone out, and a ferryd that dies from
 * the commit on leaves a committed job, settled with the destination like
 * any after GO. A failure after GO leaves the guest paused and the
 * migration unresolved (st->committed).
 */
static int commit(struct src *m)
{
	struct migrate_stats *st = m->st;
	uint64_t trel, tgo, trun, dres;
	char why[WIRE_ABORT_TEXT_MAX + 64];
	int r;

	phase(m, MIG_PH_COMMIT);
	if (!m->o->sync_only && m->o->hooks.journal &&
	    (r = m->o->hooks.journal(m->o->hooks.ctx, MIG_PT_GO)))
		return fail(m, r, "before GO: %s", strerror(-r));
	trel = mono_ns();
	if ((r = session_wait_msg(m->s, WIRE_READY, NULL)))
		return fail_io(m, r, "no READY from the destination");
	m->t_ready = mono_ns();
	st->steps = (struct migrate_downtime){ .pause = m->t_paused - m->tp,
					       .harvest = m->t_harvest - m->t_paused,
					       .pages = m->t_pages - m->t_harvest,
					       .context = m->t_context - m->t_pages,
					       .release = trel - m->t_context,
					       .ready = m->t_ready - trel };
	if (m->o->sync_only) {
		/* The destination holds the copy: run on, logging every write. */
		if ((r = hv_unpause(m->d)))
			return fail(m, r, "%s: resuming after the sync: %s", m->d->uri,
				    strerror(-r));
		m->paused = false;
		st->downtime_ns = m->t_ready - m->tp;
		st->phase = MIG_PH_DONE;
		return 0;
	}
	if ((r = failpoint("mig-src-before-go")))
		return fail(m, r, "failpoint mig-src-before-go");
	tgo = mono_ns();
	st->steps.ready = tgo - trel; /* to GO: the steps add up to it */
	st->committed = true;
	if ((r = session_send_msg(m->s, WIRE_GO, 0)))
		return fail(m, r, "GO may not have reached the destination (%s); the guest is "
			    "paused here and the migration unresolved", chan_error(m->s->ch[0], r));
	failpoint("mig-src-after-go");
	if ((r = session_wait_msg(m->s, WIRE_RUNNING, &dres))) {
		session_failure(m->s, FAILURE_GRACE_MS, why, sizeof why);
		return fail(m, r, "GO sent, but no RUNNING (%s); the guest is paused here and the "
			    "migration unresolved", why);
	}
	trun = mono_ns();
	/* Downtime: from pause to GO here, plus half the round trip, plus the
	 * destination's own GO-to-resume interval; no clocks compared. */
	st->downtime_ns = (tgo - m->tp) + ((trun - tgo) > dres ? (trun - tgo - dres) / 2 : 0) + dres;
	st->steps.go_running = trun - tgo;
	st->steps.resume = dres;
	log_debug("%s: downtime %.2f ms: pause %.2f, final harvest %.2f, %" PRIu64 " pages %.2f, context "
		  "%.2f, address released %.2f, READY %.2f, GO to RUNNING %.2f (destination %.2f)",
		  m->d->uri, ns_to_ms(st->downtime_ns), ns_to_ms(st->steps.pause),
		  ns_to_ms(st->steps.harvest), m->nfinal,
		  ns_to_ms(st->steps.pages), ns_to_ms(st->steps.context), ns_to_ms(st->steps.release),
		  ns_to_ms(st->steps.ready), ns_to_ms(trun - tgo), ns_to_ms(dres));
	m->paused = false;
	if (m->postcopy && (r = postcopy(m)))
		return r;
	if ((r = hv_destroy(m->d)))
		return fail(m, r, "migrated, but destroying the source failed: %s", strerror(-r));
	st->phase = MIG_PH_DONE;
	return 0;
}

/* The end, success or not: before GO a failure rolls back (the source runs
 * on as it was); then the totals. */
static void finish(struct src *m, int r)
{
	struct migrate_stats *st = m->st;

	if (r && !st->committed)
		session_shutdown(m->s); /* unblock any lane still sending */
	session_monitor_stop(m->s);
	if (m->pcs)
		m->s->on_msg = NULL;
	if (r && !st->committed) {
		if (st->throttle)
			hv_throttle(m->d, 0);
		if (m->logging)
			hv_logdirty_disable(m->d);
		if (m->paused)
			hv_unpause(m->d);
	} else if (st->throttle && !st->committed) {
		hv_throttle(m->d, 0);
	}
	st->total_ns = mono_ns() - m->t0;
	if (m->lanes)
		totals(m);
	if (m->o->hooks.stats)
		m->o->hooks.stats(m->o->hooks.ctx, st);
	pc_src_close(m->pcs);
	lanes_close(m->lanes);
	bitmap_free(&m->dirty);
	bitmap_free(&m->pop);
}

int migrate_postcopy_resume(struct hv_domain *d, const struct migrate_opts *o,
			    struct migrate_stats *st, char *err, size_t errlen)
{
	struct src m = { .d = d, .o = o, .st = st, .err = err, .errlen = errlen,
			 .t0 = mono_ns(), .postcopy = true, .paused = true };
	int r;

	memset(st, 0, sizeof *st);
	st->committed = st->postcopy = true;
	if (!o->hooks.reconnect)
		return fail(&m, -EINVAL, "no way to reach the destination");
	if ((r = hv_info(d, &m.info)))
		return fail(&m, r, "%s: %s", d->uri, strerror(-r));
	st->ram_bytes = m.info.nr_frames * m.info.page_size;
	if ((r = bitmap_init(&m.dirty, m.info.nr_frames)))
		return fail(&m, r, "out of memory");
	m.lc = (struct lanes_conf){ .kind = STREAM_KIND_MIGRATION, .name = hv_uri_name(d->uri),
				    .codec = o->codec, .bandwidth = o->bandwidth,
				    .cancel = o->cancel, .ctx = &m, .trailer = trailer,
				    .on_frames = on_frames };
	m.final = true;
	log_info("%s: post-copy: this ferryd restarted; going on with it", d->uri);
	r = pc_pause(&m);
	st->pc_missing = m.nfinal; /* what the destination still lacked */
	if (r == -EALREADY)
		r = 0; /* the destination had every frame */
	else if (!r)
		r = postcopy_run(&m);
	else if (r != -ESHUTDOWN)
		fail(&m, r, "post-copy: the destination cannot be reached again (%s); the guest ran "
		     "there with part of its memory here: it is lost (this copy is stale and stays "
		     "paused)", strerror(-r));
	if (!r && (r = hv_destroy(d)))
		fail(&m, r, "migrated, but destroying the source failed: %s", strerror(-r));
	if (!r)
		st->phase = MIG_PH_DONE;
	if (m.s) {
		session_monitor_stop(m.s);
		m.s->on_msg = NULL;
	}
	st->total_ns = mono_ns() - m.t0;
	if (m.lanes)
		totals(&m);
	if (o->hooks.stats)
		o->hooks.stats(o->hooks.ctx, st);
	pc_src_close(m.pcs);
	lanes_close(m.lanes);
	bitmap_free(&m.dirty);
	return r;
}

int migrate_send(struct hv_domain *d, struct session *s, const struct migrate_opts *o,
		 struct migrate_stats *st, char *err, size_t errlen)
{
	struct src m = { .d = d, .s = s, .o = o, .st = st, .err = err, .errlen = errlen,
			 .t0 = mono_ns() };
	int r;

	memset(st, 0, sizeof *st);
	st->channels = s->n;
	if (!(r = setup(&m)) && !(r = iterate(&m)) && !(r = stop_and_copy(&m)))
		r = commit(&m);
	finish(&m, r);
	return r;
}
