/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_workload.c — mvm/workload (spec parsing, frame picking, page content,
 * the verifier) and mvm/config (the config record).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "mvm/config.h"
#include "mvm/workload.h"

#define PS 4096
#define RAM_FRAMES 262144ULL /* 1 GiB */
#define ERRLEN 256

/* ---- wl_parse ---- */

static void parse_ok(const char *spec, uint64_t nr_frames, struct wl_config *c)
{
	char err[ERRLEN] = "";

	memset(c, 0x5a, sizeof *c);
	if (wl_parse(spec, nr_frames, PS, c, err, sizeof err) != 0)
		fail_msg("wl_parse('%s') failed: %s", spec, err);
}

static void parse_bad(const char *spec, const char *needle)
{
	struct wl_config c;
	char err[ERRLEN] = "";
	int r = wl_parse(spec, RAM_FRAMES, PS, &c, err, sizeof err);

	if (r != -EINVAL)
		fail_msg("wl_parse('%s') returned %d, expected -EINVAL", spec, r);
	assert_true(strlen(err) > 0);
	if (needle && !strstr(err, needle))
		fail_msg("wl_parse('%s'): error '%s' does not mention '%s'", spec, err, needle);
}

static void test_wl_parse_idle(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("idle", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_IDLE);
	assert_int_equal(c.seed, 1);
	assert_int_equal(c.ws_pages, RAM_FRAMES);
	assert_int_equal(c.rate_pages, 0);
	assert_int_equal(c.steps, 0);
}

static void test_wl_parse_fill(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("fill", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_FILL);
	assert_int_equal(c.seed, 1);
	assert_int_equal(c.ws_pages, RAM_FRAMES); /* default: all of RAM */
	assert_int_equal(c.rate_pages, 0);	  /* fill: unlimited */
	assert_int_equal(c.steps, 0);

	parse_ok("fill:ws=1M", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_FILL);
	assert_int_equal(c.ws_pages, 256);
	assert_int_equal(c.rate_pages, 0);

	parse_ok("fill:ws=8192,seed=99,rate=5", RAM_FRAMES, &c);
	assert_int_equal(c.ws_pages, 2);
	assert_int_equal(c.seed, 99);
	assert_int_equal(c.rate_pages, 5 * 256);

	/* ws = all of RAM exactly, and with a unit suffix variant. */
	parse_ok("fill:ws=1G", RAM_FRAMES, &c);
	assert_int_equal(c.ws_pages, RAM_FRAMES);
	parse_ok("fill:ws=4KiB", RAM_FRAMES, &c);
	assert_int_equal(c.ws_pages, 1);
}

static void test_wl_parse_dirtier(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("dirtier:ws=256M,rate=64,pattern=hotcold,seed=7,steps=100", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_DIRTIER);
	assert_int_equal(c.ws_pages, 65536);
	assert_int_equal(c.rate_pages, 64 * 256);
	assert_int_equal(c.pattern, WL_HOTCOLD);
	assert_int_equal(c.seed, 7);
	assert_int_equal(c.steps, 100);

	/* Defaults: all of RAM, 16 MiB/s, uniform, seed 1, no step limit. */
	parse_ok("dirtier", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_DIRTIER);
	assert_int_equal(c.ws_pages, RAM_FRAMES);
	assert_int_equal(c.rate_pages, 16 * 256);
	assert_int_equal(c.pattern, WL_UNIFORM);
	assert_int_equal(c.seed, 1);
	assert_int_equal(c.steps, 0);

	parse_ok("dirtier:pattern=uniform,seed=0,rate=1", RAM_FRAMES, &c);
	assert_int_equal(c.pattern, WL_UNIFORM);
	assert_int_equal(c.seed, 0);
	assert_int_equal(c.rate_pages, 256);

	parse_ok("dirtier:seed=18446744073709551615", RAM_FRAMES, &c);
	assert_int_equal(c.seed, UINT64_MAX);
}

static void test_wl_parse_rate_max(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("dirtier:rate=max", RAM_FRAMES, &c);
	assert_int_equal(c.kind, WL_DIRTIER);
	assert_int_equal(c.rate_pages, 0);
	parse_ok("dirtier:ws=1M,rate=max,pattern=hotcold", RAM_FRAMES, &c);
	assert_int_equal(c.rate_pages, 0);
	assert_int_equal(c.ws_pages, 256);
	parse_ok("dirtier:rate=0", RAM_FRAMES, &c);
	assert_int_equal(c.rate_pages, 0);
	parse_ok("fill:rate=max", RAM_FRAMES, &c);
	assert_int_equal(c.rate_pages, 0);
}

static void test_wl_parse_rejects(void **state)
{
	char longspec[400];

	(void)state;
	parse_bad("", "unknown workload");
	parse_bad("bogus", "unknown workload");
	parse_bad("Fill", "unknown workload");
	parse_bad("dirtier2:ws=1M", "unknown workload");
	parse_bad("fill:color=red", "unknown workload option");
	parse_bad("dirtier:ws=1M,speed=3", "unknown workload option");
	parse_bad("fill:pattern=hotcold", NULL); /* pattern is the dirtier's */
	parse_bad("fill:prefill=1", NULL);        /* so is prefill */
	parse_bad("dirtier:prefill=2", "bad value");
	parse_bad("dirtier:prefill=yes", "bad value");
	/* ws larger than RAM, not a page multiple, zero, malformed. */
	parse_bad("fill:ws=2G", "out of range");
	parse_bad("dirtier:ws=1025M", "out of range");
	parse_bad("fill:ws=4097", NULL);
	parse_bad("fill:ws=1000", NULL);
	parse_bad("fill:ws=6K", NULL);
	parse_bad("fill:ws=0", NULL);
	parse_bad("fill:ws=1X", "bad value");
	parse_bad("fill:ws=", "bad value");
	parse_bad("fill:ws=-4096", "bad value");
	/* Bad pattern. */
	parse_bad("dirtier:pattern=zigzag", "bad value");
	parse_bad("dirtier:pattern=", "bad value");
	parse_bad("dirtier:pattern=HOTCOLD", "bad value");
	/* Option without '='. */
	parse_bad("fill:ws", "needs a value");
	parse_bad("dirtier:rate=64,seed", "needs a value");
	/* idle takes no options. */
	parse_bad("idle:ws=1M", "idle takes no options");
	parse_bad("idle:seed=3", "idle takes no options");
	/* Bad numbers. */
	parse_bad("fill:seed=abc", "bad value");
	parse_bad("fill:seed=18446744073709551616", "bad value");
	parse_bad("dirtier:rate=-1", "bad value");
	parse_bad("dirtier:rate=1048577", "bad value");
	parse_bad("dirtier:rate=fast", "bad value");
	parse_bad("dirtier:steps=1e3", "bad value");
	/* Too long for the parser. */
	memset(longspec, 0, sizeof longspec);
	strcpy(longspec, "fill:seed=1");
	for (size_t i = strlen(longspec); i < sizeof longspec - 1; i++)
		longspec[i] = '0';
	parse_bad(longspec, "too long");
}

