/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_stream.c — the ferry stream: round trips with every encoding, and a
 * reader that refuses every corrupted or truncated variant of a real stream.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <endian.h>
#include <stdio.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "checkpoint/codec.h"
#include "checkpoint/reader.h"
#include "checkpoint/sink.h"
#include "checkpoint/writer.h"
#include "common/util.h"
#include "tests/unit/memio.h"

#define PS 4096
#define NR 256

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Pages of every kind: zero, random, text-like. */
static void make_page(uint8_t *p, unsigned kind)
{
	switch (kind % 3) {
	case 0:
		memset(p, 0, PS);
		break;
	case 1:
		for (size_t i = 0; i < PS; i += 8) {
			uint64_t v = next();
			memcpy(p + i, &v, 8);
		}
		break;
	default:
		for (size_t i = 0; i < PS; i++)
			p[i] = "the quick brown fox jumps over the lazy dog "[(i + kind) % 44];
	}
}

struct src_guest {
	uint8_t ram[NR * PS];
};

/* Write the frames of g selected by every-k into a stream with codec options o. */
static void write_stream(struct membuf *mb, const struct src_guest *g, const struct codec_opts *o,
			 unsigned passes, void (*mutate)(struct src_guest *, unsigned),
			 struct src_guest *live)
{
	struct stream_writer w;
	struct xsink sink = { membuf_writev, mb };
	struct codec *c;
	uint8_t *scratch = malloc(STREAM_PAGES_MAX * codec_out_max(PS));
	uint64_t frames[NR];
	void *bufs[NR];
	static const char ctx[] = "context-blob";

	(void)g;
	assert_int_equal(codec_new(o, PS, &c), 0);
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_MIGRATION, PS, NR, "mvm", "t",
					     "mem=1M vcpus=1 workload=idle", NULL, 0), 0);
	for (unsigned pass = 0; pass < passes; pass++) {
		if (pass && mutate)
			mutate(live, pass);
		for (unsigned f = 0; f < NR; f++) {
			frames[f] = f;
			bufs[f] = live->ram + f * PS;
		}
		for (unsigned f = 0; f < NR; f += STREAM_PAGES_MAX < NR ? STREAM_PAGES_MAX : NR)
			assert_int_equal(stream_write_pages(&w, c, frames + f, bufs + f,
							    NR - f < STREAM_PAGES_MAX ? NR - f
										      : STREAM_PAGES_MAX,
							    scratch), 0);
	}
	assert_int_equal(stream_write_zero_extent(&w, 10, 3), 0);
	memset(live->ram + 10 * PS, 0, 3 * PS);
	assert_int_equal(stream_write_context(&w, ctx, sizeof ctx), 0);
	assert_int_equal(stream_write_end(&w), 0);
	assert_int_equal(stream_write_end(&w), -EPIPE); /* nothing after END */
	codec_free(c);
	free(scratch);
}

static int read_stream(struct membuf *mb, struct memguest *g, struct stream_read_stats *st,
		       char *err, size_t errlen)
{
	struct xsource src = { membuf_read, mb };
	struct stream_sink sink = memguest_sink(g);

	mb->pos = 0;
	memset(g, 0, sizeof *g);
	g->max_frames = 1 << 20;
	return stream_read(&src, &sink, true, st, err, errlen);
}

static void fill_guest(struct src_guest *g)
{
	for (unsigned f = 0; f < NR; f++)
		make_page(g->ram + f * PS, f);
}

/* Change one word of every third page. */
static void touch(struct src_guest *g, unsigned pass)
{
	for (unsigned f = 0; f < NR; f += 3)
		g->ram[f * PS + (pass * 8) % PS] ^= 0x5a;
}

/* Round trip with each encoding forced, and with the automatic choice: the
 * restored RAM equals the source byte for byte, and the encoding asked for
 * is the one that travelled. */
