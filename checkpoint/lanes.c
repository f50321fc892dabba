/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lanes.c — one stream per channel, sent in parallel; see lanes.h.
 *
 * A pass is handed to the lane threads under l->m (gen counts passes); the
 * driver sends lane 0 itself and waits until busy drops to zero.
 */
#include "checkpoint/lanes.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/send.h"
#include "common/mtime.h"
#include "common/ratelimit.h"

struct lane {
	struct lanes *l;
	unsigned idx;
	struct chan *ch;
	struct stream_writer w;
	struct page_sender ps;
	struct codec *codec;
	pthread_t thread;
	bool running;
	int r; /* of the current pass */
};

struct lanes {
	struct lane *lane;
	unsigned n;
	struct lanes_conf c;
	struct ratelimit rl;
	/* The pass under way, under m: go wakes the lanes, done the driver. */
	pthread_mutex_t m;
	pthread_cond_t go, done;
	unsigned gen, busy;
	bool quit;
	const struct bitmap *set, *pop;
};

/* A lane's sink: its channel, under the shared bandwidth limit. */
static int lane_writev(void *ctx, const struct iovec *iov, int n)
{
	struct lane *ln = ctx;
	uint64_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	ratelimit_take(&ln->l->rl, len);
	return chan_send(ln->ch, iov, n, CHAN_WAIT_DEFAULT);
}

/* A lane failed: the others' channels are of no use any more (channel 0
 * stays: the peer's reason may be on its way there). */
static void lane_failed(struct lane *ln)
{
	for (unsigned i = 1; i < ln->l->n; i++)
		chan_shutdown(ln->l->lane[i].ch);
}

/* This lane's stripe of the pass, then its trailer. */
static int lane_pass(struct lane *ln)
{
	struct lanes *l = ln->l;
	uint64_t f0 = ln->ps.pages + ln->ps.zero_frames;
	int r;

	if ((r = page_sender_send(&ln->ps, l->set, l->pop)))
		return r;
	if (l->c.trailer)
		r = l->c.trailer(l->c.ctx, ln->idx, &ln->w, ln->ps.pages + ln->ps.zero_frames - f0);
	return r;
}

static void *lane_main(void *arg)
{
	struct lane *ln = arg;
	struct lanes *l = ln->l;
	unsigned gen = 0;

	pthread_mutex_lock(&l->m);
	for (;;) {
		while (l->gen == gen && !l->quit)
			pthread_cond_wait(&l->go, &l->m);
		if (l->quit)
			break;
		gen = l->gen;
		pthread_mutex_unlock(&l->m);
		ln->r = lane_pass(ln);
		if (ln->r)
			lane_failed(ln);
		pthread_mutex_lock(&l->m);
		if (--l->busy == 0)
			pthread_cond_signal(&l->done);
	}
	pthread_mutex_unlock(&l->m);
	return NULL;
}

int lanes_send(struct lanes *l, const struct bitmap *set, const struct bitmap *pop,
	       uint64_t *ns)
{
	uint64_t t0 = mono_ns();
	int r;

	pthread_mutex_lock(&l->m);
	l->set = set;
	l->pop = pop;
	l->busy = l->n - 1;
	l->gen++;
	pthread_cond_broadcast(&l->go);
	pthread_mutex_unlock(&l->m);

	r = l->lane[0].r = lane_pass(&l->lane[0]);
	if (r)
		lane_failed(&l->lane[0]);

	pthread_mutex_lock(&l->m);
	while (l->busy)
		pthread_cond_wait(&l->done, &l->m);
	pthread_mutex_unlock(&l->m);
	*ns = mono_ns() - t0;
	for (unsigned i = 0; !r && i < l->n; i++)
		r = l->lane[i].r;
	return r;
}

