/* SPDX-License-Identifier: Apache-2.0 */
/*
 * precopy_dst.c — the destination side of a pre-copy migration; see
 * precopy.h.
 *
 * Threads: the receiving thread reads channel 0's stream (and runs the
 * commit); one reader thread per further channel reads its stream into the
 * same domain (channels own disjoint frames, so their writes never meet); the
 * session's heartbeat thread writes to channel 0. Channel 0's HEADER
 * creates the domain, the others wait for it; its CONTEXT waits for every
 * other channel's END. A channel that fails tells the source at once
 * (ABORT) and the receiving thread reports the first failure.
 */
#include "migrate/precopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/reader.h"
#include "checkpoint/send.h"
#include "checkpoint/sink.h"
#include "checkpoint/snapshot.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "migrate/postcopy.h"
#include "session/wire.h"


struct dst;

/* One channel's reader. */
struct rlane {
	struct apply_sink a; /* first: the inner sink's ctx */
	struct dst *ds;
	unsigned idx;
	struct chan *ch;
	pthread_t thread;
	bool running;
	uint64_t bytes;   /* stream bytes read (the reader's own) */
	unsigned passes;  /* ITER_END records read */
	char why[300];
};

struct dst {
	struct session *s;
	struct rlane *lanes;
	unsigned n;
	struct stream_sink inner;
	const struct migrate_opts *o;
	const char *name;
	char *err;
	size_t errlen;
	int timeout_ms;
	struct migrate_stats st;
	uint64_t last_report;
	struct hv_domain *d; /* set once by channel 0's HEADER, before created */
	struct stream_info info;
	/* Under m (c: created, ended, failed, stop). */
	pthread_mutex_t m;
	pthread_cond_t c;
	bool created, stop, silent;
	unsigned ended;      /* lanes but 0 that read their END */
	unsigned acked;      /* passes acknowledged to the source */
	int fail;            /* first failure of a lane but 0 */
	char fail_why[320];
	/* Post-copy: agreed (the session's last channel is its own, read by
	 * pcl), and switched to (POSTCOPY records came: pc). Lane 0 then reads
	 * on a thread too, and the commit starts once its context is applied
	 * (ctx_done) rather than at its END (l0_done, l0_r). */
	bool pc_cap;
	struct rlane pcl;
	struct pc_dst *pc;
	int pc_fd;
	bool ctx_done, l0_done, go_read; /* under m */
	int l0_r;
};

static void d_report(struct dst *ds, bool force)
{
	uint64_t now = mono_ns();

	if (!ds->o->hooks.stats || (!force && now - ds->last_report < 100 * NSEC_PER_MSEC))
		return;
	ds->last_report = now;
	ds->st.bytes = 0;
	for (unsigned i = 0; i < ds->n; i++)
		ds->st.bytes += __atomic_load_n(&ds->lanes[i].bytes, __ATOMIC_RELAXED);
	ds->o->hooks.stats(ds->o->hooks.ctx, &ds->st);
}

/* A lane but 0 failed: remember the first reason, tell the source, and wake
 * whoever waits on the lanes. */
static void lane_fail(struct rlane *l, int r, const char *why)
{
	struct dst *ds = l->ds;

	pthread_mutex_lock(&ds->m);
	if (!ds->fail) {
		ds->fail = r ? r : -EPROTO;
		snprintf(ds->fail_why, sizeof ds->fail_why, "channel %u: %s", l->idx, why);
	}
	pthread_cond_broadcast(&ds->c);
	pthread_mutex_unlock(&ds->m);
	session_send_abort(ds->s, -r, ds->fail_why);
	chan_shutdown(l->ch);
}

static bool d_stop(void *ctx)
{
	struct dst *ds = ctx;

	return __atomic_load_n(&ds->fail, __ATOMIC_RELAXED) != 0 ||
	       __atomic_load_n(&ds->stop, __ATOMIC_RELAXED);
}

/* The stream source of a lane. */
static int d_read(void *ctx, void *buf, size_t len)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	int r = session_recv(ds->s, l->ch, buf, len, ds->timeout_ms, d_stop, ds, &ds->silent);

	if (!r)
		__atomic_store_n(&l->bytes, l->bytes + len, __ATOMIC_RELAXED);
	return r;
}

