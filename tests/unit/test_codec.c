/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_codec.c — checkpoint/codec: the choice of encoding (an encoder that
 * always sent raw would fail here), round trips with each encoding forced and
 * chosen, delta chains, the bound of the delta cache, page sizes whose delta
 * runs must be split, a decoder that rejects every malformed input
 * without reading or writing out of bounds, and adaptive LZ4 (skip periods
 * on incompressible data, with back-off, resumed when LZ4 pays again).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "checkpoint/codec.h"

#define PS 4096u
#include "tests/pagegen.h"

#define GUARD 64u
#define CANARY 0xa5

/* Change k random 8-byte words of a page of ps bytes (each to a new value). */
static void change_words(uint8_t *p, size_t ps, unsigned k)
{
	while (k--) {
		size_t w = rnd() % (ps / 8);
		uint64_t v;

		memcpy(&v, p + 8 * w, 8);
		v ^= rnd() | 1;
		memcpy(p + 8 * w, &v, 8);
	}
}

/* A page buffer with canary bytes on both sides. */
static uint8_t *guarded_page(size_t ps)
{
	uint8_t *raw = malloc(ps + 2 * GUARD);

	assert_non_null(raw);
	memset(raw, CANARY, GUARD);
	memset(raw + GUARD + ps, CANARY, GUARD);
	memset(raw + GUARD, 0, ps);
	return raw + GUARD;
}

static void guarded_check(const uint8_t *page, size_t ps)
{
	for (size_t i = 0; i < GUARD; i++) {
		assert_int_equal(page[-1 - (ptrdiff_t)i], CANARY);
		assert_int_equal(page[ps + i], CANARY);
	}
}

static void guarded_free(uint8_t *page, size_t ps)
{
	guarded_check(page, ps);
	free(page - GUARD);
}

/* Decode from a heap copy of exactly len bytes, so that a sanitizer sees any
 * read past the data. */
static int decode_exact(uint32_t enc, const void *data, uint32_t len, uint8_t *page, uint32_t ps)
{
	uint8_t *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, data, len);
	r = codec_decode(enc, copy, len, page, ps);
	free(copy);
	return r;
}

static struct codec *new_codec(int force, size_t cache, uint32_t ps)
{
	struct codec_opts o;
	struct codec *c;

	codec_opts_default(&o);
	o.force = force;
	o.delta_cache_pages = cache;
	assert_int_equal(codec_new(&o, ps, &c), 0);
	return c;
}

/* Encode page as frame, decode into the receiver's copy rx, check equality. */
static enum stream_enc send_page(struct codec *c, uint64_t frame, const uint8_t *page,
				 uint8_t *rx, uint32_t ps, uint32_t *lenp)
{
	uint8_t *out = malloc(codec_out_max(ps));
	enum stream_enc enc;
	uint32_t len = UINT32_MAX;

	assert_non_null(out);
	enc = codec_encode(c, frame, page, out, &len);
	assert_true(enc < STREAM_ENC_MAX);
	assert_true(len <= codec_out_max(ps));
	if (enc == STREAM_ENC_ZERO)
		assert_int_equal(len, 0);
	if (enc == STREAM_ENC_RAW)
		assert_int_equal(len, ps);
	assert_int_equal(decode_exact(enc, out, len, rx, ps), 0);
	assert_memory_equal(rx, page, ps);
	free(out);
	if (lenp)
		*lenp = len;
	return enc;
}

/* ---- options, zero test ------------------------------------------------- */

static void test_new_and_opts(void **state)
{
	struct codec_opts o;
	struct codec *c;

	(void)state;
	codec_opts_default(&o);
	assert_true(o.lz4 && o.delta && o.adaptive);
	assert_int_equal(o.lz4_accel, 1);
	assert_int_equal(o.delta_cache_pages, 16384);
	assert_int_equal(o.force, -1);
	assert_int_equal(codec_new(&o, 0, &c), -EINVAL);
	assert_null(c);
	assert_int_equal(codec_new(&o, 100, &c), -EINVAL);
	assert_int_equal(codec_new(&o, 4097, &c), -EINVAL);
	o.force = STREAM_ENC_MAX;
	assert_int_equal(codec_new(&o, PS, &c), -EINVAL);
	o.force = -1;
	o.lz4_accel = 0;
	assert_int_equal(codec_new(&o, PS, &c), -EINVAL);
	o.lz4_accel = 1;
	assert_int_equal(codec_new(&o, PS, &c), 0);
	assert_non_null(c);
	codec_free(c);
	assert_int_equal(codec_new(NULL, PS, &c), 0);
	codec_free(c);
	codec_free(NULL);
	assert_true(codec_out_max(PS) >= PS);
	assert_true(codec_out_max(PS) >= (size_t)LZ4_compressBound(PS));
}