/* The spec's canonical text parses back to an identical config. */
static void check_format_roundtrip(const char *spec, uint64_t nr_frames)
{
	struct wl_config a, b;
	char text[256], err[ERRLEN] = "";

	parse_ok(spec, nr_frames, &a);
	memset(text, 'x', sizeof text);
	wl_format(&a, PS, text, sizeof text);
	assert_non_null(memchr(text, '\0', sizeof text));
	memset(&b, 0x33, sizeof b);
	if (wl_parse(text, nr_frames, PS, &b, err, sizeof err) != 0)
		fail_msg("'%s' formats as '%s', which does not parse: %s", spec, text, err);
	if (memcmp(&a, &b, sizeof a) != 0)
		fail_msg("'%s' formats as '%s', which parses to a different config "
			 "(kind %d/%d pattern %d/%d seed %llu/%llu ws %llu/%llu rate %llu/%llu "
			 "steps %llu/%llu)",
			 spec, text, a.kind, b.kind, a.pattern, b.pattern,
			 (unsigned long long)a.seed, (unsigned long long)b.seed,
			 (unsigned long long)a.ws_pages, (unsigned long long)b.ws_pages,
			 (unsigned long long)a.rate_pages, (unsigned long long)b.rate_pages,
			 (unsigned long long)a.steps, (unsigned long long)b.steps);
}

static void test_wl_format_roundtrip(void **state)
{
	static const char *const specs[] = {
		"idle",
		"fill",
		"fill:ws=1M",
		"fill:ws=4K,seed=0",
		"fill:ws=8192,seed=99,rate=5",
		"fill:steps=10,rate=1048576",
		"dirtier",
		"dirtier:ws=256M,rate=64,pattern=hotcold,seed=7,steps=100",
		"dirtier:ws=1G,rate=1,pattern=uniform,seed=18446744073709551615",
		"dirtier:steps=18446744073709551615,rate=1048576",
		"dirtier:ws=512M,rate=64,prefill=1",
		"dirtier:ws=1M,prefill=0",
	};
	struct wl_config c;
	char text[256];

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(specs); k++)
		check_format_roundtrip(specs[k], RAM_FRAMES);
	check_format_roundtrip("fill", 1);
	check_format_roundtrip("dirtier:pattern=hotcold", 16ULL << 20); /* 64 GiB */

	parse_ok("idle", RAM_FRAMES, &c);
	wl_format(&c, PS, text, sizeof text);
	assert_string_equal(text, "idle");
}

/* rate=max (0: as fast as the vCPUs can) must survive format -> parse: the
 * dirtier's default rate is not 0, so leaving rate out changes the config. */
static void test_wl_format_roundtrip_rate_max(void **state)
{
	(void)state;
	check_format_roundtrip("fill:rate=max", RAM_FRAMES);
	check_format_roundtrip("dirtier:rate=max", RAM_FRAMES);
	check_format_roundtrip("dirtier:ws=1M,rate=0,pattern=hotcold,seed=3", RAM_FRAMES);
}

static void test_wl_format_short_buffer(void **state)
{
	struct wl_config c;
	char text[16];

	(void)state;
	parse_ok("dirtier:ws=256M,rate=64,pattern=hotcold,seed=7,steps=100", RAM_FRAMES, &c);
	memset(text, 'x', sizeof text);
	wl_format(&c, PS, text, 10);
	assert_int_equal(strlen(text), 9);
	assert_int_equal(text[10], 'x');
}

/* ---- mvm_config ---- */

static void config_ok(const char *s, struct mvm_config *c)
{
	char err[ERRLEN] = "";

	memset(c, 0x5a, sizeof *c);
	if (mvm_config_parse(s, c, err, sizeof err) != 0)
		fail_msg("mvm_config_parse('%s') failed: %s", s, err);
}

static void config_bad(const char *s, const char *needle)
{
	struct mvm_config c;
	char err[ERRLEN] = "";
	int r = mvm_config_parse(s, &c, err, sizeof err);

	if (r != -EINVAL)
		fail_msg("mvm_config_parse('%s') returned %d, expected -EINVAL", s, r);
	assert_true(strlen(err) > 0);
	if (needle && !strstr(err, needle))
		fail_msg("mvm_config_parse('%s'): error '%s' does not mention '%s'", s, err, needle);
}

static void check_config_roundtrip(const char *s)
{
	struct mvm_config a, b;
	char text[MVM_CONFIG_MAX], err[ERRLEN] = "";

	config_ok(s, &a);
	mvm_config_format(&a, text, sizeof text);
	memset(&b, 0x33, sizeof b);
	if (mvm_config_parse(text, &b, err, sizeof err) != 0)
		fail_msg("'%s' formats as '%s', which does not parse: %s", s, text, err);
	if (a.mem != b.mem || a.nr_vcpus != b.nr_vcpus || memcmp(&a.wl, &b.wl, sizeof a.wl) != 0)
		fail_msg("'%s' formats as '%s', which parses to a different config", s, text);
	/* And the canonical text is a fixed point. */
	{
		char text2[MVM_CONFIG_MAX];
		mvm_config_format(&b, text2, sizeof text2);
		assert_string_equal(text, text2);
	}
}