static int d_header(void *ctx, const struct stream_info *i)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	char uri[128];
	int r;

	if (i->kind != STREAM_KIND_MIGRATION) {
		snprintf(l->why, sizeof l->why, "not a migration stream (kind %u)", i->kind);
		return -EINVAL;
	}
	if (l->idx || ds->created) {
		/* The domain is channel 0's to create (once: a rejoined
		 * post-copy's streams find it made). */
		pthread_mutex_lock(&ds->m);
		while (!ds->created && !ds->fail && !ds->stop)
			pthread_cond_wait(&ds->c, &ds->m);
		r = ds->created ? 0 : -ECANCELED;
		pthread_mutex_unlock(&ds->m);
		if (r)
			return r;
		if (i->page_size != ds->info.page_size || i->nr_frames != ds->info.nr_frames ||
		    strcmp(i->name, ds->info.name) != 0) {
			snprintf(l->why, sizeof l->why, "its stream header disagrees with channel 0's");
			return -EPROTO;
		}
		l->a.d = ds->d;
		return 0;
	}
	if ((r = hv_uri(uri, sizeof uri, i->backend, ds->name ? ds->name : i->name))) {
		snprintf(l->why, sizeof l->why, "no backend \"%s\" here, or a bad name", i->backend);
		return r;
	}
	if (ds->o->into)
		l->a.d = ds->o->into, r = 0;
	else
		r = hv_create(uri, i->config, i->domain_config, i->domain_config_len, &l->a.d);
	if (r) {
		snprintf(l->why, sizeof l->why, "cannot create %s: %s", uri,
			 r == -EEXIST ? "a domain of that name exists here" : strerror(-r));
		return r;
	}
	ds->st.ram_bytes = i->nr_frames * i->page_size;
	ds->st.phase = MIG_PH_ITERATING;
	d_report(ds, true);
	if ((r = failpoint("mig-dst-setup")))
		return r;
	if ((r = check_created(l->a.d, i, l->why, sizeof l->why)))
		return r;
	pthread_mutex_lock(&ds->m);
	ds->d = l->a.d;
	ds->info = *i;
	ds->created = true;
	pthread_cond_broadcast(&ds->c);
	pthread_mutex_unlock(&ds->m);
	return 0;
}

/* Frames [first, first + count) must be this lane's stripe: the sender pins
 * each frame to one channel, so a frame elsewhere breaks the order of its
 * copies and its delta base. */
static int check_stripe(struct rlane *l, uint64_t first, uint64_t count)
{
	uint64_t last = first + count - 1;
	unsigned n = l->ds->n;

	if (stream_stripe_owns(first, count, n, l->idx))
		return 0;
	snprintf(l->why, sizeof l->why, "frame %" PRIu64 " arrived on channel %u; it belongs to "
		 "channel %u", stream_stripe(first, n) == l->idx ? last : first, l->idx,
		 stream_stripe(stream_stripe(first, n) == l->idx ? last : first, n));
	return -EPROTO;
}

static int d_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct rlane *l = ctx;
	int r;

	for (unsigned i = 0; i < n; i++)
		if ((r = check_stripe(l, frames[i], 1)))
			return r;
	if (!l->idx)
		d_report(l->ds, false);
	r = l->ds->inner.pages(&l->a, frames, pages, n);
	if (!r && l->ds->pc_fd >= 0)
		pc_dst_placed(l->ds->pc, frames, n);
	return r;
}

static int d_zero(void *ctx, uint64_t first, uint64_t count)
{
	struct rlane *l = ctx;
	int r;

	if (count && (r = check_stripe(l, first, count)))
		return r;
	r = l->ds->inner.zero(&l->a, first, count);
	if (!r && l->ds->pc_fd >= 0)
		pc_dst_placed_zero(l->ds->pc, first, count);
	return r;
}

/* POSTCOPY (channel 0, before the context): the frames still to come. */
static int d_postcopy(void *ctx, uint64_t first, uint64_t count, const void *bits)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	int r;

	if (l->idx || !ds->pc_cap || ds->pc_fd >= 0) {
		snprintf(l->why, sizeof l->why, "a POSTCOPY record %s",
			 l->idx ? "off channel 0" : ds->pc_fd >= 0 ? "after the switch"
				: "in a session that did not agree to post-copy");
		return -EPROTO;
	}
	if (!ds->pc && (r = pc_dst_new(ds->info.nr_frames, &ds->pc)))
		return r;
	return pc_dst_add(ds->pc, first, count, bits);
}

/* The post-copy channel's stream: demanded frames, anywhere in the
 * domain, once the switch is made. */
static int u_header(void *ctx, const struct stream_info *i)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	int r;

	pthread_mutex_lock(&ds->m);
	while (!ds->created && !ds->fail && !ds->stop)
		pthread_cond_wait(&ds->c, &ds->m);
	r = ds->created ? 0 : -ECANCELED;
	pthread_mutex_unlock(&ds->m);
	if (r)
		return r;
	if (i->page_size != ds->info.page_size || i->nr_frames != ds->info.nr_frames) {
		snprintf(l->why, sizeof l->why, "its stream header disagrees with channel 0's");
		return -EPROTO;
	}
	l->a.d = ds->d;
	l->a.fresh = false;
	return 0;
}

