/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bitmap.h — a dense bitmap over frame numbers, worked a 64-bit word at a time.
 *
 * Bits past nbits in the last word are always zero, so count and iteration
 * never see them. A bitmap owns its words; bitmap_free() releases them.
 */
#ifndef FERRY_BITMAP_H
#define FERRY_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bitmap {
	uint64_t *w;
	uint64_t nbits;
};

#define BITMAP_NONE UINT64_MAX

static inline uint64_t bitmap_words(uint64_t nbits) { return (nbits + 63) / 64; }

/* Allocate an all-zero bitmap of nbits. Returns 0 or -ENOMEM. */
int bitmap_init(struct bitmap *b, uint64_t nbits);
void bitmap_free(struct bitmap *b);

static inline void bitmap_set(struct bitmap *b, uint64_t i)
{
	b->w[i >> 6] |= 1ULL << (i & 63);
}

static inline void bitmap_clear(struct bitmap *b, uint64_t i)
{
	b->w[i >> 6] &= ~(1ULL << (i & 63));
}

static inline bool bitmap_test(const struct bitmap *b, uint64_t i)
{
	return (b->w[i >> 6] >> (i & 63)) & 1;
}

/* Set or clear bits [start, start + n); the range must lie inside the map. */
/* The same for bits several threads change at once (post-copy's frame
 * sets): each bit on its own, with acquire/release ordering. The _and_
 * forms say whether the bit was set before. */
static inline bool bitmap_test_atomic(const struct bitmap *b, uint64_t i)
{
	return (__atomic_load_n(&b->w[i >> 6], __ATOMIC_ACQUIRE) >> (i & 63)) & 1;
}

static inline bool bitmap_test_and_set_atomic(struct bitmap *b, uint64_t i)
{
	uint64_t bit = 1ULL << (i & 63);

	return __atomic_fetch_or(&b->w[i >> 6], bit, __ATOMIC_ACQ_REL) & bit;
}

static inline bool bitmap_test_and_clear_atomic(struct bitmap *b, uint64_t i)
{
	uint64_t bit = 1ULL << (i & 63);

	return __atomic_fetch_and(&b->w[i >> 6], ~bit, __ATOMIC_ACQ_REL) & bit;
}

void bitmap_set_range(struct bitmap *b, uint64_t start, uint64_t n);
void bitmap_clear_range(struct bitmap *b, uint64_t start, uint64_t n);
void bitmap_zero(struct bitmap *b);
/* Set bits. */
uint64_t bitmap_count(const struct bitmap *b);
/* dst |= src; both of the same size. */
void bitmap_or(struct bitmap *dst, const struct bitmap *src);
/* dst &= ~src; both of the same size. */
void bitmap_andnot(struct bitmap *dst, const struct bitmap *src);
bool bitmap_equal(const struct bitmap *a, const struct bitmap *b);

/* First set bit at or after i, or BITMAP_NONE. */
uint64_t bitmap_next_set(const struct bitmap *b, uint64_t i);
/* First clear bit at or after i, or BITMAP_NONE. */
uint64_t bitmap_next_clear(const struct bitmap *b, uint64_t i);

#define bitmap_for_each_set(i, b) \
	for ((i) = bitmap_next_set((b), 0); (i) != BITMAP_NONE; (i) = bitmap_next_set((b), (i) + 1))

#endif
