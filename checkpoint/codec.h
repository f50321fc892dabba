/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec.h — the page codec of the ferry stream: how one page of a PAGES
 * record is encoded (docs/stream-format.md; enum stream_enc in stream.h).
 *
 * The codec works only on page snapshots (the output of read_pages), never on
 * live guest memory: a page that changes while it is being encoded would make
 * the encoder's choice and its delta cache disagree with what was sent.
 *
 * Encodings (the data of one page, data_len bytes):
 *
 *   ZERO  (0)  no data (data_len 0): the page is all zero bytes.
 *   RAW   (1)  exactly page_size bytes: the page.
 *   LZ4   (2)  one LZ4 block (the LZ4 block format, no frame header, no
 *              checksum) that decodes to exactly page_size bytes and is
 *              consumed to its last byte; at most LZ4_compressBound(page_size)
 *              bytes, at least 1.
 *   DELTA (3)  the XOR of the page against the receiver's current version of
 *              the same frame (the last version the sender sent of it; a frame
 *              last sent ZERO, or as a zero extent, is the zero page),
 *              run-length coded as below. The encoder knows only what went
 *              through codec_encode: a frame sent any other way (a zero
 *              extent, a raw copy) must be codec_forget-ed first.
 *
 * DELTA format. The page is seen as W = page_size / 8 words of 8 bytes (word
 * k is bytes [8k, 8k + 8) of the page). The data is a sequence of runs; each
 * run is a 4-byte header
 *
 *     u16 skip   little-endian: words left unchanged
 *     u16 copy   little-endian: words XOR-ed, following the skipped ones
 *
 * followed by copy 8-byte XOR words (copy * 8 bytes, no padding). Decoding
 * keeps a word position pos, starting at 0; for each run: pos += skip; then
 * for i in [0, copy): the 8 bytes of XOR word i are XOR-ed bytewise into page
 * bytes [8 (pos + i), 8 (pos + i) + 8); then pos += copy. (XOR is bytewise, so
 * there is no byte order in the XOR words.) The data is valid if and only if:
 *   - it consists of whole runs (every header is complete and is followed by
 *     its copy * 8 bytes; no trailing bytes),
 *   - no run has skip == 0 and copy == 0,
 *   - pos never exceeds W, and after the last run pos == W exactly (the runs
 *     cover the page exactly; hence data_len >= 4).
 * An unchanged page is the single run (skip W, copy 0) when W <= 65535. The
 * encoder emits each maximal stretch of changed words as one run (split every
 * 65535 words, and a skip above 65535 as runs of (65535, 0)), ends with a
 * (skip, 0) run for an unchanged tail, and never emits a zero XOR word;
 * a decoder must not rely on any of that. A one-word change in a 4 KiB page
 * is 16 bytes: (k, 1), the word, (511 - k, 0).
 *
 * Choice: the smallest of the encodings tried wins (RAW on a tie); ZERO
 * whenever the page is zero. An incompressible page costs a zero test, a
 * 64-byte sample (LZ4 is not tried when the sample holds CODEC_LZ4_DISTINCT
 * or more distinct byte values, as random bytes do) and a memcpy, plus a copy
 * into the delta cache when delta is on. DELTA is tried only when the cache
 * holds the frame's last version and at most 7/8 of a 32-word sample changed;
 * it stops once it is no smaller than RAW. LZ4 is then tried with room for
 * one byte less than the best so far (it stops when it overflows), and not at
 * all when the best is at most page_size / 256 bytes, which no LZ4 block of a
 * whole page can beat.
 *
 * Adaptive LZ4 (opts.adaptive, default on). Some memory passes the sample
 * but does not compress (random doubles, packed small integers, data of a
 * few bits per byte: LZ4 has no entropy coding), and each failed try costs
 * about what a successful one does. So the codec counts, over windows of
 * CODEC_ADAPT_WINDOW pages on which LZ4 was tried, the page bytes tried and
 * the bytes LZ4 saved against the best encoding without it (RAW or DELTA; 0
 * when it lost). A window where LZ4 saved less than 1/CODEC_ADAPT_DIV of the
 * bytes starts a skip period: LZ4 is not tried on the next K pages that
 * would have tried it (counted in lz4_adaptive_skips), then the next window
 * probes again. K starts at CODEC_ADAPT_SKIP and doubles after each probe
 * that does not pay, up to CODEC_ADAPT_SKIP_MAX; a window that pays resets
 * it. The cost of a try is taken as its page bytes (no clock is read, so
 * the choice is deterministic). Zero pages, DELTA, the sample and forced
 * encodings are unaffected; what is sent always decodes the same way, only
 * its size changes. At the cap, probing costs 256 tries per 64 K pages.
 *
 * Threads: a struct codec belongs to one thread at a time. Its delta cache is
 * per codec, so a frame must always be encoded by the same codec (or be
 * forgotten by one before another encodes it). codec_decode and
 * codec_page_is_zero keep no state and may be called from any thread.
 */
#ifndef FERRY_CHECKPOINT_CODEC_H
#define FERRY_CHECKPOINT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/stream.h" /* enum stream_enc: ZERO=0 RAW=1 LZ4=2 DELTA=3 */