static int u_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	int r;

	if (ds->pc_fd < 0) {
		snprintf(l->why, sizeof l->why, "pages on the post-copy channel before the switch");
		return -EPROTO;
	}
	if (!(r = ds->inner.pages(&l->a, frames, pages, n)))
		pc_dst_placed(ds->pc, frames, n);
	return r;
}

static int d_base(void *ctx, uint64_t frame, void *page)
{
	struct rlane *l = ctx;

	return l->ds->inner.base(&l->a, frame, page);
}

/* A pass ended on this channel; once it has on every channel, tell the
 * source (it pauses the guest only once its last pass is applied). */
static int d_iter_end(void *ctx, const struct stream_iter_end *it)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	unsigned min = UINT32_MAX;
	int r = 0;

	if (le64toh(it->iteration) < l->passes) {
		snprintf(l->why, sizeof l->why, "ITER_END of pass %" PRIu64 " after pass %u",
			 (uint64_t)le64toh(it->iteration), l->passes);
		return -EPROTO;
	}
	if (!l->idx) {
		ds->st.iterations = (unsigned)le64toh(it->iteration);
		d_report(ds, true);
		if ((r = failpoint("mig-dst-iter")))
			return r;
	}
	pthread_mutex_lock(&ds->m);
	l->passes++;
	for (unsigned i = 0; i < ds->n; i++)
		min = MIN(min, ds->lanes[i].passes);
	if (min > ds->acked)
		ds->acked = min;
	else
		min = 0;
	pthread_mutex_unlock(&ds->m);
	/* Outside the lock (a send may wait); two lanes' acknowledgements may
	 * pass each other, and the source keeps the larger. */
	if (min)
		r = session_send_msg(ds->s, WIRE_HEARTBEAT, min);
	return r;
}

static int d_context(void *ctx, const void *blob, size_t len)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;
	int r;

	if (l->idx) {
		snprintf(l->why, sizeof l->why, "a CONTEXT record (it belongs on channel 0)");
		return -EPROTO;
	}
	/* Every other channel's last pass first (post-copy: the source
	 * paused only once every pass was applied, and the rest comes after). */
	pthread_mutex_lock(&ds->m);
	while (!ds->pc && ds->ended < ds->n - 1 && !ds->fail)
		pthread_cond_wait(&ds->c, &ds->m);
	r = ds->fail;
	pthread_mutex_unlock(&ds->m);
	if (r)
		return r;
	ds->st.phase = MIG_PH_STOP_COPY;
	d_report(ds, true);
	if ((r = failpoint("mig-dst-stopcopy")))
		return r;
	if (ds->pc) {
		/* The missing frames go now, before READY: from here they are
		 * placed, never written over. */
		if ((r = hv_postcopy_begin(ds->d, pc_dst_missing(ds->pc), &ds->pc_fd))) {
			snprintf(l->why, sizeof l->why, "cannot run post-copy here: %s",
				 r == -EOPNOTSUPP ? "this domain's backend or runtime cannot"
						  : strerror(-r));
			return r;
		}
		ds->st.postcopy = true;
		ds->st.pc_missing = bitmap_count(pc_dst_missing(ds->pc));
		for (unsigned i = 0; i < ds->n; i++)
			ds->lanes[i].a.fresh = false; /* zero extents place zero now */
	}
	if ((r = ds->inner.context(&l->a, blob, len)))
		return r;
	pthread_mutex_lock(&ds->m);
	ds->ctx_done = true;
	pthread_cond_broadcast(&ds->c);
	/* Post-copy: GO comes on this channel next, and is the main thread's
	 * to read; the stream goes on after it. */
	while (ds->pc && !ds->go_read && !ds->fail && !ds->stop)
		pthread_cond_wait(&ds->c, &ds->m);
	r = ds->go_read || !ds->pc ? 0 : -ECANCELED;
	pthread_mutex_unlock(&ds->m);
	return r;
}

static int d_end(void *ctx, const struct stream_end *e)
{
	struct rlane *l = ctx;
	struct dst *ds = l->ds;

	(void)e;
	if (l->idx) {
		pthread_mutex_lock(&ds->m);
		ds->ended++;
		pthread_cond_broadcast(&ds->c);
		pthread_mutex_unlock(&ds->m);
	}
	return 0;
}