static void test_is_zero(void **state)
{
	uint8_t *buf = calloc(1, PS + 64);

	(void)state;
	assert_non_null(buf);
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len <= 600; len++) {
			assert_true(codec_page_is_zero(buf + off, len));
			if (!len)
				continue;
			/* the first, last and a middle byte */
			size_t at[3] = { 0, len - 1, len / 2 };

			for (int k = 0; k < 3; k++) {
				buf[off + at[k]] = 0x80;
				assert_false(codec_page_is_zero(buf + off, len));
				buf[off + at[k]] = 0;
			}
		}
	}
	for (size_t i = 0; i < PS; i++) {
		buf[i] = 1;
		assert_false(codec_page_is_zero(buf, PS));
		buf[i] = 0;
	}
	assert_true(codec_page_is_zero(buf, PS));
	free(buf);
}

/* ---- the choice --------------------------------------------------------- */

/* Each of these fails for an encoder that always sends raw. */
static void test_choice_beats_raw(void **state)
{
	struct codec *c = new_codec(-1, 64, PS);
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS);
	uint32_t len;

	(void)state;
	/* zero page: ZERO, no data */
	memset(rx, 0x55, PS);
	assert_int_equal(send_page(c, 1, page, rx, PS, &len), STREAM_ENC_ZERO);
	assert_int_equal(len, 0);
	/* text: LZ4, less than half */
	fill_text(page, PS);
	assert_int_equal(send_page(c, 2, page, rx, PS, &len), STREAM_ENC_LZ4);
	assert_true(len < PS / 2);
	/* one word changed since the last send: DELTA, 16 bytes */
	change_words(page, PS, 1);
	assert_int_equal(send_page(c, 2, page, rx, PS, &len), STREAM_ENC_DELTA);
	assert_true(len < 64);
	assert_int_equal(len, 16);
	/* random bytes: RAW */
	fill_random(page, PS);
	assert_int_equal(send_page(c, 3, page, rx, PS, &len), STREAM_ENC_RAW);
	/* random page, lightly changed: DELTA (LZ4 could not do it) */
	change_words(page, PS, 3);
	assert_int_equal(send_page(c, 3, page, rx, PS, &len), STREAM_ENC_DELTA);
	assert_true(len <= 3 * 12 + 4);
	assert_int_equal(codec_stats(c)->pages[STREAM_ENC_DELTA], 2);
	assert_int_equal(codec_stats(c)->bytes_in, 5 * PS);
	guarded_free(page, PS);
	guarded_free(rx, PS);
	codec_free(c);
}

/* A lightly changed text page: DELTA, smaller than LZ4 of the same page. */
static void test_delta_beats_lz4(void **state)
{
	struct codec *c = new_codec(-1, 64, PS), *nod = new_codec(-1, 0, PS);
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS), *rx2 = guarded_page(PS);
	uint32_t dlen, llen;

	(void)state;
	fill_text(page, PS);
	send_page(c, 7, page, rx, PS, NULL);
	memcpy(page + 1000, "changed!", 8);
	memcpy(page + 3000, "changed!", 8);
	assert_int_equal(send_page(c, 7, page, rx, PS, &dlen), STREAM_ENC_DELTA);
	assert_int_equal(send_page(nod, 7, page, rx2, PS, &llen), STREAM_ENC_LZ4);
	assert_true(dlen < llen);
	assert_true(dlen <= 2 * 16 + 4);
	guarded_free(page, PS);
	guarded_free(rx, PS);
	guarded_free(rx2, PS);
	codec_free(c);
	codec_free(nod);
}

/* With new pages not cached, a first version leaves no entry (its next
 * version is no delta), but a frame already cached is kept up to date, so
 * its delta is taken against the version sent last, never a stale one. */
