/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim_xc.c — the SHIM's libxenctrl, libxenforeignmemory and libxenstore:
 * the calls hv/xen.c makes, over shim domains (shim.h). Not Xen. Each call
 * says which Xen 4.17 source it imitates (paths in xen.git).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>
#include <xenforeignmemory.h>
#include <xenstore.h>

#include "tests/xenshim/shim.h"

/* UNSTABLE in Xen (xc_private.h); the shim gives it the same prototype. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

static int n_handles, n_maps, n_hbufs;

struct shim_counts shim_counts(void)
{
	return (struct shim_counts){ __atomic_load_n(&n_handles, __ATOMIC_RELAXED),
				     __atomic_load_n(&n_maps, __ATOMIC_RELAXED),
				     __atomic_load_n(&n_hbufs, __ATOMIC_RELAXED) };
}

struct xc_interface_core {
	char host[PATH_MAX];
};

/* Map domid of the handle's host; errno ESRCH if there is none, as a domctl
 * on a missing domain fails (xen/common/domctl.c: rcu_lock_domain_by_id). */
static int dom(xc_interface *xch, uint32_t domid, struct shim_map *m)
{
	if (shim_dom_map(xch->host, domid, m) || m->st->state == SHIM_DYING) {
		shim_dom_unmap(m);
		errno = ESRCH;
		return -1;
	}
	return 0;
}

/* tools/libs/ctrl/xc_private.c: xc_interface_open. The shim's "hypervisor"
 * is the host directory; without one there is none (as without privcmd). */
xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
				unsigned open_flags)
{
	const char *h = shim_host();
	xc_interface *x;

	(void)logger, (void)dombuild_logger, (void)open_flags;
	if (!h || !(x = calloc(1, sizeof *x))) {
		errno = ENOENT;
		return NULL;
	}
	snprintf(x->host, sizeof x->host, "%s", h);
	__atomic_fetch_add(&n_handles, 1, __ATOMIC_RELAXED);
	return x;
}

/* xc_private.c: xc_interface_close. */
int xc_interface_close(xc_interface *xch)
{
	if (xch) {
		__atomic_fetch_sub(&n_handles, 1, __ATOMIC_RELAXED);
		free(xch);
	}
	return 0;
}

/* xc_version(XENVER_version): major << 16 | minor. */
int xc_version(xc_interface *xch, int cmd, void *arg)
{
	(void)xch, (void)arg;
	if (cmd != XENVER_version) {
		errno = ENOSYS;
		return -1;
	}
	return 4 << 16 | 17;
}

/* tools/libs/ctrl/xc_domain.c: xc_domain_nr_gpfns = maximum_gpfn + 1. */
int xc_domain_nr_gpfns(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	*gpfns = m.st->nr_frames;
	shim_dom_unmap(&m);
	return 0;
}

/* tools/libs/ctrl/xc_private.c: the hypercall buffer is page-aligned,
 * locked memory (xc__hypercall_buffer_alloc_pages, osdep mmap). */
void *xc__hypercall_buffer_alloc_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages)
{
	void *p = mmap(NULL, (size_t)nr_pages * 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)xch;
	if (p == MAP_FAILED)
		return NULL;
	b->hbuf = p;
	__atomic_fetch_add(&n_hbufs, 1, __ATOMIC_RELAXED);
	return p;
}

/* xc_hcall_buf.c: xc__hypercall_buffer_free_pages (NULL buffer: a no-op). */
void xc__hypercall_buffer_free_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages)
{
	(void)xch;
	if (!b->hbuf)
		return;
	munmap(b->hbuf, (size_t)nr_pages * 4096);
	b->hbuf = NULL;
	__atomic_fetch_sub(&n_hbufs, 1, __ATOMIC_RELAXED);
}

/* xen/arch/x86/mm/paging.c: paging_domctl. ENABLE_LOGDIRTY on a domain in
 * log-dirty already is -EINVAL there; OFF turns it off (and frees the
 * bitmap: the next enable starts clean). */