static void test_config_parse(void **state)
{
	struct mvm_config c;

	(void)state;
	config_ok("mem=1G vcpus=4 workload=dirtier:ws=256M,rate=64,pattern=hotcold,seed=7,steps=100",
		  &c);
	assert_int_equal(c.mem, 1ULL << 30);
	assert_int_equal(c.nr_vcpus, 4);
	assert_string_equal(c.workload, "dirtier:ws=256M,rate=64,pattern=hotcold,seed=7,steps=100");
	assert_int_equal(c.wl.kind, WL_DIRTIER);
	assert_int_equal(c.wl.ws_pages, 65536);
	assert_int_equal(c.wl.rate_pages, 64 * 256);
	assert_int_equal(c.wl.pattern, WL_HOTCOLD);
	assert_int_equal(c.wl.seed, 7);
	assert_int_equal(c.wl.steps, 100);

	/* Any order; extra spaces; ws defaults to this guest's RAM. */
	config_ok("workload=fill  vcpus=1 mem=64M", &c);
	assert_int_equal(c.mem, 64ULL << 20);
	assert_int_equal(c.nr_vcpus, 1);
	assert_int_equal(c.wl.kind, WL_FILL);
	assert_int_equal(c.wl.ws_pages, 16384);

	config_ok("mem=4096 vcpus=64 workload=idle", &c);
	assert_int_equal(c.mem, 4096);
	assert_int_equal(c.nr_vcpus, 64);
	assert_int_equal(c.wl.kind, WL_IDLE);
	assert_int_equal(c.wl.ws_pages, 1);

	config_ok("mem=64G vcpus=2 workload=dirtier", &c);
	assert_int_equal(c.mem, MVM_MEM_MAX);
}

static void test_config_roundtrip(void **state)
{
	(void)state;
	check_config_roundtrip("mem=1G vcpus=4 workload=dirtier:ws=256M,rate=64,pattern=hotcold,"
			       "seed=7,steps=100");
	check_config_roundtrip("mem=64M vcpus=1 workload=fill");
	check_config_roundtrip("mem=4096 vcpus=64 workload=idle");
	check_config_roundtrip("mem=64G vcpus=3 workload=dirtier");
	check_config_roundtrip("workload=fill:ws=1M,seed=5,rate=2 mem=2M vcpus=7");
}

static void test_config_roundtrip_rate_max(void **state)
{
	(void)state;
	check_config_roundtrip("mem=1G vcpus=2 workload=dirtier:rate=max");
}

static void test_config_rejects(void **state)
{
	char longrec[MVM_CONFIG_MAX + 8];

	(void)state;
	config_bad("", "needs");
	config_bad("vcpus=1 workload=idle", "needs");
	config_bad("mem=1G workload=idle", "needs");
	config_bad("mem=1G vcpus=1", "needs");
	config_bad("mem=1G vcpus=0 workload=idle", NULL);
	config_bad("mem=1G vcpus=65 workload=idle", NULL);
	config_bad("mem=1G vcpus=-1 workload=idle", NULL);
	config_bad("mem=4097 vcpus=1 workload=idle", "multiple");
	config_bad("mem=1000 vcpus=1 workload=idle", "multiple");
	config_bad("mem=0 vcpus=1 workload=idle", "multiple");
	config_bad("mem=65G vcpus=1 workload=idle", NULL);
	config_bad("mem=1G vcpus=1 workload=idle color=red", "color");
	config_bad("mem=1G vcpus=1 workload=idle junk", "junk");
	config_bad("mem=1G vcpus=1 workload=bogus", "unknown workload");
	config_bad("mem=1M vcpus=1 workload=fill:ws=2M", "out of range");
	config_bad("mem=1M vcpus=1 workload=", "unknown workload");
	memset(longrec, 0, sizeof longrec);
	strcpy(longrec, "mem=1G vcpus=1 workload=fill:seed=");
	for (size_t i = strlen(longrec); i < sizeof longrec - 1; i++)
		longrec[i] = '1';
	config_bad(longrec, "too long");
}

/* ---- frame picking ---- */

static void test_wl_slice(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("dirtier:ws=1000K", RAM_FRAMES, &c); /* 250 pages */
	for (unsigned n = 1; n <= 64; n++) {
		uint64_t prev_hi = 0, lo, hi;
		for (unsigned i = 0; i < n; i++) {
			wl_slice(&c, n, i, &lo, &hi);
			assert_int_equal(lo, prev_hi); /* contiguous, disjoint */
			assert_true(hi >= lo);
			/* balanced within one page */
			assert_true(hi - lo == 250 / n || hi - lo == 250 / n + 1);
			prev_hi = hi;
		}
		assert_int_equal(prev_hi, 250);
	}
}

static void test_wl_vcpu_seed(void **state)
{
	struct wl_config a, b;

	(void)state;
	parse_ok("dirtier:seed=7", RAM_FRAMES, &a);
	parse_ok("dirtier:seed=8", RAM_FRAMES, &b);
	for (unsigned i = 0; i < MVM_VCPUS_MAX; i++) {
		assert_int_equal(wl_vcpu_seed(&a, i), wl_vcpu_seed(&a, i));
		assert_int_not_equal(wl_vcpu_seed(&a, i), wl_vcpu_seed(&b, i));
		for (unsigned j = 0; j < i; j++)
			assert_int_not_equal(wl_vcpu_seed(&a, i), wl_vcpu_seed(&a, j));
	}
}

