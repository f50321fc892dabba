/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/codec — the page codec (checkpoint/codec.c) against memcpy.
 *
 * For each kind of page content (zero, random, text-like, lightly changed,
 * random 5-bit bytes that pass LZ4's sample but do not compress) and each
 * mode (the codec's own choice, with and without the delta cache and
 * adaptive LZ4, and each encoding forced), encode a buffer of distinct pages, then decode
 * it, and time each pass. Every pass is preceded by a memcpy of the same page
 * bytes, page by page, in the same buffers: the reference each line is
 * compared with (DESIGN §12). Zero detection (codec_page_is_zero over zero
 * pages, the worst case: every byte is read) is timed the same way, over the
 * whole buffer (memory-bound) and over one page again and again (cache-hot).
 *
 * Every decode is checked to give back the pages that were encoded: the bench
 * fails (exit 1) otherwise. GB/s are 10^9 page bytes per second. Output: one
 * JSON object per line on stdout; progress on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checkpoint/codec.h"
#include "common/mtime.h"
#include "common/util.h"


static const char help[] =
	"usage: codec [--mib N] [--reps N] [--quick]\n"
	"\n"
	"Encode and decode N MiB of pages (default 64) of each kind (zero, random,\n"
	"text-like, lightly changed, random 5-bit) with the page codec, automatically\n"
	"(adaptive LZ4 on and off) and with\n"
	"each encoding forced, next to memcpy of the same bytes in the same run;\n"
	"and zero detection. Each case is repeated (default 7 times) and reported\n"
	"by median, one JSON object per line. --quick: 16 MiB, 5 repetitions.\n";

enum content { C_ZERO, C_RANDOM, C_TEXT, C_LIGHT, C_5BIT };
static const char *content_name[] = { "zero", "random", "text", "light", "random5bit" };

/* A mode: force (-1 auto), whether the delta cache is on, whether RAW pages
 * are passed by reference (codec_encode_ref, as the stream writer does)
 * instead of copied, and whether adaptive LZ4 is off. */
struct mode {
	const char *name;
	int force;
	bool delta;
	bool by_ref;
	bool no_adapt;
};

static const struct mode modes[] = {
	{ "auto", -1, true, false, false },
	{ "auto_nodelta", -1, false, false, false },
	{ "raw", STREAM_ENC_RAW, true, false, false },
	{ "lz4", STREAM_ENC_LZ4, true, false, false },
	{ "delta", STREAM_ENC_DELTA, true, false, false },
	{ "auto_nodelta_ref", -1, false, true, false },
	{ "auto_noadapt", -1, true, false, true },
	{ "auto_nodelta_noadapt", -1, false, false, true },
};

static bool by_ref; /* of the mode being run */

static size_t ps, npages, nbytes;
static unsigned reps = 7;

/* Where one encoded page went. */
struct rec {
	uint32_t enc, len;
	size_t off;
	const void *data; /* out + off, or the page itself for RAW by reference */
};

/* Buffers, allocated and touched once (a first touch costs ~15 µs a page here). */
static uint8_t *src_a, *src_b, *dst, *out;
static struct rec *recs;

#include "tests/pagegen.h"
#include "bench/stats.h"

/* ---- helpers ------------------------------------------------------------- */

static void *big_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		fprintf(stderr, "codec: out of memory (%zu MiB)\n", len >> 20);
		exit(1);
	}
	memset(p, 0, len);
	return p;
}


static double gbps(uint64_t ns)
{
	return ns ? (double)nbytes / (double)ns : 0;
}

/* The memcpy reference: the same page bytes, page by page, into dst. */
static double memcpy_pass(const uint8_t *src)
{
	uint64_t t0 = mono_ns();

	for (size_t i = 0; i < npages; i++)
		memcpy(dst + i * ps, src + i * ps, ps);
	return gbps(mono_ns() - t0);
}

/* ---- passes -------------------------------------------------------------- */

/* Encode every page of src into out; *out_bytes = data bytes in all. */
static double encode_pass(struct codec *c, const uint8_t *src, size_t *out_bytes)
{
	size_t off = 0;
	uint64_t t0 = mono_ns();

	for (size_t i = 0; i < npages; i++) {
		if (by_ref) {
			const void *data;
			recs[i].enc = codec_encode_ref(c, i, src + i * ps, out + off, &recs[i].len,
						       &data);
			recs[i].data = data; /* RAW: the page itself, nothing in out */
		} else {
			recs[i].enc = codec_encode(c, i, src + i * ps, out + off, &recs[i].len);
			recs[i].data = out + off;
		}
		recs[i].off = off;
		off += recs[i].len;
	}
	t0 = mono_ns() - t0;
	*out_bytes = off;
	return gbps(t0);
}

