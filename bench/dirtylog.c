/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/dirtylog — what the kernel dirty log of the microVM backend costs.
 *
 * 1. Harvest: for each guest RAM size and dirty fraction, the time of one
 *    PAGEMAP_SCAN harvest (PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
 *    PAGE_IS_WRITTEN, looping on walk_end, OR-ing into a bitmap as
 *    hv_logdirty_harvest does). The "guest" is this process: a memfd mapped
 *    MAP_SHARED and registered with userfaultfd in async write-protect mode
 *    exactly as mvm/ram.c does, so that the number of pages written between
 *    two harvests is known exactly (a ferry-mvm workload only gives a rate).
 *    The RAM is populated before it is registered, so first-touch faults are
 *    not mixed into the figures. Every harvest must report exactly the pages
 *    written, or the bench fails: it doubles as a sanity check.
 * 2. The guest's cost of the first write to a write-protected page: writes to
 *    protected pages against the same writes once the pages are unprotected.
 * 3. The same clean harvest through hv_logdirty_harvest on a real ferry-mvm
 *    runtime (out of process, through the pagemap fd it passed), next to an
 *    in-process reference in the same state, interleaved.
 *
 * Output: one JSON object per line on stdout; progress on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/kcompat.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/hv.h"
#include "bench/guest.h"
#include "hv/pagemap.h"
#include "bench/jline.h"
#include "bench/stats.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define WP_PAGES 16384      /* pages written by the write-cost case */
#define MAX_SIZES 16
#define VIA_MIB 1024        /* guest size of the ferry-mvm cases */
#define FILL_TIMEOUT_NS (300 * NSEC_PER_SEC)

/* Dirty fractions, in per mille of the guest's pages. */
static const unsigned fractions_pm[] = { 0, 1, 10, 100, 1000 };
#define NR_FRACTIONS ARRAY_SIZE(fractions_pm)

static const char help[] =
	"usage: dirtylog [--sizes MIB[,MIB...]] [--reps N] [--quick] [--run-dir DIR]\n"
	"\n"
	"Measures the kernel dirty log of the microVM backend: PAGEMAP_SCAN harvest\n"
	"time for guest RAM sizes (default 256,1024,4096 MiB) and dirty fractions\n"
	"0, 0.1, 1, 10 and 100%; the guest's cost of a first write to a protected\n"
	"page; and a clean harvest through a real ferry-mvm runtime (found by\n"
	"$FERRY_MVM, else ../ferry-mvm next to this program). Each case is repeated\n"
	"N times (default 7) and reported by median, one JSON object per line.\n"
	"--quick: 256 and 1024 MiB, 3 repetitions.\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static size_t page_size;

/* ---- statistics and output ---------------------------------------------- */


static void jl_begin(struct jline *j, const char *bench)
{
	j->len = 0;
	jl_add(j, "{\"bench\":\"%s\"", bench);
}

static void jl_stats(struct jline *j, const char *k, struct stats s)
{
	char key[64];

	snprintf(key, sizeof key, "%s_median", k);
	jl_num(j, key, s.med, true);
	snprintf(key, sizeof key, "%s_min", k);
	jl_num(j, key, s.min, true);
	snprintf(key, sizeof key, "%s_max", k);
	jl_num(j, key, s.max, true);
}

static void jl_end(struct jline *j)
{
	if (j->len >= sizeof j->buf - 2) {
		log_error("JSON line too long");
		return;
	}
	printf("%s}\n", j->buf);
	fflush(stdout);
}

/* ---- in-process guest RAM ------------------------------------------------ */

/* A stand-in for ferry-mvm's guest RAM, registered the same way (mvm/ram.c). */
struct ram {
	int memfd, uffd, pagemap;
	char *base;
	size_t len;
	uint64_t npages;
	bool populated;
	struct pagemap_scan scan;
	struct bitmap dirty;
};

/* What one harvest took and found. */
struct harvest {
	uint64_t ns;       /* the whole harvest, bitmap included */
	uint64_t ioctl_ns; /* inside PAGEMAP_SCAN */
	uint64_t found;    /* dirty pages */
	uint64_t regions;  /* page_region entries returned */
	unsigned calls;    /* PAGEMAP_SCAN calls */
};

