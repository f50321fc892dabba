/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backup.c — the backup side of replication; see replicate.h.
 *
 * Threads: one reader per channel (channel 0's on the caller's thread),
 * each staging its part of an epoch apart (stage_sink); the session's
 * heartbeat thread. At an epoch's BEGIN — handed on by the stage sink only
 * once the channel's whole part has arrived — each reader waits until every
 * channel has its part; then all apply at once (they own disjoint frames;
 * the context is channel 0's), and the last to finish acknowledges the
 * epoch. The decision to apply is taken under one lock: either every
 * channel applies epoch e or none does, so a failure in the middle — the
 * primary dying — never leaves a torn image. A channel that fails wakes the
 * others, which give up on any epoch not yet decided.
 */
#include "replicate/replicate.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/reader.h"
#include "checkpoint/send.h"
#include "checkpoint/sink.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "replicate/shadow.h"


struct bk;

struct blane {
	struct apply_sink a;      /* where an epoch goes, once decided */
	struct stage_sink stg;    /* where it waits until then */
	struct bk *b;
	unsigned idx;
	struct chan *ch;
	pthread_t thread;
	bool running;
	bool applying;            /* inside an epoch decided to apply */
	bool ended;               /* END read: protection ended */
	bool eof;                 /* the connection closed */
	uint64_t staged, applied; /* (b->m) epochs complete here, and applied */
	int r;
	char why[300];
};

struct bk {
	struct session *s;
	const struct repl_opts *o;
	struct repl_stats *st;
	struct hv_domain *d;
	struct shadow *sh;        /* a resync staged apart from o->copy */
	struct hv_info info;
	struct blane *lanes;
	unsigned n;
	/* Under m. */
	pthread_mutex_t m;
	pthread_cond_t c;
	uint64_t go;              /* every channel applies epochs up to this */
	uint64_t acked;           /* the last epoch acknowledged */
	uint64_t token;           /* the largest fencing token seen */
	bool fail;                /* a channel failed: undecided epochs are dropped */
	bool silent;              /* the primary was silent */
};

static uint64_t min_of(const struct bk *b, size_t off)
{
	uint64_t m = UINT64_MAX;

	for (unsigned i = 0; i < b->n; i++)
		m = MIN(m, *(const uint64_t *)((const char *)&b->lanes[i] + off));
	return m;
}

static void lane_failed(struct blane *l)
{
	struct bk *b = l->b;

	pthread_mutex_lock(&b->m);
	b->fail = true;
	pthread_cond_broadcast(&b->c);
	pthread_mutex_unlock(&b->m);
	for (unsigned i = 0; i < b->n; i++)
		chan_shutdown(b->lanes[i].ch); /* the others stop reading too */
}

static bool b_stop(void *ctx)
{
	struct bk *b = ctx;

	return __atomic_load_n(&b->fail, __ATOMIC_RELAXED) || (b->o->stop && *b->o->stop);
}

/* The primary's bytes (session_recv: silence on every channel is a lost
 * primary). */
static int b_read(void *ctx, void *buf, size_t len)
{
	struct blane *l = ctx;
	struct bk *b = l->b;
	int r = session_recv(b->s, l->ch, buf, len, (int)b->o->heartbeat_ms, b_stop, b,
			     &b->silent);

	l->eof = r == -ENODATA || r == -ECONNRESET || r == -EPIPE;
	return r;
}

static int b_header(void *ctx, const struct stream_info *i)
{
	struct blane *l = ctx;
	struct bk *b = l->b;

	if (i->kind != STREAM_KIND_REPLICATION) {
		snprintf(l->why, sizeof l->why, "not a replication stream (kind %u)", i->kind);
		return -EINVAL;
	}
	if (i->page_size != b->info.page_size || i->nr_frames != b->info.nr_frames) {
		snprintf(l->why, sizeof l->why, "its header disagrees with the synced copy");
		return -EPROTO;
	}
	return 0;
}

static int b_base(void *ctx, uint64_t frame, void *page)
{
	struct blane *l = ctx;

	return apply_sink(&l->a).base(&l->a, frame, page);
}

/* Contents reach here only inside an epoch that every channel applies. */
static int not_in_epoch(struct blane *l)
{
	snprintf(l->why, sizeof l->why, "guest state outside an epoch");
	return -EPROTO;
}

static int b_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct blane *l = ctx;

	if (!l->applying)
		return not_in_epoch(l);
	for (unsigned i = 0; i < n; i++)
		if (!stream_stripe_owns(frames[i], 1, l->b->n, l->idx)) {
			snprintf(l->why, sizeof l->why, "frame %" PRIu64 " on channel %u", frames[i],
				 l->idx);
			return -EPROTO;
		}
	return apply_sink(&l->a).pages(&l->a, frames, pages, n);
}

