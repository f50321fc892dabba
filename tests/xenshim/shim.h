/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim.h — a SHIM standing in for the Xen hypervisor, its toolstack
 * libraries and a guest, so that hv/xen.c runs where there is no Xen.
 *
 * This is not Xen. libxenshim implements, over in-memory domains kept in
 * files, the libxenctrl, libxenforeignmemory, libxenstore and libxenlight
 * calls that hv/xen.c makes, with the same prototypes (the real Xen 4.17
 * headers), so that ferry's unit tests link it in place of the real
 * libraries and a ferryd can be run with it preloaded. Each call's comment
 * cites the Xen source whose behaviour it imitates. What it does not
 * imitate — the real hypercalls, real HVM state, QEMU, xenstore's tree —
 * docs/xen.md lists.
 *
 * A "host" is a directory, FERRY_XEN_RUN_DIR (the run dir hv/xen.c uses
 * too); its domains are files in DIR/shim: DOMID.st (struct shim_dom,
 * shared by every process that maps it), DOMID.ram (guest memory, sparse),
 * DOMID.dirty and DOMID.pop (bitmaps: written since harvest, populated).
 * A domain runs as a guest process (`xenshim guest`) that writes pages in a
 * pattern it can verify, marks them in the dirty bitmap while log-dirty is
 * on (as Xen's paging_mark_dirty), parks when paused, and serves QMP for its
 * "device model".
 */
#ifndef FERRY_TESTS_XENSHIM_SHIM_H
#define FERRY_TESTS_XENSHIM_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHIM_MAGIC 0x31584d4948535846ULL /* "FXSHIMX1" */
#define SHIM_REGS_MAGIC 0x5347455248534658ULL
#define SHIM_PAGE 4096u

enum shim_state { SHIM_BUILDING = 1, SHIM_LIVE, SHIM_DYING };

/* The guest's "vCPU registers": what its HVM context is. */
struct shim_regs {
	uint64_t magic;
	uint64_t steps; /* pages written so far */
	uint64_t hash;  /* sum of mix(pfn, seq) over the ledger */
	uint64_t ws;    /* working set, frames after the ledger */
	uint64_t rate;  /* pages per second; 0: as fast as it can */
	uint64_t rng;
};

struct shim_dom {
	uint64_t magic;
	uint32_t domid, state;
	char name[80];
	uint8_t uuid[16];
	uint64_t max_memkb, nr_frames;
	uint32_t vcpus, type;       /* type: 1 HVM */
	uint32_t pause_count;       /* the toolstack's pauses (counted) */
	uint32_t parked;            /* the guest says it is parked */
	uint32_t logdirty;
	uint32_t cap, weight;
	int32_t guest_pid;
	uint32_t pad0;
	uint64_t cpu_time_ns;
	struct shim_regs regs;
	uint64_t params[64];        /* HVM params by index */
	struct { uint32_t mode, khz; uint64_t nsec; uint32_t incarnation, res; } tsc;
	uint32_t ncpuid, nmsr;
	uint8_t cpuid[24 * 64];
	uint8_t msr[16 * 16];
	uint32_t dev_len, pad1;
	uint8_t dev[256];           /* the device model's state */
	char config_json[8192];     /* what libxl would have stored */
	/* Faults a test may set: mapping frame (pfn + 1) fails with -EIO; the
	 * next fail_logdirty log-dirty operations fail. */
	uint64_t fail_map_pfn;
	uint32_t fail_logdirty, pad2;
};

/* A domain, mapped. */
struct shim_map {
	struct shim_dom *st;
	uint8_t *ram;
	uint64_t *dirty, *pop;
	int ramfd;
};

/* The host directory (FERRY_XEN_RUN_DIR, or NULL if unset). */
const char *shim_host(void);
/* A new domain in host: BUILDING, its files sized, zero; its domid. */
int shim_dom_new(const char *host, const char *name, uint64_t max_memkb, unsigned vcpus,
		 uint32_t *domid);
int shim_dom_map(const char *host, uint32_t domid, struct shim_map *m);
void shim_dom_unmap(struct shim_map *m);
/* Remove its files (the guest, if any, is stopped first). */
void shim_dom_remove(const char *host, uint32_t domid);
/* Call fn for each domain of host, in domid order; stops at non-zero. */
int shim_dom_each(const char *host, int (*fn)(void *ctx, struct shim_map *m), void *ctx);
/* The domid of NAME (a LIVE or BUILDING domain), or -ENOENT. */
int shim_dom_find(const char *host, const char *name, uint32_t *domid);
/* Start the guest process for a LIVE domain (parked while paused). */
int shim_guest_start(const char *host, uint32_t domid);
/* Wait until the guest is parked (or there is none). */
void shim_wait_parked(struct shim_map *m);

/* The guest's memory layout and pattern (guest.c and verify). */
uint64_t shim_ledger_frames(uint64_t nr_frames);
uint64_t shim_mix(uint64_t pfn, uint64_t seq);
void shim_fill(uint8_t *page, uint64_t pfn, uint64_t seq);
/* Check every page against the ledger and the ledger against the
 * registers: 0, or -EBADMSG with what is wrong in why. */
int shim_verify(const struct shim_map *m, char *why, size_t len);
/* One guest step: write one page (and its ledger entry). */
void shim_step(struct shim_map *m);

/* Run the xenshim tool (as `xl` is run) on host with args, its output
 * dropped: its exit status, -1 if it did not exit. For tests. */
int shim_tool(const char *host, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-process counters of what the shim handed out and not yet got back
 * (for tests of cleanup on error paths). */
struct shim_counts {
	int handles, maps, hbufs;
};
struct shim_counts shim_counts(void);

#endif