static void test_cache_no_new(void **state)
{
	struct codec *c = new_codec(-1, 64, PS);
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS), *rx2 = guarded_page(PS);

	(void)state;
	fill_text(page, PS);
	send_page(c, 7, page, rx, PS, NULL); /* cached */
	codec_cache_new_pages(c, false);
	send_page(c, 8, page, rx2, PS, NULL); /* not cached */
	memcpy(page + 1000, "changed!", 8);
	assert_int_equal(send_page(c, 7, page, rx, PS, NULL), STREAM_ENC_DELTA);
	memcpy(page + 3000, "changed!", 8);
	assert_int_equal(send_page(c, 7, page, rx, PS, NULL), STREAM_ENC_DELTA);
	assert_memory_equal(rx, page, PS);
	assert_int_not_equal(send_page(c, 8, page, rx2, PS, NULL), STREAM_ENC_DELTA);
	codec_cache_new_pages(c, true);
	send_page(c, 8, page, rx2, PS, NULL);
	memcpy(page + 2000, "changed!", 8);
	assert_int_equal(send_page(c, 8, page, rx2, PS, NULL), STREAM_ENC_DELTA);
	assert_memory_equal(rx2, page, PS);
	guarded_free(page, PS);
	guarded_free(rx, PS);
	guarded_free(rx2, PS);
	codec_free(c);
}

/* Options: no LZ4 sends text raw; no delta never sends DELTA. */
static void test_options_off(void **state)
{
	struct codec_opts o;
	struct codec *c;
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS);

	(void)state;
	codec_opts_default(&o);
	o.lz4 = false;
	assert_int_equal(codec_new(&o, PS, &c), 0);
	fill_text(page, PS);
	assert_int_equal(send_page(c, 1, page, rx, PS, NULL), STREAM_ENC_RAW);
	change_words(page, PS, 1);
	assert_int_equal(send_page(c, 1, page, rx, PS, NULL), STREAM_ENC_DELTA);
	codec_free(c);

	codec_opts_default(&o);
	o.delta = false;
	o.lz4_accel = 1000;
	assert_int_equal(codec_new(&o, PS, &c), 0);
	send_page(c, 1, page, rx, PS, NULL);
	change_words(page, PS, 1);
	assert_int_not_equal(send_page(c, 1, page, rx, PS, NULL), STREAM_ENC_DELTA);
	codec_free(c);
	guarded_free(page, PS);
	guarded_free(rx, PS);
}

/* ---- round trips -------------------------------------------------------- */

enum content { C_ZERO, C_RANDOM, C_TEXT, C_SPARSE, C_LIGHT, C_NR };

static void fill_content(uint8_t *p, size_t ps, enum content k)
{
	switch (k) {
	case C_ZERO: memset(p, 0, ps); break;
	case C_RANDOM: fill_random(p, ps); break;
	case C_TEXT: fill_text(p, ps); break;
	case C_SPARSE:
		memset(p, 0, ps);
		change_words(p, ps, 5);
		break;
	case C_LIGHT: change_words(p, ps, 2); break; /* on top of the previous */
	default: break;
	}
}

/* Every encoding forced in turn, over every kind of content and a few page
 * sizes: the receiver ends up with identical bytes. */
static void test_forced_round_trips(void **state)
{
	static const uint32_t sizes[] = { 8, 64, 512, 4096, 16384 };

	(void)state;
	for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
		uint32_t ps = sizes[si];

		for (int force = STREAM_ENC_ZERO; force < STREAM_ENC_MAX; force++) {
			struct codec *c = new_codec(force, 8, ps);
			uint8_t *page = guarded_page(ps), *rx = guarded_page(ps);
			enum stream_enc enc;

			for (int round = 0; round < 3; round++) {
				for (int k = 0; k < C_NR; k++) {
					fill_content(page, ps, (enum content)k);
					bool zero = codec_page_is_zero(page, ps);

					enc = send_page(c, 5, page, rx, ps, NULL);
					if (force == STREAM_ENC_ZERO)
						assert_int_equal(enc, zero ? STREAM_ENC_ZERO
									   : STREAM_ENC_RAW);
					else if (force != STREAM_ENC_DELTA)
						assert_int_equal(enc, force);
					else if (round || k) /* cached since the first send */
						assert_int_equal(enc, STREAM_ENC_DELTA);
				}
			}
			/* forced DELTA without a cached version falls back to RAW */
			if (force == STREAM_ENC_DELTA) {
				fill_content(page, ps, C_RANDOM);
				assert_int_equal(send_page(c, 6, page, rx, ps, NULL), STREAM_ENC_RAW);
			}
			guarded_free(page, ps);
			guarded_free(rx, ps);
			codec_free(c);
		}
	}
}