int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop, unsigned int *mb,
		      unsigned int mode)
{
	struct shim_map m;
	int r = 0;

	(void)mb, (void)mode;
	if (dom(xch, domid, &m))
		return -1;
	if (m.st->fail_logdirty) {
		m.st->fail_logdirty--;
		errno = EIO;
		r = -1;
	} else if (sop == XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY) {
		if (m.st->logdirty) {
			errno = EINVAL;
			r = -1;
		} else {
			memset(m.dirty, 0, (m.st->nr_frames + 63) / 64 * 8);
			__atomic_store_n(&m.st->logdirty, 1, __ATOMIC_RELEASE);
		}
	} else if (sop == XEN_DOMCTL_SHADOW_OP_OFF) {
		__atomic_store_n(&m.st->logdirty, 0, __ATOMIC_RELEASE);
	} else {
		errno = EINVAL;
		r = -1;
	}
	shim_dom_unmap(&m);
	return r;
}

/* xen/arch/x86/mm/paging.c: paging_log_dirty_op. PEEK copies the bitmap,
 * CLEAN copies and clears it, word by word; pages beyond the domain's are
 * not touched; -EINVAL if log-dirty is off. The FINAL flag needs the
 * domain paused (4.17 accepts it; the shim checks it). */
long long xc_logdirty_control(xc_interface *xch, uint32_t domid, unsigned int sop,
			      xc_hypercall_buffer_t *dirty_bitmap, unsigned long pages,
			      unsigned int mode, xc_shadow_op_stats_t *stats)
{
	struct shim_map m;
	uint64_t *out = dirty_bitmap->hbuf, n;
	long long r = 0;

	if (dom(xch, domid, &m))
		return -1;
	n = pages < m.st->nr_frames ? pages : m.st->nr_frames;
	if (m.st->fail_logdirty) {
		m.st->fail_logdirty--;
		errno = EIO;
		r = -1;
	} else if (!m.st->logdirty || (sop != XEN_DOMCTL_SHADOW_OP_PEEK &&
				       sop != XEN_DOMCTL_SHADOW_OP_CLEAN)) {
		errno = EINVAL;
		r = -1;
	} else if ((mode & XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL) && !m.st->pause_count) {
		errno = EBUSY;
		r = -1;
	} else {
		uint64_t dirty = 0;

		for (uint64_t i = 0; i < (n + 63) / 64; i++) {
			uint64_t keep = (i + 1) * 64 <= n ? ~0ULL : (1ULL << (n % 64)) - 1;
			uint64_t w = sop == XEN_DOMCTL_SHADOW_OP_CLEAN
					     ? __atomic_fetch_and(&m.dirty[i], ~keep, __ATOMIC_ACQ_REL)
					     : __atomic_load_n(&m.dirty[i], __ATOMIC_ACQUIRE);

			out[i] = w & keep;
			dirty += (uint64_t)__builtin_popcountll(w & keep);
		}
		if (stats)
			stats->dirty_count = (uint32_t)dirty;
	}
	shim_dom_unmap(&m);
	return r;
}

/* tools/libs/ctrl/xc_domain.c + xen/common/memory.c: populate_physmap —
 * each extent (order 0: one frame) gets memory; a frame that has some
 * already is -EEXIST there for an exact populate (the shim: as well). */