static void test_wl_pick_in_slice_deterministic(void **state)
{
	static const char *const specs[] = { "dirtier:ws=256M", "dirtier:ws=256M,pattern=hotcold",
					     "dirtier:ws=40K,pattern=hotcold", "dirtier:ws=4K" };

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(specs); k++) {
		struct wl_config c;

		parse_ok(specs[k], RAM_FRAMES, &c);
		for (unsigned v = 0; v < 3; v++) {
			uint64_t lo, hi, seed = wl_vcpu_seed(&c, v), differ = 0;

			wl_slice(&c, v == 0 ? 1 : 3, v, &lo, &hi);
			if (hi == lo)
				continue;
			for (uint64_t s = 0; s < 20000; s++) {
				uint64_t f = wl_pick(&c, seed, lo, hi, s);
				if (f < lo || f >= hi)
					fail_msg("%s: step %llu picks %llu outside [%llu, %llu)",
						 specs[k], (unsigned long long)s,
						 (unsigned long long)f, (unsigned long long)lo,
						 (unsigned long long)hi);
				assert_int_equal(wl_pick(&c, seed, lo, hi, s), f);
				differ += wl_pick(&c, seed + 1, lo, hi, s) != f;
			}
			/* Another seed gives another stream (unless the slice is tiny). */
			if (hi - lo > 100 && differ < 19000)
				fail_msg("%s: seeds %llu and %llu pick the same frame in %llu of "
					 "20000 steps over [%llu, %llu)",
					 specs[k], (unsigned long long)seed,
					 (unsigned long long)seed + 1,
					 (unsigned long long)(20000 - differ),
					 (unsigned long long)lo, (unsigned long long)hi);
		}
	}
}

static void test_wl_pick_uniform_spread(void **state)
{
	struct wl_config c;
	const uint64_t lo = 500, n = 1000, picks = 200000;
	uint64_t hist[10] = { 0 }, distinct = 0;
	unsigned char *hit = calloc(n, 1);

	(void)state;
	assert_non_null(hit);
	parse_ok("dirtier:seed=3", RAM_FRAMES, &c);
	for (uint64_t s = 0; s < picks; s++) {
		uint64_t f = wl_pick(&c, wl_vcpu_seed(&c, 0), lo, lo + n, s);
		assert_true(f >= lo && f < lo + n);
		hist[(f - lo) * 10 / n]++;
		if (!hit[f - lo]++)
			distinct++;
	}
	/* Every tenth gets 10% +- 1%, every frame is hit. */
	for (int d = 0; d < 10; d++)
		if (hist[d] < picks / 100 * 9 || hist[d] > picks / 100 * 11)
			fail_msg("uniform: tenth %d got %llu of %llu picks", d,
				 (unsigned long long)hist[d], (unsigned long long)picks);
	assert_int_equal(distinct, n);
	free(hit);
}

static void test_wl_pick_hotcold(void **state)
{
	struct wl_config c;
	const uint64_t lo = 1000, n = 100000, hot = n / 10, picks = 100000;
	uint64_t in_hot = 0, in_back_half = 0, hot_distinct = 0;
	unsigned char *hit = calloc(n, 1);
	double frac, want;

	(void)state;
	assert_non_null(hit);
	parse_ok("dirtier:ws=1G,pattern=hotcold,seed=11", RAM_FRAMES, &c);
	for (uint64_t s = 0; s < picks; s++) {
		uint64_t f = wl_pick(&c, wl_vcpu_seed(&c, 0), lo, lo + n, s);
		assert_true(f >= lo && f < lo + n);
		if (f - lo < hot) {
			in_hot++;
			if (!hit[f - lo]++)
				hot_distinct++;
		}
		if (f - lo >= n / 2)
			in_back_half++;
	}
	/* 230/256 of the picks go to the hot tenth; the other 26/256 go
	 * anywhere in the slice (a tenth of them into the hot part too). */
	frac = (double)in_hot / (double)picks;
	want = (230.0 + 26.0 / 10) / 256;
	if (frac < want - 0.01 || frac > want + 0.01)
		fail_msg("hotcold: %.4f of picks in the hot tenth, expected %.4f (230/256 + cold)",
			 frac, want);
	/* The cold picks reach the back of the slice... */
	frac = (double)in_back_half / (double)picks;
	if (frac < 0.03 || frac > 0.07)
		fail_msg("hotcold: %.4f of picks in the back half of the slice, expected ~%.4f",
			 frac, 26.0 / 256 / 2);
	/* ...and the hot picks cover the whole hot tenth (~90000 picks over
	 * 10000 frames miss almost none). */
	if (hot_distinct < hot * 95 / 100)
		fail_msg("hotcold: only %llu of %llu hot frames written",
			 (unsigned long long)hot_distinct, (unsigned long long)hot);
	free(hit);
}

static void test_wl_pick_fill(void **state)
{
	struct wl_config c;
	uint64_t lo, hi;

	(void)state;
	parse_ok("fill:ws=1M", RAM_FRAMES, &c); /* 256 pages */
	for (unsigned v = 0; v < 3; v++) {
		uint64_t seed = wl_vcpu_seed(&c, v);

		wl_slice(&c, 3, v, &lo, &hi);
		assert_int_equal(wl_step_limit(&c, lo, hi), hi - lo);
		for (uint64_t s = 0; s < hi - lo; s++)
			assert_int_equal(wl_pick(&c, seed, lo, hi, s), lo + s);
		assert_int_equal(wl_pick(&c, seed, lo, hi, hi - lo), UINT64_MAX);
		assert_int_equal(wl_pick(&c, seed, lo, hi, hi - lo + 1), UINT64_MAX);
		assert_int_equal(wl_pick(&c, seed, lo, hi, UINT64_MAX - 1), UINT64_MAX);
	}

	/* steps= below the slice size stops the fill early. */
	parse_ok("fill:ws=1M,steps=10", RAM_FRAMES, &c);
	wl_slice(&c, 1, 0, &lo, &hi);
	assert_int_equal(wl_step_limit(&c, lo, hi), 10);
	assert_int_equal(wl_pick(&c, 1, lo, hi, 9), 9);
	assert_int_equal(wl_pick(&c, 1, lo, hi, 10), UINT64_MAX);
	/* ...and above it does not extend it. */
	parse_ok("fill:ws=1M,steps=1000", RAM_FRAMES, &c);
	assert_int_equal(wl_step_limit(&c, 0, 256), 256);
	assert_int_equal(wl_pick(&c, 1, 0, 256, 256), UINT64_MAX);
}