static void ram_free(struct ram *r)
{
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->len);
	r->base = NULL;
	close_fd(&r->uffd);
	close_fd(&r->pagemap);
	close_fd(&r->memfd);
	pagemap_scan_free(&r->scan);
	bitmap_free(&r->dirty);
}

/*
 * Make len bytes of guest RAM: a memfd mapped shared, optionally populated
 * (every page written once, before registering), registered with userfaultfd
 * for async write-protect and then write-protected as a whole, as a ferry-mvm
 * runtime does on logdirty_enable.
 */
static int ram_setup(struct ram *r, size_t len, bool populate)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	struct uffdio_register reg = {
		.range = { .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = { .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	const char *what;
	int e;

	memset(r, 0, sizeof *r);
	r->memfd = r->uffd = r->pagemap = -1;
	r->len = len;
	r->npages = len / page_size;
	r->populated = populate;
	if ((e = bitmap_init(&r->dirty, r->npages))) {
		log_error("guest RAM of %zu MiB: out of memory for the harvest", len >> 20);
		ram_free(r);
		return -ENOMEM;
	}

	what = "memfd_create";
	r->memfd = memfd_create("dirtylog-bench-ram", MFD_CLOEXEC);
	if (r->memfd < 0)
		goto fail;
	what = "ftruncate";
	if (ftruncate(r->memfd, (off_t)len) < 0)
		goto fail;
	what = "mmap";
	r->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->base == MAP_FAILED) {
		r->base = NULL;
		goto fail;
	}
	if (populate) {
		uint64_t t0 = mono_ns();

		what = "populating";
		while (madvise(r->base, len, MADV_POPULATE_WRITE) < 0) {
			if (errno == EINTR && !stop)
				continue;
			if (errno != EINVAL)
				goto fail;
			/* Before Linux 5.14: write every page by hand. */
			volatile char *p = r->base;
			for (uint64_t i = 0; i < r->npages; i++)
				p[i * page_size] = 1;
			break;
		}
		log_info("populated %zu MiB in %.2f s", len >> 20, ns_to_sec(mono_ns() - t0));
	}

	what = "userfaultfd";
	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		goto fail;
	what = "UFFDIO_API (async write-protect needs Linux 6.7+)";
	if (ioctl(r->uffd, UFFDIO_API, &api) < 0)
		goto fail;
	what = "UFFDIO_REGISTER";
	reg.range.start = (uintptr_t)r->base;
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		goto fail;
	what = "UFFDIO_WRITEPROTECT";
	wp.range.start = (uintptr_t)r->base;
	if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		goto fail;
	what = "/proc/self/pagemap";
	r->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (r->pagemap < 0)
		goto fail;
	what = "harvest set-up";
	if ((e = pagemap_scan_init(&r->scan, r->pagemap, (uintptr_t)r->base, r->npages,
				   page_size))) {
		errno = -e;
		goto fail;
	}
	return 0;
fail:
	e = errno;
	log_error("guest RAM of %zu MiB: %s: %s", len >> 20, what, strerror(e));
	ram_free(r);
	return -e;
}

/*
 * One harvest over all of r with the code hv/mvm.c uses (hv/pagemap.c),
 * OR-ing the written pages into r->dirty (zeroed before the clock starts, as
 * callers of hv_logdirty_harvest do) and re-protecting them.
 */
static int ram_harvest(struct ram *r, struct harvest *h)
{
	uint64_t t0;
	int64_t n;

	memset(h, 0, sizeof *h);
	bitmap_zero(&r->dirty);
	t0 = mono_ns();
	n = pagemap_harvest(&r->scan, &r->dirty, true);
	h->ns = mono_ns() - t0;
	if (n < 0) {
		log_error("PAGEMAP_SCAN: %s", strerror((int)-n));
		return (int)n;
	}
	h->found = (uint64_t)n;
	h->ioctl_ns = r->scan.ioctl_ns;
	h->regions = r->scan.regions;
	h->calls = (unsigned)r->scan.calls;
	return 0;
}

/* The i-th of n pages spread evenly over npages, shifted by off (< npages / n). */
static inline uint64_t pick(uint64_t i, uint64_t n, uint64_t npages, uint64_t off)
{
	return i * npages / n + off;
}

/* The guest's part: write one byte into each of the n chosen pages. */
static void ram_write(struct ram *r, uint64_t n, uint64_t off, unsigned char val)
{
	volatile unsigned char *p = (volatile unsigned char *)r->base;

	for (uint64_t i = 0; i < n; i++)
		p[pick(i, n, r->npages, off) * page_size] = val;
}

/* Distinct 2 MiB blocks (one page table each on x86-64) among the n chosen
 * pages: PAGEMAP_SCAN flushes the TLB once per page table it re-protects in. */
static uint64_t blocks_2mib(const struct ram *r, uint64_t n, uint64_t off)
{
	const uint64_t per = (2ULL << 20) / page_size;
	uint64_t count = 0, last = UINT64_MAX;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t b = pick(i, n, r->npages, off) / per;
		if (b != last)
			count++;
		last = b;
	}
	return count;
}