/* Decode out into dst (which holds the receiver's previous versions). */
static double decode_pass(void)
{
	uint64_t t0 = mono_ns();
	int bad = 0;

	for (size_t i = 0; i < npages; i++)
		bad |= codec_decode(recs[i].enc, recs[i].data, recs[i].len, dst + i * ps,
				    (uint32_t)ps);
	t0 = mono_ns() - t0;
	if (bad) {
		fprintf(stderr, "codec: decode failed\n");
		exit(1);
	}
	return gbps(t0);
}

/* Fill src_a (and src_b: the next version, for "light") with the content. */
static void make_content(enum content k)
{
	switch (k) {
	case C_ZERO:
		memset(src_a, 0, nbytes);
		memset(src_b, 0, nbytes);
		break;
	case C_RANDOM:
		fill_random(src_a, nbytes);
		fill_random(src_b, nbytes);
		break;
	case C_TEXT:
		fill_text(src_a, nbytes);
		fill_text(src_b, nbytes);
		break;
	case C_5BIT:
		/* passes the byte sample, but LZ4 saves nothing on it */
		fill_random(src_a, nbytes);
		fill_random(src_b, nbytes);
		for (size_t i = 0; i < nbytes; i++) {
			src_a[i] &= 31;
			src_b[i] &= 31;
		}
		break;
	case C_LIGHT:
		/* random pages; the next version has one byte changed in each of
		 * 2 different words */
		fill_random(src_a, nbytes);
		memcpy(src_b, src_a, nbytes);
		for (size_t i = 0; i < npages; i++) {
			size_t nw = ps / 8, w = rnd() % nw;

			src_b[i * ps + 8 * w] ^= 0x5a;
			src_b[i * ps + 8 * ((w + 1 + rnd() % (nw - 1)) % nw)] ^= 0x5a;
		}
		break;
	}
}

static void print_line(enum content k, const struct mode *m, const char *op, const double *v,
		       const double *ref, const size_t *count, size_t out_bytes)
{
	struct stats s = stats_of(v, reps), r = stats_of(ref, reps);

	printf("{\"bench\":\"codec\",\"content\":\"%s\",\"mode\":\"%s\",\"op\":\"%s\","
	       "\"page_size\":%zu,\"pages\":%zu,"
	       "\"gbps_median\":%.3f,\"gbps_min\":%.3f,\"gbps_max\":%.3f,"
	       "\"memcpy_gbps_median\":%.3f,\"ratio_to_memcpy\":%.3f,"
	       "\"out_ratio\":%.4f,\"zero\":%zu,\"raw\":%zu,\"lz4\":%zu,\"delta\":%zu,"
	       "\"reps\":%u}\n",
	       content_name[k], m->name, op, ps, npages, s.med, s.min, s.max, r.med,
	       r.med > 0 ? s.med / r.med : 0, (double)out_bytes / (double)nbytes,
	       count[STREAM_ENC_ZERO], count[STREAM_ENC_RAW], count[STREAM_ENC_LZ4],
	       count[STREAM_ENC_DELTA], reps);
	fflush(stdout);
}

/*
 * One content and mode: reps x (memcpy, encode, memcpy, decode). Versions A
 * and B alternate, so the delta cache always holds the other one (primed by an
 * untimed first pass); before each decode dst is set, untimed, to the version
 * the receiver had.
 */
static int run_case(enum content k, const struct mode *m)
{
	double enc_v[MAX_REPS], dec_v[MAX_REPS], enc_ref[MAX_REPS], dec_ref[MAX_REPS];
	size_t count[STREAM_ENC_MAX] = { 0 }, out_bytes = 0;
	struct codec_opts o;
	struct codec *c;
	int e;

	codec_opts_default(&o);
	o.force = m->force;
	o.delta = m->delta;
	o.adaptive = !m->no_adapt;
	by_ref = m->by_ref;
	o.delta_cache_pages = npages;
	if ((e = codec_new(&o, (uint32_t)ps, &c))) {
		fprintf(stderr, "codec: codec_new: %s\n", strerror(-e));
		return e;
	}
	encode_pass(c, src_a, &out_bytes); /* primes the cache, faults it in */
	for (unsigned r = 0; r < reps; r++) {
		const uint8_t *now = r % 2 ? src_a : src_b, *before = r % 2 ? src_b : src_a;

		enc_ref[r] = memcpy_pass(now);
		enc_v[r] = encode_pass(c, now, &out_bytes);
		dec_ref[r] = memcpy_pass(before); /* also: the receiver's state */
		dec_v[r] = decode_pass();
		if (r == 0 && memcmp(dst, now, nbytes)) {
			fprintf(stderr, "codec: %s/%s: decoded pages differ\n", content_name[k],
				m->name);
			codec_free(c);
			return -EIO;
		}
	}
	for (size_t i = 0; i < npages; i++)
		count[recs[i].enc]++;
	print_line(k, m, "encode", enc_v, enc_ref, count, out_bytes);
	print_line(k, m, "decode", dec_v, dec_ref, count, out_bytes);
	codec_free(c);
	return 0;
}

