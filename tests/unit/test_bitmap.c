/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_bitmap.c — common/bitmap: single bits, ranges across word boundaries,
 * counting, iteration, set operations, and a randomized comparison against a
 * naive bool array.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/util.h"

#define CANARY 0xa5a5a5a5a5a5a5a5ULL

/* A bitmap over caller-owned words with canary words on both sides, so that a
 * write outside the map's words is caught without a sanitizer. */
struct guarded {
	struct bitmap b;
	uint64_t *raw; /* raw[0] and raw[nw + 1] are canaries */
	uint64_t nw;
};

static void guarded_init(struct guarded *g, uint64_t nbits)
{
	g->nw = bitmap_words(nbits);
	g->raw = calloc(g->nw + 2, sizeof(uint64_t));
	assert_non_null(g->raw);
	g->raw[0] = CANARY;
	g->raw[g->nw + 1] = CANARY;
	g->b.w = g->raw + 1;
	g->b.nbits = nbits;
}

static void guarded_check(const struct guarded *g)
{
	assert_int_equal(g->raw[0], CANARY);
	assert_int_equal(g->raw[g->nw + 1], CANARY);
}

static void guarded_free(struct guarded *g)
{
	guarded_check(g);
	free(g->raw);
	g->raw = NULL;
}

/* Bits past nbits in the last word must stay zero. */
static void check_tail_zero(const struct bitmap *b)
{
	uint64_t nw = bitmap_words(b->nbits);

	if (b->nbits & 63)
		assert_int_equal(b->w[nw - 1] >> (b->nbits & 63), 0);
}

/* The bitmap equals the naive array, bit by bit and in count. */
static void check_same(const struct bitmap *b, const bool *ref)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < b->nbits; i++) {
		if (bitmap_test(b, i) != ref[i])
			fail_msg("bit %llu: bitmap %d, reference %d", (unsigned long long)i,
				 bitmap_test(b, i), ref[i]);
		n += ref[i];
	}
	assert_int_equal(bitmap_count(b), n);
	check_tail_zero(b);
}

static uint64_t ref_next(const bool *ref, uint64_t nbits, uint64_t i, bool val)
{
	for (; i < nbits; i++)
		if (ref[i] == val)
			return i;
	return BITMAP_NONE;
}

static void test_init_empty(void **state)
{
	static const uint64_t sizes[] = { 0, 1, 63, 64, 65, 128, 1000 };

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		struct bitmap b;

		assert_int_equal(bitmap_init(&b, sizes[k]), 0);
		assert_non_null(b.w);
		assert_int_equal(b.nbits, sizes[k]);
		assert_int_equal(bitmap_count(&b), 0);
		assert_int_equal(bitmap_next_set(&b, 0), BITMAP_NONE);
		assert_int_equal(bitmap_next_clear(&b, 0), sizes[k] ? 0 : BITMAP_NONE);
		for (uint64_t i = 0; i < sizes[k]; i++)
			assert_false(bitmap_test(&b, i));
		bitmap_free(&b);
		assert_null(b.w);
		assert_int_equal(b.nbits, 0);
	}
}

static void test_words(void **state)
{
	(void)state;
	assert_int_equal(bitmap_words(0), 0);
	assert_int_equal(bitmap_words(1), 1);
	assert_int_equal(bitmap_words(64), 1);
	assert_int_equal(bitmap_words(65), 2);
	assert_int_equal(bitmap_words(128), 2);
	assert_int_equal(bitmap_words(129), 3);
}

