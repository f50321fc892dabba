/* SPDX-License-Identifier: Apache-2.0 */
/* workload.c — deterministic workloads and the verifier; see workload.h. */
#include "mvm/workload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* splitmix64 finaliser: a good 64-bit mix, cheap enough for every word. */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

int wl_parse(const char *spec, uint64_t nr_frames, size_t page_size, struct wl_config *out,
	     char *err, size_t errlen)
{
	char buf[256], *opts, *tok, *save = NULL;
	uint64_t v;
	bool rate_set = false;

	memset(out, 0, sizeof *out);
	out->seed = 1;
	out->ws_pages = nr_frames;
	if (strlen(spec) >= sizeof buf) {
		snprintf(err, errlen, "workload spec too long");
		return -EINVAL;
	}
	strcpy(buf, spec);
	opts = strchr(buf, ':');
	if (opts)
		*opts++ = '\0';
	if (strcmp(buf, "idle") == 0)
		out->kind = WL_IDLE;
	else if (strcmp(buf, "fill") == 0)
		out->kind = WL_FILL;
	else if (strcmp(buf, "dirtier") == 0)
		out->kind = WL_DIRTIER;
	else if (strcmp(buf, "kvstore") == 0)
		out->kind = WL_KVSTORE;
	else {
		snprintf(err, errlen, "unknown workload '%s' (idle, fill, dirtier, kvstore)", buf);
		return -EINVAL;
	}
	out->conns = 128;
	out->ring_bytes = 64 * 1024;
	out->kv_clients = 1024;
	out->stall_ms = 10000;
	for (tok = opts ? strtok_r(opts, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
		char *val = strchr(tok, '=');
		int r = -EINVAL;

		if (!val) {
			snprintf(err, errlen, "workload option '%s' needs a value", tok);
			return -EINVAL;
		}
		*val++ = '\0';
		if (out->kind == WL_IDLE) {
			snprintf(err, errlen, "idle takes no options");
			return -EINVAL;
		}
		if (out->kind == WL_KVSTORE) {
			if (strcmp(tok, "conns") == 0) {
				r = parse_u64(val, 1, 4096, &out->conns);
			} else if (strcmp(tok, "ring") == 0) {
				r = parse_size(val, 1 << 20, &out->ring_bytes);
				if (!r && (out->ring_bytes < 8192 ||
					   (out->ring_bytes & (out->ring_bytes - 1))))
					r = -ERANGE;
			} else if (strcmp(tok, "clients") == 0) {
				r = parse_u64(val, 16, 65536, &out->kv_clients);
			} else if (strcmp(tok, "stall") == 0) {
				r = parse_u64(val, 0, 3600000, &out->stall_ms);
			} else {
				snprintf(err, errlen, "unknown kvstore option '%s' (conns, ring, "
					 "clients, stall)", tok);
				return -EINVAL;
			}
		} else if (strcmp(tok, "ws") == 0) {
			v = 0;
			r = parse_size(val, nr_frames * page_size, &v);
			if (r == 0 && (v < page_size || v % page_size))
				r = -ERANGE;
			out->ws_pages = v / page_size;
		} else if (strcmp(tok, "rate") == 0) {
			/* MiB/s; "max" or 0 means as fast as the vCPUs can. */
			if (strcmp(val, "max") == 0)
				r = 0, v = 0;
			else
				r = parse_u64(val, 0, 1 << 20, &v);
			out->rate_pages = v * (1 << 20) / page_size;
			rate_set = true;
		} else if (strcmp(tok, "seed") == 0) {
			r = parse_u64(val, 0, UINT64_MAX, &out->seed);
		} else if (strcmp(tok, "steps") == 0) {
			r = parse_u64(val, 0, UINT64_MAX, &out->steps);
		} else if (strcmp(tok, "prefill") == 0 && out->kind == WL_DIRTIER) {
			r = parse_u64(val, 0, 1, &v);
			out->prefill = v == 1;
		} else if (strcmp(tok, "pattern") == 0 && out->kind == WL_DIRTIER) {
			r = 0;
			if (strcmp(val, "uniform") == 0)
				out->pattern = WL_UNIFORM;
			else if (strcmp(val, "hotcold") == 0)
				out->pattern = WL_HOTCOLD;
			else
				r = -EINVAL;
		} else {
			snprintf(err, errlen, "unknown workload option '%s'", tok);
			return -EINVAL;
		}
		if (r) {
			snprintf(err, errlen, "bad value '%s' for workload option '%s'%s", val, tok,
				 r == -ERANGE ? " (out of range)" : "");
			return -EINVAL;
		}
	}
	if (out->kind == WL_DIRTIER && !rate_set)
		out->rate_pages = 16 * (1 << 20) / page_size;
	return 0;
}

void wl_format(const struct wl_config *c, size_t page_size, char *buf, size_t len)
{
	static const char *const kinds[] = { "idle", "fill", "dirtier", "kvstore" };
	int n;

	if (c->kind == WL_IDLE) {
		snprintf(buf, len, "idle");
		return;
	}
	if (c->kind == WL_KVSTORE) {
		snprintf(buf, len, "kvstore:conns=%" PRIu64 ",ring=%" PRIu64 ",clients=%" PRIu64
			 ",stall=%" PRIu64, c->conns, c->ring_bytes, c->kv_clients, c->stall_ms);
		return;
	}
	n = snprintf(buf, len, "%s:ws=%" PRIu64 ",seed=%" PRIu64, kinds[c->kind],
		     c->ws_pages * page_size, c->seed);
	if (n > 0 && (size_t)n < len && c->rate_pages)
		n += snprintf(buf + n, len - (size_t)n, ",rate=%" PRIu64,
			      c->rate_pages * page_size >> 20);
	else if (n > 0 && (size_t)n < len && c->kind == WL_DIRTIER)
		n += snprintf(buf + n, len - (size_t)n, ",rate=max");
	if (n > 0 && (size_t)n < len && c->steps)
		n += snprintf(buf + n, len - (size_t)n, ",steps=%" PRIu64, c->steps);
	if (n > 0 && (size_t)n < len && c->kind == WL_DIRTIER)
		n += snprintf(buf + n, len - (size_t)n, ",pattern=%s",
			      c->pattern == WL_HOTCOLD ? "hotcold" : "uniform");
	if (n > 0 && (size_t)n < len && c->prefill)
		snprintf(buf + n, len - (size_t)n, ",prefill=1");
}

void wl_slice(const struct wl_config *c, unsigned nr_vcpus, unsigned i, uint64_t *lo,
	      uint64_t *hi)
{
	*lo = c->ws_pages * i / nr_vcpus;
	*hi = c->ws_pages * (i + 1) / nr_vcpus;
}

uint64_t wl_vcpu_seed(const struct wl_config *c, unsigned i)
{
	return mix64(c->seed * GOLDEN + i + 1);
}

uint64_t wl_step_limit(const struct wl_config *c, uint64_t lo, uint64_t hi)
{
	uint64_t lim = UINT64_MAX;

	if (c->kind == WL_IDLE || c->kind == WL_KVSTORE || hi <= lo)
		return 0; /* nothing to write (an empty slice: more vCPUs than pages) */
	if (c->kind == WL_FILL)
		lim = hi - lo;
	if (c->steps && c->steps < lim)
		lim = c->steps;
	return lim;
}

uint64_t wl_vcpu_limit(const struct wl_config *c, unsigned nr_vcpus, unsigned i)
{
	uint64_t lo, hi;

	if (c->kind == WL_KVSTORE)
		return i == 0 ? UINT64_MAX : 0;
	wl_slice(c, nr_vcpus, i, &lo, &hi);
	return wl_step_limit(c, lo, hi);
}

bool wl_prefilling(const struct wl_config *c, uint64_t lo, uint64_t hi, uint64_t step)
{
	return c->kind == WL_DIRTIER && c->prefill && step < hi - lo;
}

uint64_t wl_pick(const struct wl_config *c, uint64_t seed, uint64_t lo, uint64_t hi, uint64_t step)
{
	uint64_t n = hi - lo, h;

	if (step >= wl_step_limit(c, lo, hi) || n == 0)
		return UINT64_MAX;
	if (c->kind == WL_FILL || wl_prefilling(c, lo, hi, step))
		return lo + step;
	h = mix64(seed ^ mix64(step + GOLDEN));
	if (c->pattern == WL_HOTCOLD) {
		/* 230/256 (~90%) of writes go to the first tenth of the slice; the
		 * index below comes from a fresh mix, not from the bits used here. */
		uint64_t hot = n / 10 ? n / 10 : 1;
		if ((h & 0xff) < 230)
			n = hot;
		h = mix64(h);
	}
	return lo + (uint64_t)(((unsigned __int128)h * n) >> 64);
}

int wl_check_regs(const struct wl_config *c, unsigned nr_vcpus, const struct mvm_vcpu_regs *regs,
		  char *err, size_t errlen)
{
	for (unsigned i = 0; i < nr_vcpus; i++) {
		uint64_t lim = wl_vcpu_limit(c, nr_vcpus, i);

		if (lim > WL_STEPS_MAX)
			lim = WL_STEPS_MAX;
		if (regs[i].seed != wl_vcpu_seed(c, i)) {
			snprintf(err, errlen, "context of vCPU %u belongs to another workload", i);
			return -EINVAL;
		}
		if (regs[i].step > lim) {
			snprintf(err, errlen, "vCPU %u: step %" PRIu64 " beyond its limit %" PRIu64, i,
				 regs[i].step, lim);
			return -EINVAL;
		}
	}
	return 0;
}

void wl_page_fill(void *page, size_t page_size, uint64_t seed, uint64_t frame, uint64_t gen)
{
	uint64_t *w = page, s = mix64(seed ^ mix64(frame * GOLDEN ^ mix64(gen)));
	size_t n = page_size / 8;

	w[0] = WL_PAGE_MAGIC;
	w[1] = frame;
	w[2] = gen;
	w[3] = seed;
	for (size_t i = 4; i < n; i++) {
		s += GOLDEN;
		w[i] = mix64(s);
	}
}

uint64_t wl_page_gen(const void *page, uint64_t frame)
{
	const uint64_t *w = page;

	return w[0] == WL_PAGE_MAGIC && w[1] == frame ? w[2] : 0;
}

const char *wl_why_name(unsigned why)
{
	static const char *const n[] = { "ok", "lost", "stale", "torn", "corrupt" };
	return why < ARRAY_SIZE(n) ? n[why] : "?";
}

static bool page_is_zero(const uint64_t *w, size_t nw)
{
	uint64_t acc = 0;

	for (size_t i = 0; i < nw; i++)
		acc |= w[i];
	return acc == 0;
}

/* Explain why page (frame) does not hold generation gen of seed. scratch
 * holds two pages. */
static void classify(const uint64_t *page, size_t ps, uint64_t seed, uint64_t frame, uint64_t gen,
		     uint64_t *scratch, struct mvm_verify *out)
{
	size_t nw = ps / 8, good = 0, old = 0, first_bad = nw;
	uint64_t claimed = wl_page_gen(page, frame), og, *want = scratch, *prev = scratch + nw;

	out->frame = frame;
	out->expected_gen = gen;
	out->found_gen = claimed;
	if (gen == 0) {
		out->why = MVM_VERIFY_CORRUPT;
		snprintf(out->msg, sizeof out->msg,
			 "frame %" PRIu64 ": never written by the guest, but not zero%s", frame,
			 claimed ? " (holds a page header)" : "");
		return;
	}
	if (page_is_zero(page, nw)) {
		out->why = MVM_VERIFY_LOST;
		snprintf(out->msg, sizeof out->msg,
			 "frame %" PRIu64 ": expected generation %" PRIu64 ", page is zero (lost)",
			 frame, gen);
		return;
	}
	/* The other generation the page may hold, wholly or in part: the one its
	 * header claims, else the one before the expected one (0 = zero page). */
	og = claimed && claimed != gen ? claimed : gen - 1;
	wl_page_fill(want, ps, seed, frame, gen);
	if (og)
		wl_page_fill(prev, ps, seed, frame, og);
	else
		memset(prev, 0, ps);
	for (size_t i = 0; i < nw; i++) {
		if (page[i] == want[i]) {
			good++;
			continue;
		}
		if (first_bad == nw)
			first_bad = i;
		if (page[i] == prev[i])
			old++;
	}
	if (og && og < gen && memcmp(page, prev, ps) == 0) {
		out->why = MVM_VERIFY_STALE;
		snprintf(out->msg, sizeof out->msg,
			 "frame %" PRIu64 ": holds generation %" PRIu64 ", expected %" PRIu64
			 " (stale)", frame, og, gen);
	} else if (good + old == nw && old && good > 4) {
		out->why = MVM_VERIFY_TORN;
		snprintf(out->msg, sizeof out->msg,
			 "frame %" PRIu64 ": %zu of %zu words from generation %" PRIu64
			 ", the rest from generation %" PRIu64 " (torn at byte %zu)",
			 frame, good, nw, gen, og, first_bad * 8);
	} else {
		out->why = MVM_VERIFY_CORRUPT;
		snprintf(out->msg, sizeof out->msg,
			 "frame %" PRIu64 ": expected generation %" PRIu64
			 ", content differs from byte %zu (header claims generation %" PRIu64 ")",
			 frame, gen, first_bad * 8, claimed);
	}
}

#define VERIFY_BATCH 256

int wl_verify(const struct wl_config *c, unsigned nr_vcpus, const struct mvm_vcpu_regs *regs,
	      uint64_t nr_frames, size_t ps, wl_read_fn read, void *ctx, struct mvm_verify *out)
{
	uint64_t *gen = NULL, *buf = NULL, *scratch = NULL;
	size_t nw = ps / 8;
	int r = -ENOMEM;

	memset(out, 0, sizeof *out);
	gen = calloc(nr_frames, sizeof *gen);
	buf = malloc(VERIFY_BATCH * ps);
	scratch = malloc(2 * ps);
	if (!gen || !buf || !scratch)
		goto out;

	/* Replay: the generation every frame must hold now. */
	for (unsigned v = 0; v < nr_vcpus; v++) {
		uint64_t lo, hi;

		wl_slice(c, nr_vcpus, v, &lo, &hi);
		if (hi > nr_frames)
			hi = nr_frames;
		for (uint64_t s = 0; s < regs[v].step; s++) {
			uint64_t f = wl_pick(c, regs[v].seed, lo, hi, s);
			if (f == UINT64_MAX)
				break;
			gen[f]++;
		}
	}

	for (uint64_t f0 = 0; f0 < nr_frames; f0 += VERIFY_BATCH) {
		uint64_t cnt = MIN((uint64_t)VERIFY_BATCH, nr_frames - f0);

		r = read(ctx, f0, cnt, buf);
		if (r)
			goto out;
		for (uint64_t i = 0; i < cnt; i++) {
			uint64_t f = f0 + i, *page = buf + i * nw, seed = 0;
			bool ok;

			if (gen[f]) {
				for (unsigned v = 0; v < nr_vcpus; v++) {
					uint64_t lo, hi;
					wl_slice(c, nr_vcpus, v, &lo, &hi);
					if (f >= lo && f < hi)
						seed = regs[v].seed;
				}
				wl_page_fill(scratch, ps, seed, f, gen[f]);
				ok = memcmp(page, scratch, ps) == 0;
				out->pages_written++;
			} else {
				ok = page_is_zero(page, nw);
			}
			out->pages_checked++;
			if (!ok) {
				classify(page, ps, seed, f, gen[f], scratch, out);
				r = 0;
				goto out;
			}
		}
	}
	out->why = MVM_VERIFY_OK;
	snprintf(out->msg, sizeof out->msg,
		 "%" PRIu64 " pages checked, %" PRIu64 " written by the guest, all as expected",
		 out->pages_checked, out->pages_written);
	r = 0;
out:
	free(gen);
	free(buf);
	free(scratch);
	return r;
}