static void test_roundtrip_each_encoding(void **state)
{
	static struct src_guest g;
	static const int forced[] = { -1, STREAM_ENC_RAW, STREAM_ENC_LZ4, STREAM_ENC_DELTA,
				      STREAM_ENC_ZERO };
	(void)state;
	for (size_t k = 0; k < sizeof forced / sizeof forced[0]; k++) {
		struct codec_opts o;
		struct membuf mb = { 0 };
		struct memguest out;
		struct stream_read_stats st;
		char err[256];
		unsigned passes = forced[k] == STREAM_ENC_DELTA || forced[k] == -1 ? 3 : 1;

		fill_guest(&g);
		codec_opts_default(&o);
		o.force = forced[k];
		write_stream(&mb, &g, &o, passes, touch, &g);
		assert_int_equal(read_stream(&mb, &out, &st, err, sizeof err), 0);
		assert_true(out.ended);
		assert_memory_equal(out.ram, g.ram, NR * PS);
		assert_int_equal(out.ctx_len, 13);
		switch (forced[k]) {
		case STREAM_ENC_RAW:
			assert_int_equal(st.pages[STREAM_ENC_RAW], NR);
			break;
		case STREAM_ENC_LZ4:
			assert_int_equal(st.pages[STREAM_ENC_LZ4], NR);
			break;
		case STREAM_ENC_DELTA: /* first pass has no base: RAW, then deltas */
			assert_int_equal(st.pages[STREAM_ENC_DELTA], 2 * NR);
			break;
		case STREAM_ENC_ZERO: /* the zero pages; the rest falls back to RAW */
			assert_int_equal(st.pages[STREAM_ENC_ZERO], (NR + 2) / 3);
			break;
		default: /* automatic: every kind shows up, and the stream is small */
			assert_true(st.pages[STREAM_ENC_ZERO] > 0 && st.pages[STREAM_ENC_LZ4] > 0 &&
				    st.pages[STREAM_ENC_RAW] > 0 && st.pages[STREAM_ENC_DELTA] > 0);
			assert_true(mb.len < 3 * NR * PS / 3);
		}
		memguest_free(&out);
		free(mb.p);
	}
}

/* Random page sets, random batch splits, automatic encoding. */
static void test_roundtrip_random_sets(void **state)
{
	static struct src_guest g;

	(void)state;
	for (unsigned round = 0; round < 20; round++) {
		struct stream_writer w;
		struct membuf mb = { 0 };
		struct xsink sink = { membuf_writev, &mb };
		struct memguest out;
		struct codec *c;
		struct codec_opts o;
		static uint8_t want[NR * PS];
		uint8_t *scratch = malloc(STREAM_PAGES_MAX * codec_out_max(PS));
		char err[256];

		memset(want, 0, sizeof want);
		codec_opts_default(&o);
		assert_int_equal(codec_new(&o, PS, &c), 0);
		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_MIGRATION, PS, NR, "mvm",
						     "r", NULL, NULL, 0), 0);
		for (unsigned it = 0; it < 4; it++) {
			uint64_t frames[NR];
			void *bufs[NR];
			unsigned n = 0;

			for (unsigned f = 0; f < NR; f++) {
				if (next() % 3)
					continue;
				make_page(g.ram + f * PS, (unsigned)next());
				memcpy(want + f * PS, g.ram + f * PS, PS);
				frames[n] = f;
				bufs[n++] = g.ram + f * PS;
			}
			for (unsigned i = 0; i < n;) {
				unsigned k = 1 + (unsigned)(next() % 40);
				if (k > n - i)
					k = n - i;
				assert_int_equal(stream_write_pages(&w, c, frames + i, bufs + i, k, scratch), 0);
				i += k;
			}
		}
		assert_int_equal(stream_write_end(&w), 0);
		assert_int_equal(read_stream(&mb, &out, NULL, err, sizeof err), 0);
		assert_memory_equal(out.ram, want, NR * PS);
		memguest_free(&out);
		codec_free(c);
		free(scratch);
		free(mb.p);
	}
}

/* A small real stream (header, pages of each kind, an extent, a context,
 * END): every byte corrupted, and every truncation, is refused. */