/* prefill: the slice in order, once, then the dirtier's own picks (those it
 * makes at the same step without prefill). */
static void test_wl_pick_prefill(void **state)
{
	struct wl_config c, plain;
	uint64_t lo, hi;

	(void)state;
	parse_ok("dirtier:ws=1M,rate=64,prefill=1", RAM_FRAMES, &c);
	parse_ok("dirtier:ws=1M,rate=64", RAM_FRAMES, &plain);
	assert_true(c.prefill);
	assert_false(plain.prefill);
	for (unsigned v = 0; v < 3; v++) {
		uint64_t seed = wl_vcpu_seed(&c, v);

		wl_slice(&c, 3, v, &lo, &hi);
		assert_int_equal(wl_step_limit(&c, lo, hi), UINT64_MAX);
		for (uint64_t s = 0; s < hi - lo; s++) {
			assert_true(wl_prefilling(&c, lo, hi, s));
			assert_int_equal(wl_pick(&c, seed, lo, hi, s), lo + s);
		}
		for (uint64_t s = hi - lo; s < 4 * (hi - lo); s++) {
			uint64_t f = wl_pick(&c, seed, lo, hi, s);

			assert_false(wl_prefilling(&c, lo, hi, s));
			assert_false(wl_prefilling(&plain, lo, hi, s - (hi - lo)));
			assert_true(f >= lo && f < hi);
			assert_int_equal(f, wl_pick(&plain, seed, lo, hi, s));
		}
	}
}

static void test_wl_pick_steps_limit(void **state)
{
	struct wl_config c;

	(void)state;
	parse_ok("dirtier:ws=256M,steps=100", RAM_FRAMES, &c);
	assert_int_equal(wl_step_limit(&c, 0, 65536), 100);
	for (uint64_t s = 0; s < 100; s++)
		assert_true(wl_pick(&c, 5, 0, 65536, s) < 65536);
	assert_int_equal(wl_pick(&c, 5, 0, 65536, 100), UINT64_MAX);
	assert_int_equal(wl_pick(&c, 5, 0, 65536, 101), UINT64_MAX);
	assert_int_equal(wl_pick(&c, 5, 0, 65536, 1000000), UINT64_MAX);

	parse_ok("dirtier:ws=256M", RAM_FRAMES, &c);
	assert_int_equal(wl_step_limit(&c, 0, 65536), UINT64_MAX);
	assert_true(wl_pick(&c, 5, 0, 65536, 1000000000000ULL) < 65536);

	parse_ok("idle", RAM_FRAMES, &c);
	assert_int_equal(wl_step_limit(&c, 0, RAM_FRAMES), 0);
	assert_int_equal(wl_pick(&c, 5, 0, RAM_FRAMES, 0), UINT64_MAX);
}

/*
 * The runtime runs a vCPU while its step counter is below wl_step_limit() and
 * writes the page wl_pick() names: every such step must name a frame of the
 * vCPU's slice, for every config mvm_config_parse accepts — also when the
 * working set has fewer pages than there are vCPUs.
 */
static void test_wl_pick_within_step_limit(void **state)
{
	static const char *const configs[] = {
		"mem=1M vcpus=4 workload=dirtier:ws=8K",
		"mem=1M vcpus=3 workload=dirtier:ws=4K,pattern=hotcold",
		"mem=4K vcpus=2 workload=dirtier",
		"mem=8K vcpus=64 workload=fill",
		"mem=1M vcpus=5 workload=dirtier:ws=12K,steps=7",
	};

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(configs); k++) {
		struct mvm_config cfg;
		char err[ERRLEN] = "";

		if (mvm_config_parse(configs[k], &cfg, err, sizeof err) != 0)
			continue; /* rejecting such a config is fine too */
		for (unsigned v = 0; v < cfg.nr_vcpus; v++) {
			uint64_t lo, hi, lim, seed = wl_vcpu_seed(&cfg.wl, v);

			wl_slice(&cfg.wl, cfg.nr_vcpus, v, &lo, &hi);
			lim = wl_step_limit(&cfg.wl, lo, hi);
			for (uint64_t s = 0; s < MIN(lim, 1000); s++) {
				uint64_t f = wl_pick(&cfg.wl, seed, lo, hi, s);
				if (f < lo || f >= hi)
					fail_msg("'%s': vCPU %u, slice [%llu, %llu), step limit "
						 "%llu: step %llu picks frame %llu",
						 configs[k], v, (unsigned long long)lo,
						 (unsigned long long)hi, (unsigned long long)lim,
						 (unsigned long long)s, (unsigned long long)f);
			}
		}
	}
}

/* ---- page content ---- */