static int read_lane(struct rlane *l)
{
	struct stream_sink sink = { .ctx = l, .header = d_header, .base = d_base, .pages = d_pages,
				    .zero = d_zero, .context = d_context, .iter_end = d_iter_end,
				    .end = d_end, .postcopy = d_postcopy };
	struct stream_sink pcsink = { .ctx = l, .header = u_header, .pages = u_pages };
	struct xsource src = { d_read, l };
	char why[256];
	int r;

	why[0] = '\0';
	r = stream_read(&src, l == &l->ds->pcl ? &pcsink : &sink, false, NULL, why, sizeof why);
	/* The sink's own reason is sharper than the reader's "sink failed";
	 * the channel may know more than an errno (a TLS failure). */
	if (r && !l->why[0]) {
		if (l->ch->err[0] && r != -ETIMEDOUT)
			snprintf(l->why, sizeof l->why, "%.120s (%.150s)", why, l->ch->err);
		else
			snprintf(l->why, sizeof l->why, "%s", why);
	}
	return r;
}

static void *lane_main(void *arg)
{
	struct rlane *l = arg;
	struct dst *ds = l->ds;
	int r = read_lane(l);

	if (l->idx == 0) {
		/* Channel 0 on a thread (post-copy): its end is the main
		 * thread's to judge, as receive() does. */
		pthread_mutex_lock(&ds->m);
		ds->l0_done = true;
		ds->l0_r = r;
		pthread_cond_broadcast(&ds->c);
		pthread_mutex_unlock(&ds->m);
		if (r && ds->pc_fd >= 0 && !ds->stop)
			lane_fail(l, r, l->why); /* after the switch: the guest waits on it */
		return NULL;
	}
	if (r && r != -ECANCELED && !__atomic_load_n(&ds->stop, __ATOMIC_RELAXED))
		lane_fail(l, r, l->why);
	else if (r)
		chan_shutdown(l->ch);
	return NULL;
}

/* Wait up to the peer timeout for GO. */
static int wait_go(struct dst *ds)
{
	uint32_t type;
	uint64_t a;
	int r = session_read_msg(ds->s, ds->timeout_ms, &type, &a);

	return r ? r : type == WIRE_GO ? 0 : -EPROTO;
}

static int d_journal(struct dst *ds, enum mig_point pt)
{
	return ds->o->hooks.journal ? ds->o->hooks.journal(ds->o->hooks.ctx, pt) : 0;
}

/* Start the heartbeats and the lanes but 0. */
static int start_threads(struct dst *ds)
{
	int r;

	if ((r = session_heartbeat_start(ds->s))) {
		snprintf(ds->err, ds->errlen, "starting the heartbeat thread: %s", strerror(-r));
		return r;
	}
	/* Post-copy: channel 0 too, and the post-copy channel. */
	for (unsigned i = ds->pc_cap ? 0 : 1; i <= ds->n; i++) {
		struct rlane *l = i < ds->n ? &ds->lanes[i] : &ds->pcl;

		if (i == ds->n && !ds->pc_cap)
			break;
		if ((r = -pthread_create(&l->thread, NULL, lane_main, l))) {
			snprintf(ds->err, ds->errlen, "starting channel threads: %s", strerror(-r));
			return r;
		}
		l->running = true;
	}
	return 0;
}

static void stop_threads(struct dst *ds)
{
	pthread_mutex_lock(&ds->m);
	ds->stop = true;
	pthread_cond_broadcast(&ds->c);
	pthread_mutex_unlock(&ds->m);
	if (ds->s)
		session_heartbeat_stop(ds->s);
	if (ds->pcl.running) {
		/* Its stream never ends: the source stops when all is here. */
		chan_shutdown(ds->pcl.ch);
		pthread_join(ds->pcl.thread, NULL);
		ds->pcl.running = false;
	}
	for (unsigned i = 0; i < ds->n; i++) {
		if (ds->lanes[i].running)
			pthread_join(ds->lanes[i].thread, NULL);
		ds->lanes[i].running = false;
	}
}

/* Read every channel's stream; 0 once all ended and the context is applied. */
static int receive(struct dst *ds)
{
	struct rlane *l0 = &ds->lanes[0];
	int r;

	if (ds->pc_cap) {
		/* Channel 0 reads on its thread: until its END, or its context
		 * in a post-copy (its stream goes on after RUNNING). */
		pthread_mutex_lock(&ds->m);
		while (!ds->l0_done && !(ds->pc && ds->ctx_done) && !ds->fail)
			pthread_cond_wait(&ds->c, &ds->m);
		r = ds->l0_done ? ds->l0_r : 0;
		pthread_mutex_unlock(&ds->m);
		if (!r && !ds->fail && ds->pc && ds->ctx_done)
			return 0;
	} else {
		r = read_lane(l0);
	}

	/* A lane's failure is the cause; channel 0 only saw its effect. */
	if (ds->fail) {
		snprintf(ds->err, ds->errlen, "%s", ds->fail_why);
		return ds->fail;
	}
	if (r) {
		if (ds->silent)
			snprintf(ds->err, ds->errlen, "the source was silent for %d ms",
				 ds->timeout_ms);
		else
			snprintf(ds->err, ds->errlen, "%s%s", ds->n > 1 ? "channel 0: " : "", l0->why);
		return r;
	}
	if (l0->a.contexts != 1) {
		snprintf(ds->err, ds->errlen, "the stream carried %u CONTEXT records, not one",
			 l0->a.contexts);
		return -EBADMSG;
	}
	return 0;
}

