/* SPDX-License-Identifier: Apache-2.0 */
/* bitmap.c — see bitmap.h. */
#include "common/bitmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bitmap_init(struct bitmap *b, uint64_t nbits)
{
	uint64_t nw = bitmap_words(nbits);

	b->nbits = nbits;
	b->w = calloc(nw ? nw : 1, sizeof(uint64_t));
	return b->w ? 0 : -ENOMEM;
}

void bitmap_free(struct bitmap *b)
{
	free(b->w);
	b->w = NULL;
	b->nbits = 0;
}

void bitmap_zero(struct bitmap *b)
{
	memset(b->w, 0, bitmap_words(b->nbits) * sizeof(uint64_t));
}

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t span_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi == 64 ? ~0ULL : (1ULL << hi) - 1;
	return m & ~((1ULL << lo) - 1);
}

static void range_op(struct bitmap *b, uint64_t start, uint64_t n, bool set)
{
	uint64_t end = start + n, wi = start >> 6, we = end >> 6;

	if (!n)
		return;
	if (wi == we) {
		uint64_t m = span_mask(start & 63, end & 63);
		b->w[wi] = set ? b->w[wi] | m : b->w[wi] & ~m;
		return;
	}
	uint64_t m = span_mask(start & 63, 64);
	b->w[wi] = set ? b->w[wi] | m : b->w[wi] & ~m;
	if (we > wi + 1)
		memset(&b->w[wi + 1], set ? 0xff : 0, (we - wi - 1) * sizeof(uint64_t));
	if (end & 63) {
		m = span_mask(0, end & 63);
		b->w[we] = set ? b->w[we] | m : b->w[we] & ~m;
	}
}

void bitmap_set_range(struct bitmap *b, uint64_t start, uint64_t n) { range_op(b, start, n, true); }
void bitmap_clear_range(struct bitmap *b, uint64_t start, uint64_t n) { range_op(b, start, n, false); }

uint64_t bitmap_count(const struct bitmap *b)
{
	uint64_t n = 0, nw = bitmap_words(b->nbits);

	for (uint64_t i = 0; i < nw; i++)
		n += (uint64_t)__builtin_popcountll(b->w[i]);
	return n;
}

void bitmap_or(struct bitmap *dst, const struct bitmap *src)
{
	uint64_t nw = bitmap_words(dst->nbits);

	for (uint64_t i = 0; i < nw; i++)
		dst->w[i] |= src->w[i];
}

void bitmap_andnot(struct bitmap *dst, const struct bitmap *src)
{
	uint64_t nw = bitmap_words(dst->nbits);

	for (uint64_t i = 0; i < nw; i++)
		dst->w[i] &= ~src->w[i];
}

bool bitmap_equal(const struct bitmap *a, const struct bitmap *b)
{
	return a->nbits == b->nbits &&
	       memcmp(a->w, b->w, bitmap_words(a->nbits) * sizeof(uint64_t)) == 0;
}

uint64_t bitmap_next_set(const struct bitmap *b, uint64_t i)
{
	uint64_t nw = bitmap_words(b->nbits), wi = i >> 6, w;

	if (i >= b->nbits)
		return BITMAP_NONE;
	w = b->w[wi] & (~0ULL << (i & 63));
	while (!w) {
		if (++wi >= nw)
			return BITMAP_NONE;
		w = b->w[wi];
	}
	return (wi << 6) + (uint64_t)__builtin_ctzll(w);
}

uint64_t bitmap_next_clear(const struct bitmap *b, uint64_t i)
{
	uint64_t nw = bitmap_words(b->nbits), wi = i >> 6, w;

	if (i >= b->nbits)
		return BITMAP_NONE;
	w = ~b->w[wi] & (~0ULL << (i & 63));
	while (!w) {
		if (++wi >= nw)
			return BITMAP_NONE;
		w = ~b->w[wi];
	}
	i = (wi << 6) + (uint64_t)__builtin_ctzll(w);
	return i < b->nbits ? i : BITMAP_NONE;
}
