/* SPDX-License-Identifier: Apache-2.0 */
/* postcopy_dst.c — the destination's post-copy: the missing set, demands,
 * fault latency; see postcopy.h. */
#include "migrate/postcopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/writer.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "session/wire.h"

#define WAITS 256          /* demands outstanding at once (a thread has one) */
#define SAMPLES (1u << 20) /* latencies kept */
#define FAULTS 64          /* read per call */
#define POLL_MS 20

struct pc_dst {
	struct bitmap missing;   /* as announced: frames to come */
	struct bitmap asked;     /* demanded once (atomic) */
	struct bitmap have;      /* placed since the switch, by either path (atomic) */
	pthread_mutex_t m;       /* the waits and the samples */
	struct { uint64_t frame, t; } wait[WAITS];
	unsigned nwait;
	uint32_t *lat;           /* µs */
	size_t nlat;
	uint64_t demand;
};

int pc_dst_new(uint64_t nr_frames, struct pc_dst **out)
{
	struct pc_dst *p = calloc(1, sizeof *p);

	if (!p || bitmap_init(&p->missing, nr_frames) || bitmap_init(&p->asked, nr_frames) ||
	    bitmap_init(&p->have, nr_frames) ||
	    !(p->lat = malloc(SAMPLES * sizeof *p->lat))) {
		pc_dst_free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->m, NULL);
	*out = p;
	return 0;
}

int pc_dst_add(struct pc_dst *p, uint64_t first, uint64_t count, const void *bits)
{
	const uint8_t *b = bits;

	/* The reader checked the range and first % 64. */
	for (uint64_t j = 0; j < (count + 63) / 64; j++) {
		uint64_t v;

		memcpy(&v, b + j * 8, 8);
		p->missing.w[first / 64 + j] |= le64toh(v);
	}
	return 0;
}

const struct bitmap *pc_dst_missing(const struct pc_dst *p)
{
	return &p->missing;
}

void pc_dst_placed_zero(struct pc_dst *p, uint64_t first, uint64_t count)
{
	for (uint64_t f = first; f < first + count; f++)
		bitmap_test_and_set_atomic(&p->have, f);
}

void pc_dst_set_missing(struct pc_dst *p, const struct bitmap *missing)
{
	bitmap_or(&p->missing, missing);
}

void pc_dst_placed(struct pc_dst *p, const uint64_t *frames, unsigned n)
{
	uint64_t now = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t f = frames[i];

		bitmap_test_and_set_atomic(&p->have, f);

		if (!bitmap_test_atomic(&p->asked, f))
			continue;
		if (!now)
			now = mono_ns();
		pthread_mutex_lock(&p->m);
		for (unsigned k = 0; k < p->nwait; k++)
			if (p->wait[k].frame == f) {
				if (p->nlat < SAMPLES)
					p->lat[p->nlat++] = (uint32_t)MIN((now - p->wait[k].t) / 1000,
									  UINT32_MAX);
				p->wait[k] = p->wait[--p->nwait];
				break;
			}
		pthread_mutex_unlock(&p->m);
	}
}

/* Ask for frame f once. */
static int demand(struct pc_dst *p, struct session *s, uint64_t f, uint64_t t)
{
	if (bitmap_test_and_set_atomic(&p->asked, f))
		return 0;
	pthread_mutex_lock(&p->m);
	if (p->nwait < WAITS)
		p->wait[p->nwait++] = (typeof(p->wait[0])){ f, t };
	p->demand++;
	pthread_mutex_unlock(&p->m);
	return session_send_msg(s, WIRE_PC_REQ, f);
}

int pc_dst_serve(struct pc_dst *p, struct hv_domain *d, struct session *s, int fd,
		 bool (*stop)(void *ctx), void *ctx, bool *backend, uint64_t *left)
{
	uint64_t frames[FAULTS];

	*backend = false;
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t t;
		int n, r;

		if (poll(&pf, 1, POLL_MS) < 0 && errno != EINTR) {
			*backend = true;
			return -errno;
		}
		t = mono_ns();
		if ((n = hv_postcopy_faults(d, frames, FAULTS, left)) < 0) {
			*backend = true;
			return n;
		}
		for (int i = 0; i < n; i++)
			if ((r = demand(p, s, frames[i], t)))
				return r;
		if (!*left)
			return 0;
		if (stop(ctx))
			return -ECANCELED;
	}
}

int pc_dst_rejoin(struct pc_dst *p, struct session *s, struct chan *ch,
		  const struct stream_info *info)
{
	struct stream_writer w;
	struct bitmap now;
	uint64_t again[WAITS];
	unsigned n;
	int r;

	if ((r = bitmap_init(&now, p->missing.nbits)))
		return r;
	for (uint64_t i = 0; i < bitmap_words(now.nbits); i++)
		now.w[i] = p->missing.w[i] &
			   ~__atomic_load_n(&p->have.w[i], __ATOMIC_ACQUIRE);
	r = stream_writer_start(&w, (struct xsink){ xsink_chan_writev, ch }, STREAM_KIND_MIGRATION,
				info->page_size, info->nr_frames, info->backend, info->name,
				NULL, NULL, 0);
	if (!r)
		r = stream_write_postcopy(&w, &now);
	if (!r)
		r = stream_write_end(&w);
	bitmap_free(&now);
	if (r)
		return r;
	/* The demands in flight when the link failed may be lost: again. */
	pthread_mutex_lock(&p->m);
	for (n = 0; n < p->nwait; n++)
		again[n] = p->wait[n].frame;
	pthread_mutex_unlock(&p->m);
	for (unsigned i = 0; !r && i < n; i++)
		r = session_send_msg(s, WIRE_PC_REQ, again[i]);
	return r;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void pc_dst_stats(const struct pc_dst *p, uint64_t *dem, uint32_t *p50, uint32_t *p99,
		  uint32_t *max)
{
	struct pc_dst *q = (struct pc_dst *)p;

	pthread_mutex_lock(&q->m);
	*dem = q->demand;
	*p50 = *p99 = *max = 0;
	if (q->nlat) {
		qsort(q->lat, q->nlat, sizeof *q->lat, cmp_u32);
		*p50 = q->lat[q->nlat / 2];
		*p99 = q->lat[MIN(q->nlat - 1, q->nlat * 99 / 100)];
		*max = q->lat[q->nlat - 1];
	}
	pthread_mutex_unlock(&q->m);
}

void pc_dst_free(struct pc_dst *p)
{
	if (!p)
		return;
	bitmap_free(&p->missing);
	bitmap_free(&p->asked);
	bitmap_free(&p->have);
	free(p->lat);
	pthread_mutex_destroy(&p->m);
	free(p);
}