int xc_domain_populate_physmap_exact(xc_interface *xch, uint32_t domid, unsigned long nr_extents,
				     unsigned int extent_order, unsigned int mem_flags,
				     xen_pfn_t *extent_start)
{
	struct shim_map m;
	int r = 0;

	(void)mem_flags;
	if (dom(xch, domid, &m))
		return -1;
	for (unsigned long i = 0; !r && i < nr_extents; i++) {
		uint64_t pfn = extent_start[i];

		if (extent_order || pfn >= m.st->nr_frames ||
		    (m.pop[pfn / 64] >> (pfn % 64) & 1)) {
			errno = extent_order || pfn >= m.st->nr_frames ? EINVAL : EEXIST;
			r = -1;
		} else {
			__atomic_fetch_or(&m.pop[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_RELAXED);
		}
	}
	shim_dom_unmap(&m);
	return r;
}

/* xen/arch/x86/domctl.c: XEN_DOMCTL_getpageframeinfo3 — NOTAB for a
 * populated HVM page, XTAB for a hole; -EINVAL past the p2m. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t domid, unsigned int num, xen_pfn_t *arr)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	for (unsigned i = 0; i < num; i++) {
		uint64_t f = arr[i];

		if (f >= m.st->nr_frames) {
			shim_dom_unmap(&m);
			errno = EINVAL;
			return -1;
		}
		arr[i] = (m.pop[f / 64] >> (f % 64) & 1) ? XEN_DOMCTL_PFINFO_NOTAB
							 : XEN_DOMCTL_PFINFO_XTAB;
	}
	shim_dom_unmap(&m);
	return 0;
}

static int credit(xc_interface *xch, uint32_t domid, uint16_t *cap, uint16_t *weight, bool set)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	if (set) {
		m.st->cap = *cap;
		m.st->weight = *weight;
	} else {
		*cap = (uint16_t)m.st->cap;
		*weight = (uint16_t)m.st->weight;
	}
	shim_dom_unmap(&m);
	return 0;
}

/* xen/common/sched/credit.c: csched_dom_cntl (cap: percent of a pCPU). The
 * shim's scheduler is credit; credit2 calls fail as on a credit host. */
int xc_sched_credit_domain_set(xc_interface *xch, uint32_t domid, struct xen_domctl_sched_credit *s)
{
	return credit(xch, domid, &s->cap, &s->weight, true);
}

/* xc_csched.c: XEN_DOMCTL_SCHEDOP_getinfo. */
int xc_sched_credit_domain_get(xc_interface *xch, uint32_t domid, struct xen_domctl_sched_credit *s)
{
	return credit(xch, domid, &s->cap, &s->weight, false);
}

/* xc_csched2.c: on a host whose scheduler is credit, the credit2 calls fail
 * (sched_adjust: the scheduler of the domain's pool differs). */
int xc_sched_credit2_domain_set(xc_interface *xch, uint32_t domid,
				struct xen_domctl_sched_credit2 *s)
{
	(void)xch, (void)domid, (void)s;
	errno = EINVAL;
	return -1;
}

/* As above. */
int xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid,
				struct xen_domctl_sched_credit2 *s)
{
	(void)xch, (void)domid, (void)s;
	errno = EINVAL;
	return -1;
}

/* xen/arch/x86/time.c: tsc_get_info. */
int xc_domain_get_tsc_info(xc_interface *xch, uint32_t domid, uint32_t *tsc_mode,
			   uint64_t *elapsed_nsec, uint32_t *gtsc_khz, uint32_t *incarnation)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	*tsc_mode = m.st->tsc.mode;
	*elapsed_nsec = m.st->tsc.nsec;
	*gtsc_khz = m.st->tsc.khz;
	*incarnation = m.st->tsc.incarnation;
	shim_dom_unmap(&m);
	return 0;
}

/* tools/libs/ctrl/xc_domain.c + xen/arch/x86/hvm/save.c: with no buffer,
 * the size needed; else the context (here: the guest's registers). A
 * running domain's context is refused, as hvm_save is only asked of a
 * paused one by the save code. */