static void test_every_byte_and_cut(void **state)
{
	static struct src_guest g;
	struct membuf mb = { 0 };
	struct codec_opts o;
	struct memguest out;
	char err[256];
	size_t refused = 0;

	(void)state;
	fill_guest(&g);
	codec_opts_default(&o);
	/* 12 pages only: a stream of a few KiB. */
	{
		struct stream_writer w;
		struct xsink sink = { membuf_writev, &mb };
		struct codec *c;
		uint8_t *scratch = malloc(STREAM_PAGES_MAX * codec_out_max(PS));
		uint64_t frames[4] = { 3, 4, 5, 9 };
		void *bufs[4] = { g.ram + 3 * PS, g.ram + 4 * PS, g.ram + 5 * PS, g.ram + 9 * PS };

		assert_int_equal(codec_new(&o, PS, &c), 0);
		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 16, "mvm",
						     "small", "mem=64K vcpus=1 workload=idle", NULL, 0), 0);
		assert_int_equal(stream_write_pages(&w, c, frames, bufs, 4, scratch), 0);
		assert_int_equal(stream_write_zero_extent(&w, 10, 6), 0);
		assert_int_equal(stream_write_context(&w, "ctx", 3), 0);
		assert_int_equal(stream_write_end(&w), 0);
		codec_free(c);
		free(scratch);
	}
	assert_int_equal(read_stream(&mb, &out, NULL, err, sizeof err), 0);
	memguest_free(&out);

	for (size_t i = 0; i < mb.len; i++) {
		for (unsigned bit = 0; bit < 8; bit += 3) {
			mb.p[i] ^= (uint8_t)(1u << bit);
			int r = read_stream(&mb, &out, NULL, err, sizeof err);
			mb.p[i] ^= (uint8_t)(1u << bit);
			if (r == 0)
				fail_msg("flipping bit %u of byte %zu was not detected", bit, i);
			assert_true(err[0] != '\0');
			memguest_free(&out);
			refused++;
		}
	}
	for (size_t cut = 0; cut < mb.len; cut++) {
		size_t len = mb.len;
		mb.len = cut;
		int r = read_stream(&mb, &out, NULL, err, sizeof err);
		mb.len = len;
		if (r == 0)
			fail_msg("a stream cut at byte %zu of %zu was accepted", cut, len);
		memguest_free(&out);
		refused++;
	}
	/* Data after END. */
	{
		uint8_t extra = 0;
		struct iovec v = { &extra, 1 };
		assert_int_equal(membuf_writev(&mb, &v, 1), 0);
		assert_int_not_equal(read_stream(&mb, &out, NULL, err, sizeof err), 0);
		assert_non_null(strstr(err, "after the END"));
		memguest_free(&out);
	}
	assert_true(refused > 8 * 1000);
	free(mb.p);
}

/* A newer minor version's optional record is skipped; an unknown mandatory
 * one is refused with a clear message. */
static void test_unknown_records(void **state)
{
	for (int optional = 1; optional >= 0; optional--) {
		struct stream_writer w;
		struct membuf mb = { 0 };
		struct xsink sink = { membuf_writev, &mb };
		struct memguest out;
		struct stream_read_stats st;
		char err[256], body[100];
		struct iovec b = { body, optional ? sizeof body : 0 };
		int r;

		(void)state;
		memset(body, 0x11, sizeof body);
		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "mvm", "u",
						     NULL, NULL, 0), 0);
		assert_int_equal(stream_write_record(&w, 77, optional ? STREAM_REC_OPTIONAL : 0, &b, 1), 0);
		assert_int_equal(stream_write_end(&w), 0);
		/* Make it a stream of a newer minor version, 1.7: patch the
		 * HEADER and give it its checksum back. */
		{
			size_t h = STREAM_MAGIC_LEN, hb = 120, tr = h + 16 + hb;
			uint64_t sum;
			XXH3_state_t xs;

			mb.p[h + 16 + 2] = 7;
			XXH3_64bits_reset(&xs);
			XXH3_64bits_update(&xs, mb.p + h, 16 + hb + 8);
			sum = htole64(XXH3_64bits_digest(&xs));
			memcpy(mb.p + tr + 8, &sum, 8);
		}
		r = read_stream(&mb, &out, &st, err, sizeof err);
		assert_int_equal(out.info.minor, 7);
		if (optional) {
			assert_int_equal(r, 0);
			assert_int_equal(st.skipped, 1);
		} else {
			assert_int_equal(r, -EOPNOTSUPP);
			assert_non_null(strstr(err, "unknown mandatory record type 77"));
		}
		memguest_free(&out);
		free(mb.p);
	}
}

