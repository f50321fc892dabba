/* SPDX-License-Identifier: Apache-2.0 */
/* staging.c — a replication epoch's pages, held apart; see staging.h. */
#include "replicate/staging.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FILL_BATCH 512

struct staging {
	struct hv_domain dom;   /* first: what the lanes read */
	struct hv_ops ops;      /* the guest's backend name, our read_pages */
	struct hv_domain *d;    /* the guest */
	uint32_t ps;
	uint64_t cap;           /* pages the buffer may hold */
	uint64_t *frames;       /* staged frames, increasing */
	uint8_t *data;          /* their pages, in the same order */
	uint64_t n, alloc;      /* staged; allocated room (pages) */
	bool through;           /* the epoch did not fit: read the guest */
};

static struct staging *st_of(struct hv_domain *d)
{
	return (struct staging *)d;
}

/* The staged copy of frame f, or NULL. */
static const uint8_t *lookup(const struct staging *st, uint64_t f)
{
	uint64_t lo = 0, hi = st->n;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (st->frames[mid] < f)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < st->n && st->frames[lo] == f ? st->data + lo * st->ps : NULL;
}

static int st_read_pages(struct hv_domain *d, const uint64_t *frames, size_t n,
			 void *const *bufs)
{
	struct staging *st = st_of(d);

	if (st->through)
		return hv_read_pages(st->d, frames, n, bufs);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = lookup(st, frames[i]);

		if (!p)
			return -ERANGE; /* not in this epoch: a bug of the caller */
		memcpy(bufs[i], p, st->ps);
	}
	return 0;
}

int staging_new(struct hv_domain *d, const struct hv_info *info, uint64_t max,
		struct staging **out)
{
	struct staging *st = calloc(1, sizeof *st);

	if (!st)
		return -ENOMEM;
	st->ops.prefix = d->ops->prefix;
	st->ops.flags = d->ops->flags;
	st->ops.read_pages = st_read_pages;
	st->dom.ops = &st->ops;
	memcpy(st->dom.uri, d->uri, sizeof st->dom.uri);
	st->d = d;
	st->ps = info->page_size;
	st->cap = max ? max / info->page_size : info->nr_frames;
	if (st->cap > info->nr_frames)
		st->cap = info->nr_frames;
	*out = st;
	return 0;
}

void staging_free(struct staging *st)
{
	if (!st)
		return;
	free(st->frames);
	free(st->data);
	free(st);
}

/* Room for n pages: grows by doubling up to the bound, never shrinks (an
 * epoch's size varies little; the bound caps it). */
static int reserve(struct staging *st, uint64_t n)
{
	uint64_t want = st->alloc ? st->alloc : 256;
	uint64_t *f;
	uint8_t *p;

	if (n <= st->alloc)
		return 0;
	while (want < n)
		want *= 2;
	if (want > st->cap)
		want = st->cap;
	if (!(f = realloc(st->frames, want * sizeof *f)))
		return -ENOMEM;
	st->frames = f;
	if (!(p = realloc(st->data, want * st->ps)))
		return -ENOMEM;
	st->data = p;
	st->alloc = want;
	return 0;
}

int staging_fill(struct staging *st, const struct bitmap *dirty, uint64_t n)
{
	void *bufs[FILL_BATCH];
	uint64_t f, k = 0, first = 0;
	int r;

	st->n = 0;
	st->through = n > st->cap || reserve(st, n) != 0;
	if (st->through)
		return 1;
	bitmap_for_each_set(f, dirty) {
		if (k == n)
			return -ERANGE; /* more than the caller counted */
		st->frames[k] = f;
		bufs[k - first] = st->data + k * st->ps;
		if (++k - first == FILL_BATCH) {
			if ((r = hv_read_pages(st->d, st->frames + first, FILL_BATCH, bufs)))
				return r;
			first = k;
		}
	}
	if (k > first && (r = hv_read_pages(st->d, st->frames + first, k - first, bufs)))
		return r;
	st->n = k;
	return 0;
}

struct hv_domain *staging_domain(struct staging *st)
{
	return &st->dom;
}

uint64_t staging_bytes(const struct staging *st)
{
	return st->alloc * st->ps;
}

uint64_t staging_max(const struct staging *st)
{
	return st->cap * st->ps;
}