#define CODEC_PAGE_MIN 8u          /* page_size: a multiple of 8 in [MIN, MAX] */
#define CODEC_PAGE_MAX (1u << 30)
#define CODEC_CACHE_MAX (1u << 28) /* most delta cache pages */
#define CODEC_LZ4_DISTINCT 50u     /* LZ4 skipped at this many distinct byte values
				    * in a 64-byte sample */
#define CODEC_DELTA_HDR 4u         /* bytes of a DELTA run header */
#define CODEC_ADAPT_WINDOW 256u    /* adaptive LZ4: tries per window */
#define CODEC_ADAPT_DIV 8u         /* a window pays if LZ4 saved >= 1/8 of its bytes */
#define CODEC_ADAPT_SKIP 4096u     /* first skip period, in pages */
#define CODEC_ADAPT_SKIP_MAX 65536u /* longest skip period */

struct codec_opts {
	bool lz4;                 /* try LZ4 (default true) */
	bool adaptive;            /* stop trying LZ4 for a while when it does not pay
				   * (default true; see above) */
	bool delta;               /* try delta against the last version sent (default true) */
	int lz4_accel;            /* LZ4_compress_fast acceleration, 1..65537, default 1 */
	size_t delta_cache_pages; /* bound of the delta cache (default 16384 pages = 64 MiB
				   * of 4 KiB pages); 0: no delta */
	int force;                /* -1: pick the smallest; else a stream_enc to force (for
				   * tests). ZERO forced on a non-zero page gives RAW, DELTA
				   * forced without a cached version gives RAW. */
};

#define CODEC_CACHE_DEFAULT 16384u

/* Fill o with the defaults. */
void codec_opts_default(struct codec_opts *o);

struct codec; /* opaque */

/* A codec for pages of page_size bytes with options o (NULL: defaults).
 * The delta cache (delta_cache_pages * page_size bytes) is reserved here and
 * filled on demand. 0, -ENOMEM, or -EINVAL for a bad page_size or option. */
int codec_new(const struct codec_opts *o, uint32_t page_size, struct codec **out);
void codec_free(struct codec *c);

/* Upper bound of encoded bytes for one page (>= page_size): the size of the
 * out buffer codec_encode needs. */
size_t codec_out_max(uint32_t page_size);

/*
 * Encode one page snapshot of frame into out (codec_out_max bytes). Returns the
 * encoding and sets *len to its data bytes (0 for ZERO). Remembers the page as
 * the last version sent of frame, for later deltas: a page sent ZERO marks an
 * existing cache entry as the zero page (and adds none). Unless forced, *len
 * is below page_size for every encoding but RAW.
 */
enum stream_enc codec_encode(struct codec *c, uint64_t frame, const void *page, void *out,
			     uint32_t *len);

/* As codec_encode, but a RAW page is not copied: *data points at the page
 * itself for RAW, at out otherwise. What a writer that sends page buffers
 * by reference uses, so an incompressible page costs no copy at all. */
enum stream_enc codec_encode_ref(struct codec *c, uint64_t frame, const void *page, void *out,
				 uint32_t *len, const void **data);

/* Forget frame's cached version (it was discarded, or sent by other means,
 * e.g. in a zero extent). */
void codec_forget(struct codec *c, uint64_t frame);

/* Forget every cached version (e.g. the receiver starts from scratch). */
void codec_forget_all(struct codec *c);

/* Whether encoding caches frames not cached yet (default on). Off, frames
 * already cached are still kept up to date, so no delta is ever taken against
 * a stale version; a first pass over all RAM turns it off, since only pages
 * sent again can become deltas (and caching each page costs a copy). */
void codec_cache_new_pages(struct codec *c, bool on);

/*
 * Decode data of len bytes in encoding enc into page (page_size bytes). For
 * DELTA, page must hold the receiver's current (= last received) version of
 * the frame on entry, and is updated in place. Validates everything against
 * the format above: returns 0, or -EBADMSG for malformed data, never reading
 * beyond data + len nor writing beyond page + page_size. On -EBADMSG the page
 * is unchanged for ZERO, RAW and DELTA (a delta is checked before it is
 * applied) and unspecified for LZ4. -EINVAL for an unknown enc or a bad
 * page_size.
 */
int codec_decode(uint32_t enc, const void *data, uint32_t len, void *page, uint32_t page_size);

/* Statistics counters. pages and bytes_out are per chosen encoding. */
struct codec_stats {
	uint64_t pages[STREAM_ENC_MAX];
	uint64_t bytes_out[STREAM_ENC_MAX];
	uint64_t bytes_in;         /* page bytes encoded */
	uint64_t lz4_skips;        /* LZ4 skipped: the byte sample looked random */
	uint64_t lz4_adaptive_skips; /* LZ4 skipped: in an adaptive skip period */
	uint64_t delta_misses;     /* no cached version (DELTA not possible) */
	uint64_t delta_skips;      /* cached, but the sample said "changed everywhere" */
	uint64_t delta_aborts;     /* tried, stopped once larger than the best so far */
	uint64_t evictions;        /* cache entries dropped to make room */
};
const struct codec_stats *codec_stats(const struct codec *c);
void codec_stats_reset(struct codec *c);

/* Whether len bytes at page are all zero: 256 bytes per step in 16-byte
 * vectors (SSE2 on x86-64), stopping at the first non-zero step. Any
 * alignment; reads at memory bandwidth (bench/codec). */
bool codec_page_is_zero(const void *page, size_t len);

#endif