/*
 * The sanity check: the harvest must report exactly the n pages written —
 * each of them, and nothing else.
 */
static int check_harvest(struct ram *r, const struct harvest *h, uint64_t n, uint64_t off,
			 const char *what)
{
	if (h->found != n) {
		log_error("%s: harvest reported %" PRIu64 " dirty pages, %" PRIu64 " were written",
			  what, h->found, n);
		return -EIO;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t f = pick(i, n, r->npages, off);
		if (!bitmap_test(&r->dirty, f)) {
			log_error("%s: written page %" PRIu64 " is missing from the harvest",
				  what, f);
			return -EIO;
		}
	}
	return 0;
}

/* ---- 1. harvest time against size and dirty fraction -------------------- */

/*
 * For one guest size: per repetition, every dirty fraction in turn (so that
 * drift of this machine's speed affects all fractions alike): write the
 * chosen pages, harvest, check. Then one JSON line per fraction.
 */
static int bench_size(uint64_t mib, unsigned reps)
{
	static double h_ms[NR_FRACTIONS][MAX_REPS], io_ms[NR_FRACTIONS][MAX_REPS];
	static double w_us[NR_FRACTIONS][MAX_REPS], blocks[NR_FRACTIONS][MAX_REPS];
	static uint64_t calls[NR_FRACTIONS], regions[NR_FRACTIONS];
	uint64_t dirty[NR_FRACTIONS];
	struct harvest h;
	struct ram r;
	char what[96];
	int e;

	log_info("harvest: %" PRIu64 " MiB, %u repetitions", mib, reps);
	if ((e = ram_setup(&r, (size_t)(mib << 20), true)))
		return e;
	/* Freshly protected: nothing is dirty yet. */
	if ((e = ram_harvest(&r, &h)) || (e = check_harvest(&r, &h, 0, 0, "after protect")))
		goto out;
	for (unsigned f = 0; f < NR_FRACTIONS; f++)
		dirty[f] = r.npages * fractions_pm[f] / 1000;

	for (unsigned rep = 0; rep < reps; rep++) {
		for (unsigned f = 0; f < NR_FRACTIONS && !stop; f++) {
			uint64_t n = dirty[f], off = n ? rep % (r.npages / n) : 0, t0, t1;

			t0 = mono_ns();
			ram_write(&r, n, off, (unsigned char)(rep + 2));
			t1 = mono_ns();
			if ((e = ram_harvest(&r, &h)))
				goto out;
			snprintf(what, sizeof what, "%" PRIu64 " MiB, %u/1000 dirty, rep %u", mib,
				 fractions_pm[f], rep);
			if ((e = check_harvest(&r, &h, n, off, what)))
				goto out;
			h_ms[f][rep] = ns_to_ms(h.ns);
			io_ms[f][rep] = ns_to_ms(h.ioctl_ns);
			w_us[f][rep] = n ? ns_to_us(t1 - t0) / (double)n : 0;
			blocks[f][rep] = (double)blocks_2mib(&r, n, off);
			calls[f] = h.calls;
			regions[f] = h.regions;
		}
		if (stop) {
			e = -EINTR;
			goto out;
		}
		log_info("  %" PRIu64 " MiB rep %u/%u: %.3f ms clean, %.3f ms all dirty", mib,
			 rep + 1, reps, h_ms[0][rep], h_ms[NR_FRACTIONS - 1][rep]);
	}

	for (unsigned f = 0; f < NR_FRACTIONS; f++) {
		struct stats hs = stats_of(h_ms[f], reps), is = stats_of(io_ms[f], reps);
		struct stats ws = stats_of(w_us[f], reps), bs = stats_of(blocks[f], reps);
		double gib = (double)r.len / (double)(1ULL << 30);
		struct jline j;

		jl_begin(&j, "dirtylog");
		jl_str(&j, "via", "in-process");
		jl_u64(&j, "ram_mib", mib);
		jl_num(&j, "dirty_fraction", fractions_pm[f] / 1000.0, true);
		jl_u64(&j, "dirty_pages", dirty[f]);
		jl_bool(&j, "populated", true);
		jl_stats(&j, "harvest_ms", hs);
		jl_num(&j, "ioctl_ms_median", is.med, true);
		jl_num(&j, "us_per_dirty_page", hs.med * 1e3 / (double)dirty[f], dirty[f] > 0);
		jl_num(&j, "us_per_gib_scanned", hs.med * 1e3 / gib, true);
		jl_num(&j, "dirty_2mib_blocks", bs.med, true);
		jl_num(&j, "us_per_dirty_2mib_block", hs.med * 1e3 / bs.med, bs.med > 0);
		jl_u64(&j, "scan_calls", calls[f]);
		jl_u64(&j, "regions", regions[f]);
		jl_num(&j, "guest_write_us_per_page_median", ws.med, dirty[f] > 0);
		jl_u64(&j, "reps", reps);
		jl_end(&j);
	}
out:
	ram_free(&r);
	return e;
}