static void test_page_fill(void **state)
{
	uint64_t *a = malloc(PS), *b = malloc(PS);
	static const uint64_t seeds[] = { 1, 2 }, frames[] = { 0, 1, 77 }, gens[] = { 1, 2, 3 };
	uint64_t *pages[ARRAY_SIZE(seeds) * ARRAY_SIZE(frames) * ARRAY_SIZE(gens)];
	size_t np = 0;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0, PS);
	memset(b, 0xff, PS);
	wl_page_fill(a, PS, 42, 7, 3);
	wl_page_fill(b, PS, 42, 7, 3);
	assert_memory_equal(a, b, PS); /* deterministic */
	assert_int_equal(a[0], WL_PAGE_MAGIC);
	assert_int_equal(a[1], 7);
	assert_int_equal(a[2], 3);
	assert_int_equal(a[3], 42);
	{
		/* The body is PRNG data: no zero words, no repeats nearby. */
		for (size_t i = 4; i < PS / 8; i++) {
			assert_int_not_equal(a[i], 0);
			assert_int_not_equal(a[i], a[i - 1]);
		}
	}
	assert_int_equal(wl_page_gen(a, 7), 3);
	assert_int_equal(wl_page_gen(a, 8), 0); /* wrong frame */
	assert_int_equal(wl_page_gen(a, 6), 0);
	a[0] ^= 1;
	assert_int_equal(wl_page_gen(a, 7), 0); /* no magic */
	memset(a, 0, PS);
	assert_int_equal(wl_page_gen(a, 0), 0); /* zero page */
	assert_int_equal(wl_page_gen(a, 7), 0);

	/* Distinct for every (seed, frame, gen), in the header and in the body. */
	for (size_t i = 0; i < ARRAY_SIZE(seeds); i++)
		for (size_t j = 0; j < ARRAY_SIZE(frames); j++)
			for (size_t k = 0; k < ARRAY_SIZE(gens); k++) {
				uint64_t *p = malloc(PS);
				assert_non_null(p);
				wl_page_fill(p, PS, seeds[i], frames[j], gens[k]);
				assert_int_equal(wl_page_gen(p, frames[j]), gens[k]);
				for (size_t m = 0; m < np; m++) {
					size_t same = 0;
					for (size_t w = 4; w < PS / 8; w++)
						same += p[w] == pages[m][w];
					assert_true(same < 4);
				}
				pages[np++] = p;
			}
	for (size_t m = 0; m < np; m++)
		free(pages[m]);

	/* Smaller page sizes fill exactly page_size bytes. */
	memset(b, 0xcc, PS);
	wl_page_fill(b, 64, 1, 1, 1);
	assert_int_equal(((unsigned char *)b)[64], 0xcc);
	assert_int_equal(wl_page_gen(b, 1), 1);
	free(a);
	free(b);
}

/* ---- verify ---- */

struct ram {
	unsigned char *mem;
	uint64_t nr_frames;
	int fail; /* return this from the read callback */
	uint64_t reads;
};

static int ram_read(void *ctx, uint64_t frame, uint64_t count, void *buf)
{
	struct ram *r = ctx;

	assert_true(frame + count <= r->nr_frames);
	assert_true(count > 0);
	r->reads++;
	if (r->fail)
		return r->fail;
	memcpy(buf, r->mem + frame * PS, count * PS);
	return 0;
}

static unsigned char *page_of(struct ram *r, uint64_t f)
{
	return r->mem + f * PS;
}

/* A guest as the runtime would leave it after each vCPU ran `steps` steps
 * (capped at its step limit, as the runtime halts there). gens[] gets the
 * generation every frame holds, computed independently of wl_verify. */
struct guest {
	struct mvm_config cfg;
	struct ram ram;
	struct mvm_vcpu_regs regs[MVM_VCPUS_MAX];
	uint64_t *gens;
	uint64_t written;
};

static void guest_run(struct guest *g, const char *config, uint64_t steps)
{
	char err[ERRLEN] = "";

	memset(g, 0, sizeof *g);
	if (mvm_config_parse(config, &g->cfg, err, sizeof err) != 0)
		fail_msg("config '%s': %s", config, err);
	g->ram.nr_frames = g->cfg.mem / PS;
	g->ram.mem = calloc(g->ram.nr_frames, PS);
	g->gens = calloc(g->ram.nr_frames, sizeof *g->gens);
	assert_non_null(g->ram.mem);
	assert_non_null(g->gens);
	for (unsigned v = 0; v < g->cfg.nr_vcpus; v++) {
		uint64_t lo, hi, seed = wl_vcpu_seed(&g->cfg.wl, v), lim, s;

		wl_slice(&g->cfg.wl, g->cfg.nr_vcpus, v, &lo, &hi);
		lim = wl_step_limit(&g->cfg.wl, lo, hi);
		for (s = 0; s < steps && s < lim; s++) {
			uint64_t f = wl_pick(&g->cfg.wl, seed, lo, hi, s), gen;
			unsigned char *page;

			assert_true(f >= lo && f < hi);
			page = page_of(&g->ram, f);
			gen = wl_page_gen(page, f) + 1;
			wl_page_fill(page, PS, seed, f, gen);
			g->gens[f]++;
			assert_int_equal(gen, g->gens[f]);
		}
		g->regs[v].seed = seed;
		g->regs[v].step = s;
	}
	for (uint64_t f = 0; f < g->ram.nr_frames; f++)
		g->written += g->gens[f] > 0;
}

static void guest_free(struct guest *g)
{
	free(g->ram.mem);
	free(g->gens);
}

static uint64_t seed_of_frame(const struct guest *g, uint64_t f)
{
	for (unsigned v = 0; v < g->cfg.nr_vcpus; v++) {
		uint64_t lo, hi;
		wl_slice(&g->cfg.wl, g->cfg.nr_vcpus, v, &lo, &hi);
		if (f >= lo && f < hi)
			return g->regs[v].seed;
	}
	fail_msg("frame %llu in no slice", (unsigned long long)f);
	return 0;
}

static void verify(struct guest *g, struct mvm_verify *out)
{
	memset(out, 0x5a, sizeof *out);
	assert_int_equal(wl_verify(&g->cfg.wl, g->cfg.nr_vcpus, g->regs, g->ram.nr_frames, PS,
				   ram_read, &g->ram, out),
			 0);
	assert_non_null(memchr(out->msg, '\0', sizeof out->msg));
	assert_true(strlen(out->msg) > 0);
}

static void expect_verify_ok(struct guest *g)
{
	struct mvm_verify out;

	verify(g, &out);
	if (out.why != MVM_VERIFY_OK)
		fail_msg("verify: %s: %s", wl_why_name(out.why), out.msg);
	assert_int_equal(out.pages_checked, g->ram.nr_frames);
	assert_int_equal(out.pages_written, g->written);
}

static void expect_verify_bad(struct guest *g, unsigned why, uint64_t frame, uint64_t expected_gen,
			      uint64_t found_gen)
{
	struct mvm_verify out;
	char fs[32];

	verify(g, &out);
	if (out.why != why || out.frame != frame)
		fail_msg("verify: expected %s at frame %llu, got %s at frame %llu: %s",
			 wl_why_name(why), (unsigned long long)frame, wl_why_name(out.why),
			 (unsigned long long)out.frame, out.msg);
	assert_int_equal(out.expected_gen, expected_gen);
	assert_int_equal(out.found_gen, found_gen);
	assert_int_equal(out.pages_checked, frame + 1);
	snprintf(fs, sizeof fs, "frame %llu", (unsigned long long)frame);
	if (!strstr(out.msg, fs))
		fail_msg("verify message '%s' does not name %s", out.msg, fs);
}