/* All is here: journal READY, say it, and wait for GO (never resume
 * without it; the link dropping before it discards). */
static int ready(struct dst *ds)
{
	struct chan *c0 = ds->s->ch[0];
	int r;

	ds->st.phase = MIG_PH_COMMIT;
	d_report(ds, true);
	if ((r = d_journal(ds, MIG_PT_READY))) {
		snprintf(ds->err, ds->errlen, "journaling READY failed: %s", strerror(-r));
		return r;
	}
	if ((r = session_send_msg(ds->s, WIRE_READY, 0))) {
		snprintf(ds->err, ds->errlen, "sending READY: %s", chan_error(c0, r));
		return r;
	}
	if ((r = failpoint("mig-dst-before-go")))
		return r;
	if ((r = wait_go(ds))) {
		snprintf(ds->err, ds->errlen, "no GO from the source: %s",
			 r == -ETIMEDOUT ? "it was silent" : r == -ECONNRESET ? "the connection closed"
							   : chan_error(c0, r));
		return r;
	}
	pthread_mutex_lock(&ds->m);
	ds->go_read = true; /* channel 0's stream may go on (post-copy) */
	pthread_cond_broadcast(&ds->c);
	pthread_mutex_unlock(&ds->m);
	return 0;
}

/* Replication's initial sync: all is here; say READY and keep the copy. */
static int sync_ready(struct dst *ds)
{
	int r;

	ds->st.phase = MIG_PH_COMMIT;
	d_report(ds, true);
	if ((r = session_send_msg(ds->s, WIRE_READY, 0)))
		snprintf(ds->err, ds->errlen, "sending READY: %s", chan_error(ds->s->ch[0], r));
	return r;
}

static int postcopy(struct dst *ds);

/*
 * GO came: this copy is the guest from now on, nothing discards it. Resume
 * it and say RUNNING. -EINPROGRESS if it failed to resume and could not be
 * destroyed either (which copy runs is unknown: the source must stay
 * paused); another error if it is destroyed (the source may resume).
 */
static int resume(struct dst *ds)
{
	const struct migrate_opts *o = ds->o;
	uint64_t t0 = mono_ns();
	int r, e;

	if ((r = d_journal(ds, MIG_PT_RESUME)))
		log_error("%s: journaling GO failed (%s); resuming anyway", ds->name, strerror(-r));
	failpoint("mig-dst-after-go");
	if (o->hooks.resuming)
		o->hooks.resuming(o->hooks.ctx, ds->d);
	if ((e = failpoint("mig-dst-resume")) || (e = hv_unpause(ds->d))) {
		/* The runtime may have resumed all the same (a lost reply): this
		 * copy counts as discarded only once it is known dead. */
		if (hv_destroy(ds->d) == 0) {
			snprintf(ds->err, ds->errlen, "resuming after GO failed (%s); this copy is "
				 "destroyed", strerror(-e));
			return e;
		}
		snprintf(ds->err, ds->errlen, "resuming after GO failed (%s) and this copy could not "
			 "be destroyed: which copy runs is unknown", strerror(-e));
		return -EINPROGRESS;
	}
	/* Its share of the downtime (the downtime itself is the source's
	 * measure: from its pause to this resume). */
	ds->st.steps.resume = mono_ns() - t0;
	ds->st.phase = ds->pc_fd >= 0 ? MIG_PH_POSTCOPY : MIG_PH_DONE;
	if (o->hooks.resumed && ds->pc_fd < 0)
		o->hooks.resumed(o->hooks.ctx, ds->d);
	failpoint("mig-dst-after-resume");
	session_send_msg(ds->s, WIRE_RUNNING, ds->st.steps.resume);
	/* Post-copy: the move is done, and the guest the caller's, only once
	 * every frame is here. */
	if (ds->pc_fd >= 0) {
		if ((r = d_journal(ds, MIG_PT_POSTCOPY)))
			log_error("%s: journaling post-copy failed: %s", ds->name, strerror(-r));
		return postcopy(ds);
	}
	if ((r = d_journal(ds, MIG_PT_RUNNING)))
		log_error("%s: journaling RUNNING failed: %s", ds->name, strerror(-r));
	d_report(ds, true);
	return 0;
}