/* Header checks: another major version, a second HEADER, a missing HEADER. */
static void test_header_rules(void **state)
{
	struct membuf mb = { 0 };
	struct xsink sink = { membuf_writev, &mb };
	struct stream_writer w;
	struct memguest out;
	char err[256];

	(void)state;
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "mvm", "h", NULL, NULL, 0), 0);
	assert_int_equal(stream_write_end(&w), 0);
	/* major version 2: bytes 8+16 = major (after magic and record header) */
	mb.p[STREAM_MAGIC_LEN + 16] = 2;
	assert_int_not_equal(read_stream(&mb, &out, NULL, err, sizeof err), 0);
	memguest_free(&out);
	free(mb.p);
	/* no magic */
	mb = (struct membuf){ 0 };
	assert_int_equal(membuf_writev(&mb, &(struct iovec){ "NOTFERRY", 8 }, 1), 0);
	assert_int_equal(read_stream(&mb, &out, NULL, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "not a ferry stream"));
	free(mb.p);
}

/* DOMAIN_CONFIG: announced by HEADER, handed over with it; a stream that
 * announces one and lacks it, or has one unannounced, is refused. */
static void test_domain_config(void **state)
{
	static const char dc[] = "{\"c_info\":{\"name\":\"web1\"}}";
	struct membuf mb = { 0 };
	struct xsink sink = { membuf_writev, &mb };
	struct stream_writer w;
	struct memguest out;
	char err[256];
	uint8_t big[STREAM_DOMAIN_CONFIG_MAX + 1] = { 0 };

	(void)state;
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "xen", "d", "mem=16384",
					     dc, sizeof dc), 0);
	assert_int_equal(stream_write_end(&w), 0);
	assert_int_equal(read_stream(&mb, &out, NULL, err, sizeof err), 0);
	assert_int_equal(out.info.domain_config_len, sizeof dc);
	assert_memory_equal(out.info.domain_config, dc, sizeof dc);
	assert_string_equal(out.info.config, "mem=16384");
	memguest_free(&out);

	/* HEADER announces it; the next record is END instead. */
	free(mb.p);
	mb = (struct membuf){ 0 };
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "xen", "d", NULL,
					     NULL, 0), 0);
	{
		/* announce 8 bytes: patch HEADER's domain_config_len and its checksum */
		struct stream_rec_hdr *h = (void *)(mb.p + STREAM_MAGIC_LEN);
		struct stream_header *hb = (void *)(h + 1);
		size_t body = le64toh(h->length), tot = body + (-body & 7);
		struct stream_rec_trl *t = (void *)((char *)hb + tot);
		XXH3_state_t st;

		hb->domain_config_len = htole32(8);
		XXH3_64bits_reset(&st);
		XXH3_64bits_update(&st, h, sizeof *h + tot);
		XXH3_64bits_update(&st, &t->seq, sizeof t->seq);
		t->checksum = htole64(XXH3_64bits_digest(&st));
	}
	assert_int_equal(stream_write_end(&w), 0);
	assert_int_equal(read_stream(&mb, &out, NULL, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "announced a DOMAIN_CONFIG"));
	memguest_free(&out);

	/* Too big for the writer. */
	free(mb.p);
	mb = (struct membuf){ 0 };
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "xen", "d", NULL,
					     big, sizeof big), -EINVAL);
	free(mb.p);
}

/* POSTCOPY: what a post-copy's switch says is missing. */
struct pc_got {
	struct bitmap b;
	unsigned records;
};

static int got_postcopy(void *ctx, uint64_t first, uint64_t count, const void *bits)
{
	struct pc_got *g = ctx;
	const uint8_t *p = bits;

	for (uint64_t j = 0; j < (count + 63) / 64; j++) {
		uint64_t v;

		memcpy(&v, p + j * 8, 8);
		g->b.w[first / 64 + j] |= le64toh(v);
	}
	g->records++;
	return 0;
}

/* Read mb with only a POSTCOPY callback (NULL: none): 0 or the error. */
static int read_postcopy(struct membuf *mb, struct pc_got *g, char *err, size_t errlen)
{
	struct xsource src = { membuf_read, mb };
	struct stream_sink sink = { .ctx = g, .postcopy = g ? got_postcopy : NULL };

	mb->pos = 0;
	return stream_read(&src, &sink, true, NULL, err, errlen);
}