static int b_zero(void *ctx, uint64_t first, uint64_t count)
{
	struct blane *l = ctx;

	if (!l->applying)
		return not_in_epoch(l);
	if (count && !stream_stripe_owns(first, count, l->b->n, l->idx)) {
		snprintf(l->why, sizeof l->why, "frames from %" PRIu64 " on channel %u", first,
			 l->idx);
		return -EPROTO;
	}
	return apply_sink(&l->a).zero(&l->a, first, count);
}

static int b_context(void *ctx, const void *blob, size_t len)
{
	struct blane *l = ctx;

	if (!l->applying)
		return not_in_epoch(l);
	if (l->idx) {
		snprintf(l->why, sizeof l->why, "a CONTEXT record (it belongs on channel 0)");
		return -EPROTO;
	}
	return apply_sink(&l->a).context(&l->a, blob, len);
}

/* BEGIN: this channel's part of epoch e is staged; wait until every
 * channel's is, then apply (or give up if a channel failed first). */
static int begin(struct blane *l, const struct stream_ckpt *c)
{
	struct bk *b = l->b;
	int r = 0;

	pthread_mutex_lock(&b->m);
	if (c->epoch != l->applied + 1) {
		snprintf(l->why, sizeof l->why, "epoch %" PRIu64 " after epoch %" PRIu64, c->epoch,
			 l->applied);
		r = -EPROTO;
	} else if (c->token < b->token) {
		snprintf(l->why, sizeof l->why, "epoch %" PRIu64 " carries fencing token %" PRIu64
			 ", older than %" PRIu64 ": a primary that lost its lease", c->epoch,
			 c->token, b->token);
		r = -ESTALE;
	}
	if (r) {
		pthread_mutex_unlock(&b->m);
		return r;
	}
	b->token = c->token;
	l->staged = c->epoch;
	if (min_of(b, offsetof(struct blane, staged)) >= c->epoch && b->go < c->epoch) {
		b->go = c->epoch;
		pthread_cond_broadcast(&b->c);
	}
	while (b->go < c->epoch && !b->fail)
		pthread_cond_wait(&b->c, &b->m);
	r = b->go >= c->epoch ? 0 : -ECANCELED;
	pthread_mutex_unlock(&b->m);
	l->applying = r == 0;
	return r;
}

/* COMMIT: this channel applied its part; the last one acknowledges. */
static int commit(struct blane *l, const struct stream_ckpt *c)
{
	struct bk *b = l->b;
	uint64_t ack = 0;
	int r;

	l->applying = false;
	pthread_mutex_lock(&b->m);
	l->applied = c->epoch;
	if (min_of(b, offsetof(struct blane, applied)) >= c->epoch && b->acked < c->epoch) {
		ack = b->acked = c->epoch;
		b->st->epoch = c->epoch;
		b->st->epochs++;
		b->st->last_commit_ns = mono_ns();
	}
	pthread_mutex_unlock(&b->m);
	if (!ack)
		return 0;
	if ((r = failpoint("repl-backup-ack")))
		return r;
	return session_send_msg(b->s, WIRE_CKPT_ACK, ack);
}

static int b_ckpt(void *ctx, uint32_t type, const struct stream_ckpt *c)
{
	struct blane *l = ctx;

	return type == STREAM_REC_CKPT_BEGIN ? begin(l, c) : commit(l, c);
}

