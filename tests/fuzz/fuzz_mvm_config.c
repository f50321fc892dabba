/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_mvm_config.c — libFuzzer target for the microVM config record
 * (mvm/config.c) and workload specs (mvm/workload.c).
 *
 * The input, cut at 1 KiB and NUL-terminated, is parsed both as a config
 * record and as a workload spec for a 1 GiB guest. Whatever parses must have
 * a canonical text that parses back to the same config (abort otherwise),
 * must respect the documented limits, and every step below a vCPU's step
 * limit must write a frame of that vCPU's slice (the runtime writes there).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvm/config.h"
#include "mvm/workload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX 1024
#define WL_FRAMES 262144ULL
#define WL_PAGE 4096

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			abort(); \
		} \
	} while (0)

static int wl_same(const struct wl_config *a, const struct wl_config *b)
{
	return a->kind == b->kind && a->pattern == b->pattern && a->seed == b->seed &&
	       a->ws_pages == b->ws_pages && a->rate_pages == b->rate_pages &&
	       a->steps == b->steps && a->conns == b->conns && a->ring_bytes == b->ring_bytes &&
	       a->kv_clients == b->kv_clients && a->stall_ms == b->stall_ms;
}

static void check_wl(const struct wl_config *w, uint64_t nr_frames, const char *what)
{
	CHECK(w->kind == WL_IDLE || w->kind == WL_FILL || w->kind == WL_DIRTIER ||
	      w->kind == WL_KVSTORE, "%s", what);
	if (w->kind == WL_KVSTORE) {
		CHECK(w->conns >= 1 && w->conns <= 4096, "%s: conns", what);
		CHECK(w->ring_bytes >= 8192 && w->ring_bytes <= (1 << 20) &&
		      !(w->ring_bytes & (w->ring_bytes - 1)), "%s: ring", what);
		CHECK(w->kv_clients >= 16 && w->kv_clients <= 65536, "%s: clients", what);
		CHECK(w->stall_ms <= 3600000, "%s: stall", what);
	}
	CHECK(w->pattern == WL_UNIFORM || w->pattern == WL_HOTCOLD, "%s", what);
	CHECK(w->ws_pages >= 1 && w->ws_pages <= nr_frames, "%s: ws %" PRIu64, what,
	      w->ws_pages);
}

/* The first few steps of every vCPU write inside its slice. */
static void check_picks(const struct wl_config *w, unsigned nr_vcpus, const char *what)
{
	for (unsigned v = 0; v < nr_vcpus; v++) {
		uint64_t lo, hi, lim, seed = wl_vcpu_seed(w, v);

		wl_slice(w, nr_vcpus, v, &lo, &hi);
		CHECK(lo <= hi && hi <= w->ws_pages, "%s: vCPU %u", what, v);
		lim = wl_step_limit(w, lo, hi);
		for (uint64_t s = 0; s < lim && s < 4; s++) {
			uint64_t f = wl_pick(w, seed, lo, hi, s);
			CHECK(f >= lo && f < hi,
			      "%s: vCPU %u slice [%" PRIu64 ", %" PRIu64 ") step limit %" PRIu64
			      ": step %" PRIu64 " writes frame %" PRIu64,
			      what, v, lo, hi, lim, s, f);
		}
	}
}

static void fuzz_config(const char *s)
{
	struct mvm_config a, b;
	char err[256], text[MVM_CONFIG_MAX];

	if (mvm_config_parse(s, &a, err, sizeof err) != 0) {
		CHECK(err[0] != '\0', "no reason given for rejecting '%s'", s);
		return;
	}
	CHECK(a.mem >= MVM_PAGE_SIZE && a.mem <= MVM_MEM_MAX && a.mem % MVM_PAGE_SIZE == 0,
	      "'%s': mem %" PRIu64, s, a.mem);
	CHECK(a.nr_vcpus >= 1 && a.nr_vcpus <= MVM_VCPUS_MAX, "'%s'", s);
	check_wl(&a.wl, a.mem / MVM_PAGE_SIZE, s);
	check_picks(&a.wl, a.nr_vcpus, s);

	mvm_config_format(&a, text, sizeof text);
	CHECK(mvm_config_parse(text, &b, err, sizeof err) == 0,
	      "'%s' formats as '%s', which does not parse: %s", s, text, err);
	CHECK(a.mem == b.mem && a.nr_vcpus == b.nr_vcpus && wl_same(&a.wl, &b.wl) &&
	      strcmp(a.net, b.net) == 0,
	      "'%s' formats as '%s', which parses to a different config", s, text);
}

static void fuzz_workload(const char *s)
{
	struct wl_config a, b;
	char err[256], text[256];

	if (wl_parse(s, WL_FRAMES, WL_PAGE, &a, err, sizeof err) != 0) {
		CHECK(err[0] != '\0', "no reason given for rejecting '%s'", s);
		return;
	}
	check_wl(&a, WL_FRAMES, s);
	check_picks(&a, 1, s);
	check_picks(&a, 7, s);

	wl_format(&a, WL_PAGE, text, sizeof text);
	CHECK(wl_parse(text, WL_FRAMES, WL_PAGE, &b, err, sizeof err) == 0,
	      "'%s' formats as '%s', which does not parse: %s", s, text, err);
	CHECK(wl_same(&a, &b),
	      "'%s' formats as '%s', which parses to a different config (rate %" PRIu64
	      " vs %" PRIu64 ")",
	      s, text, a.rate_pages, b.rate_pages);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size > INPUT_MAX)
		size = INPUT_MAX;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_config(s);
	fuzz_workload(s);
	free(s);
	return 0;
}