/* One raw POSTCOPY record (first, count, and words of bits) then END. */
static void write_raw_postcopy(struct membuf *mb, uint64_t nr, uint64_t first, uint64_t count,
			       const uint64_t *words, size_t nwords)
{
	struct xsink sink = { membuf_writev, mb };
	struct stream_postcopy p = { htole64(first), htole64(count) };
	struct iovec v[2] = { { &p, sizeof p }, { (void *)words, nwords * 8 } };
	struct stream_writer w;

	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_MIGRATION, PS, nr, "mvm", "p",
					     NULL, NULL, 0), 0);
	assert_int_equal(stream_write_record(&w, STREAM_REC_POSTCOPY, 0, v, 2), 0);
	assert_int_equal(stream_write_end(&w), 0);
}

/* The missing set round trips over several records (a range with nothing
 * set is left out); a misaligned, oversized or overflowing record, and one
 * that a reader cannot take, are refused. */
static void test_postcopy_record(void **state)
{
	const uint64_t nr = 2 * STREAM_POSTCOPY_FRAMES_MAX + 100;
	const uint64_t set[] = { 0, 63, 64, 1000, STREAM_POSTCOPY_FRAMES_MAX - 1,
				 2 * STREAM_POSTCOPY_FRAMES_MAX + 99 };
	struct membuf mb = { 0 };
	struct xsink sink = { membuf_writev, &mb };
	struct stream_writer w;
	struct bitmap want;
	struct pc_got got = { 0 };
	uint64_t words[2] = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(bitmap_init(&want, nr), 0);
	assert_int_equal(bitmap_init(&got.b, nr), 0);
	for (size_t i = 0; i < ARRAY_SIZE(set); i++)
		bitmap_set(&want, set[i]);
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_MIGRATION, PS, nr, "mvm", "p",
					     NULL, NULL, 0), 0);
	assert_int_equal(stream_write_postcopy(&w, &want), 0);
	assert_int_equal(stream_write_end(&w), 0);
	assert_int_equal(read_postcopy(&mb, &got, err, sizeof err), 0);
	assert_true(bitmap_equal(&want, &got.b));
	assert_int_equal(got.records, 2); /* the second 2^21 frames have none */
	/* A reader that cannot switch to post-copy says so. */
	assert_int_equal(read_postcopy(&mb, NULL, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "post-copy"));
	free(mb.p);

	/* first not a multiple of 64 */
	mb = (struct membuf){ 0 };
	words[0] = 1;
	write_raw_postcopy(&mb, 1000, 1, 64, words, 1);
	assert_int_equal(read_postcopy(&mb, &got, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "frames 1+64"));
	free(mb.p);
	/* past the domain's end */
	mb = (struct membuf){ 0 };
	write_raw_postcopy(&mb, 1000, 960, 64, words, 1);
	assert_int_equal(read_postcopy(&mb, &got, err, sizeof err), -EBADMSG);
	free(mb.p);
	/* a bit past count */
	mb = (struct membuf){ 0 };
	words[0] = 1ull << 10;
	write_raw_postcopy(&mb, 1000, 0, 10, words, 1);
	assert_int_equal(read_postcopy(&mb, &got, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "past the frames"));
	free(mb.p);
	/* bits that do not match count */
	mb = (struct membuf){ 0 };
	write_raw_postcopy(&mb, 1000, 0, 65, words, 1);
	assert_int_equal(read_postcopy(&mb, &got, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "bytes of bits"));
	free(mb.p);
	bitmap_free(&want);
	bitmap_free(&got.b);
}

/* A write error is sticky and reported. */
static void test_writer_errors(void **state)
{
	struct membuf mb = { .fail_after = 200 };
	struct xsink sink = { membuf_writev, &mb };
	struct stream_writer w;
	uint8_t page[PS] = { 1 };
	uint64_t f = 0, big = 99;
	void *b = page;

	(void)state;
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "mvm", "e", NULL, NULL, 0), 0);
	assert_int_equal(stream_write_pages(&w, NULL, &f, &b, 1, NULL), -ENOSPC);
	assert_int_equal(stream_write_end(&w), -ENOSPC);
	free(mb.p);
	mb = (struct membuf){ 0 };
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, PS, 4, "mvm", "e", NULL, NULL, 0), 0);
	assert_int_equal(stream_write_pages(&w, NULL, &big, &b, 1, NULL), -ERANGE);
	free(mb.p);
}

