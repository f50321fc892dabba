/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec.c — the page codec: zero test, LZ4, XOR delta against a bounded cache
 * of the last version sent of each frame, raw (format: codec.h).
 *
 * The delta cache: nslots page-sized slots in one anonymous mapping (touched
 * only as they fill), an open-addressing hash table frame -> slot (linear
 * probing, backward-shift deletion, no tombstones), a stack of free slots,
 * and CLOCK eviction once all slots are used: a hit sets a slot's reference
 * bit, the hand clears bits until it finds a slot without one. Nothing is
 * allocated after codec_new.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lz4.h>

#include "checkpoint/codec.h"
#include "common/util.h"

#define SLOT_NONE UINT32_MAX
#define RUN_MAX 65535u      /* largest skip or copy of one DELTA run */
#define SAMPLE_WORDS 32u    /* words compared before a delta is tried */

/* One bucket of the hash table; slot == SLOT_NONE: empty. */
struct bucket {
	uint64_t frame;
	uint32_t slot;
};

/* A cache slot: the frame it holds and its CLOCK state. */
struct slot {
	uint64_t frame;
	uint8_t ref;  /* referenced since the hand last passed */
	uint8_t zero; /* the last version sent was the zero page; data not kept */
};

struct codec {
	struct codec_opts o;
	uint32_t page_size;
	size_t nwords;

	/* delta cache; nslots == 0: none */
	uint32_t nslots, hand, nfree;
	uint32_t *free_stack;
	struct slot *slots;
	struct bucket *table;
	uint64_t mask; /* table size - 1 */
	unsigned shift; /* 64 - log2(table size) */
	uint8_t *data;
	size_t data_len;
	uint8_t *zero_page; /* page_size zero bytes: the old version of a zero slot */
	bool no_new;    /* keep cached frames up to date, but cache no others */

	/* adaptive LZ4 (codec.h): the current window of tries and the back-off */
	uint32_t ad_tries;   /* LZ4 tries in the window */
	uint64_t ad_in;      /* page bytes LZ4 was tried on in the window */
	uint64_t ad_saved;   /* bytes LZ4 saved on them against the best without it */
	uint32_t ad_left;    /* pages still to skip */
	uint32_t ad_backoff; /* pages to skip after the next window that does not pay */

	LZ4_stream_t *lz4;
	char *scratch; /* LZ4 output while a DELTA result sits in out (codec_out_max) */
	struct codec_stats st;
};

/* Unaligned, aliasing-safe 8-byte load and store (plain moves once compiled). */
static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static bool page_size_ok(uint32_t ps)
{
	return ps >= CODEC_PAGE_MIN && ps <= CODEC_PAGE_MAX && ps % 8 == 0;
}

/* LZ4 (adaptive) and delta on, acceleration 1, a 16384-page cache, no forcing. */
void codec_opts_default(struct codec_opts *o)
{
	o->lz4 = true;
	o->adaptive = true;
	o->delta = true;
	o->lz4_accel = 1;
	o->delta_cache_pages = CODEC_CACHE_DEFAULT;
	o->force = -1;
}

/* The largest of RAW, a forced LZ4 block and a forced DELTA. */
size_t codec_out_max(uint32_t page_size)
{
	size_t words = page_size / 8;
	/* a DELTA of changed words only, one header per RUN_MAX words, a tail */
	size_t delta = page_size + CODEC_DELTA_HDR * (words / RUN_MAX + 2);
	/* LZ4_COMPRESSBOUND, in size_t */
	size_t lz4 = (size_t)page_size + page_size / 255 + 16;

	lz4 = lz4 > delta ? lz4 : delta;
	return lz4 > page_size ? lz4 : page_size;
}

/* ---- delta cache -------------------------------------------------------- */

/* Home bucket of frame: Fibonacci hashing, the top bits of the product. */
static inline uint64_t bucket_of(const struct codec *c, uint64_t frame)
{
	return (frame * 0x9e3779b97f4a7c15ULL) >> c->shift;
}

/* The bucket holding frame, or SLOT_NONE. An empty cache (every slot free:
 * a migration's first pass, which fills none) is not probed: the probe is a
 * cache miss per page, a tenth of the sender's CPU in that pass. */