/* ---- 2. the guest's cost of a first write to a protected page ----------- */

/*
 * WP_PAGES populated pages. Per repetition: harvest (which re-protects the
 * pages the last repetition wrote), time a write to each protected page,
 * then time the same writes again, now to unprotected pages.
 */
static int bench_wp_write(unsigned reps)
{
	static double prot[MAX_REPS], unprot[MAX_REPS], diff[MAX_REPS];
	struct harvest h;
	struct ram r;
	struct jline j;
	int e;

	log_info("write cost: %u pages, %u repetitions", WP_PAGES, reps);
	if ((e = ram_setup(&r, (size_t)WP_PAGES * page_size, true)))
		return e;
	for (unsigned rep = 0; rep < reps && !stop; rep++) {
		uint64_t t0, t1, t2;

		if ((e = ram_harvest(&r, &h)) ||
		    (e = check_harvest(&r, &h, rep ? WP_PAGES : 0, 0, "write cost")))
			goto out;
		t0 = mono_ns();
		ram_write(&r, WP_PAGES, 0, (unsigned char)(2 * rep + 1));
		t1 = mono_ns();
		ram_write(&r, WP_PAGES, 0, (unsigned char)(2 * rep + 2));
		t2 = mono_ns();
		prot[rep] = (double)(t1 - t0) / WP_PAGES;
		unprot[rep] = (double)(t2 - t1) / WP_PAGES;
		diff[rep] = prot[rep] - unprot[rep];
	}
	if (stop) {
		e = -EINTR;
		goto out;
	}
	if ((e = ram_harvest(&r, &h)) || (e = check_harvest(&r, &h, WP_PAGES, 0, "write cost")))
		goto out;

	jl_begin(&j, "dirtylog_write_cost");
	jl_u64(&j, "pages", WP_PAGES);
	jl_bool(&j, "populated", true);
	jl_stats(&j, "protected_ns_per_write", stats_of(prot, reps));
	jl_stats(&j, "unprotected_ns_per_write", stats_of(unprot, reps));
	jl_stats(&j, "first_write_cost_ns", stats_of(diff, reps));
	jl_u64(&j, "reps", reps);
	jl_end(&j);
out:
	ram_free(&r);
	return e;
}

/* ---- 3. the same harvest through a ferry-mvm runtime -------------------- */

/* A launched guest and our handle on it. */
struct vm {
	char name[64];
	struct hv_domain *d;
};

/* End the guest whatever state it is in; the handle reaps it. */
static void vm_destroy(struct vm *vm)
{
	if (vm->d) {
		hv_destroy(vm->d);
		hv_close(vm->d);
		vm->d = NULL;
	}
}

/* Launch a 1 GiB, 1-vCPU guest with workload (it is open then). */
static int vm_start(struct vm *vm, const char *workload)
{
	struct hv_spec spec = { (uint64_t)VIA_MIB << 20, 1, workload, NULL };

	snprintf(vm->name, sizeof vm->name, "bench-dirtylog-%d", (int)getpid());
	vm->d = NULL;
	return guest_launch(vm->name, &spec, &vm->d);
}