/* Zero detection over every page of src_a (zero), and over one page. */
static int run_zero_detect(void)
{
	double cold[MAX_REPS], hot[MAX_REPS], ref[MAX_REPS], href[MAX_REPS];
	struct stats s, h, r, hr;

	memset(src_a, 0, nbytes);
	for (unsigned rep = 0; rep < reps; rep++) {
		size_t n = 0;
		uint64_t t0;

		ref[rep] = memcpy_pass(src_a);
		t0 = mono_ns();
		for (size_t i = 0; i < npages; i++)
			n += codec_page_is_zero(src_a + i * ps, ps);
		cold[rep] = gbps(mono_ns() - t0);
		t0 = mono_ns();
		for (size_t i = 0; i < npages; i++)
			memcpy(dst, src_a, ps);
		href[rep] = gbps(mono_ns() - t0);
		t0 = mono_ns();
		for (size_t i = 0; i < npages; i++) {
			n += codec_page_is_zero(src_a, ps);
			__asm__ volatile("" ::: "memory"); /* one call per page */
		}
		hot[rep] = gbps(mono_ns() - t0);
		if (n != 2 * npages) {
			fprintf(stderr, "codec: a zero page was not seen as zero\n");
			return -EIO;
		}
	}
	s = stats_of(cold, reps);
	h = stats_of(hot, reps);
	r = stats_of(ref, reps);
	hr = stats_of(href, reps);
	printf("{\"bench\":\"codec_zero_detect\",\"where\":\"memory\",\"page_size\":%zu,"
	       "\"pages\":%zu,\"gbps_median\":%.3f,\"gbps_min\":%.3f,\"gbps_max\":%.3f,"
	       "\"memcpy_gbps_median\":%.3f,\"ratio_to_memcpy\":%.3f,\"reps\":%u}\n",
	       ps, npages, s.med, s.min, s.max, r.med, s.med / r.med, reps);
	printf("{\"bench\":\"codec_zero_detect\",\"where\":\"cache\",\"page_size\":%zu,"
	       "\"pages\":%zu,\"gbps_median\":%.3f,\"gbps_min\":%.3f,\"gbps_max\":%.3f,"
	       "\"memcpy_gbps_median\":%.3f,\"ratio_to_memcpy\":%.3f,\"reps\":%u}\n",
	       ps, npages, h.med, h.min, h.max, hr.med, h.med / hr.med, reps);
	fflush(stdout);
	return 0;
}

/* Whether a mode says anything for a content (the rest repeat other lines). */
static bool mode_applies(enum content k, const struct mode *m)
{
	if (m->force == STREAM_ENC_DELTA)
		return k == C_LIGHT;
	if (m->no_adapt) /* next to auto: what adaptive LZ4 gains or costs */
		return k == C_RANDOM || k == C_TEXT || k == C_5BIT;
	if (!strncmp(m->name, "auto_nodelta", 12))
		return k == C_RANDOM || k == C_LIGHT || k == C_5BIT;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, 0, 'm' },
		{ "reps", required_argument, 0, 'r' },
		{ "quick", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	uint64_t mib = 64, v;
	bool quick = false, mib_set = false, reps_set = false;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_u64(optarg, 1, 1 << 16, &mib)) {
				fprintf(stderr, "codec: bad --mib '%s'\n", optarg);
				return 2;
			}
			mib_set = true;
			break;
		case 'r':
			if (parse_u64(optarg, 1, MAX_REPS, &v)) {
				fprintf(stderr, "codec: bad --reps '%s' (1-%d)\n", optarg, MAX_REPS);
				return 2;
			}
			reps = (unsigned)v;
			reps_set = true;
			break;
		case 'q': quick = true; break;
		case 'h': fputs(help, stdout); return 0;
		default: fputs(help, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(help, stderr);
		return 2;
	}
	if (quick && !mib_set)
		mib = 16;
	if (quick && !reps_set)
		reps = 5;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	nbytes = (size_t)mib << 20;
	npages = nbytes / ps;
	src_a = big_alloc(nbytes);
	src_b = big_alloc(nbytes);
	dst = big_alloc(nbytes);
	out = big_alloc(npages * codec_out_max((uint32_t)ps));
	recs = calloc(npages, sizeof *recs);
	if (!recs)
		return 1;

	fprintf(stderr, "codec: %" PRIu64 " MiB of %zu-byte pages, %u repetitions\n", mib, ps,
		reps);
	if (run_zero_detect())
		return 1;
	for (int k = C_ZERO; k <= C_5BIT; k++) {
		make_content((enum content)k);
		for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
			if (!mode_applies((enum content)k, &modes[i]))
				continue;
			fprintf(stderr, "codec: %s, %s\n", content_name[k], modes[i].name);
			if (run_case((enum content)k, &modes[i]))
				return 1;
		}
	}
	return 0;
}