static int b_end(void *ctx, const struct stream_end *e)
{
	struct blane *l = ctx;

	(void)e;
	l->ended = true;
	return 0;
}

static void read_lane(struct blane *l)
{
	struct stream_sink inner = { .ctx = l, .header = b_header, .base = b_base,
				     .pages = b_pages, .zero = b_zero, .context = b_context,
				     .ckpt = b_ckpt, .end = b_end };
	struct stream_sink sink = stage_sink(&l->stg, inner);
	struct xsource src = { b_read, l };
	char why[256] = "";

	l->r = stream_read(&src, &sink, false, NULL, why, sizeof why);
	if (l->r && !l->why[0])
		snprintf(l->why, sizeof l->why, "%s", why);
	stage_sink_free(&l->stg);
	if (l->r)
		lane_failed(l);
}

static void *lane_main(void *arg)
{
	read_lane(arg);
	return NULL;
}

/* Receive the initial sync: a paused copy; with o->copy, a shadow image of
 * it (b->sh), applied by apply_resync. */
static int sync_in(struct bk *b, const char *name, char *err, size_t errlen)
{
	struct migrate_opts mo = b->o->sync;
	struct hv_domain *d = NULL;
	int r;

	mo.sync_only = true;
	if (b->o->copy) {
		if ((r = shadow_new(b->o->copy, &b->sh))) {
			snprintf(err, errlen, "cannot stage the resync: %s", strerror(-r));
			return r;
		}
		mo.into = shadow_domain(b->sh);
	}
	if ((r = migrate_recv(b->s, name, &mo, &d, err, errlen)))
		return r;
	b->st->sync.phase = MIG_PH_DONE;
	b->d = b->o->copy ? b->o->copy : d;
	if ((r = hv_info(b->d, &b->info)))
		snprintf(err, errlen, "%s: %s", b->d->uri, strerror(-r));
	return r;
}

/* The staged resync is whole: it becomes the copy, in one step. */
static int apply_resync(struct bk *b, char *err, size_t errlen)
{
	uint64_t t0 = mono_ns(), bytes = shadow_bytes(b->sh);
	int r = failpoint("repl-resync-apply");

	if (!r)
		r = shadow_apply(b->sh, b->d);

	shadow_free(b->sh);
	b->sh = NULL;
	if (r) {
		snprintf(err, errlen, "applying the staged resync to the copy failed (%s): the copy "
			 "is torn and must not run", strerror(-r));
		return -EIO;
	}
	log_info("%s: the staged resync (%.1f MiB) is the copy now, applied in %.1f ms",
		 b->d->uri, (double)bytes / (1 << 20), ns_to_ms(mono_ns() - t0));
	return 0;
}

/* Why the epochs stopped, and what the copy is worth. */
static int verdict(struct bk *b, char *err, size_t errlen)
{
	unsigned ended = 0;
	struct blane *first = NULL;
	uint64_t most = 0;

	for (unsigned i = 0; i < b->n; i++) {
		ended += b->lanes[i].ended && !b->lanes[i].r;
		if (b->lanes[i].r && b->lanes[i].r != -ECANCELED && !first)
			first = &b->lanes[i];
	}
	if (ended == b->n)
		return 0;
	for (unsigned i = 0; i < b->n; i++)
		if (b->lanes[i].applied != b->go) {
			snprintf(err, errlen, "channel %u applied epoch %" PRIu64 " of %" PRIu64
				 ": the copy is torn and must not run", i, b->lanes[i].applied, b->go);
			return -EIO;
		}
	if (b->silent)
		snprintf(err, errlen, "the primary was silent for %u ms", b->o->heartbeat_ms);
	else if (first && first->eof)
		snprintf(err, errlen, "the primary closed the connection");
	else if (first && first->r == -ESTALE)
		snprintf(err, errlen, "%s", first->why);
	else if (first)
		snprintf(err, errlen, "channel %u: %s", first->idx, first->why);
	else
		snprintf(err, errlen, "replication stopped");
	/* An epoch past the decided one that some channel had begun, or
	 * staged whole while another had not: it is dropped whole. */
	for (unsigned i = 0; i < b->n; i++)
		most = MAX(most, MAX(b->lanes[i].staged, stage_sink_partial(&b->lanes[i].stg)));
	if (most > b->go) {
		size_t k = strlen(err);

		snprintf(err + k, errlen - k, "; epoch %" PRIu64 " had not reached every channel "
			 "whole and was dropped", most);
	}
	return b->silent ? -ETIMEDOUT : first ? (first->eof ? -ECONNRESET : first->r) : -ECANCELED;
}