static void test_set_clear_test(void **state)
{
	struct guarded g;
	struct bitmap *b = &g.b;
	static const uint64_t bits[] = { 0, 1, 62, 63, 64, 65, 127, 128, 129 };

	(void)state;
	guarded_init(&g, 130);
	bitmap_set(b, 0);
	bitmap_set(b, 63);
	bitmap_set(b, 64);
	bitmap_set(b, 129);
	assert_int_equal(b->w[0], 1ULL | 1ULL << 63);
	assert_int_equal(b->w[1], 1ULL);
	assert_int_equal(b->w[2], 2ULL);
	for (size_t k = 0; k < ARRAY_SIZE(bits); k++) {
		uint64_t i = bits[k];
		bool want = i == 0 || i == 63 || i == 64 || i == 129;
		assert_int_equal(bitmap_test(b, i), want);
	}
	assert_int_equal(bitmap_count(b), 4);

	/* Setting twice is idempotent. */
	bitmap_set(b, 63);
	assert_int_equal(bitmap_count(b), 4);

	bitmap_clear(b, 63);
	assert_false(bitmap_test(b, 63));
	assert_true(bitmap_test(b, 0));
	assert_true(bitmap_test(b, 64));
	assert_int_equal(b->w[0], 1ULL);
	bitmap_clear(b, 63); /* clearing a clear bit is a no-op */
	assert_int_equal(bitmap_count(b), 3);
	bitmap_clear(b, 0);
	bitmap_clear(b, 64);
	bitmap_clear(b, 129);
	assert_int_equal(bitmap_count(b), 0);
	assert_int_equal(b->w[0] | b->w[1] | b->w[2], 0);
	guarded_free(&g);
}

struct range_case {
	uint64_t nbits, start, n;
};

static const struct range_case range_cases[] = {
	{ 200, 0, 0 },	 { 200, 63, 0 },  { 200, 64, 0 },   { 200, 199, 0 },  { 200, 0, 1 },
	{ 200, 0, 63 },	 { 200, 0, 64 },  { 200, 0, 65 },   { 200, 0, 128 },  { 200, 0, 200 },
	{ 200, 63, 1 },	 { 200, 63, 2 },  { 200, 63, 65 },  { 200, 63, 137 }, { 200, 64, 1 },
	{ 200, 64, 64 }, { 200, 64, 136 }, { 200, 1, 127 }, { 200, 1, 62 },   { 200, 60, 136 },
	{ 200, 128, 64 }, { 200, 199, 1 }, { 200, 192, 8 }, { 200, 100, 28 }, { 200, 5, 5 },
	{ 128, 0, 128 }, { 128, 64, 64 }, { 128, 127, 1 },  { 128, 63, 65 },  { 64, 0, 64 },
	{ 64, 63, 1 },	 { 1, 0, 1 },	  { 65, 64, 1 },    { 65, 0, 65 },    { 1000, 3, 990 },
	{ 1000, 64, 512 },
};

static void test_set_range(void **state)
{
	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(range_cases); k++) {
		const struct range_case *rc = &range_cases[k];
		struct guarded g;
		bool *ref = calloc(rc->nbits, sizeof *ref);

		assert_non_null(ref);
		guarded_init(&g, rc->nbits);
		bitmap_set_range(&g.b, rc->start, rc->n);
		for (uint64_t i = rc->start; i < rc->start + rc->n; i++)
			ref[i] = true;
		check_same(&g.b, ref);
		assert_int_equal(bitmap_count(&g.b), rc->n);
		guarded_check(&g);

		/* On top of existing bits: the bits outside the range survive. */
		bitmap_set(&g.b, 0);
		bitmap_set(&g.b, rc->nbits - 1);
		ref[0] = ref[rc->nbits - 1] = true;
		bitmap_set_range(&g.b, rc->start, rc->n);
		check_same(&g.b, ref);
		guarded_free(&g);
		free(ref);
	}
}

static void test_clear_range(void **state)
{
	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(range_cases); k++) {
		const struct range_case *rc = &range_cases[k];
		struct guarded g;
		bool *ref = malloc(rc->nbits * sizeof *ref);

		assert_non_null(ref);
		guarded_init(&g, rc->nbits);
		bitmap_set_range(&g.b, 0, rc->nbits);
		for (uint64_t i = 0; i < rc->nbits; i++)
			ref[i] = true;
		check_same(&g.b, ref);
		assert_int_equal(bitmap_count(&g.b), rc->nbits);

		bitmap_clear_range(&g.b, rc->start, rc->n);
		for (uint64_t i = rc->start; i < rc->start + rc->n; i++)
			ref[i] = false;
		check_same(&g.b, ref);
		assert_int_equal(bitmap_count(&g.b), rc->nbits - rc->n);
		guarded_free(&g);
		free(ref);
	}
}