/* One frame through 500 versions of every kind, automatic choice. */
static void test_delta_chain(void **state)
{
	struct codec *c = new_codec(-1, 4, PS);
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS);
	unsigned seen[STREAM_ENC_MAX] = { 0 };

	(void)state;
	fill_text(page, PS);
	for (int v = 0; v < 500; v++) {
		unsigned r = (unsigned)(rnd() % 20);

		if (r == 0)
			fill_content(page, PS, C_ZERO);
		else if (r == 1)
			fill_content(page, PS, C_RANDOM);
		else if (r == 2)
			fill_content(page, PS, C_TEXT);
		else if (r == 3)
			memset(page + rnd() % (PS - 300), (int)rnd(), 300);
		else
			change_words(page, PS, 1 + (unsigned)(rnd() % 40));
		seen[send_page(c, 42, page, rx, PS, NULL)]++;
	}
	for (int e = 0; e < STREAM_ENC_MAX; e++)
		assert_true(seen[e] > 0);
	assert_true(seen[STREAM_ENC_DELTA] > 300);
	guarded_free(page, PS);
	guarded_free(rx, PS);
	codec_free(c);
}

/* More frames than the cache holds: still correct, and exactly the cached
 * frames are delta-coded. */
static void test_cache_bound(void **state)
{
	enum { NF = 200, CACHE = 64 };
	struct codec *c = new_codec(-1, CACHE, PS);
	uint8_t *pages = malloc((size_t)NF * PS), *rx = malloc((size_t)NF * PS);
	const struct codec_stats *st = codec_stats(c);

	(void)state;
	assert_non_null(pages);
	assert_non_null(rx);
	for (int f = 0; f < NF; f++) {
		fill_random(pages + (size_t)f * PS, PS);
		assert_int_equal(send_page(c, (uint64_t)f * 1000003, pages + (size_t)f * PS,
					   rx + (size_t)f * PS, PS, NULL), STREAM_ENC_RAW);
	}
	assert_int_equal(st->evictions, NF - CACHE);
	/* the last CACHE frames sent are cached; walk back from the newest */
	for (int f = NF - 1; f >= 0; f--) {
		enum stream_enc enc;

		change_words(pages + (size_t)f * PS, PS, 1);
		enc = send_page(c, (uint64_t)f * 1000003, pages + (size_t)f * PS,
				rx + (size_t)f * PS, PS, NULL);
		if (f >= NF - CACHE)
			assert_int_equal(enc, STREAM_ENC_DELTA);
		else
			assert_int_equal(enc, STREAM_ENC_RAW);
	}
	assert_int_equal(st->pages[STREAM_ENC_DELTA], CACHE);
	assert_int_equal(st->delta_misses, NF + NF - CACHE);
	/* many rounds of random access: always correct */
	for (int i = 0; i < 5000; i++) {
		int f = (int)(rnd() % NF);

		change_words(pages + (size_t)f * PS, PS, 1 + (unsigned)(rnd() % 4));
		send_page(c, (uint64_t)f * 1000003, pages + (size_t)f * PS, rx + (size_t)f * PS, PS,
			  NULL);
	}
	assert_true(st->pages[STREAM_ENC_DELTA] > CACHE + 1000);
	free(pages);
	free(rx);
	codec_free(c);
}

/* forget; a frame sent ZERO is deltaed against the zero page. */
static void test_forget_and_zero(void **state)
{
	struct codec *c = new_codec(-1, 16, PS);
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS);
	uint32_t len;

	(void)state;
	fill_random(page, PS);
	send_page(c, 9, page, rx, PS, NULL);
	codec_forget(c, 9);
	codec_forget(c, 12345); /* not cached: nothing */
	change_words(page, PS, 1);
	assert_int_equal(send_page(c, 9, page, rx, PS, NULL), STREAM_ENC_RAW);
	/* the page becomes zero, then gets one word */
	memset(page, 0, PS);
	assert_int_equal(send_page(c, 9, page, rx, PS, NULL), STREAM_ENC_ZERO);
	page[4000] = 7;
	assert_int_equal(send_page(c, 9, page, rx, PS, &len), STREAM_ENC_DELTA);
	assert_int_equal(len, 16);
	/* forget_all: nothing is deltaed any more */
	codec_forget_all(c);
	page[8] = 1;
	assert_int_not_equal(send_page(c, 9, page, rx, PS, NULL), STREAM_ENC_DELTA);
	guarded_free(page, PS);
	guarded_free(rx, PS);
	codec_free(c);
}

/* Random operations on a few frames through a small cache, against the
 * receiver's copies: sends of every kind of content, zero pages, forgets. */