int xc_domain_hvm_getcontext(xc_interface *xch, uint32_t domid, uint8_t *buf, uint32_t size)
{
	struct shim_map m;
	int r = (int)sizeof(struct shim_regs);

	if (dom(xch, domid, &m))
		return -1;
	if (buf) {
		if (size < sizeof m.st->regs || !m.st->pause_count) {
			errno = size < sizeof m.st->regs ? ENOSPC : EBUSY;
			r = -1;
		} else {
			shim_wait_parked(&m);
			memcpy(buf, &m.st->regs, sizeof m.st->regs);
		}
	}
	shim_dom_unmap(&m);
	return r;
}

/* xen/arch/x86/hvm/save.c: hvm_load — a paused domain's context, whole;
 * a context of another size is -EINVAL. */
int xc_domain_hvm_setcontext(xc_interface *xch, uint32_t domid, uint8_t *buf, uint32_t size)
{
	struct shim_map m;
	int r = 0;

	if (dom(xch, domid, &m))
		return -1;
	if (size != sizeof m.st->regs || !m.st->pause_count) {
		errno = size != sizeof m.st->regs ? EINVAL : EBUSY;
		r = -1;
	} else {
		shim_wait_parked(&m);
		memcpy(&m.st->regs, buf, size);
	}
	shim_dom_unmap(&m);
	return r;
}

/* xen/arch/x86/time.c: tsc_set_info (XEN_DOMCTL_settscinfo). */
int xc_domain_set_tsc_info(xc_interface *xch, uint32_t domid, uint32_t tsc_mode,
			   uint64_t elapsed_nsec, uint32_t gtsc_khz, uint32_t incarnation)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	m.st->tsc.mode = tsc_mode;
	m.st->tsc.nsec = elapsed_nsec;
	m.st->tsc.khz = gtsc_khz;
	m.st->tsc.incarnation = incarnation;
	shim_dom_unmap(&m);
	return 0;
}

/* xen/arch/x86/hvm/hvm.c: hvmop_set_param (indices past the shim's 64 are
 * -EINVAL, as past HVM_NR_PARAMS). */
int xc_hvm_param_set(xc_interface *xch, uint32_t domid, uint32_t param, uint64_t value)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	if (param >= 64) {
		shim_dom_unmap(&m);
		errno = EINVAL;
		return -1;
	}
	m.st->params[param] = value;
	shim_dom_unmap(&m);
	return 0;
}

/* xen/arch/x86/hvm/hvm.c: hvmop_get_param. */
int xc_hvm_param_get(xc_interface *xch, uint32_t domid, uint32_t param, uint64_t *value)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	if (param >= 64) {
		shim_dom_unmap(&m);
		errno = EINVAL;
		return -1;
	}
	*value = m.st->params[param];
	shim_dom_unmap(&m);
	return 0;
}

/* tools/libs/guest/xg_cpuid_x86.c: the policy calls. */
struct xc_cpu_policy {
	uint32_t nl, nm;
	uint8_t leaves[24 * 64], msrs[16 * 16];
};

/* xg_cpuid_x86.c: xc_cpu_policy_init / _destroy: an opaque buffer. */
xc_cpu_policy_t *xc_cpu_policy_init(void)
{
	return calloc(1, sizeof(xc_cpu_policy_t));
}

void xc_cpu_policy_destroy(xc_cpu_policy_t *p)
{
	free(p);
}

/* xg_cpuid_x86.c: xc_cpu_policy_get_size — the most leaves and MSRs a
 * policy can have (XEN_SYSCTL_get_cpu_policy's sizes). */
int xc_cpu_policy_get_size(xc_interface *xch, uint32_t *nr_leaves, uint32_t *nr_msrs)
{
	(void)xch;
	*nr_leaves = 64;
	*nr_msrs = 16;
	return 0;
}

/* xg_cpuid_x86.c: xc_cpu_policy_get_domain (XEN_DOMCTL_get_cpu_policy). */
int xc_cpu_policy_get_domain(xc_interface *xch, uint32_t domid, xc_cpu_policy_t *p)
{
	struct shim_map m;

	if (dom(xch, domid, &m))
		return -1;
	p->nl = m.st->ncpuid;
	p->nm = m.st->nmsr;
	memcpy(p->leaves, m.st->cpuid, sizeof p->leaves);
	memcpy(p->msrs, m.st->msr, sizeof p->msrs);
	shim_dom_unmap(&m);
	return 0;
}