/* Wait until every vCPU has halted (fill has written its whole slice). */
static int vm_wait_halted(struct vm *vm)
{
	uint64_t t0 = mono_ns();
	double halted, steps = 0;
	int e;

	for (;;) {
		if ((e = guest_stat(vm->d, "halted", &halted)))
			return e;
		if (halted >= 1)
			break;
		if (stop)
			return -EINTR;
		if (mono_ns() - t0 > FILL_TIMEOUT_NS) {
			log_error("%s: fill did not finish", vm->name);
			return -ETIMEDOUT;
		}
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
	guest_stat(vm->d, "steps", &steps);
	log_info("%s: fill done in %.2f s (%.0f steps)", vm->name, ns_to_sec(mono_ns() - t0), steps);
	return 0;
}

/*
 * A clean 1 GiB harvest through hv_logdirty_harvest on a runtime running
 * workload, interleaved with the same harvest in-process on RAM in the same
 * state (populated or holes). Prints the reference line, then the runtime's.
 */
static int bench_via(const char *workload, bool populated, unsigned reps)
{
	static double via_ms[MAX_REPS], ref_ms[MAX_REPS];
	struct vm vm = { .d = NULL };
	struct bitmap bm = { 0 };
	struct hv_info info;
	struct harvest h;
	struct ram r;
	struct stats vs, rs;
	struct jline j;
	double gib = (double)VIA_MIB / 1024;
	int64_t n;
	int e;

	log_info("via ferry-mvm: %d MiB, workload %s, %u repetitions", VIA_MIB, workload, reps);
	if ((e = ram_setup(&r, (size_t)VIA_MIB << 20, populated)))
		return e;
	if ((e = vm_start(&vm, workload)))
		goto out;
	if (populated && (e = vm_wait_halted(&vm)))
		goto out;
	if ((e = hv_info(vm.d, &info)) || (e = bitmap_init(&bm, info.nr_frames)) ||
	    (e = hv_logdirty_enable(vm.d)))
		goto out;
	if (info.nr_frames * info.page_size != (uint64_t)VIA_MIB << 20 ||
	    info.page_size != page_size) {
		log_error("%s: unexpected RAM layout", vm.name);
		e = -EIO;
		goto out;
	}
	/* The first harvest after enable: nothing written since. */
	if ((n = hv_logdirty_harvest(vm.d, &bm, 0)) != 0)
		goto bad;
	if ((e = ram_harvest(&r, &h)) || (e = check_harvest(&r, &h, 0, 0, "reference")))
		goto out;

	for (unsigned rep = 0; rep < reps && !stop; rep++) {
		uint64_t t0;

		if ((e = ram_harvest(&r, &h)) || (e = check_harvest(&r, &h, 0, 0, "reference")))
			goto out;
		ref_ms[rep] = ns_to_ms(h.ns);
		bitmap_zero(&bm);
		t0 = mono_ns();
		n = hv_logdirty_harvest(vm.d, &bm, 0);
		via_ms[rep] = ns_to_ms(mono_ns() - t0);
		if (n != 0)
			goto bad;
	}
	if (stop) {
		e = -EINTR;
		goto out;
	}
	vs = stats_of(via_ms, reps);
	rs = stats_of(ref_ms, reps);

	jl_begin(&j, "dirtylog");
	jl_str(&j, "via", "in-process");
	jl_str(&j, "reference_for", workload);
	jl_u64(&j, "ram_mib", VIA_MIB);
	jl_num(&j, "dirty_fraction", 0, true);
	jl_u64(&j, "dirty_pages", 0);
	jl_bool(&j, "populated", populated);
	jl_stats(&j, "harvest_ms", rs);
	jl_num(&j, "us_per_dirty_page", 0, false);
	jl_num(&j, "us_per_gib_scanned", rs.med * 1e3 / gib, true);
	jl_u64(&j, "reps", reps);
	jl_end(&j);

	jl_begin(&j, "dirtylog");
	jl_str(&j, "via", "ferry-mvm");
	jl_str(&j, "workload", workload);
	jl_u64(&j, "ram_mib", VIA_MIB);
	jl_num(&j, "dirty_fraction", 0, true);
	jl_u64(&j, "dirty_pages", 0);
	jl_bool(&j, "populated", populated);
	jl_stats(&j, "harvest_ms", vs);
	jl_num(&j, "us_per_dirty_page", 0, false);
	jl_num(&j, "us_per_gib_scanned", vs.med * 1e3 / gib, true);
	jl_num(&j, "inprocess_harvest_ms_median", rs.med, true);
	jl_num(&j, "ratio_to_inprocess", vs.med / rs.med, rs.med > 0);
	jl_u64(&j, "reps", reps);
	jl_end(&j);
	goto out;
bad:
	if (n < 0) {
		e = (int)n;
	} else {
		log_error("%s: guest at rest (%s), yet the harvest reported %" PRId64
			  " dirty pages", vm.name, workload, n);
		e = -EIO;
	}
out:
	vm_destroy(&vm);
	bitmap_free(&bm);
	ram_free(&r);
	return e;
}

/* ---- main ---------------------------------------------------------------- */

/* Parse "256,1024,4096" (MiB). */
static int parse_sizes(const char *s, uint64_t *sizes, unsigned *n)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof buf)
		return -EINVAL;
	strcpy(buf, s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (*n == MAX_SIZES || parse_u64(tok, 1, 1ULL << 20, &sizes[*n]))
			return -EINVAL;
		(*n)++;
	}
	return *n ? 0 : -EINVAL;
}