static void test_random_model(void **state)
{
	enum { NF = 24 };
	struct codec *c = new_codec(-1, 6, 512);
	uint8_t *pages = calloc(NF, 512), *rx = calloc(NF, 512);

	(void)state;
	assert_non_null(pages);
	assert_non_null(rx);
	for (int i = 0; i < 20000; i++) {
		unsigned f = (unsigned)(rnd() % NF), op = (unsigned)(rnd() % 10);
		uint8_t *p = pages + f * 512;

		if (op == 0)
			codec_forget(c, f);
		else if (op == 1)
			memset(p, 0, 512);
		else if (op == 2)
			fill_random(p, 512);
		else if (op == 3)
			fill_text(p, 512);
		else
			change_words(p, 512, 1 + (unsigned)(rnd() % 6));
		if (op)
			send_page(c, f, p, rx + f * 512, 512, NULL);
	}
	/* ~1/4 of the sends find their frame cached (6 of 24) */
	assert_true(codec_stats(c)->pages[STREAM_ENC_DELTA] > 2000);
	free(pages);
	free(rx);
	codec_free(c);
}

/* Pages of more than 65535 words: skips and copies split over runs. */
static void test_big_page_runs(void **state)
{
	const uint32_t ps = 1u << 20; /* 131072 words */
	struct codec *cd = new_codec(STREAM_ENC_DELTA, 2, ps), *ca = new_codec(-1, 2, ps);
	uint8_t *page = guarded_page(ps), *rx = guarded_page(ps), *rx2 = guarded_page(ps);
	uint32_t len;

	(void)state;
	fill_random(page, ps);
	send_page(cd, 1, page, rx, ps, NULL);
	send_page(ca, 1, page, rx2, ps, NULL);
	/* the last word: two (65535, 0) skips, then (1, 1) */
	page[ps - 1] ^= 1;
	assert_int_equal(send_page(cd, 1, page, rx, ps, &len), STREAM_ENC_DELTA);
	assert_int_equal(len, 3 * 4 + 8);
	assert_int_equal(send_page(ca, 1, page, rx2, ps, &len), STREAM_ENC_DELTA);
	/* everything changed: copies split every 65535 words */
	for (uint32_t i = 0; i < ps; i++)
		page[i] = (uint8_t)~page[i];
	assert_int_equal(send_page(cd, 1, page, rx, ps, &len), STREAM_ENC_DELTA);
	assert_int_equal(len, ps + 3 * 4);
	assert_true(len <= codec_out_max(ps));
	assert_int_equal(send_page(ca, 1, page, rx2, ps, &len), STREAM_ENC_RAW);
	/* unchanged: a page-sized skip in three runs */
	assert_int_equal(send_page(cd, 1, page, rx, ps, &len), STREAM_ENC_DELTA);
	assert_int_equal(len, 3 * 4);
	guarded_free(page, ps);
	guarded_free(rx, ps);
	guarded_free(rx2, ps);
	codec_free(cd);
	codec_free(ca);
}

/* Unaligned page, out and receiver buffers. */
static void test_unaligned(void **state)
{
	struct codec *c = new_codec(-1, 16, PS);
	uint8_t *src = malloc(PS + 8), *rxb = malloc(PS + 8), *out = malloc(codec_out_max(PS) + 8);
	uint8_t *page = src + 3, *rx = rxb + 5;
	enum stream_enc enc;
	uint32_t len;

	(void)state;
	for (int k = 0; k < C_NR; k++) {
		fill_content(page, PS, (enum content)k);
		enc = codec_encode(c, 3, page, out + 1, &len);
		assert_int_equal(codec_decode(enc, out + 1, len, rx, PS), 0);
		assert_memory_equal(rx, page, PS);
	}
	assert_int_equal(enc, STREAM_ENC_DELTA);
	free(src);
	free(rxb);
	free(out);
	codec_free(c);
}

/* ---- the decoder rejects ------------------------------------------------- */

static void test_reject_lengths_and_enc(void **state)
{
	uint8_t *page = guarded_page(PS), *data = calloc(1, PS + 1);

	(void)state;
	memset(page, 0x11, PS);
	assert_int_equal(decode_exact(STREAM_ENC_ZERO, data, 1, page, PS), -EBADMSG);
	assert_int_equal(decode_exact(STREAM_ENC_RAW, data, PS - 1, page, PS), -EBADMSG);
	assert_int_equal(decode_exact(STREAM_ENC_RAW, data, PS + 1, page, PS), -EBADMSG);
	assert_int_equal(decode_exact(STREAM_ENC_RAW, data, 0, page, PS), -EBADMSG);
	for (size_t i = 0; i < PS; i++)
		assert_int_equal(page[i], 0x11); /* untouched */
	assert_int_equal(decode_exact(STREAM_ENC_MAX, data, 0, page, PS), -EINVAL);
	assert_int_equal(decode_exact(99, data, PS, page, PS), -EINVAL);
	assert_int_equal(decode_exact(UINT32_MAX, data, 0, page, PS), -EINVAL);
	assert_int_equal(codec_decode(STREAM_ENC_ZERO, data, 0, page, 0), -EINVAL);
	assert_int_equal(codec_decode(STREAM_ENC_ZERO, data, 0, page, 100), -EINVAL);
	assert_int_equal(decode_exact(STREAM_ENC_ZERO, data, 0, page, PS), 0);
	assert_true(codec_page_is_zero(page, PS));
	guarded_free(page, PS);
	free(data);
}