/*
 * A paused post-copy's new session (from the reconnect hook): lanes over
 * its channels, whose streams begin again (HEADER, no context), the same
 * domain; tell the source what is still missing and ask again for what
 * threads wait on.
 */
static int rejoin(struct dst *ds)
{
	struct session *s = ds->s;
	int r;

	if (!(s->caps & WIRE_CAP_POSTCOPY) || s->n < 2) {
		snprintf(ds->fail_why, sizeof ds->fail_why, "the new session has no post-copy channel");
		return -EPROTO;
	}
	free(ds->lanes);
	ds->n = s->n - 1;
	if (!(ds->lanes = calloc(ds->n, sizeof *ds->lanes)))
		return -ENOMEM;
	for (unsigned i = 0; i < ds->n; i++)
		ds->lanes[i] = (struct rlane){ .a = { .d = ds->d }, .ds = ds, .idx = i,
					       .ch = s->ch[i] };
	ds->pcl = (struct rlane){ .a = { .d = ds->d }, .ds = ds, .idx = ds->n,
				  .ch = s->ch[s->n - 1] };
	for (unsigned i = 0; i < s->n; i++)
		chan_set_timeout(s->ch[i], ds->o->peer_timeout_ms);
	s->role = "the source";
	s->timeout_ms = ds->o->peer_timeout_ms;
	session_note_rx(s);
	pthread_mutex_lock(&ds->m);
	ds->fail = 0;
	ds->fail_why[0] = '\0';
	ds->stop = ds->silent = ds->l0_done = false;
	ds->ended = ds->acked = 0;
	ds->l0_r = 0;
	pthread_mutex_unlock(&ds->m);
	if ((r = pc_dst_rejoin(ds->pc, s, ds->pcl.ch, &ds->info))) {
		snprintf(ds->fail_why, sizeof ds->fail_why, "telling the source what is missing: %s",
			 chan_error(ds->pcl.ch, r));
		return r;
	}
	return start_threads(ds);
}

/*
 * Post-copy's session failed: each host keeps its half (the guest's
 * threads wait on the frames they touch) and the job waits, paused, for
 * the source to reconnect (hooks.reconnect); then it goes on. why: what
 * failed. 0 once going on, -errno if the hook gave up.
 */
static int pause_and_rejoin(struct dst *ds, const char *why)
{
	int r;

	if (!ds->o->hooks.reconnect)
		return -ENOTCONN;
	log_warn("%s: post-copy paused: %s; waiting for the source to reconnect",
		 ds->name ? ds->name : "guest", why);
	ds->st.phase = MIG_PH_PC_PAUSED;
	d_report(ds, true);
	if ((r = d_journal(ds, MIG_PT_PC_PAUSED)))
		log_error("%s: journaling the pause failed: %s", ds->name, strerror(-r));
	if (ds->s)
		session_shutdown(ds->s);
	stop_threads(ds);
	for (;;) {
		if ((r = ds->o->hooks.reconnect(ds->o->hooks.ctx, &ds->s)))
			return r;
		if (!(r = rejoin(ds)))
			break;
		log_warn("%s: post-copy: the new session failed at once: %s", ds->name,
			 ds->fail_why[0] ? ds->fail_why : strerror(-r));
		session_shutdown(ds->s);
		stop_threads(ds);
	}
	ds->st.phase = MIG_PH_POSTCOPY;
	d_report(ds, true);
	if ((r = d_journal(ds, MIG_PT_POSTCOPY)))
		log_error("%s: journaling post-copy failed: %s", ds->name, strerror(-r));
	log_info("%s: post-copy goes on over a new session", ds->name ? ds->name : "guest");
	return 0;
}

/*
 * Post-copy, after RUNNING: demand what the guest waits on until every
 * frame is here and every stream has ended, then say so (with the fault
 * latency). A failed session pauses it until the source reconnects; once
 * every frame is here, nothing the source does matters any more. Anything
 * else loses the guest: its memory is split between the hosts, so this
 * copy is destroyed (the source's is stale and stays paused there).
 */
/* Every frame is here: the guest is whole and the caller's (resumed hook,
 * RUNNING journaled), before the source hears it and ends its copy. */