static void test_zero(void **state)
{
	struct guarded g;

	(void)state;
	guarded_init(&g, 190);
	bitmap_set_range(&g.b, 0, 190);
	bitmap_zero(&g.b);
	assert_int_equal(bitmap_count(&g.b), 0);
	assert_int_equal(g.b.w[0] | g.b.w[1] | g.b.w[2], 0);
	assert_int_equal(bitmap_next_set(&g.b, 0), BITMAP_NONE);
	guarded_free(&g);
}

static void test_count(void **state)
{
	struct bitmap b;

	(void)state;
	assert_int_equal(bitmap_init(&b, 1000), 0);
	for (uint64_t i = 0; i < 1000; i += 3)
		bitmap_set(&b, i);
	assert_int_equal(bitmap_count(&b), 334);
	bitmap_set_range(&b, 0, 1000);
	assert_int_equal(bitmap_count(&b), 1000);
	bitmap_clear(&b, 999);
	bitmap_clear(&b, 0);
	bitmap_clear(&b, 512);
	assert_int_equal(bitmap_count(&b), 997);
	bitmap_free(&b);
}

static void test_next_set(void **state)
{
	struct bitmap b;

	(void)state;
	assert_int_equal(bitmap_init(&b, 200), 0);
	for (uint64_t i = 0; i < 200; i++)
		assert_int_equal(bitmap_next_set(&b, i), BITMAP_NONE);
	bitmap_set(&b, 5);
	bitmap_set(&b, 64);
	bitmap_set(&b, 199);
	assert_int_equal(bitmap_next_set(&b, 0), 5);
	assert_int_equal(bitmap_next_set(&b, 5), 5);
	assert_int_equal(bitmap_next_set(&b, 6), 64);
	assert_int_equal(bitmap_next_set(&b, 63), 64);
	assert_int_equal(bitmap_next_set(&b, 64), 64);
	assert_int_equal(bitmap_next_set(&b, 65), 199);
	assert_int_equal(bitmap_next_set(&b, 128), 199);
	assert_int_equal(bitmap_next_set(&b, 199), 199);
	assert_int_equal(bitmap_next_set(&b, 200), BITMAP_NONE);
	assert_int_equal(bitmap_next_set(&b, 255), BITMAP_NONE);
	assert_int_equal(bitmap_next_set(&b, 256), BITMAP_NONE);
	assert_int_equal(bitmap_next_set(&b, 100000), BITMAP_NONE);
	assert_int_equal(bitmap_next_set(&b, BITMAP_NONE - 1), BITMAP_NONE);
	bitmap_clear(&b, 199);
	assert_int_equal(bitmap_next_set(&b, 65), BITMAP_NONE);
	bitmap_free(&b);

	/* Bit 0 and the last bit of a map that ends on a word boundary. */
	assert_int_equal(bitmap_init(&b, 128), 0);
	bitmap_set(&b, 0);
	bitmap_set(&b, 127);
	assert_int_equal(bitmap_next_set(&b, 0), 0);
	assert_int_equal(bitmap_next_set(&b, 1), 127);
	assert_int_equal(bitmap_next_set(&b, 127), 127);
	assert_int_equal(bitmap_next_set(&b, 128), BITMAP_NONE);
	bitmap_free(&b);

	assert_int_equal(bitmap_init(&b, 0), 0);
	assert_int_equal(bitmap_next_set(&b, 0), BITMAP_NONE);
	bitmap_free(&b);
}