static void test_reject_lz4(void **state)
{
	struct codec *c = new_codec(STREAM_ENC_LZ4, 0, PS);
	uint8_t *src = malloc(2 * PS), *blk = malloc(codec_out_max(2 * PS) + 16);
	uint8_t *page = guarded_page(PS);
	enum stream_enc enc;
	uint32_t len;
	int n;

	(void)state;
	fill_text(src, 2 * PS);
	enc = codec_encode(c, 0, src, blk, &len);
	assert_int_equal(enc, STREAM_ENC_LZ4);
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, len, page, PS), 0);
	assert_memory_equal(page, src, PS);
	/* truncated at every length */
	for (uint32_t l = 0; l < len; l++)
		assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, l, page, PS), -EBADMSG);
	/* over-long: trailing bytes after a valid block */
	for (int t = 1; t <= 8; t++) {
		memset(blk + len, t & 1 ? 0 : 0xff, (size_t)t);
		assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, len + (uint32_t)t, page, PS),
				 -EBADMSG);
	}
	/* longer than any block of a page can be */
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, (uint32_t)codec_out_max(PS) + 1000,
				      page, PS), -EBADMSG);
	/* valid blocks that decode to fewer or more than page_size bytes */
	n = LZ4_compress_default((char *)src, (char *)blk, PS - 1, (int)codec_out_max(2 * PS));
	assert_true(n > 0);
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, (uint32_t)n, page, PS), -EBADMSG);
	n = LZ4_compress_default((char *)src, (char *)blk, 100, (int)codec_out_max(2 * PS));
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, (uint32_t)n, page, PS), -EBADMSG);
	n = LZ4_compress_default((char *)src, (char *)blk, PS + 1, (int)codec_out_max(2 * PS));
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, (uint32_t)n, page, PS), -EBADMSG);
	n = LZ4_compress_default((char *)src, (char *)blk, 2 * PS, (int)codec_out_max(2 * PS));
	assert_int_equal(decode_exact(STREAM_ENC_LZ4, blk, (uint32_t)n, page, PS), -EBADMSG);
	guarded_free(page, PS);
	free(src);
	free(blk);
	codec_free(c);
}

/* A DELTA built from (skip, copy) pairs, XOR words 0x01 each (at most 513
 * words in all: a copy past the page is cut short). */
static uint32_t make_delta(uint8_t *d, const uint16_t *runs, int nruns)
{
	uint32_t n = 0, words = 0;

	for (int i = 0; i < nruns; i++) {
		d[n++] = (uint8_t)runs[2 * i];
		d[n++] = (uint8_t)(runs[2 * i] >> 8);
		d[n++] = (uint8_t)runs[2 * i + 1];
		d[n++] = (uint8_t)(runs[2 * i + 1] >> 8);
		for (unsigned w = 0; w < runs[2 * i + 1] && words <= PS / 8; w++, words++, n += 8)
			memset(d + n, 1, 8);
	}
	return n;
}