static void pc_complete(struct dst *ds, uint64_t t0)
{
	uint64_t dem;
	uint32_t p50, p99, max;
	int r;

	hv_postcopy_end(ds->d);
	pc_dst_stats(ds->pc, &dem, &p50, &p99, &max);
	ds->st.pc_demand = dem;
	ds->st.pc_background = ds->st.pc_missing > dem ? ds->st.pc_missing - dem : 0;
	ds->st.pc_ns = mono_ns() - t0;
	ds->st.pc_fault_p50_us = p50;
	ds->st.pc_fault_p99_us = p99;
	ds->st.pc_fault_max_us = max;
	ds->st.phase = MIG_PH_DONE;
	if (ds->o->hooks.resumed)
		ds->o->hooks.resumed(ds->o->hooks.ctx, ds->d);
	if ((r = d_journal(ds, MIG_PT_RUNNING)))
		log_error("%s: journaling RUNNING failed: %s", ds->name, strerror(-r));
	d_report(ds, true);
	log_info("%s: post-copy done in %.0f ms: %" PRIu64 " of %" PRIu64 " frames on demand; "
		 "fault latency p50 %u us, p99 %u us, max %u us", ds->name ? ds->name : "guest",
		 ns_to_ms(ds->st.pc_ns), dem, ds->st.pc_missing, p50, p99, max);
}

static int postcopy(struct dst *ds)
{
	uint64_t t0 = mono_ns(), left = 1;
	char why[sizeof ds->fail_why] = "";
	bool whole = false;
	int r;

	for (;;) {
		bool backend = false;

		r = pc_dst_serve(ds->pc, ds->d, ds->s, ds->pc_fd, d_stop, ds, &backend, &left);
		/* Every stream to its END before PC_DONE: the source closes on it. */
		pthread_mutex_lock(&ds->m);
		while (!r && !(ds->l0_done && ds->ended == ds->n - 1) && !ds->fail)
			pthread_cond_wait(&ds->c, &ds->m);
		if (!r && (ds->fail || ds->l0_r))
			r = ds->fail ? ds->fail : ds->l0_r;
		snprintf(why, sizeof why, "%s", ds->fail ? ds->fail_why : strerror(-r));
		pthread_mutex_unlock(&ds->m);
		if (!r) {
			uint64_t dem;
			uint32_t p50, p99, max;

			if (!whole) {
				pc_complete(ds, t0);
				whole = true;
			}
			pc_dst_stats(ds->pc, &dem, &p50, &p99, &max);
			r = session_send_msg(ds->s, WIRE_PC_DONE, pc_latency_pack(p50, p99, max));
			if (r)
				snprintf(why, sizeof why, "saying PC_DONE: %s",
					 chan_error(ds->s->ch[0], r));
		}
		if (!r || !left || backend)
			break; /* done, or whole anyway, or lost */
		if ((r = pause_and_rejoin(ds, why)))
			break;
	}
	if (r == -ESHUTDOWN && left) {
		/* This ferryd stops: the guest runs on, waiting, for the next
		 * one to go on with (postcopy_reattach). */
		snprintf(ds->err, ds->errlen, "ferryd stops in the middle of a post-copy");
		return r;
	}
	if (left) {
		if (ds->s)
			session_abort(ds->s, -r, "post-copy failed at the destination");
		hv_destroy(ds->d);
		snprintf(ds->err, ds->errlen, "post-copy failed (%s%s): the guest ran here with part "
			 "of its memory still at the source, and is lost; this copy is destroyed",
			 r == -ECANCELED ? "given up by the operator after: " : "", why);
		return r ? r : -EIO;
	}
	if (!whole)
		pc_complete(ds, t0);
	if (r)
		log_warn("%s: post-copy: every frame is here, but the source was not told (%s)",
			 ds->name ? ds->name : "guest", why);
	return 0;
}

/* Before GO: give up, tell the source why, destroy what was made. */
static void discard(struct dst *ds, int r)
{
	if (!ds->err[0])
		snprintf(ds->err, ds->errlen, "%s", strerror(-r));
	session_abort(ds->s, -r, ds->err);
	stop_threads(ds);
	if (!ds->d)
		ds->d = ds->lanes[0].a.d; /* created, but failed its checks before it was shared */
	if (ds->d && ds->d != ds->o->into)
		hv_destroy(ds->d);
}