/* xc_cpu_policy_serialise: -ENOBUFS if the arrays are too small, else the
 * counts written back. */
int xc_cpu_policy_serialise(xc_interface *xch, const xc_cpu_policy_t *p, xen_cpuid_leaf_t *leaves,
			    uint32_t *nr_leaves, xen_msr_entry_t *msrs, uint32_t *nr_msrs)
{
	(void)xch;
	if (*nr_leaves < p->nl || *nr_msrs < p->nm) {
		errno = ENOBUFS;
		return -1;
	}
	memcpy(leaves, p->leaves, p->nl * 24);
	memcpy(msrs, p->msrs, p->nm * 16);
	*nr_leaves = p->nl;
	*nr_msrs = p->nm;
	return 0;
}

/* ---- libxenforeignmemory ---- */

struct xenforeignmemory_handle {
	char host[PATH_MAX];
};

/* tools/libs/foreignmemory/core.c: xenforeignmemory_open (privcmd; the
 * shim: the host directory). */
xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger, unsigned flags)
{
	const char *h = shim_host();
	xenforeignmemory_handle *f;

	(void)logger, (void)flags;
	if (!h || !(f = calloc(1, sizeof *f))) {
		errno = ENOENT;
		return NULL;
	}
	snprintf(f->host, sizeof f->host, "%s", h);
	__atomic_fetch_add(&n_handles, 1, __ATOMIC_RELAXED);
	return f;
}

/* core.c: xenforeignmemory_close. */
int xenforeignmemory_close(xenforeignmemory_handle *f)
{
	if (f) {
		__atomic_fetch_sub(&n_handles, 1, __ATOMIC_RELAXED);
		free(f);
	}
	return 0;
}

/*
 * tools/libs/foreignmemory/linux.c: osdep_xenforeignmemory_map — one mmap
 * of `pages` pages, each page mapped on its own; a page that cannot be
 * mapped gets its error in err[] (-ENOENT for a hole, as privcmd's
 * mmapbatch_v2 reports a gfn with no page) and the call still returns the
 * mapping. Without err, any failure fails the whole call.
 */
void *xenforeignmemory_map(xenforeignmemory_handle *f, uint32_t domid, int prot, size_t pages,
			   const xen_pfn_t arr[], int err[])
{
	struct shim_map m;
	uint8_t *base;
	int failed = 0;

	if (shim_dom_map(f->host, domid, &m) || m.st->state == SHIM_DYING) {
		shim_dom_unmap(&m);
		errno = ESRCH;
		return NULL;
	}
	base = mmap(NULL, pages * 4096, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		shim_dom_unmap(&m);
		return NULL;
	}
	for (size_t i = 0; i < pages; i++) {
		uint64_t pfn = arr[i];
		int e = 0;

		if (pfn >= m.st->nr_frames)
			e = -EINVAL;
		else if (m.st->fail_map_pfn == pfn + 1)
			e = -EIO;
		else if (!(m.pop[pfn / 64] >> (pfn % 64) & 1))
			e = -ENOENT; /* a gfn with no memory behind it, read or write */
		else if (mmap(base + i * 4096, 4096, prot, MAP_SHARED | MAP_FIXED, m.ramfd,
			      (off_t)(pfn * 4096)) == MAP_FAILED)
			e = -errno;
		if (err)
			err[i] = e;
		failed |= e != 0;
	}
	shim_dom_unmap(&m);
	if (failed && !err) {
		munmap(base, pages * 4096);
		errno = EFAULT;
		return NULL;
	}
	__atomic_fetch_add(&n_maps, 1, __ATOMIC_RELAXED);
	return base;
}