/* Write all NR frames of g as PAGES records. */
static void send_all(struct stream_writer *w, struct codec *c, struct src_guest *g, uint8_t *scratch)
{
	uint64_t frames[NR];
	void *bufs[NR];

	for (unsigned f = 0; f < NR; f++) {
		frames[f] = f;
		bufs[f] = g->ram + f * PS;
	}
	for (unsigned f = 0; f < NR; f += 128)
		assert_int_equal(stream_write_pages(w, c, frames + f, bufs + f, 128, scratch), 0);
}

/* Replication epochs: each is applied only once its COMMIT has arrived; an
 * epoch cut short leaves the last committed state, whole. */
static void test_stage_epochs(void **state)
{
	static struct src_guest g, v1, v2;
	struct codec_opts o;
	uint8_t *scratch = malloc(STREAM_PAGES_MAX * codec_out_max(PS));

	(void)state;
	codec_opts_default(&o);
	for (int complete = 0; complete <= 1; complete++) {
		struct membuf mb = { 0 };
		struct xsink sink = { membuf_writev, &mb };
		struct stream_writer w;
		struct codec *c;
		struct memguest out;
		struct stage_sink st;
		struct stream_sink inner, outer;
		struct xsource src = { membuf_read, &mb };
		char err[256];
		int r;

		fill_guest(&g);
		assert_int_equal(codec_new(&o, PS, &c), 0);
		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_REPLICATION, PS, NR, "mvm",
						     "rep", NULL, NULL, 0), 0);
		send_all(&w, c, &g, scratch);
		/* Epoch 1: a light change everywhere (deltas), a zero extent, a context. */
		touch(&g, 1);
		assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_BEGIN, 1, 0), 0);
		send_all(&w, c, &g, scratch);
		assert_int_equal(stream_write_zero_extent(&w, 20, 4), 0);
		memset(g.ram + 20 * PS, 0, 4 * PS);
		for (unsigned f = 20; f < 24; f++)
			codec_forget(c, f);
		assert_int_equal(stream_write_context(&w, "c1", 2), 0);
		assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_COMMIT, 1, 0), 0);
		v1 = g;
		/* Epoch 2: another change; committed and ended only if complete. */
		touch(&g, 2);
		assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_BEGIN, 2, 0), 0);
		send_all(&w, c, &g, scratch);
		assert_int_equal(stream_write_context(&w, "c2", 2), 0);
		if (complete) {
			assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_COMMIT, 2, 0), 0);
			assert_int_equal(stream_write_end(&w), 0);
		}
		v2 = g;
		codec_free(c);

		memset(&out, 0, sizeof out);
		out.max_frames = NR;
		inner = memguest_sink(&out);
		outer = stage_sink(&st, inner);
		r = stream_read(&src, &outer, true, NULL, err, sizeof err);
		if (complete) {
			assert_int_equal(r, 0);
			assert_memory_equal(out.ram, v2.ram, NR * PS);
			assert_memory_equal(out.ctx, "c2", 2);
			assert_int_equal(st.committed, 2);
		} else {
			assert_int_equal(r, -EBADMSG); /* cut before epoch 2's COMMIT */
			assert_memory_equal(out.ram, v1.ram, NR * PS);
			assert_memory_equal(out.ctx, "c1", 2);
			assert_int_equal(st.committed, 1);
		}
		stage_sink_free(&st);
		memguest_free(&out);
		free(mb.p);
	}
	free(scratch);
}

/* A COMMIT whose count or digest of the epoch's records differs from what
 * arrived is refused by the reader (a writer that lost or changed a record
 * is simulated by altering its tally). */
static void test_ckpt_counts(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 3; k++) {
		struct membuf mb = { 0 };
		struct xsink sink = { membuf_writev, &mb };
		struct xsource src = { membuf_read, &mb };
		struct stream_writer w;
		struct memguest out = { .max_frames = 16 };
		struct stage_sink st;
		struct stream_sink outer;
		char err[256];

		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_REPLICATION, PS, 16, "mvm",
						     "rep", NULL, NULL, 0), 0);
		assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_BEGIN, 1, 7), 0);
		assert_int_equal(stream_write_zero_extent(&w, 0, 4), 0);
		assert_int_equal(stream_write_context(&w, "c1", 2), 0);
		if (k == 1)
			w.ckpt_records--;
		if (k == 2)
			w.ckpt_digest ^= 1;
		assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_COMMIT, 1, 7), 0);
		assert_int_equal(stream_write_end(&w), 0);
		outer = stage_sink(&st, memguest_sink(&out));
		assert_int_equal(stream_read(&src, &outer, true, NULL, err, sizeof err),
				 k ? -EBADMSG : 0);
		if (k)
			assert_non_null(strstr(err, "count or digest"));
		assert_int_equal(st.committed, k ? 0 : 1);
		stage_sink_free(&st);
		memguest_free(&out);
		free(mb.p);
	}
}