/* 1024 frames (four read batches); the working set is the first half, so
 * frames 512.. are never written. Every frame of the working set is written
 * several times. */
#define DIRTIER_CONFIG "mem=4M vcpus=4 workload=dirtier:ws=2M,seed=7"
#define DIRTIER_STEPS 2000

/* A written frame with at least min_gen generations, at or after from. */
static uint64_t frame_with_gen(const struct guest *g, uint64_t from, uint64_t min_gen)
{
	for (uint64_t f = from; f < g->ram.nr_frames; f++)
		if (g->gens[f] >= min_gen)
			return f;
	fail_msg("no frame with generation >= %llu", (unsigned long long)min_gen);
	return 0;
}

static void test_verify_ok(void **state)
{
	struct guest g;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	assert_int_equal(g.written, 512); /* every page of the working set */
	assert_true(frame_with_gen(&g, 0, 3) < 512);
	expect_verify_ok(&g);
	assert_int_equal(g.ram.reads, 4);
	guest_free(&g);

	guest_run(&g, "mem=2M vcpus=3 workload=dirtier:ws=1M,pattern=hotcold,seed=9", 3000);
	expect_verify_ok(&g);
	guest_free(&g);

	/* Nothing run yet: all zero is right. */
	guest_run(&g, DIRTIER_CONFIG, 0);
	assert_int_equal(g.written, 0);
	expect_verify_ok(&g);
	guest_free(&g);
}

static void test_verify_replays_registers(void **state)
{
	struct guest g;
	struct mvm_verify out;

	(void)state;
	/* The registers claim one step fewer than the guest ran: the page that
	 * step wrote holds a newer generation than the replay expects. */
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	{
		uint64_t lo, hi, f;

		wl_slice(&g.cfg.wl, g.cfg.nr_vcpus, 2, &lo, &hi);
		f = wl_pick(&g.cfg.wl, g.regs[2].seed, lo, hi, g.regs[2].step - 1);
		g.regs[2].step--;
		/* A page newer than the replay is not "stale": it is corrupt. */
		expect_verify_bad(&g, MVM_VERIFY_CORRUPT, f, g.gens[f] - 1, g.gens[f]);
		g.regs[2].step++;
	}
	/* Wrong seed in the registers. */
	g.regs[1].seed ^= 1;
	verify(&g, &out);
	assert_int_not_equal(out.why, MVM_VERIFY_OK);
	g.regs[1].seed ^= 1;
	expect_verify_ok(&g);
	guest_free(&g);
}

static void test_verify_corrupt_byte(void **state)
{
	struct guest g;
	uint64_t f;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	/* A frame past the first read batch. */
	f = frame_with_gen(&g, 300, 1);
	page_of(&g.ram, f)[1000] ^= 0x40;
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, f, g.gens[f], g.gens[f]);
	page_of(&g.ram, f)[1000] ^= 0x40;
	expect_verify_ok(&g);

	/* The last byte of the page. */
	page_of(&g.ram, f)[PS - 1] ^= 0x01;
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, f, g.gens[f], g.gens[f]);
	page_of(&g.ram, f)[PS - 1] ^= 0x01;

	/* A corrupted header: the page no longer claims a generation. */
	page_of(&g.ram, 0)[8] ^= 0x02; /* word 1: frame */
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, 0, g.gens[0], 0);
	page_of(&g.ram, 0)[8] ^= 0x02;
	expect_verify_ok(&g);
	guest_free(&g);
}

static void test_verify_stale(void **state)
{
	struct guest g;
	uint64_t f;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	f = frame_with_gen(&g, 200, 2);
	wl_page_fill(page_of(&g.ram, f), PS, seed_of_frame(&g, f), f, g.gens[f] - 1);
	expect_verify_bad(&g, MVM_VERIFY_STALE, f, g.gens[f], g.gens[f] - 1);

	/* Two generations behind is stale too. */
	guest_free(&g);
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	f = frame_with_gen(&g, 0, 3);
	wl_page_fill(page_of(&g.ram, f), PS, seed_of_frame(&g, f), f, g.gens[f] - 2);
	expect_verify_bad(&g, MVM_VERIFY_STALE, f, g.gens[f], g.gens[f] - 2);
	guest_free(&g);
}

static void test_verify_torn(void **state)
{
	struct guest g;
	uint64_t f;
	unsigned char *old = malloc(PS);

	(void)state;
	assert_non_null(old);
	/* New first half, previous generation's second half. */
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	f = frame_with_gen(&g, 100, 2);
	wl_page_fill(old, PS, seed_of_frame(&g, f), f, g.gens[f] - 1);
	memcpy(page_of(&g.ram, f) + PS / 2, old + PS / 2, PS / 2);
	expect_verify_bad(&g, MVM_VERIFY_TORN, f, g.gens[f], g.gens[f]);
	guest_free(&g);

	/* The other way round: old header and first half, new second half. */
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	f = frame_with_gen(&g, 400, 2);
	wl_page_fill(old, PS, seed_of_frame(&g, f), f, g.gens[f] - 1);
	memcpy(page_of(&g.ram, f), old, PS / 2);
	expect_verify_bad(&g, MVM_VERIFY_TORN, f, g.gens[f], g.gens[f] - 1);
	guest_free(&g);

	/* A first write torn against the zero page: second half still zero. */
	guest_run(&g, "mem=1M vcpus=1 workload=fill", 10);
	memset(page_of(&g.ram, 5) + PS / 2, 0, PS / 2);
	expect_verify_bad(&g, MVM_VERIFY_TORN, 5, 1, 1);
	guest_free(&g);
	free(old);
}