int migrate_postcopy_rejoin(struct hv_domain *d, const struct migrate_opts *o, char *err,
			    size_t errlen)
{
	struct dst ds = { .o = o, .name = hv_uri_name(d->uri), .err = err, .errlen = errlen,
			  .timeout_ms = o->peer_timeout_ms, .pc_cap = true, .pc_fd = -1,
			  .created = true, .d = d };
	struct hv_info hi;
	struct bitmap miss = { 0 };
	int r;

	err[0] = '\0';
	pthread_mutex_init(&ds.m, NULL);
	pthread_cond_init(&ds.c, NULL);
	if ((r = hv_info(d, &hi))) {
		snprintf(err, errlen, "%s: %s", d->uri, strerror(-r));
		goto out;
	}
	ds.info = (struct stream_info){ .major = STREAM_VERSION_MAJOR, .minor = STREAM_VERSION_MINOR,
					.kind = STREAM_KIND_MIGRATION, .page_size = hi.page_size,
					.nr_frames = hi.nr_frames };
	snprintf(ds.info.backend, sizeof ds.info.backend, "%s", hv_backend_name(d));
	snprintf(ds.info.name, sizeof ds.info.name, "%s", ds.name);
	snprintf(ds.info.config, sizeof ds.info.config, "%s", hi.config);
	ds.st.ram_bytes = hi.nr_frames * hi.page_size;
	if ((r = bitmap_init(&miss, hi.nr_frames)) || (r = pc_dst_new(hi.nr_frames, &ds.pc))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((r = hv_postcopy_reattach(d, &miss, &ds.pc_fd))) {
		snprintf(err, errlen, "%s: cannot take its post-copy up again: %s", d->uri,
			 strerror(-r));
		goto out;
	}
	pc_dst_set_missing(ds.pc, &miss);
	ds.st.postcopy = true;
	ds.st.pc_missing = bitmap_count(&miss);
	log_info("%s: post-copy: this ferryd restarted; %" PRIu64 " frames still to come",
		 ds.name, ds.st.pc_missing);
	ds.inner = apply_sink(&ds.pcl.a); /* each lane passes its own */
	if (!(r = pause_and_rejoin(&ds, "this ferryd restarted")))
		r = postcopy(&ds);
	else if (r != -ESHUTDOWN)
		snprintf(err, errlen, "post-copy: the source did not come back (%s): the guest ran "
			 "here with part of its memory at the source, and is lost", strerror(-r));
out:
	if (r && ds.pc_fd >= 0 && !err[0])
		snprintf(err, errlen, "%s", strerror(-r));
	if (r && r != -ESHUTDOWN && ds.pc_fd >= 0 && ds.st.phase != MIG_PH_DONE)
		hv_destroy(d); /* it cannot run without the rest (postcopy() may have already) */
	stop_threads(&ds);
	pc_dst_free(ds.pc);
	bitmap_free(&miss);
	free(ds.lanes);
	pthread_mutex_destroy(&ds.m);
	pthread_cond_destroy(&ds.c);
	return r;
}

int migrate_recv(struct session *s, const char *name, const struct migrate_opts *o,
		 struct hv_domain **out, char *err, size_t errlen)
{
	bool pc = s->caps & WIRE_CAP_POSTCOPY;
	struct dst ds = { .s = s, .n = s->n - pc, .o = o, .name = name, .err = err,
			  .errlen = errlen, .timeout_ms = o->peer_timeout_ms, .pc_cap = pc,
			  .pc_fd = -1 };
	int r;

	err[0] = '\0';
	*out = NULL;
	if (ds.n < 1 || ds.n > WIRE_CHANNELS_MAX || !(ds.lanes = calloc(ds.n, sizeof *ds.lanes))) {
		snprintf(err, errlen, "cannot receive on %u channels", ds.n);
		return -EINVAL;
	}
	s->role = "the source";
	s->timeout_ms = o->peer_timeout_ms;
	session_note_rx(s);
	ds.inner = apply_sink(&ds.lanes[0].a);
	ds.st.channels = ds.n;
	for (unsigned i = 0; i < ds.n; i++) {
		ds.lanes[i] = (struct rlane){ .a = { .fresh = true }, .ds = &ds, .idx = i,
					      .ch = s->ch[i] };
		chan_set_timeout(s->ch[i], o->peer_timeout_ms);
	}
	ds.pcl = (struct rlane){ .ds = &ds, .idx = ds.n, .ch = s->ch[s->n - 1] };
	pthread_mutex_init(&ds.m, NULL);
	pthread_cond_init(&ds.c, NULL);
	if ((r = start_threads(&ds)) || (r = receive(&ds)) ||
	    (r = o->sync_only ? sync_ready(&ds) : ready(&ds))) {
		discard(&ds, r);
	} else if (o->sync_only) {
		ds.st.phase = MIG_PH_DONE;
		d_report(&ds, true);
		*out = ds.d;
		ds.d = NULL;
	} else if (!(r = resume(&ds))) {
		*out = ds.d;
		ds.d = NULL;
	}
	stop_threads(&ds);
	if (ds.d != o->into)
		hv_close(ds.d);
	pthread_mutex_destroy(&ds.m);
	pthread_cond_destroy(&ds.c);
	pc_dst_free(ds.pc);
	free(ds.lanes);
	return r;
}