int lanes_open(struct hv_domain *d, const struct hv_info *info, struct chan *const *ch,
	       unsigned n, const struct lanes_conf *c, struct lanes **out)
{
	struct codec_opts co = c->codec;
	struct lanes *l = calloc(1, sizeof *l);
	int r;

	if (!l || !(l->lane = calloc(n, sizeof *l->lane))) {
		free(l);
		return -ENOMEM;
	}
	l->n = n;
	l->c = *c;
	ratelimit_init(&l->rl, c->bandwidth);
	pthread_mutex_init(&l->m, NULL);
	pthread_cond_init(&l->go, NULL);
	pthread_cond_init(&l->done, NULL);
	*out = l;
	/* No delta against pages the receiver cannot read back. */
	if (d->ops->flags & HV_F_CREATE_WRITE_ONLY)
		co.delta = false;
	/* The delta cache is the job's: each lane gets its share. */
	co.delta_cache_pages = co.delta_cache_pages / n;
	if (c->codec.delta_cache_pages && !co.delta_cache_pages)
		co.delta_cache_pages = 1;
	for (unsigned i = 0; i < n; i++) {
		struct lane *ln = &l->lane[i];

		ln->l = l;
		ln->idx = i;
		ln->ch = ch[i];
		if ((r = codec_new(&co, info->page_size, &ln->codec)) ||
		    (r = page_sender_init(&ln->ps, d, &ln->w, ln->codec, info->page_size,
					  info->nr_frames)))
			return r;
		ln->ps.stripe = i;
		ln->ps.nstripes = n;
		ln->ps.cancel = c->cancel;
		if ((r = stream_writer_start(&ln->w, (struct xsink){ lane_writev, ln }, c->kind,
					     info->page_size, info->nr_frames, hv_backend_name(d),
					     c->name, info->config, i ? NULL : c->domain_config,
					     i ? 0 : c->domain_config_len)))
			return r;
	}
	l->lane[0].ps.on_frames = c->on_frames;
	l->lane[0].ps.on_frames_ctx = c->ctx;
	for (unsigned i = 1; i < n; i++) {
		if ((r = -pthread_create(&l->lane[i].thread, NULL, lane_main, &l->lane[i])))
			return r;
		l->lane[i].running = true;
	}
	return 0;
}

struct stream_writer *lanes_writer(struct lanes *l, unsigned i)
{
	return &l->lane[i].w;
}

uint64_t lanes_bytes(const struct lanes *l)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < l->n; i++)
		b += __atomic_load_n(&l->lane[i].w.bytes, __ATOMIC_RELAXED);
	return b;
}

uint64_t lanes_pages(const struct lanes *l)
{
	uint64_t p = 0;

	for (unsigned i = 0; i < l->n; i++)
		p += l->lane[i].ps.pages;
	return p;
}

void lanes_stats(const struct lanes *l, uint64_t pages[STREAM_ENC_MAX], uint64_t *zero_frames)
{
	memset(pages, 0, sizeof(uint64_t) * STREAM_ENC_MAX);
	*zero_frames = 0;
	for (unsigned i = 0; i < l->n; i++) {
		const struct lane *ln = &l->lane[i];

		*zero_frames += ln->ps.zero_frames;
		for (int e = 0; ln->codec && e < STREAM_ENC_MAX; e++)
			pages[e] += codec_stats(ln->codec)->pages[e];
	}
}

void lanes_postcopy(struct lanes *l, bool (*claim)(void *ctx, uint64_t frame), void *ctx)
{
	for (unsigned i = 0; i < l->n; i++) {
		l->lane[i].ps.claim = claim;
		l->lane[i].ps.claim_ctx = ctx;
		if (l->lane[i].codec) {
			codec_forget_all(l->lane[i].codec);
			codec_cache_new_pages(l->lane[i].codec, false);
		}
	}
}

void lanes_cache_new_pages(struct lanes *l, bool on)
{
	for (unsigned i = 0; i < l->n; i++)
		codec_cache_new_pages(l->lane[i].codec, on);
}

void lanes_close(struct lanes *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->m);
	l->quit = true;
	pthread_cond_broadcast(&l->go);
	pthread_mutex_unlock(&l->m);
	for (unsigned i = 0; i < l->n; i++) {
		struct lane *ln = &l->lane[i];

		if (ln->running)
			pthread_join(ln->thread, NULL);
		page_sender_free(&ln->ps);
		codec_free(ln->codec);
	}
	pthread_mutex_destroy(&l->m);
	pthread_cond_destroy(&l->go);
	pthread_cond_destroy(&l->done);
	ratelimit_destroy(&l->rl);
	free(l->lane);
	free(l);
}