static void test_reject_delta(void **state)
{
	static const struct {
		uint16_t runs[8];
		int nruns;
		int extra; /* trailing bytes */
		int ok;
	} cases[] = {
		{ { 512, 0 }, 1, 0, 1 },              /* unchanged */
		{ { 0, 512 }, 1, 0, 1 },              /* all changed */
		{ { 10, 1, 500, 1 }, 2, 0, 1 },       /* the last word changed */
		{ { 10, 1, 501, 0 }, 2, 0, 1 },       /* tail skip */
		{ { 0, 0, 512, 0 }, 2, 0, 0 },        /* an empty run */
		{ { 512, 0, 0, 0 }, 2, 0, 0 },        /* an empty run at the end */
		{ { 10, 1 }, 1, 0, 0 },               /* does not cover the page */
		{ { 511, 0 }, 1, 0, 0 },              /* one word short */
		{ { 513, 0 }, 1, 0, 0 },              /* skip past the page */
		{ { 510, 3 }, 1, 0, 0 },              /* copy past the page */
		{ { 512, 1 }, 1, 0, 0 },              /* copy past the page */
		{ { 65535, 0 }, 1, 0, 0 },            /* far past the page */
		{ { 0, 65535 }, 1, 0, 0 },            /* copy far past the page */
		{ { 511, 0, 1, 0, 0, 1 }, 3, 0, 0 },  /* a run after the end */
		{ { 512, 0 }, 1, 1, 0 },              /* trailing bytes */
		{ { 512, 0 }, 1, 3, 0 },
		{ { 512, 0 }, 1, 4, 0 },
		{ { 100, 1, 411, 0 }, 2, 8, 0 },
	};
	uint8_t *d = malloc(codec_out_max(PS) + 16), *page = guarded_page(PS), *ref = malloc(PS);
	uint32_t n;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		fill_random(page, PS);
		memcpy(ref, page, PS);
		n = make_delta(d, cases[i].runs, cases[i].nruns);
		memset(d + n, 0, (size_t)cases[i].extra);
		n += (uint32_t)cases[i].extra;
		if (!cases[i].ok) {
			assert_int_equal(decode_exact(STREAM_ENC_DELTA, d, n, page, PS), -EBADMSG);
			assert_memory_equal(page, ref, PS); /* checked before applied */
			continue;
		}
		assert_int_equal(decode_exact(STREAM_ENC_DELTA, d, n, page, PS), 0);
		/* every truncation of a valid delta is rejected */
		for (uint32_t l = 0; l < n; l++)
			assert_int_equal(decode_exact(STREAM_ENC_DELTA, d, l, page, PS), -EBADMSG);
	}
	/* the copy overruns the data: (0, 2) with one word */
	n = make_delta(d, (const uint16_t[]){ 0, 1 }, 1);
	d[2] = 2;
	assert_int_equal(decode_exact(STREAM_ENC_DELTA, d, n, page, PS), -EBADMSG);
	guarded_free(page, PS);
	free(d);
	free(ref);
}

/* Random and mutated inputs: 0 or an error, never out of bounds (run under
 * the sanitizers: the data is always a heap block of exactly len bytes). */