/* linux.c: osdep_xenforeignmemory_unmap — munmap of the whole range. */
int xenforeignmemory_unmap(xenforeignmemory_handle *f, void *addr, size_t pages)
{
	(void)f;
	__atomic_fetch_sub(&n_maps, 1, __ATOMIC_RELAXED);
	return munmap(addr, pages * 4096);
}

/* ---- libxenstore: the @releaseDomain watch only ---- */

/*
 * tools/xenstore: @releaseDomain fires whenever a domain is released. The
 * shim polls its host for domains that went away (every 20 ms, on a thread
 * of the handle) and makes the watch fd readable then, with an event
 * {"@releaseDomain", token} for xs_read_watch.
 */
struct xs_handle {
	char host[PATH_MAX];
	int efd;
	pthread_t t;
	bool running, stop;
	char token[64];
	int live; /* domains alive at the last look */
};

static int count_live(void *ctx, struct shim_map *m)
{
	(void)m;
	(*(int *)ctx)++;
	return 0;
}

static void *xs_poll(void *arg)
{
	struct xs_handle *h = arg;

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		int n = 0;
		uint64_t one = 1;

		usleep(20000);
		shim_dom_each(h->host, count_live, &n);
		if (n < h->live && write(h->efd, &one, sizeof one) < 0)
			break;
		h->live = n;
	}
	return NULL;
}

/* tools/libs/store/xs.c: xs_open (the shim: no daemon to connect to). */
struct xs_handle *xs_open(unsigned long flags)
{
	const char *host = shim_host();
	struct xs_handle *h;

	(void)flags;
	if (!host || !(h = calloc(1, sizeof *h)))
		return NULL;
	snprintf(h->host, sizeof h->host, "%s", host);
	h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	__atomic_fetch_add(&n_handles, 1, __ATOMIC_RELAXED);
	return h;
}

/* xs.c: xs_close — the watch thread ends with the handle. */
void xs_close(struct xs_handle *h)
{
	if (!h)
		return;
	if (h->running) {
		__atomic_store_n(&h->stop, true, __ATOMIC_RELEASE);
		pthread_join(h->t, NULL);
	}
	close(h->efd);
	__atomic_fetch_sub(&n_handles, 1, __ATOMIC_RELAXED);
	free(h);
}

/* xs.c: xs_watch; only @releaseDomain is imitated. */
bool xs_watch(struct xs_handle *h, const char *path, const char *token)
{
	if (strcmp(path, "@releaseDomain") || h->running) {
		errno = EINVAL;
		return false;
	}
	snprintf(h->token, sizeof h->token, "%s", token);
	/* The first look before returning, so that no release after the
	 * watch is missed; and, as xenstored does, the watch fires once at
	 * once. */
	h->live = 0;
	shim_dom_each(h->host, count_live, &h->live);
	if (pthread_create(&h->t, NULL, xs_poll, h))
		return false;
	h->running = true;
	{
		uint64_t one = 1;

		if (write(h->efd, &one, sizeof one) < 0)
			return false;
	}
	return true;
}

/* xs.c: xs_fileno — readable when a watch event waits. */
int xs_fileno(struct xs_handle *h)
{
	return h->efd;
}

/* An event: a malloc'd vector {path, token} in one block, as xs_read_watch. */
char **xs_read_watch(struct xs_handle *h, unsigned int *num)
{
	uint64_t v;
	char **ev;

	if (read(h->efd, &v, sizeof v) != sizeof v)
		return NULL;
	ev = malloc(2 * sizeof(char *) + 64 + sizeof h->token);
	if (!ev)
		return NULL;
	ev[0] = (char *)(ev + 2);
	strcpy(ev[0], "@releaseDomain");
	ev[1] = ev[0] + 16;
	snprintf(ev[1], sizeof h->token, "%s", h->token);
	*num = 2;
	return ev;
}