static uint64_t cache_find(const struct codec *c, uint64_t frame)
{
	uint64_t b;

	if (c->nfree == c->nslots)
		return SLOT_NONE;
	b = bucket_of(c, frame);
	while (c->table[b].slot != SLOT_NONE) {
		if (c->table[b].frame == frame)
			return b;
		b = (b + 1) & c->mask;
	}
	return SLOT_NONE;
}

/* Empty bucket b, shifting later entries of its cluster back so that every
 * entry stays reachable from its home bucket. */
static void cache_unlink(struct codec *c, uint64_t b)
{
	uint64_t i = b, j = b;

	c->table[i].slot = SLOT_NONE;
	for (;;) {
		uint64_t home;

		j = (j + 1) & c->mask;
		if (c->table[j].slot == SLOT_NONE)
			return;
		home = bucket_of(c, c->table[j].frame);
		/* the entry at j may move to i unless its home lies in (i, j] */
		if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
			c->table[i] = c->table[j];
			c->table[j].slot = SLOT_NONE;
			i = j;
		}
	}
}

/* A slot for frame (not in the cache): a free one, else the CLOCK victim. */
static uint32_t cache_insert(struct codec *c, uint64_t frame)
{
	uint64_t b;
	uint32_t s;

	if (c->nfree) {
		s = c->free_stack[--c->nfree];
	} else {
		for (;;) {
			s = c->hand;
			c->hand = c->hand + 1 == c->nslots ? 0 : c->hand + 1;
			if (!c->slots[s].ref)
				break;
			c->slots[s].ref = 0;
		}
		cache_unlink(c, cache_find(c, c->slots[s].frame));
		c->st.evictions++;
	}
	c->slots[s] = (struct slot){ .frame = frame };
	b = bucket_of(c, frame);
	while (c->table[b].slot != SLOT_NONE)
		b = (b + 1) & c->mask;
	c->table[b] = (struct bucket){ .frame = frame, .slot = s };
	return s;
}

/* Drop frame's slot, if it has one, back onto the free stack. */
void codec_forget(struct codec *c, uint64_t frame)
{
	uint64_t b;
	uint32_t s;

	if (!c->nslots || (b = cache_find(c, frame)) == SLOT_NONE)
		return;
	s = c->table[b].slot;
	cache_unlink(c, b);
	c->free_stack[c->nfree++] = s;
}

void codec_cache_new_pages(struct codec *c, bool on)
{
	c->no_new = !on;
}

/* Empty the table; every slot free. Also the initial state. */
void codec_forget_all(struct codec *c)
{
	for (uint64_t b = 0; c->nslots && b <= c->mask; b++)
		c->table[b].slot = SLOT_NONE;
	c->nfree = c->nslots;
	for (uint32_t i = 0; i < c->nslots; i++)
		c->free_stack[i] = c->nslots - 1 - i; /* slot 0 on top */
	c->hand = 0;
}

static inline uint8_t *slot_data(const struct codec *c, uint32_t s)
{
	return c->data + (size_t)s * c->page_size;
}

static void delta_apply(const uint8_t *d, size_t len, uint8_t *page);

/*
 * Record page as the last version sent of frame, which is in slot s
 * (SLOT_NONE: not cached). A DELTA against a kept version is applied to it
 * (a few words) rather than copying the page.
 */
static void cache_store(struct codec *c, uint64_t frame, uint32_t s, const void *page,
			enum stream_enc enc, const uint8_t *data, size_t len)
{
	if (s == SLOT_NONE) {
		if (enc == STREAM_ENC_ZERO || c->no_new)
			return; /* the receiver's zero page needs no slot */
		s = cache_insert(c, frame);
	} else if (enc == STREAM_ENC_DELTA && !c->slots[s].zero) {
		delta_apply(data, len, slot_data(c, s));
		return;
	}
	c->slots[s].zero = enc == STREAM_ENC_ZERO;
	if (enc != STREAM_ENC_ZERO)
		memcpy(slot_data(c, s), page, c->page_size);
}

/* ---- allocation --------------------------------------------------------- */