static void test_decode_garbage(void **state)
{
	struct codec *c = new_codec(-1, 4, PS);
	size_t max = codec_out_max(PS) + 64;
	uint8_t *d = malloc(max), *page = guarded_page(PS), *src = malloc(PS);
	uint32_t len;

	(void)state;
	for (int it = 0; it < 20000; it++) {
		uint32_t enc = (uint32_t)(rnd() % 5);
		int r;

		if (rnd() % 2) {
			/* a valid encoding, mutated */
			fill_content(src, PS, (enum content)(rnd() % C_NR));
			enc = codec_encode(c, rnd() % 3, src, d, &len);
			for (int k = (int)(rnd() % 4); k >= 0 && len; k--)
				d[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
			if (rnd() % 4 == 0)
				len = (uint32_t)(rnd() % (len + 16));
		} else {
			len = (uint32_t)(rnd() % (rnd() % 2 ? 64 : max));
			fill_random(d, len);
			if (enc == STREAM_ENC_DELTA && len >= 4 && rnd() % 2) {
				/* plausible headers */
				d[0] = (uint8_t)(rnd() % 8);
				d[1] = 0;
				d[2] = (uint8_t)(rnd() % 8);
				d[3] = 0;
			}
		}
		r = decode_exact(enc, d, len, page, PS);
		assert_true(r == 0 || r == -EBADMSG || (r == -EINVAL && enc >= STREAM_ENC_MAX));
	}
	guarded_free(page, PS);
	free(d);
	free(src);
	codec_free(c);
}

/* ---- adaptive LZ4 ------------------------------------------------------- */

/* Random bytes below 32: the byte sample lets LZ4 try (32 distinct values),
 * but 5 random bits a byte leave LZ4 (no entropy coding) nothing to save. */
static void fill_5bit(uint8_t *p, size_t n)
{
	fill_random(p, n);
	for (size_t i = 0; i < n; i++)
		p[i] &= 31;
}

/* Send k fresh pages (5-bit random or text) as frames *frame...; each one is
 * decoded and compared by send_page. Returns how many went LZ4. */
static unsigned send_kind(struct codec *c, uint64_t *frame, unsigned k, bool text)
{
	uint8_t *page = guarded_page(PS), *rx = guarded_page(PS);
	unsigned lz4 = 0;

	while (k--) {
		if (text)
			fill_text(page, PS);
		else
			fill_5bit(page, PS);
		lz4 += send_page(c, (*frame)++, page, rx, PS, NULL) == STREAM_ENC_LZ4;
	}
	guarded_free(page, PS);
	guarded_free(rx, PS);
	return lz4;
}

static struct codec *adaptive_codec(bool adaptive)
{
	struct codec_opts o;
	struct codec *c;

	codec_opts_default(&o);
	o.delta = false;
	o.adaptive = adaptive;
	assert_int_equal(codec_new(&o, PS, &c), 0);
	return c;
}

/* Incompressible pages: after one window LZ4 is no longer tried (the pages
 * still round-trip); adaptive off, it is tried on every page. Skip periods
 * double while the probes keep failing. */
static void test_adaptive_incompressible(void **state)
{
	struct codec *c = adaptive_codec(true);
	const struct codec_stats *st = codec_stats(c);
	uint64_t frame = 0;

	(void)state;
	assert_int_equal(send_kind(c, &frame, CODEC_ADAPT_WINDOW, false), 0);
	assert_int_equal(st->lz4_skips, 0); /* the sample let every page through */
	assert_int_equal(st->lz4_adaptive_skips, 0);
	assert_int_equal(send_kind(c, &frame, 1000, false), 0);
	assert_int_equal(st->lz4_adaptive_skips, 1000);
	assert_int_equal(st->pages[STREAM_ENC_RAW], CODEC_ADAPT_WINDOW + 1000);
	/* the rest of the first period, a failed probe, then twice as long */
	send_kind(c, &frame, CODEC_ADAPT_SKIP - 1000 + CODEC_ADAPT_WINDOW + 2 * CODEC_ADAPT_SKIP,
		  false);
	assert_int_equal(st->lz4_adaptive_skips, 3 * CODEC_ADAPT_SKIP);
	send_kind(c, &frame, CODEC_ADAPT_WINDOW + 1, false);
	assert_int_equal(st->lz4_adaptive_skips, 3 * CODEC_ADAPT_SKIP + 1);
	codec_free(c);

	c = adaptive_codec(false);
	st = codec_stats(c);
	frame = 0;
	assert_int_equal(send_kind(c, &frame, 2 * CODEC_ADAPT_WINDOW, false), 0);
	assert_int_equal(st->lz4_adaptive_skips, 0);
	codec_free(c);
}

/* Compressible pages keep LZ4, window after window. */
static void test_adaptive_compressible(void **state)
{
	struct codec *c = adaptive_codec(true);
	uint64_t frame = 0;

	(void)state;
	assert_int_equal(send_kind(c, &frame, 4 * CODEC_ADAPT_WINDOW, true),
			 4 * CODEC_ADAPT_WINDOW);
	assert_int_equal(codec_stats(c)->lz4_adaptive_skips, 0);
	codec_free(c);
}

/* From incompressible to compressible data: pages of the skip period go RAW,
 * the probe after it finds LZ4 pays, and LZ4 is used from then on. */
static void test_adaptive_resumes(void **state)
{
	struct codec *c = adaptive_codec(true);
	const struct codec_stats *st = codec_stats(c);
	uint64_t frame = 0;

	(void)state;
	send_kind(c, &frame, CODEC_ADAPT_WINDOW, false);
	assert_int_equal(send_kind(c, &frame, CODEC_ADAPT_SKIP, true), 0);
	assert_int_equal(st->lz4_adaptive_skips, CODEC_ADAPT_SKIP);
	assert_int_equal(send_kind(c, &frame, 3 * CODEC_ADAPT_WINDOW, true),
			 3 * CODEC_ADAPT_WINDOW);
	assert_int_equal(st->lz4_adaptive_skips, CODEC_ADAPT_SKIP);
	/* it paid, so the back-off is back at its start */
	send_kind(c, &frame, CODEC_ADAPT_WINDOW, false);
	send_kind(c, &frame, CODEC_ADAPT_SKIP + 1, false);
	assert_int_equal(st->lz4_adaptive_skips, 2 * CODEC_ADAPT_SKIP);
	codec_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_opts),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_choice_beats_raw),
		cmocka_unit_test(test_delta_beats_lz4),
		cmocka_unit_test(test_options_off),
		cmocka_unit_test(test_forced_round_trips),
		cmocka_unit_test(test_delta_chain),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_cache_no_new),
		cmocka_unit_test(test_forget_and_zero),
		cmocka_unit_test(test_random_model),
		cmocka_unit_test(test_big_page_runs),
		cmocka_unit_test(test_unaligned),
		cmocka_unit_test(test_reject_lengths_and_enc),
		cmocka_unit_test(test_reject_lz4),
		cmocka_unit_test(test_reject_delta),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_adaptive_incompressible),
		cmocka_unit_test(test_adaptive_compressible),
		cmocka_unit_test(test_adaptive_resumes),
	};

	return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