static void test_next_clear(void **state)
{
	static const uint64_t sizes[] = { 1, 63, 64, 65, 127, 128, 130, 200 };
	struct bitmap b;

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		uint64_t n = sizes[k];

		/* A full map has no clear bit: the unused bits of the last word,
		 * or the word after the map, must never be reported. */
		assert_int_equal(bitmap_init(&b, n), 0);
		bitmap_set_range(&b, 0, n);
		for (uint64_t i = 0; i < n + 70; i++)
			assert_int_equal(bitmap_next_clear(&b, i), BITMAP_NONE);
		/* Only the last bit clear. */
		bitmap_clear(&b, n - 1);
		assert_int_equal(bitmap_next_clear(&b, 0), n - 1);
		assert_int_equal(bitmap_next_clear(&b, n - 1), n - 1);
		assert_int_equal(bitmap_next_clear(&b, n), BITMAP_NONE);
		/* Only the first bit clear. */
		bitmap_set(&b, n - 1);
		bitmap_clear(&b, 0);
		assert_int_equal(bitmap_next_clear(&b, 0), 0);
		assert_int_equal(bitmap_next_clear(&b, 1), BITMAP_NONE);
		bitmap_free(&b);
	}

	assert_int_equal(bitmap_init(&b, 200), 0);
	assert_int_equal(bitmap_next_clear(&b, 0), 0);
	assert_int_equal(bitmap_next_clear(&b, 199), 199);
	assert_int_equal(bitmap_next_clear(&b, 200), BITMAP_NONE);
	bitmap_set_range(&b, 0, 70);
	assert_int_equal(bitmap_next_clear(&b, 0), 70);
	assert_int_equal(bitmap_next_clear(&b, 63), 70);
	assert_int_equal(bitmap_next_clear(&b, 64), 70);
	assert_int_equal(bitmap_next_clear(&b, 70), 70);
	assert_int_equal(bitmap_next_clear(&b, 71), 71);
	bitmap_set_range(&b, 70, 130);
	bitmap_clear(&b, 128);
	assert_int_equal(bitmap_next_clear(&b, 0), 128);
	assert_int_equal(bitmap_next_clear(&b, 129), BITMAP_NONE);
	assert_int_equal(bitmap_next_clear(&b, BITMAP_NONE - 1), BITMAP_NONE);
	bitmap_free(&b);

	assert_int_equal(bitmap_init(&b, 0), 0);
	assert_int_equal(bitmap_next_clear(&b, 0), BITMAP_NONE);
	bitmap_free(&b);
}

/* Post-copy's claim: threads racing to clear every bit of one set each win
 * a bit at most once, and every bit is won once in all. */
struct claimer {
	struct bitmap *b;
	uint64_t won;
	uint8_t *seen; /* per bit, counted by its winner */
};

static void *claim_all(void *arg)
{
	struct claimer *c = arg;

	for (uint64_t i = 0; i < c->b->nbits; i++)
		if (bitmap_test_and_clear_atomic(c->b, i)) {
			c->won++;
			__atomic_fetch_add(&c->seen[i], 1, __ATOMIC_RELAXED);
		}
	return NULL;
}

