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

void pc_dst_placed(struct pc_dst *p, const uint64_t *frames, unsigned n)
{
	uint64_t now = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t f = frames[i];

		if (!((__atomic_load_n(&p->asked.w[f >> 6], __ATOMIC_ACQUIRE) >> (f & 63)) & 1))
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
	uint64_t bit = 1ull << (f & 63);

	if (__atomic_fetch_or(&p->asked.w[f >> 6], bit, __ATOMIC_ACQ_REL) & bit)
		return 0;
	pthread_mutex_lock(&p->m);
	if (p->nwait < WAITS)
		p->wait[p->nwait++] = (typeof(p->wait[0])){ f, t };
	p->demand++;
	pthread_mutex_unlock(&p->m);
	return session_send_msg(s, WIRE_PC_REQ, f);
}

int pc_dst_serve(struct pc_dst *p, struct hv_domain *d, struct session *s, int fd,
		 bool (*stop)(void *ctx), void *ctx)
{
	uint64_t frames[FAULTS], left = 1;

	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t t;
		int n, r;

		if (stop(ctx))
			return -ECANCELED;
		if (poll(&pf, 1, POLL_MS) < 0 && errno != EINTR)
			return -errno;
		t = mono_ns();
		if ((n = hv_postcopy_faults(d, frames, FAULTS, &left)) < 0)
			return n;
		for (int i = 0; i < n; i++)
			if ((r = demand(p, s, frames[i], t)))
				return r;
		if (!left)
			return 0;
	}
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
	free(p->lat);
	pthread_mutex_destroy(&p->m);
	free(p);
}