/* The cache of pages slots; on error the caller frees what was allocated. */
static int cache_init(struct codec *c, size_t pages)
{
	uint64_t tsize = 2;
	unsigned bits = 1;

	if (pages > SIZE_MAX / c->page_size)
		return -ENOMEM;
	while (tsize < 2 * (uint64_t)pages) {
		tsize <<= 1;
		bits++;
	}
	c->nslots = (uint32_t)pages;
	c->mask = tsize - 1;
	c->shift = 64 - bits;
	c->slots = calloc(pages, sizeof *c->slots);
	c->free_stack = calloc(pages, sizeof *c->free_stack);
	c->table = malloc(tsize * sizeof *c->table);
	c->zero_page = calloc(1, c->page_size);
	c->data_len = pages * c->page_size;
	c->data = mmap(NULL, c->data_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (c->data == MAP_FAILED) {
		c->data = NULL;
		return -ENOMEM;
	}
	if (!c->slots || !c->free_stack || !c->table || !c->zero_page)
		return -ENOMEM;
	/* fewer first-touch faults as the cache fills; advisory only */
	madvise(c->data, c->data_len, MADV_HUGEPAGE);
	codec_forget_all(c);
	return 0;
}

/* Validate the options, then allocate everything the codec will ever use. */
int codec_new(const struct codec_opts *o, uint32_t page_size, struct codec **out)
{
	struct codec_opts def;
	struct codec *c;
	int e;

	*out = NULL;
	if (!o) {
		codec_opts_default(&def);
		o = &def;
	}
	if (!page_size_ok(page_size) || o->lz4_accel < 1 || o->lz4_accel > 65537 ||
	    o->force < -1 || o->force >= STREAM_ENC_MAX || o->delta_cache_pages > CODEC_CACHE_MAX)
		return -EINVAL;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->o = *o;
	c->page_size = page_size;
	c->ad_backoff = CODEC_ADAPT_SKIP;
	c->nwords = page_size / 8;
	c->lz4 = LZ4_createStream();
	c->scratch = malloc(codec_out_max(page_size));
	if (!c->lz4 || !c->scratch) {
		codec_free(c);
		return -ENOMEM;
	}
	if (o->delta && o->delta_cache_pages) {
		if ((e = cache_init(c, o->delta_cache_pages))) {
			codec_free(c);
			return e;
		}
	}
	*out = c;
	return 0;
}

/* Free c and all it owns; NULL is fine. */
void codec_free(struct codec *c)
{
	if (!c)
		return;
	if (c->data)
		munmap(c->data, c->data_len);
	free(c->zero_page);
	free(c->table);
	free(c->free_stack);
	free(c->slots);
	free(c->scratch);
	LZ4_freeStream(c->lz4);
	free(c);
}

/* The counters, owned by c. */
const struct codec_stats *codec_stats(const struct codec *c)
{
	return &c->st;
}

void codec_stats_reset(struct codec *c)
{
	memset(&c->st, 0, sizeof c->st);
}

/* ---- zero test ---------------------------------------------------------- */

/* 16 bytes as a vector: one SSE2 register on x86-64 (NEON on arm64). */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

static inline v2u64 ld128(const uint8_t *p)
{
	v2u64 v;

	memcpy(&v, p, sizeof v);
	return v;
}

static inline bool v2_zero(v2u64 v)
{
	return !(v[0] | v[1]);
}

/* OR of the 64 bytes at p, folded into one vector. */
static inline v2u64 or64(const uint8_t *p)
{
	return ld128(p) | ld128(p + 16) | ld128(p + 32) | ld128(p + 48);
}

/* 256 bytes per step, one branch each; byte loops only for odd lengths. */
bool codec_page_is_zero(const void *page, size_t len)
{
	const uint8_t *p = page;
	size_t i = 0;

	/* most non-zero pages show it in their first bytes */
	if (len >= 16 && !v2_zero(ld128(p)))
		return false;
	for (; i + 256 <= len; i += 256)
		if (!v2_zero(or64(p + i) | or64(p + i + 64) | or64(p + i + 128) |
			     or64(p + i + 192)))
			return false;
	for (; i + 8 <= len; i += 8)
		if (ld64(p + i))
			return false;
	for (; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- delta -------------------------------------------------------------- */

/* The first word at or after word i where a and b differ, or nw. */
static size_t next_diff(const uint8_t *a, const uint8_t *b, size_t i, size_t nw)
{
	for (; i + 8 <= nw; i += 8) {
		const uint8_t *x = a + 8 * i, *y = b + 8 * i;

		v2u64 d = (ld128(x) ^ ld128(y)) | (ld128(x + 16) ^ ld128(y + 16)) |
			  (ld128(x + 32) ^ ld128(y + 32)) | (ld128(x + 48) ^ ld128(y + 48));

		if (!v2_zero(d))
			break;
	}
	for (; i < nw; i++)
		if (ld64(a + 8 * i) != ld64(b + 8 * i))
			return i;
	return nw;
}

static inline void put_run(uint8_t *p, size_t skip, size_t copy)
{
	uint16_t h[2] = { htole16((uint16_t)skip), htole16((uint16_t)copy) };

	memcpy(p, h, sizeof h);
}

/*
 * The DELTA of page (nw words) against old into out, in at most cap bytes.
 * Returns its length, or 0 as soon as it would exceed cap.
 */
static size_t delta_encode(const uint8_t *old, const uint8_t *page, size_t nw, uint8_t *out,
			   size_t cap)
{
	size_t n = 0, done = 0, i = 0;

	for (;;) {
		size_t skip, hdr, end;

		i = next_diff(old, page, i, nw);
		skip = i - done;
		/* skips too long for one header, and the unchanged tail */
		while (skip > RUN_MAX || (i == nw && skip)) {
			size_t k = MIN(skip, (size_t)RUN_MAX);

			if (n + CODEC_DELTA_HDR > cap)
				return 0;
			put_run(out + n, k, 0);
			n += CODEC_DELTA_HDR;
			skip -= k;
		}
		if (i == nw)
			return n;
		if (n + CODEC_DELTA_HDR > cap)
			return 0;
		hdr = n;
		n += CODEC_DELTA_HDR;
		end = MIN(nw, i + RUN_MAX);
		for (; i < end; i++) {
			uint64_t x = ld64(old + 8 * i) ^ ld64(page + 8 * i);

			if (!x)
				break;
			if (n + 8 > cap)
				return 0;
			st64(out + n, x);
			n += 8;
		}
		put_run(out + hdr, skip, (n - hdr - CODEC_DELTA_HDR) / 8);
		done = i;
	}
}

/* Whether a delta may pay: at most 7/8 of a sample of words changed (a page
 * rewritten all over is not scanned to the end only to lose to RAW). */
static bool delta_promising(const uint8_t *old, const uint8_t *page, size_t nw)
{
	size_t stride = nw / SAMPLE_WORDS, w;
	unsigned changed = 0;

	if (nw < 4 * SAMPLE_WORDS)
		return true;
	for (unsigned k = 0; k < SAMPLE_WORDS; k++) {
		w = k * stride + stride / 2;
		changed += ld64(old + 8 * w) != ld64(page + 8 * w);
	}
	return changed <= SAMPLE_WORDS * 7 / 8;
}

/* XOR a valid DELTA of len bytes into page. */
static void delta_apply(const uint8_t *d, size_t len, uint8_t *page)
{
	size_t n, pos;
	uint16_t h[2];

	for (n = 0, pos = 0; n < len;) {
		memcpy(h, d + n, sizeof h);
		n += CODEC_DELTA_HDR;
		pos += le16toh(h[0]);
		for (size_t k = le16toh(h[1]); k; k--, pos++, n += 8)
			st64(page + 8 * pos, ld64(page + 8 * pos) ^ ld64(d + n));
	}
}

/* Check a DELTA of len bytes against a page of nw words, then apply it. */
static int delta_decode(const uint8_t *d, size_t len, uint8_t *page, size_t nw)
{
	size_t n, pos;
	uint16_t h[2];

	for (n = 0, pos = 0; n < len;) {
		if (len - n < CODEC_DELTA_HDR)
			return -EBADMSG;
		memcpy(h, d + n, sizeof h);
		h[0] = le16toh(h[0]);
		h[1] = le16toh(h[1]);
		n += CODEC_DELTA_HDR;
		if ((!h[0] && !h[1]) || h[0] > nw - pos)
			return -EBADMSG;
		pos += h[0];
		if (h[1] > nw - pos || (size_t)h[1] * 8 > len - n)
			return -EBADMSG;
		pos += h[1];
		n += (size_t)h[1] * 8;
	}
	if (pos != nw)
		return -EBADMSG;
	delta_apply(d, len, page);
	return 0;
}

/* ---- LZ4 ---------------------------------------------------------------- */

/*
 * One independent LZ4 block of n bytes at src into dst, at most cap bytes;
 * 0 if it does not fit. resetStream_fast + compress_fast_continue is LZ4's
 * way to reuse a state without clearing its 16 KiB table for every page.
 */
static size_t lz4_block(struct codec *c, const void *src, size_t n, void *dst, size_t cap,
			int accel)
{
	int r;

	LZ4_resetStream_fast(c->lz4);
	r = LZ4_compress_fast_continue(c->lz4, src, dst, (int)n, (int)MIN(cap, (size_t)INT_MAX),
				       accel);
	return r > 0 ? (size_t)r : 0;
}

/*
 * Whether a full LZ4 may pay: fewer than CODEC_LZ4_DISTINCT distinct values
 * among 64 bytes sampled at 8 places spread over the page. 64 random bytes
 * hold ~56 distinct values; code, text, pointers, small integers and partly
 * zero pages far fewer. Measured on ~3,000 pages of libc, bash, gcc and
 * libcrypto, it skipped one page that LZ4 would have shrunk by 10 % or more,
 * and let 0.2 % of random pages through (12 % of random doubles: they cost a
 * failed LZ4). The alternative, LZ4 on the first and last 256 bytes, cost
 * more (LZ4's 16 KiB hash table is cold by then) and gave up 13-22 % of what
 * LZ4 saves on code.
 */
static bool lz4_promising(const uint8_t *page, size_t ps)
{
	size_t stride = ps / 8;
	uint64_t seen[4] = { 0 };
	unsigned n = 0;

	if (ps < 512)
		return true;
	for (unsigned k = 0; k < 8; k++)
		for (unsigned j = 0; j < 8; j++) {
			uint8_t b = page[k * stride + j];

			seen[b >> 6] |= 1ULL << (b & 63);
		}
	for (unsigned k = 0; k < 4; k++)
		n += (unsigned)__builtin_popcountll(seen[k]);
	return n < CODEC_LZ4_DISTINCT;
}

/* ---- adaptive LZ4 ------------------------------------------------------- */

/* Whether to try LZ4 on a page that passed the sample: no while a skip
 * period runs (counted in lz4_adaptive_skips). */
static bool adapt_try(struct codec *c)
{
	if (!c->o.adaptive || !c->ad_left)
		return true;
	c->ad_left--;
	c->st.lz4_adaptive_skips++;
	return false;
}

/*
 * Account one LZ4 try on a page: saved is what it saved against the best
 * encoding without it (0 when it lost). At the end of each window of
 * CODEC_ADAPT_WINDOW tries: if LZ4 saved less than 1/CODEC_ADAPT_DIV of the
 * bytes, skip the next ad_backoff pages and double the back-off (up to
 * CODEC_ADAPT_SKIP_MAX); if it paid, reset the back-off.
 */
static void adapt_account(struct codec *c, size_t saved)
{
	if (!c->o.adaptive)
		return;
	c->ad_tries++;
	c->ad_in += c->page_size;
	c->ad_saved += saved;
	if (c->ad_tries < CODEC_ADAPT_WINDOW)
		return;
	if (c->ad_saved * CODEC_ADAPT_DIV < c->ad_in) {
		c->ad_left = c->ad_backoff;
		c->ad_backoff = MIN(2 * c->ad_backoff, CODEC_ADAPT_SKIP_MAX);
	} else {
		c->ad_backoff = CODEC_ADAPT_SKIP;
	}
	c->ad_tries = 0;
	c->ad_in = 0;
	c->ad_saved = 0;
}

/* ---- encode and decode -------------------------------------------------- */

/*
 * Zero test; then, unless forced, DELTA (when cached and promising, stopping
 * once no smaller than RAW), LZ4 (when the sample is not random and no
 * adaptive skip period runs, with room for less than the best so far), else
 * RAW. Then the cache learns the page.
 */
static enum stream_enc encode(struct codec *c, uint64_t frame, const void *page, void *out,
			      uint32_t *len, bool copy_raw)
{
	const uint8_t *p = page, *old = NULL;
	size_t ps = c->page_size, best = ps, n;
	enum stream_enc enc = STREAM_ENC_RAW;
	int force = c->o.force;
	uint32_t slot = SLOT_NONE;
	uint64_t b;

	if (c->nslots && (b = cache_find(c, frame)) != SLOT_NONE) {
		slot = c->table[b].slot;
		c->slots[slot].ref = 1;
	}
	if ((force < 0 || force == STREAM_ENC_ZERO) && codec_page_is_zero(p, ps)) {
		enc = STREAM_ENC_ZERO;
		best = 0;
		goto done;
	}
	if (force < 0 || force == STREAM_ENC_DELTA) {
		if (slot != SLOT_NONE)
			old = c->slots[slot].zero ? c->zero_page : slot_data(c, slot);
		else if (c->nslots)
			c->st.delta_misses++;
	}
	switch (force) {
	case -1:
		break;
	case STREAM_ENC_DELTA:
		if (old) {
			best = delta_encode(old, p, c->nwords, out, SIZE_MAX);
			enc = STREAM_ENC_DELTA;
			goto done;
		}
		goto raw;
	case STREAM_ENC_LZ4:
		best = lz4_block(c, p, ps, out, codec_out_max(c->page_size), c->o.lz4_accel);
		enc = STREAM_ENC_LZ4;
		goto done;
	default:
		goto raw;
	}

	if (old) {
		if (!delta_promising(old, p, c->nwords))
			c->st.delta_skips++;
		else if ((n = delta_encode(old, p, c->nwords, out, best - 1))) {
			enc = STREAM_ENC_DELTA;
			best = n;
		} else {
			c->st.delta_aborts++;
		}
	}
	/* no LZ4 block of a whole page is below ps / 256 bytes */
	if (c->o.lz4 && best > ps / 256) {
		if (!lz4_promising(p, ps)) {
			c->st.lz4_skips++;
		} else if (adapt_try(c)) {
			char *dst = enc == STREAM_ENC_DELTA ? c->scratch : out;

			if ((n = lz4_block(c, p, ps, dst, best - 1, c->o.lz4_accel))) {
				if (dst != out)
					memcpy(out, dst, n);
				adapt_account(c, best - n);
				enc = STREAM_ENC_LZ4;
				best = n;
			} else {
				adapt_account(c, 0);
			}
		}
	}
raw:
	if (enc == STREAM_ENC_RAW) {
		if (copy_raw)
			memcpy(out, p, ps);
		best = ps;
	}
done:
	if (c->nslots)
		cache_store(c, frame, slot, p, enc, out, best);
	c->st.pages[enc]++;
	c->st.bytes_out[enc] += best;
	c->st.bytes_in += ps;
	*len = (uint32_t)best;
	return enc;
}

enum stream_enc codec_encode(struct codec *c, uint64_t frame, const void *page, void *out,
			     uint32_t *len)
{
	return encode(c, frame, page, out, len, true);
}

enum stream_enc codec_encode_ref(struct codec *c, uint64_t frame, const void *page, void *out,
				 uint32_t *len, const void **data)
{
	enum stream_enc e = encode(c, frame, page, out, len, false);

	*data = e == STREAM_ENC_RAW ? page : out;
	return e;
}

/* Check the length for the encoding, then decode; see codec.h. */
int codec_decode(uint32_t enc, const void *data, uint32_t len, void *page, uint32_t page_size)
{
	int r;

	if (!page_size_ok(page_size))
		return -EINVAL;
	switch (enc) {
	case STREAM_ENC_ZERO:
		if (len)
			return -EBADMSG;
		memset(page, 0, page_size);
		return 0;
	case STREAM_ENC_RAW:
		if (len != page_size)
			return -EBADMSG;
		memcpy(page, data, page_size);
		return 0;
	case STREAM_ENC_LZ4:
		if (!len || len > (uint64_t)page_size + page_size / 255 + 16)
			return -EBADMSG;
		r = LZ4_decompress_safe(data, page, (int)len, (int)page_size);
		return r == (int)page_size ? 0 : -EBADMSG;
	case STREAM_ENC_DELTA:
		return delta_decode(data, len, page, page_size / 8);
	default:
		return -EINVAL;
	}
}