/* Remove the run directory we made (and whatever a killed runtime left). */
static void cleanup_run_dir(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/mvm/bench-dirtylog-%d.sock", dir, (int)getpid());
	unlink(path);
	snprintf(path, sizeof path, "%s/mvm", dir);
	rmdir(path);
	if (rmdir(dir) < 0)
		log_warn("leaving run directory %s: %s", dir, strerror(errno));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sizes", required_argument, 0, 's' }, { "reps", required_argument, 0, 'r' },
		{ "quick", no_argument, 0, 'q' },	{ "run-dir", required_argument, 0, 'd' },
		{ "help", no_argument, 0, 'h' },	{ 0 }
	};
	uint64_t sizes[MAX_SIZES] = { 256, 1024, 4096 }, reps = 7;
	unsigned nsizes = 3;
	bool quick = false, sizes_set = false, reps_set = false, dir_set = false;
	char tmpdir[] = "/tmp/ferry-bench-XXXXXX";
	const char *made_dir = NULL;
	int c, e = 0;

	log_init("dirtylog", LOG_INFO);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_sizes(optarg, sizes, &nsizes)) {
				fprintf(stderr,
					"dirtylog: bad --sizes '%s' (MiB, comma-separated)\n",
					optarg);
				return 2;
			}
			sizes_set = true;
			break;
		case 'r':
			if (parse_u64(optarg, 1, MAX_REPS, &reps)) {
				fprintf(stderr, "dirtylog: bad --reps '%s' (1-%d)\n", optarg,
					MAX_REPS);
				return 2;
			}
			reps_set = true;
			break;
		case 'q': quick = true; break;
		case 'd':
			ferry_set_run_dir(optarg);
			dir_set = true;
			break;
		case 'h': fputs(help, stdout); return 0;
		default: fputs(help, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(help, stderr);
		return 2;
	}
	if (quick && !sizes_set) {
		sizes[0] = 256;
		sizes[1] = 1024;
		nsizes = 2;
	}
	if (quick && !reps_set)
		reps = 3;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	guest_default_runtime();
	if (!dir_set && !(getenv("FERRY_RUN_DIR") && *getenv("FERRY_RUN_DIR"))) {
		/* Neither --run-dir nor $FERRY_RUN_DIR: a private one. */
		if (!mkdtemp(tmpdir)) {
			log_error("mkdtemp: %s", strerror(errno));
			return 1;
		}
		made_dir = tmpdir;
		ferry_set_run_dir(tmpdir);
	}
	log_info("backend %s, run directory %s", hv_default_backend(), ferry_run_dir());

	for (unsigned i = 0; i < nsizes && !e; i++)
		e = bench_size(sizes[i], (unsigned)reps);
	if (!e)
		e = bench_wp_write((unsigned)reps);
	if (!e)
		e = bench_via("idle", false, (unsigned)reps);
	if (!e && !quick)
		e = bench_via("fill", true, (unsigned)reps);

	if (made_dir)
		cleanup_run_dir(made_dir);
	if (e) {
		log_error("failed: %s", strerror(-e));
		return 1;
	}
	return 0;
}