static void test_atomic_claim(void **state)
{
	enum { THREADS = 4, NBITS = 100003 };
	struct bitmap b;
	struct claimer c[THREADS];
	pthread_t t[THREADS];
	uint8_t *seen = calloc(NBITS, 1);
	uint64_t total = 0;

	(void)state;
	assert_non_null(seen);
	assert_int_equal(bitmap_init(&b, NBITS), 0);
	assert_false(bitmap_test_and_set_atomic(&b, 5));
	assert_true(bitmap_test_and_set_atomic(&b, 5));
	assert_true(bitmap_test_atomic(&b, 5));
	assert_true(bitmap_test_and_clear_atomic(&b, 5));
	assert_false(bitmap_test_and_clear_atomic(&b, 5));
	assert_false(bitmap_test_atomic(&b, 5));
	bitmap_set_range(&b, 0, NBITS);
	for (int i = 0; i < THREADS; i++) {
		c[i] = (struct claimer){ .b = &b, .seen = seen };
		assert_int_equal(pthread_create(&t[i], NULL, claim_all, &c[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		total += c[i].won;
	}
	assert_int_equal(total, NBITS);
	for (uint64_t i = 0; i < NBITS; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(bitmap_count(&b), 0);
	bitmap_free(&b);
	free(seen);
}

static void test_for_each_set(void **state)
{
	static const uint64_t want[] = { 0, 1, 63, 64, 100, 127, 128, 191, 192, 198, 199 };
	uint64_t got[ARRAY_SIZE(want) + 4], n = 0, i;
	struct bitmap b;

	(void)state;
	assert_int_equal(bitmap_init(&b, 200), 0);
	bitmap_for_each_set(i, &b)
		fail_msg("empty map yields bit %llu", (unsigned long long)i);
	for (size_t k = 0; k < ARRAY_SIZE(want); k++)
		bitmap_set(&b, want[k]);
	bitmap_for_each_set(i, &b) {
		assert_true(n < ARRAY_SIZE(got));
		assert_true(i < b.nbits);
		got[n++] = i;
	}
	assert_int_equal(n, ARRAY_SIZE(want));
	assert_memory_equal(got, want, sizeof want);
	bitmap_free(&b);

	/* A full map of 130 bits yields exactly 0..129 in order. */
	assert_int_equal(bitmap_init(&b, 130), 0);
	bitmap_set_range(&b, 0, 130);
	n = 0;
	bitmap_for_each_set(i, &b) {
		assert_int_equal(i, n);
		n++;
	}
	assert_int_equal(n, 130);
	bitmap_free(&b);
}

static void set_bits(struct bitmap *b, const uint64_t *bits, size_t n)
{
	for (size_t k = 0; k < n; k++)
		bitmap_set(b, bits[k]);
}

static void test_or_andnot_equal(void **state)
{
	static const uint64_t abits[] = { 1, 64, 149 }, bbits[] = { 2, 64, 100 };
	static const uint64_t orbits[] = { 1, 2, 64, 100, 149 };
	struct bitmap a, b, c, d;

	(void)state;
	assert_int_equal(bitmap_init(&a, 150), 0);
	assert_int_equal(bitmap_init(&b, 150), 0);
	assert_int_equal(bitmap_init(&c, 150), 0);
	assert_int_equal(bitmap_init(&d, 151), 0);
	assert_true(bitmap_equal(&a, &b));
	assert_false(bitmap_equal(&a, &d)); /* sizes differ */

	set_bits(&a, abits, ARRAY_SIZE(abits));
	set_bits(&b, bbits, ARRAY_SIZE(bbits));
	assert_false(bitmap_equal(&a, &b));

	bitmap_or(&a, &b);
	set_bits(&c, orbits, ARRAY_SIZE(orbits));
	assert_true(bitmap_equal(&a, &c));
	assert_int_equal(bitmap_count(&a), 5);
	/* src unchanged */
	assert_int_equal(bitmap_count(&b), 3);
	assert_true(bitmap_test(&b, 100));

	/* a = {1,2,64,100,149} &~ {2,64,100} = {1,149} */
	bitmap_andnot(&a, &b);
	assert_int_equal(bitmap_count(&a), 2);
	assert_true(bitmap_test(&a, 1));
	assert_true(bitmap_test(&a, 149));
	assert_false(bitmap_test(&a, 2));
	assert_false(bitmap_test(&a, 64));
	assert_false(bitmap_test(&a, 100));

	/* equal notices a difference in the very last bit. */
	bitmap_zero(&c);
	bitmap_set(&c, 1);
	assert_false(bitmap_equal(&a, &c));
	bitmap_set(&c, 149);
	assert_true(bitmap_equal(&a, &c));
	assert_true(bitmap_equal(&c, &a));

	/* x &~ x is empty; x | x is x. */
	bitmap_or(&c, &c);
	assert_true(bitmap_equal(&a, &c));
	bitmap_andnot(&c, &c);
	assert_int_equal(bitmap_count(&c), 0);

	bitmap_free(&a);
	bitmap_free(&b);
	bitmap_free(&c);
	bitmap_free(&d);
}

/* xorshift64*: a fixed, platform-independent sequence. */
static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void test_random_vs_naive(void **state)
{
	static const uint64_t sizes[] = { 1, 2, 63, 64, 65, 127, 128, 129, 191, 256, 1000, 4097 };

	(void)state;
	rng_state = 0x243f6a8885a308d3ULL;
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		uint64_t nbits = sizes[k];
		struct guarded g, o;
		bool *ref = calloc(nbits, sizeof *ref), *oref = calloc(nbits, sizeof *oref);

		assert_non_null(ref);
		assert_non_null(oref);
		guarded_init(&g, nbits);
		guarded_init(&o, nbits);
		for (int it = 0; it < 4000; it++) {
			uint64_t i = rnd_below(nbits), op = rnd_below(100);
			/* Ranges: mostly short, sometimes long, always inside. */
			uint64_t n = rnd_below(4) == 0 ? rnd_below(nbits - i + 1)
						       : rnd_below(MIN(nbits - i, 130) + 1);

			if (op < 25) {
				bitmap_set(&g.b, i);
				ref[i] = true;
			} else if (op < 45) {
				bitmap_clear(&g.b, i);
				ref[i] = false;
			} else if (op < 65) {
				bitmap_set_range(&g.b, i, n);
				for (uint64_t j = i; j < i + n; j++)
					ref[j] = true;
			} else if (op < 85) {
				bitmap_clear_range(&g.b, i, n);
				for (uint64_t j = i; j < i + n; j++)
					ref[j] = false;
			} else if (op < 92) {
				/* Another random map, or'ed or and-not'ed in. */
				bitmap_zero(&o.b);
				memset(oref, 0, nbits * sizeof *oref);
				for (int m = 0; m < 8; m++) {
					uint64_t s = rnd_below(nbits);
					uint64_t l = rnd_below(MIN(nbits - s, 100) + 1);
					bitmap_set_range(&o.b, s, l);
					for (uint64_t j = s; j < s + l; j++)
						oref[j] = true;
				}
				check_same(&o.b, oref);
				if (op & 1) {
					bitmap_or(&g.b, &o.b);
					for (uint64_t j = 0; j < nbits; j++)
						ref[j] = ref[j] || oref[j];
				} else {
					bitmap_andnot(&g.b, &o.b);
					for (uint64_t j = 0; j < nbits; j++)
						ref[j] = ref[j] && !oref[j];
				}
				check_same(&o.b, oref);
			} else if (op < 93) {
				bitmap_zero(&g.b);
				memset(ref, 0, nbits * sizeof *ref);
			}
			/* Queries from a random point and from just around it. */
			for (uint64_t q = i ? i - 1 : 0; q <= i + 1; q++) {
				uint64_t ws = bitmap_next_set(&g.b, q), wc = bitmap_next_clear(&g.b, q);
				assert_int_equal(ws, ref_next(ref, nbits, q, true));
				assert_int_equal(wc, ref_next(ref, nbits, q, false));
				assert_true(ws == BITMAP_NONE || ws < nbits);
				assert_true(wc == BITMAP_NONE || wc < nbits);
			}
			if (it % 16 == 0) {
				uint64_t cnt = 0, j, prev = 0;
				bool first = true;

				check_same(&g.b, ref);
				bitmap_for_each_set(j, &g.b) {
					assert_true(j < nbits);
					assert_true(ref[j]);
					assert_true(first || j > prev);
					first = false;
					prev = j;
					cnt++;
				}
				assert_int_equal(cnt, bitmap_count(&g.b));
				/* equal agrees with the reference comparison. */
				{
					bool same = memcmp(ref, oref, nbits * sizeof *ref) == 0;
					assert_int_equal(bitmap_equal(&g.b, &o.b), same);
				}
				guarded_check(&g);
				guarded_check(&o);
			}
		}
		check_same(&g.b, ref);
		guarded_free(&g);
		guarded_free(&o);
		free(ref);
		free(oref);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_empty),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_set_clear_test),
		cmocka_unit_test(test_set_range),
		cmocka_unit_test(test_clear_range),
		cmocka_unit_test(test_zero),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_next_set),
		cmocka_unit_test(test_next_clear),
		cmocka_unit_test(test_for_each_set),
		cmocka_unit_test(test_atomic_claim),
		cmocka_unit_test(test_or_andnot_equal),
		cmocka_unit_test(test_random_vs_naive),
	};

	return cmocka_run_group_tests_name("bitmap", tests, NULL, NULL);
}