int replicate_backup(struct session *s, const char *name, const struct repl_opts *o,
		     struct hv_domain **out, struct repl_stats *st, char *err, size_t errlen)
{
	struct bk b = { .s = s, .o = o, .st = st, .n = s->n, .token = o->token };
	int r;

	err[0] = '\0';
	*out = NULL;
	memset(st, 0, sizeof *st);
	st->state = REPL_SYNCING;
	if (!(b.lanes = calloc(b.n, sizeof *b.lanes))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = sync_in(&b, name, err, errlen))) {
		/* A resync that failed leaves the copy as it was. */
		shadow_free(b.sh);
		if (!o->copy)
			hv_close(b.d);
		*out = o->copy;
		free(b.lanes);
		return r;
	}
	pthread_mutex_init(&b.m, NULL);
	pthread_cond_init(&b.c, NULL);
	s->timeout_ms = (int)o->heartbeat_ms;
	s->role = "the primary";
	session_note_rx(s);
	st->state = REPL_STANDBY;
	st->t_start_ns = st->last_commit_ns = mono_ns();
	if (b.sh) {
		/* Shown until it is applied: the memory a staged resync holds. */
		st->staging_bytes = shadow_bytes(b.sh);
		st->staging_max = b.info.nr_frames * b.info.page_size;
	}
	if (o->hooks.stats)
		o->hooks.stats(o->hooks.ctx, st);
	for (unsigned i = 0; i < b.n; i++) {
		b.lanes[i] = (struct blane){ .a = { .d = b.d }, .b = &b, .idx = i, .ch = s->ch[i] };
		chan_set_timeout(s->ch[i], (int)o->heartbeat_ms);
	}
	if ((r = session_heartbeat_start(s))) {
		snprintf(err, errlen, "starting the heartbeat thread: %s", strerror(-r));
		b.fail = true;
	} else if (b.sh && (r = apply_resync(&b, err, errlen))) {
		/* The primary releases nothing before epoch 1's acknowledgement:
		 * it finds the backup lost instead. */
		b.fail = true;
	}
	st->staging_bytes = st->staging_max = 0;
	for (unsigned i = 1; i < b.n && !r; i++) {
		if ((r = -pthread_create(&b.lanes[i].thread, NULL, lane_main, &b.lanes[i]))) {
			snprintf(err, errlen, "starting channel threads: %s", strerror(-r));
			lane_failed(&b.lanes[0]);
		} else {
			b.lanes[i].running = true;
		}
	}
	if (!r)
		read_lane(&b.lanes[0]);
	for (unsigned i = 1; i < b.n; i++)
		if (b.lanes[i].running)
			pthread_join(b.lanes[i].thread, NULL);
	session_heartbeat_stop(s);
	if (!r)
		r = verdict(&b, err, errlen);
	/* Protection ended, a stale primary, or a torn copy: nothing to keep.
	 * Otherwise the copy is whole at epoch b.go (0: the sync's). */
	if (r == 0 || r == -ESTALE || r == -EIO) {
		hv_destroy(b.d);
		hv_close(b.d);
		b.d = NULL;
	}
	*out = b.d;
	st->state = r ? REPL_STANDBY : REPL_ENDED;
	if (o->hooks.stats)
		o->hooks.stats(o->hooks.ctx, st);
	shadow_free(b.sh);
	pthread_mutex_destroy(&b.m);
	pthread_cond_destroy(&b.c);
	free(b.lanes);
	return r;
}