static void test_verify_lost(void **state)
{
	struct guest g;
	uint64_t f;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	f = frame_with_gen(&g, 260, 1);
	memset(page_of(&g.ram, f), 0, PS);
	expect_verify_bad(&g, MVM_VERIFY_LOST, f, g.gens[f], 0);
	guest_free(&g);
}

static void test_verify_unwritten_frame(void **state)
{
	struct guest g;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	assert_int_equal(g.gens[700], 0);
	/* Content the guest could have written, in a frame it never wrote. */
	wl_page_fill(page_of(&g.ram, 700), PS, g.regs[0].seed, 700, 1);
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, 700, 0, 1);
	memset(page_of(&g.ram, 700), 0, PS);
	expect_verify_ok(&g);
	/* A single stray byte in the very last frame. */
	page_of(&g.ram, 1023)[PS - 1] = 1;
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, 1023, 0, 0);
	guest_free(&g);
}

static void test_verify_first_bad_frame(void **state)
{
	struct guest g;
	uint64_t a, b;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, DIRTIER_STEPS);
	a = frame_with_gen(&g, 10, 1);
	b = frame_with_gen(&g, 450, 1);
	memset(page_of(&g.ram, b), 0, PS);
	page_of(&g.ram, a)[2000] ^= 1;
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, a, g.gens[a], g.gens[a]);
	guest_free(&g);
}

static void test_verify_fill(void **state)
{
	struct guest g;
	struct mvm_verify out;

	(void)state;
	/* Run to completion (the runtime halts each vCPU at its slice's end). */
	guest_run(&g, "mem=2M vcpus=3 workload=fill:seed=5", UINT64_MAX);
	assert_int_equal(g.written, 512);
	for (uint64_t f = 0; f < 512; f++)
		assert_int_equal(g.gens[f], 1);
	expect_verify_ok(&g);
	/* Registers past the limit replay the same (steps past the slice write nothing). */
	g.regs[1].step += 5;
	expect_verify_ok(&g);
	g.regs[1].step -= 5;
	memset(page_of(&g.ram, 511), 0, PS);
	expect_verify_bad(&g, MVM_VERIFY_LOST, 511, 1, 0);
	guest_free(&g);

	/* Partly done. */
	guest_run(&g, "mem=2M vcpus=4 workload=fill", 100);
	assert_int_equal(g.written, 400);
	expect_verify_ok(&g);
	/* The frame after a vCPU's last step must still be zero. */
	wl_page_fill(page_of(&g.ram, 100), PS, g.regs[0].seed, 100, 1);
	expect_verify_bad(&g, MVM_VERIFY_CORRUPT, 100, 0, 1);
	guest_free(&g);

	/* Idle: everything zero. */
	guest_run(&g, "mem=1M vcpus=2 workload=idle", 1000);
	assert_int_equal(g.written, 0);
	expect_verify_ok(&g);
	page_of(&g.ram, 3)[17] = 9;
	verify(&g, &out);
	assert_int_equal(out.why, MVM_VERIFY_CORRUPT);
	assert_int_equal(out.frame, 3);
	guest_free(&g);
}

static void test_verify_read_error(void **state)
{
	struct guest g;
	struct mvm_verify out;

	(void)state;
	guest_run(&g, DIRTIER_CONFIG, 100);
	g.ram.fail = -EIO;
	assert_int_equal(wl_verify(&g.cfg.wl, g.cfg.nr_vcpus, g.regs, g.ram.nr_frames, PS,
				   ram_read, &g.ram, &out),
			 -EIO);
	guest_free(&g);
}

static void test_why_name(void **state)
{
	(void)state;
	assert_string_equal(wl_why_name(MVM_VERIFY_OK), "ok");
	assert_string_equal(wl_why_name(MVM_VERIFY_LOST), "lost");
	assert_string_equal(wl_why_name(MVM_VERIFY_STALE), "stale");
	assert_string_equal(wl_why_name(MVM_VERIFY_TORN), "torn");
	assert_string_equal(wl_why_name(MVM_VERIFY_CORRUPT), "corrupt");
	assert_string_equal(wl_why_name(99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wl_parse_idle),
		cmocka_unit_test(test_wl_parse_fill),
		cmocka_unit_test(test_wl_parse_dirtier),
		cmocka_unit_test(test_wl_parse_rate_max),
		cmocka_unit_test(test_wl_parse_rejects),
		cmocka_unit_test(test_wl_format_roundtrip),
		cmocka_unit_test(test_wl_format_roundtrip_rate_max),
		cmocka_unit_test(test_wl_format_short_buffer),
		cmocka_unit_test(test_config_parse),
		cmocka_unit_test(test_config_roundtrip),
		cmocka_unit_test(test_config_roundtrip_rate_max),
		cmocka_unit_test(test_config_rejects),
		cmocka_unit_test(test_wl_slice),
		cmocka_unit_test(test_wl_vcpu_seed),
		cmocka_unit_test(test_wl_pick_in_slice_deterministic),
		cmocka_unit_test(test_wl_pick_uniform_spread),
		cmocka_unit_test(test_wl_pick_hotcold),
		cmocka_unit_test(test_wl_pick_fill),
		cmocka_unit_test(test_wl_pick_prefill),
		cmocka_unit_test(test_wl_pick_steps_limit),
		cmocka_unit_test(test_wl_pick_within_step_limit),
		cmocka_unit_test(test_page_fill),
		cmocka_unit_test(test_verify_ok),
		cmocka_unit_test(test_verify_replays_registers),
		cmocka_unit_test(test_verify_corrupt_byte),
		cmocka_unit_test(test_verify_stale),
		cmocka_unit_test(test_verify_torn),
		cmocka_unit_test(test_verify_lost),
		cmocka_unit_test(test_verify_unwritten_frame),
		cmocka_unit_test(test_verify_first_bad_frame),
		cmocka_unit_test(test_verify_fill),
		cmocka_unit_test(test_verify_read_error),
		cmocka_unit_test(test_why_name),
	};

	return cmocka_run_group_tests_name("workload", tests, NULL, NULL);
}
