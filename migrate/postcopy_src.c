/* SPDX-License-Identifier: Apache-2.0 */
/* postcopy_src.c — the source's post-copy server; see postcopy.h. */
#include "migrate/postcopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/reader.h"
#include "checkpoint/writer.h"
#include "common/log.h"
#include "common/util.h"

#define RING 65536  /* demands waiting; each faulting thread has one at a time */
#define BATCH 64    /* frames per PAGES record on the post-copy channel */

struct pc_src {
	struct hv_domain *d;
	struct chan *ch;
	struct stream_writer w;
	struct bitmap *need;
	uint64_t nr_frames;
	uint32_t ps;
	uint8_t *buf;
	pthread_t thread;
	bool running;
	pthread_mutex_t m;
	pthread_cond_t c;
	uint64_t ring[RING]; /* under m */
	unsigned head, tail;
	bool serving, stop;
	uint64_t demand; /* atomic */
	int err;         /* atomic */
};

int pc_src_open(struct hv_domain *d, const struct hv_info *info, struct chan *ch,
		struct bitmap *need, struct pc_src **out)
{
	struct pc_src *p = calloc(1, sizeof *p);
	int r;

	if (!p || !(p->buf = malloc((size_t)BATCH * info->page_size))) {
		free(p);
		return -ENOMEM;
	}
	p->d = d;
	p->ch = ch;
	p->need = need;
	p->nr_frames = info->nr_frames;
	p->ps = info->page_size;
	pthread_mutex_init(&p->m, NULL);
	pthread_cond_init(&p->c, NULL);
	r = stream_writer_start(&p->w, (struct xsink){ xsink_chan_writev, ch }, STREAM_KIND_MIGRATION,
				info->page_size, info->nr_frames, hv_backend_name(d),
				hv_uri_name(d->uri), info->config, NULL, 0);
	if (r) {
		pc_src_close(p);
		return r;
	}
	*out = p;
	return 0;
}

bool pc_src_claim(void *ctx, uint64_t f)
{
	struct pc_src *p = ctx;

	return bitmap_test_and_clear_atomic(p->need, f);
}

void pc_src_on_msg(void *ctx, uint32_t type, uint64_t arg)
{
	struct pc_src *p = ctx;

	if (type != WIRE_PC_REQ)
		return;
	if (arg >= p->nr_frames) {
		log_warn("%s: post-copy: a demand for frame %" PRIu64 " of %" PRIu64 ", ignored",
			 p->d->uri, arg, p->nr_frames);
		return;
	}
	pthread_mutex_lock(&p->m);
	/* Full: the frame still comes in the background pass. */
	if (p->head - p->tail < RING) {
		p->ring[p->head++ % RING] = arg;
		pthread_cond_signal(&p->c);
	}
	pthread_mutex_unlock(&p->m);
}

