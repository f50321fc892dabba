/* SPDX-License-Identifier: Apache-2.0 */
/*
 * workload.h — the microVM's deterministic workloads and their verifier.
 *
 * A workload is a sequence of steps per vCPU. Which frame a step writes, the
 * frame's new generation, and the page's whole content are functions of
 * (seed, frame, generation) — so `verify` can replay every vCPU's step counter
 * and prove that each page holds exactly what the guest last wrote there: not
 * lost, not stale (an older generation), not torn (parts of two generations).
 *
 * The working set (frames [0, ws)) is split into one contiguous slice per
 * vCPU, so every frame has exactly one writer and the outcome does not depend
 * on thread timing. A page's generation is read back from its own header
 * (the state lives in guest RAM, as a real guest's would).
 *
 * Page layout for generation g >= 1 (64-bit words, little-endian host):
 *   [0] WL_PAGE_MAGIC  [1] frame  [2] g  [3] seed  [4..] PRNG(seed, frame, g)
 * Generation 0 is the all-zero page.
 */
#ifndef FERRY_MVM_WORKLOAD_H
#define FERRY_MVM_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvm/context.h"
#include "mvm/proto.h"

#define WL_PAGE_MAGIC 0x3147505952524546ULL /* "FERRYPG1" */

enum wl_kind { WL_IDLE, WL_FILL, WL_DIRTIER, WL_KVSTORE };
enum wl_pattern { WL_UNIFORM, WL_HOTCOLD };

struct wl_config {
	enum wl_kind kind;
	enum wl_pattern pattern;
	uint64_t seed;
	uint64_t ws_pages;   /* working set: frames [0, ws_pages) */
	uint64_t rate_pages; /* pages per second over all vCPUs; 0 = as fast as it can */
	uint64_t steps;      /* per-vCPU step limit, then the vCPU halts; 0 = none */
	bool prefill;        /* dirtier: each vCPU first writes every page of its
			      * slice once, in order and unpaced, then dirties */
	/* kvstore (mvm/kvstore.h): vCPU 0 serves requests, one per step. */
	uint64_t conns;      /* connection slots of the virtual NIC */
	uint64_t ring_bytes; /* each slot's receive and send ring, a power of two */
	uint64_t kv_clients; /* client records of the deduplication table */
	uint64_t stall_ms;   /* a connection the guest cannot serve this long
			      * (half a request, answers not read) is closed;
			      * 0: never */
};

/*
 * Parse "idle", "fill[:ws=SIZE,seed=N,rate=MiB/s]",
 * "dirtier:ws=SIZE,rate=MiB/s,pattern=uniform|hotcold,seed=N,steps=N,prefill=0|1" or
 * "kvstore[:conns=N,ring=SIZE,clients=N,stall=MS]" (defaults 128, 64K,
 * 1024, 10000)
 * for a guest of nr_frames pages of page_size. Defaults: ws = all of RAM,
 * dirtier rate 16 MiB/s, fill unlimited, seed 1. -EINVAL with a reason.
 */
int wl_parse(const char *spec, uint64_t nr_frames, size_t page_size, struct wl_config *out,
	     char *err, size_t errlen);
/* The canonical text of a config (parses back to the same config). */
void wl_format(const struct wl_config *c, size_t page_size, char *buf, size_t len);

/* vCPU i's slice [*lo, *hi) of the working set. */
void wl_slice(const struct wl_config *c, unsigned nr_vcpus, unsigned i, uint64_t *lo,
	      uint64_t *hi);
/* vCPU i's register seed. */
uint64_t wl_vcpu_seed(const struct wl_config *c, unsigned i);
/* The frame that step `step` of a vCPU with this seed and slice writes, or
 * UINT64_MAX if the step writes nothing (fill past its slice, idle). */
uint64_t wl_pick(const struct wl_config *c, uint64_t seed, uint64_t lo, uint64_t hi,
		 uint64_t step);
/* Whether step `step` of a vCPU with slice [lo, hi) is part of a prefill
 * (written at once, whatever the rate). */
bool wl_prefilling(const struct wl_config *c, uint64_t lo, uint64_t hi, uint64_t step);
/* Steps after which a vCPU halts for good (fill: its slice; steps=), or UINT64_MAX. */
uint64_t wl_step_limit(const struct wl_config *c, uint64_t lo, uint64_t hi);
/* The step limit of vCPU i of nr_vcpus (kvstore: vCPU 0 serves, the others
 * idle). */
uint64_t wl_vcpu_limit(const struct wl_config *c, unsigned nr_vcpus, unsigned i);

/* The most steps a vCPU without a limit may claim in a loaded context:
 * verify replays every step, so a wild value must not wedge it (2^40 steps
 * is over two years at 16 MiB/s). */
#define WL_STEPS_MAX (1ULL << 40)

/* Check registers from a context against this workload: each vCPU's seed is
 * its own and its step count is within its limit. -EINVAL + reason. */
int wl_check_regs(const struct wl_config *c, unsigned nr_vcpus, const struct mvm_vcpu_regs *regs,
		  char *err, size_t errlen);

/* Write the content of (seed, frame, gen) into page. gen >= 1. */
void wl_page_fill(void *page, size_t page_size, uint64_t seed, uint64_t frame, uint64_t gen);
/* The generation a page's header claims (0 if it has no valid header). */
uint64_t wl_page_gen(const void *page, uint64_t frame);

/* Read count pages starting at frame into buf; 0 or -errno. */
typedef int (*wl_read_fn)(void *ctx, uint64_t frame, uint64_t count, void *buf);

/*
 * Check every frame of a guest of nr_frames against the replay of regs.
 * Fills *out (out->why == MVM_VERIFY_OK when every page is right; otherwise
 * the first bad frame and why). Returns 0, or -errno if reading failed.
 */
int wl_verify(const struct wl_config *c, unsigned nr_vcpus, const struct mvm_vcpu_regs *regs,
	      uint64_t nr_frames, size_t page_size, wl_read_fn read, void *ctx,
	      struct mvm_verify *out);

const char *wl_why_name(unsigned why);

#endif