/* Epoch numbers must go up by one; END inside an epoch is refused. */
static void test_stage_epoch_rules(void **state)
{
	static const uint64_t seqs[][3] = { { 1, 1, 3 }, { 5, 5, 6 } };

	(void)state;
	for (unsigned k = 0; k < 3; k++) {
		struct membuf mb = { 0 };
		struct xsink sink = { membuf_writev, &mb };
		struct xsource src = { membuf_read, &mb };
		struct stream_writer w;
		struct memguest out = { .max_frames = 16 };
		struct stage_sink st;
		struct stream_sink outer;
		char err[256];

		assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_REPLICATION, PS, 16, "mvm",
						     "rep", NULL, NULL, 0), 0);
		if (k < 2) {
			assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_BEGIN, seqs[k][0], 0), 0);
			assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_COMMIT, seqs[k][1], 0), 0);
			assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_BEGIN, seqs[k][2], 0), 0);
			if (k == 1) /* a good sequence, but END inside the epoch */
				assert_int_equal(stream_write_end(&w), 0);
		} else {
			/* COMMIT without BEGIN */
			assert_int_equal(stream_write_ckpt(&w, STREAM_REC_CKPT_COMMIT, 1, 0), 0);
		}
		outer = stage_sink(&st, memguest_sink(&out));
		/* The reader itself refuses a COMMIT without its BEGIN. */
		assert_int_equal(stream_read(&src, &outer, true, NULL, err, sizeof err),
				 k == 2 ? -EBADMSG : -EPROTO);
		stage_sink_free(&st);
		memguest_free(&out);
		free(mb.p);
	}
}

/* The file sink: a stream read and written again as a new stream (here
 * re-encoded with LZ4 where it pays) reads back to the same guest. */
static void test_file_sink(void **state)
{
	static struct src_guest g;
	struct membuf a = { 0 }, b = { 0 };
	struct codec_opts o;
	struct codec *c;
	struct stream_writer w;
	struct file_sink fs;
	struct memguest out;
	struct stream_read_stats st;
	struct xsource src = { membuf_read, &a };
	struct stream_sink sink;
	uint8_t *scratch = malloc(STREAM_PAGES_MAX * codec_out_max(PS));
	char err[256];

	(void)state;
	fill_guest(&g);
	codec_opts_default(&o);
	o.force = STREAM_ENC_RAW;
	write_stream(&a, &g, &o, 1, NULL, &g);
	codec_opts_default(&o);
	o.delta = false;
	assert_int_equal(codec_new(&o, PS, &c), 0);
	fs = (struct file_sink){ .w = &w, .out = { membuf_writev, &b },
				 .kind = STREAM_KIND_SNAPSHOT, .codec = c, .scratch = scratch };
	sink = file_sink(&fs);
	assert_int_equal(stream_read(&src, &sink, true, NULL, err, sizeof err), 0);
	assert_true(b.len < a.len); /* text and zero pages shrank */
	assert_int_equal(read_stream(&b, &out, &st, err, sizeof err), 0);
	assert_memory_equal(out.ram, g.ram, NR * PS);
	assert_int_equal(out.info.kind, STREAM_KIND_SNAPSHOT);
	assert_true(st.pages[STREAM_ENC_LZ4] > 0);
	memguest_free(&out);
	codec_free(c);
	free(scratch);
	free(a.p);
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_each_encoding),
		cmocka_unit_test(test_roundtrip_random_sets),
		cmocka_unit_test(test_every_byte_and_cut),
		cmocka_unit_test(test_unknown_records),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_writer_errors),
		cmocka_unit_test(test_stage_epochs),
		cmocka_unit_test(test_stage_epoch_rules),
		cmocka_unit_test(test_ckpt_counts),
		cmocka_unit_test(test_file_sink),
		cmocka_unit_test(test_domain_config),
		cmocka_unit_test(test_postcopy_record),
	};
	return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
