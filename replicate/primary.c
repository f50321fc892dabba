/* SPDX-License-Identifier: Apache-2.0 */
/*
 * primary.c — the primary side of replication; see replicate.h.
 *
 * Threads: the engine's thread runs the epochs and sends channel 0's stripe
 * of each; the lanes send the other stripes; the session's monitor reads
 * the backup's HEARTBEATs and acknowledgements and releases output as they
 * come (hv_output may be called from any thread).
 */
#include "replicate/replicate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/lanes.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "replicate/staging.h"

#define MARKS 256 /* epochs whose mark time is kept for the output delay */

static const char *const state_names[REPL_STATE_MAX] = {
	[REPL_SYNCING] = "syncing",     [REPL_PROTECTED] = "protected",
	[REPL_DEGRADED] = "degraded",   [REPL_FAILED_OVER] = "failed-over",
	[REPL_FENCED] = "fenced",       [REPL_STANDBY] = "standby",
	[REPL_ENDED] = "ended",
};

const char *repl_state_name(enum repl_state s)
{
	return (unsigned)s < REPL_STATE_MAX ? state_names[s] : "?";
}

void repl_opts_default(struct repl_opts *o)
{
	memset(o, 0, sizeof *o);
	o->epoch_ms = REPL_EPOCH_MS_DEFAULT;
	o->heartbeat_ms = REPL_HEARTBEAT_MS_DEFAULT;
	o->staging_max = REPL_STAGING_DEFAULT;
	migrate_opts_default(&o->sync);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t repl_pause_pct(const struct repl_stats *st, unsigned p)
{
	uint64_t n = MIN(st->npause, (uint64_t)REPL_PAUSE_SAMPLES), v[REPL_PAUSE_SAMPLES];

	if (!n)
		return 0;
	memcpy(v, st->pause_ns, n * sizeof v[0]);
	qsort(v, n, sizeof v[0], cmp_u64);
	return v[MIN(n - 1, (n * p + 99) / 100 - (p ? 1 : 0))];
}

struct prim {
	struct hv_domain *d;
	struct session *s;
	const struct repl_opts *o;
	struct repl_stats *st;
	char *err;
	size_t errlen;
	struct hv_info info;
	struct lanes *lanes;
	struct staging *stg;
	struct bitmap dirty;
	bool gated;              /* the guest has output to gate */
	bool guest_pauses;       /* the domain measures its pauses (paused_ns) */
	bool paused, logging;
	uint64_t epoch;          /* the one being sent */
	void *ctx;               /* its context */
	size_t ctx_len;
	uint64_t last_report;
	/* The monitor's (atomics): the last acknowledged epoch, mark times. */
	uint64_t acked;
	uint64_t mark_ns[MARKS];
};

int repl_can_protect(const struct hv_info *i, char *err, size_t errlen)
{
	if (!i->rw_disks)
		return 0;
	snprintf(err, errlen, "it has %u writable disk%s: protection replicates memory only, "
		 "and a disk's writes of an epoch that never commits would outlive the memory "
		 "that rolls back (detach the disk or make it read-only)", i->rw_disks,
		 i->rw_disks > 1 ? "s" : "");
	return -EOPNOTSUPP;
}

static int fail(struct prim *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct prim *p, int code, const char *fmt, ...)
{
	va_list ap;

	if (p->err[0])
		return code; /* the first reason stands */
	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* An I/O error: the monitor usually knows what happened to the backup. */
static int fail_io(struct prim *p, int r, const char *what)
{
	char why[WIRE_ABORT_TEXT_MAX + 64];

	if (session_failure(p->s, 200, why, sizeof why))
		return fail(p, r, "the backup is lost: %s", why);
	return fail(p, r, "the backup is lost: %s: %s", what, chan_error(p->s->ch[0], r));
}

static void report(struct prim *p, bool force)
{
	uint64_t now = mono_ns();

	if (!p->o->hooks.stats || (!force && now - p->last_report < 100 * NSEC_PER_MSEC))
		return;
	p->last_report = now;
	p->st->acked = __atomic_load_n(&p->acked, __ATOMIC_ACQUIRE);
	if (p->lanes)
		p->st->bytes = lanes_bytes(p->lanes);
	p->o->hooks.stats(p->o->hooks.ctx, p->st);
}

/* The monitor's thread: an acknowledgement releases that epoch's output. */
static void on_msg(void *ctx, uint32_t type, uint64_t e)
{
	struct prim *p = ctx;
	uint64_t was = __atomic_load_n(&p->acked, __ATOMIC_ACQUIRE);
	int r;

	if (type != WIRE_CKPT_ACK || e <= was)
		return;
	if (e > __atomic_load_n(&p->epoch, __ATOMIC_ACQUIRE)) {
		log_error("%s: the backup acknowledged epoch %" PRIu64 ", not sent yet", p->d->uri, e);
		session_shutdown(p->s);
		return;
	}
	if (p->gated && (r = hv_output(p->d, HV_OUTPUT_RELEASE, e)))
		log_error("%s: releasing the output of epoch %" PRIu64 ": %s", p->d->uri, e,
			  strerror(-r));
	__atomic_store_n(&p->acked, e, __ATOMIC_RELEASE);
	p->st->last_commit_ns = mono_ns();
	if (e - was == 1) {
		uint64_t m = __atomic_load_n(&p->mark_ns[e % MARKS], __ATOMIC_RELAXED);

		if (m) {
			__atomic_add_fetch(&p->st->delay_sum_ns, p->st->last_commit_ns - m,
					   __ATOMIC_RELAXED);
			__atomic_add_fetch(&p->st->delays, 1, __ATOMIC_RELAXED);
		}
	}
}

/* migrate_hooks.stopped: the sync's pause; output from here on is held. */
static void on_stopped(void *ctx, struct hv_domain *d)
{
	struct prim *p = ctx;
	int r;

	/* A deliberate bug for the tests: output is never held, so it leaves up
	 * to an epoch before the backup has the state that produced it. */
	if (failpoint("repl-release-early"))
		return;
	r = hv_output(d, HV_OUTPUT_HOLD, 1);
	p->gated = r == 0;
	if (r && r != -EOPNOTSUPP)
		log_error("%s: holding output: %s", d->uri, strerror(-r));
}

static void on_sync_stats(void *ctx, const struct migrate_stats *ms)
{
	struct prim *p = ctx;

	p->st->sync = *ms;
	if (p->o->hooks.stats)
		p->o->hooks.stats(p->o->hooks.ctx, p->st);
}

/* A lane's end of an epoch: channel 0 carries the context; each its COMMIT. */
static int trailer(void *ctx, unsigned lane, struct stream_writer *w, uint64_t frames)
{
	struct prim *p = ctx;
	int r = 0;

	(void)frames;
	if (!lane && !(r = stream_write_context(w, p->ctx, p->ctx_len)))
		r = failpoint("repl-primary-commit"); /* the other channels may have committed */
	return r ? r : stream_write_ckpt(w, STREAM_REC_CKPT_COMMIT, p->epoch, p->o->token);
}

/* Protection ends: END on every channel; the backup discards its copy. */
static int end_streams(struct prim *p)
{
	int r = 0;

	for (unsigned i = 0; i < p->s->n && !r; i++)
		r = stream_write_end(lanes_writer(p->lanes, i));
	if (r)
		return fail_io(p, r, "ending the streams");
	return 0;
}

/* The initial sync, then the replication streams on every channel. */
static int setup(struct prim *p)
{
	struct repl_opts *o = (struct repl_opts *)p->o;
	struct migrate_opts mo = o->sync;
	struct lanes_conf lc = { .kind = STREAM_KIND_REPLICATION, .name = hv_uri_name(p->d->uri),
				 .codec = o->sync.codec, .ctx = p, .trailer = trailer };
	int r;

	if ((r = hv_info(p->d, &p->info)))
		return fail(p, r, "%s: %s", p->d->uri, strerror(-r));
	if ((r = repl_can_protect(&p->info, p->err, p->errlen)))
		return r;
	mo.sync_only = true;
	mo.hooks = (struct migrate_hooks){ .ctx = p, .stats = on_sync_stats, .stopped = on_stopped };
	if ((r = migrate_send(p->d, p->s, &mo, &p->st->sync, p->err, p->errlen))) {
		/* Output stays held: a standby named in sync may still hold a
		 * copy older than it (a restarted primary's resync), so only the
		 * caller may let it go. */
		p->gated = false;
		return r;
	}
	p->logging = true;
	if ((r = hv_info(p->d, &p->info)))
		return fail(p, r, "%s: %s", p->d->uri, strerror(-r));
	if ((r = bitmap_init(&p->dirty, p->info.nr_frames)) ||
	    (r = staging_new(p->d, &p->info, o->staging_max, &p->stg)))
		return fail(p, r, "out of memory");
	p->st->staging_max = staging_max(p->stg);
	p->s->role = "the backup";
	p->s->timeout_ms = (int)o->heartbeat_ms;
	for (unsigned i = 0; i < p->s->n; i++)
		chan_set_timeout(p->s->ch[i], (int)o->heartbeat_ms);
	p->s->on_msg = on_msg;
	p->s->on_msg_ctx = p;
	if ((r = session_monitor_start(p->s)))
		return fail(p, r, "starting the monitor thread: %s", strerror(-r));
	if ((r = lanes_open(staging_domain(p->stg), &p->info, p->s->ch, p->s->n, &lc, &p->lanes)))
		return fail_io(p, r, "starting the replication streams");
	lanes_cache_new_pages(p->lanes, true);
	if (o->hooks.synced && (r = o->hooks.synced(o->hooks.ctx, p->err, p->errlen))) {
		end_streams(p); /* the backup discards its copy */
		return r;
	}
	p->st->state = REPL_PROTECTED;
	p->st->t_start_ns = p->st->last_commit_ns = mono_ns();
	report(p, true);
	return 0;
}

/* Pause, take the epoch (dirty pages into the staging area, context, the
 * output mark), resume unless it did not fit. */
static int checkpoint(struct prim *p)
{
	uint64_t e = p->epoch, t[6];
	int64_t nd;
	int r, fit;

	t[0] = mono_ns();
	if ((r = hv_pause(p->d)))
		return fail(p, r, "%s: pause: %s", p->d->uri, strerror(-r));
	p->paused = true;
	t[1] = mono_ns();
	bitmap_zero(&p->dirty);
	if ((nd = hv_logdirty_harvest(p->d, &p->dirty, HV_HARVEST_FINAL)) < 0)
		return fail(p, (int)nd, "%s: harvesting the dirty log: %s", p->d->uri,
			    strerror((int)-nd));
	t[2] = mono_ns();
	if ((fit = staging_fill(p->stg, &p->dirty, (uint64_t)nd)) < 0)
		return fail(p, fit, "%s: copying the epoch: %s", p->d->uri, strerror(-fit));
	t[3] = mono_ns();
	free(p->ctx);
	p->ctx = NULL;
	if ((r = hv_save_context(p->d, &p->ctx, &p->ctx_len)) < 0)
		return fail(p, r, "%s: saving the context: %s", p->d->uri, strerror(-r));
	t[4] = mono_ns();
	/* Output from now on belongs to the next epoch. */
	if (p->gated && (r = hv_output(p->d, HV_OUTPUT_MARK, e + 1)))
		return fail(p, r, "%s: marking output epoch %" PRIu64 ": %s", p->d->uri, e + 1,
			    strerror(-r));
	__atomic_store_n(&p->mark_ns[e % MARKS], mono_ns(), __ATOMIC_RELAXED);
	p->st->last_dirty = (uint64_t)nd;
	p->st->dirty_pages += (uint64_t)nd;
	if (fit == 1) /* too big to stage: sent with the guest paused */
		p->st->passthrough++;
	else if ((r = hv_unpause(p->d)))
		return fail(p, r, "%s: resume: %s", p->d->uri, strerror(-r));
	else
		p->paused = false;
	p->st->staging_bytes = staging_bytes(p->stg);
	t[5] = mono_ns();
	if (e % 40 == 0)
		log_debug("%s: epoch %" PRIu64 ": pause %.2f ms (the guest's, one behind: %.2f): "
			  "pausing %.2f, "
			  "harvest %.2f (%" PRId64 " pages), copy %.2f, context %.2f, mark and resume "
			  "%.2f", p->d->uri, e, ns_to_ms(t[5] - t[0]), ns_to_ms(hv_paused_ns(p->d)),
			  ns_to_ms(t[1] - t[0]), ns_to_ms(t[2] - t[1]), nd, ns_to_ms(t[3] - t[2]),
			  ns_to_ms(t[4] - t[3]), ns_to_ms(t[5] - t[4]));
	return 0;
}

static void note_pause(struct prim *p, uint64_t ns)
{
	p->st->pause_ns[p->st->npause % REPL_PAUSE_SAMPLES] = ns;
	p->st->npause++;
	p->st->pause_max_ns = MAX(p->st->pause_max_ns, ns);
	p->st->pause_sum_ns += ns;
}

/*
 * An epoch's pause ended (wall: as measured here, round trips to the
 * domain included). The guest's own pause, as the domain measured it,
 * comes one epoch behind (hv paused_ns): epoch e's unpause brings epoch
 * e - 1's — from epoch 2 on, as epoch 1's brings the sync's. Without it,
 * the wall time counts.
 */
static void epoch_paused(struct prim *p, uint64_t wall)
{
	uint64_t g = hv_paused_ns(p->d);

	if (g && p->epoch >= 2)
		note_pause(p, g);
	else if (!g && !p->guest_pauses)
		note_pause(p, wall);
	p->guest_pauses |= g != 0;
}

/* One epoch: take it, then send it (BEGIN on every channel, the pages, the
 * lanes' trailers). */
static int epoch(struct prim *p)
{
	uint64_t t0 = mono_ns(), ns;
	int r;

	__atomic_store_n(&p->epoch, p->epoch + 1, __ATOMIC_RELEASE);
	if ((r = checkpoint(p)))
		return r;
	if (!p->paused)
		epoch_paused(p, mono_ns() - t0);
	if ((r = failpoint("repl-primary-send")))
		return fail(p, r, "failpoint repl-primary-send");
	for (unsigned i = 0; i < p->s->n && !r; i++)
		r = stream_write_ckpt(lanes_writer(p->lanes, i), STREAM_REC_CKPT_BEGIN, p->epoch,
				      p->o->token);
	if (r || (r = lanes_send(p->lanes, &p->dirty, NULL, &ns)))
		return fail_io(p, r, "sending an epoch");
	if (p->paused) {
		if ((r = hv_unpause(p->d)))
			return fail(p, r, "%s: resume: %s", p->d->uri, strerror(-r));
		p->paused = false;
		epoch_paused(p, mono_ns() - t0);
	}
	p->st->epoch = p->epoch;
	p->st->epochs++;
	report(p, false);
	return 0;
}

static int run(struct prim *p)
{
	uint64_t every = (uint64_t)p->o->epoch_ms * NSEC_PER_MSEC, next = mono_ns();
	char why[WIRE_ABORT_TEXT_MAX + 64];
	int r;

	for (;;) {
		uint64_t now = mono_ns();

		next += every;
		if (next > now)
			mono_sleep_ns(next - now);
		else
			next = now; /* a long epoch: the next starts now */
		if (p->o->stop && *p->o->stop)
			return end_streams(p);
		if ((r = session_failed(p->s, why, sizeof why)))
			return fail(p, r, "the backup is lost: %s", why);
		if ((r = epoch(p)))
			return r;
	}
}

int replicate_primary(struct hv_domain *d, struct session *s, const struct repl_opts *o,
		      struct repl_stats *st, char *err, size_t errlen)
{
	struct prim p = { .d = d, .s = s, .o = o, .st = st, .err = err, .errlen = errlen };
	int r;

	err[0] = '\0';
	memset(st, 0, sizeof *st);
	st->state = REPL_SYNCING;
	st->token = o->token;
	if (!(r = setup(&p)))
		r = run(&p);
	if (r)
		session_shutdown(s); /* the lanes stop at once */
	session_monitor_stop(s);
	s->on_msg = NULL;
	lanes_close(p.lanes);
	if (p.logging)
		hv_logdirty_disable(d);
	if (p.paused)
		hv_unpause(d);
	st->acked = p.acked;
	st->state = !r ? REPL_ENDED : st->t_start_ns ? REPL_DEGRADED : REPL_SYNCING;
	if (o->hooks.stats)
		o->hooks.stats(o->hooks.ctx, st);
	staging_free(p.stg);
	bitmap_free(&p.dirty);
	free(p.ctx);
	return r;
}