/* Send what was demanded and is still unclaimed, in batches. */
static void *serve(void *arg)
{
	struct pc_src *p = arg;
	uint64_t frames[BATCH];
	void *bufs[BATCH];

	for (unsigned i = 0; i < BATCH; i++)
		bufs[i] = p->buf + (size_t)i * p->ps;
	pthread_mutex_lock(&p->m);
	for (;;) {
		unsigned k = 0;
		int r;

		while (p->head == p->tail && !p->stop)
			pthread_cond_wait(&p->c, &p->m);
		if (p->stop)
			break;
		while (p->head != p->tail && k < BATCH) {
			uint64_t f = p->ring[p->tail++ % RING];

			if (pc_src_claim(p, f))
				frames[k++] = f;
		}
		pthread_mutex_unlock(&p->m);
		/* PAGES wants frames in increasing order. */
		for (unsigned i = 1; i < k; i++)
			for (unsigned j = i; j > 0 && frames[j - 1] > frames[j]; j--) {
				uint64_t t = frames[j];
				frames[j] = frames[j - 1];
				frames[j - 1] = t;
			}
		r = k ? hv_read_pages(p->d, frames, k, bufs) : 0;
		if (!r && k)
			r = stream_write_pages(&p->w, NULL, frames, bufs, k, NULL);
		if (r) {
			int none = 0;
			__atomic_compare_exchange_n(&p->err, &none, r, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
			log_error("%s: post-copy: sending demanded frames: %s", p->d->uri,
				  strerror(-r));
			/* A claimed frame that never went would hold the
			 * destination forever: fail the channel, and with it the
			 * post-copy, now. */
			chan_shutdown(p->ch);
			pthread_mutex_lock(&p->m);
			break;
		}
		__atomic_fetch_add(&p->demand, k, __ATOMIC_RELAXED);
		pthread_mutex_lock(&p->m);
	}
	pthread_mutex_unlock(&p->m);
	return NULL;
}

int pc_src_serve(struct pc_src *p)
{
	int r = -pthread_create(&p->thread, NULL, serve, p);

	p->running = !r;
	return r;
}

uint64_t pc_src_demand(const struct pc_src *p)
{
	return __atomic_load_n(&p->demand, __ATOMIC_RELAXED);
}

int pc_src_error(const struct pc_src *p)
{
	return __atomic_load_n(&p->err, __ATOMIC_RELAXED);
}

void pc_src_close(struct pc_src *p)
{
	if (!p)
		return;
	if (p->running) {
		pthread_mutex_lock(&p->m);
		p->stop = true;
		pthread_cond_signal(&p->c);
		pthread_mutex_unlock(&p->m);
		chan_shutdown(p->ch); /* a send blocked on a dead peer */
		pthread_join(p->thread, NULL);
	}
	pthread_mutex_destroy(&p->m);
	pthread_cond_destroy(&p->c);
	free(p->buf);
	free(p);
}

#define LAT_BITS 21
#define LAT_MAXV ((1u << LAT_BITS) - 1)

uint64_t pc_latency_pack(uint32_t p50, uint32_t p99, uint32_t max)
{
	return (uint64_t)MIN(p50, LAT_MAXV) | (uint64_t)MIN(p99, LAT_MAXV) << LAT_BITS |
	       (uint64_t)MIN(max, (1u << 22) - 1) << (2 * LAT_BITS);
}

void pc_latency_unpack(uint64_t v, uint32_t *p50, uint32_t *p99, uint32_t *max)
{
	*p50 = (uint32_t)(v & LAT_MAXV);
	*p99 = (uint32_t)(v >> LAT_BITS & LAT_MAXV);
	*max = (uint32_t)(v >> (2 * LAT_BITS));
}

/* The destination's stream of what it lacks. */
struct learn {
	struct session *s;
	struct chan *ch;
	const struct hv_info *info;
	struct bitmap *need;
	bool silent;
	char why[160];
};

static int l_read(void *ctx, void *buf, size_t len)
{
	struct learn *l = ctx;

	return session_recv(l->s, l->ch, buf, len, l->s->timeout_ms, NULL, NULL, &l->silent);
}

static int l_header(void *ctx, const struct stream_info *i)
{
	struct learn *l = ctx;

	if (i->kind != STREAM_KIND_MIGRATION || i->page_size != l->info->page_size ||
	    i->nr_frames != l->info->nr_frames) {
		snprintf(l->why, sizeof l->why, "its missing set is for another domain");
		return -EPROTO;
	}
	return 0;
}

static int l_postcopy(void *ctx, uint64_t first, uint64_t count, const void *bits)
{
	struct learn *l = ctx;
	const uint8_t *b = bits;

	for (uint64_t j = 0; j < (count + 63) / 64; j++) {
		uint64_t v;

		memcpy(&v, b + j * 8, 8);
		l->need->w[first / 64 + j] |= le64toh(v);
	}
	return 0;
}

int pc_src_learn(struct session *s, struct chan *ch, const struct hv_info *info,
		 struct bitmap *need, char *err, size_t errlen)
{
	struct learn l = { .s = s, .ch = ch, .info = info, .need = need };
	struct stream_sink sink = { .ctx = &l, .header = l_header, .postcopy = l_postcopy };
	struct xsource src = { l_read, &l };
	char why[256] = "";
	int r;

	bitmap_zero(need);
	session_note_rx(s); /* silence counts from now */
	r = stream_read(&src, &sink, false, NULL, why, sizeof why);
	if (r)
		snprintf(err, errlen, "reading what the destination lacks: %s",
			 l.why[0] ? l.why : l.silent ? "it was silent" : why);
	return r;
}
