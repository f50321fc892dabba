/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xen.c — the Xen backend: hv_ops for HVM guests through libxenctrl,
 * libxenforeignmemory, libxenstore and libxenlight (Xen 4.17).
 *
 * A domain is "xen:NAME", its libxl name. The calls are the ones Xen's own
 * save/restore makes (tools/libs/guest/xg_sr_save*.c); where that code
 * embeds policy (five rounds, 50 dirty pages) this backend does not: the
 * engines decide. docs/xen.md says what runs and what has not been run on a
 * Xen host; the unstable interfaces used are marked UNSTABLE below.
 *
 * Source side: open, info, pause, log-dirty, reads through foreign
 * mappings, the context (HVM context, params, TSC, QEMU's device state over
 * QMP), the domain config (libxl's JSON and the CPU policy).
 * Destination side: create starts libxl's restore, and writes, discards and
 * the context become its stream (xen_restore.h); commit renames the domain
 * from NAME--incoming, as xl does.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>
#include <xenforeignmemory.h>
#include <xenstore.h>
#include <libxl.h>
#include <libxl_utils.h>

#include "common/log.h"
#include "common/util.h"
#include "hv/hv.h"
#include "hv/xen_blob.h"
#include "hv/xen_netbuf.h"
#include "hv/xen_qmp.h"
#include "hv/xen_restore.h"

/* UNSTABLE: exported by libxenctrl 4.17 but declared only in its private
 * xc_private.h; Xen's own save code uses it to tell holes from pages. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

extern const struct hv_ops hv_xen_ops;

#define PAGE 4096u
#define MAP_BATCH 1024u
#define QMP_TIMEOUT_MS 10000
#define INCOMING_SUFFIX "--incoming"

/* HVM parameters carried in the context: the list of write_hvm_params in
 * xg_sr_save_x86_hvm.c. */
static const unsigned hvm_params[] = {
	HVM_PARAM_STORE_PFN,         HVM_PARAM_IOREQ_PFN,
	HVM_PARAM_BUFIOREQ_PFN,      HVM_PARAM_PAGING_RING_PFN,
	HVM_PARAM_MONITOR_RING_PFN,  HVM_PARAM_SHARING_RING_PFN,
	HVM_PARAM_VM86_TSS_SIZED,    HVM_PARAM_CONSOLE_PFN,
	HVM_PARAM_ACPI_IOPORTS_LOCATION, HVM_PARAM_VIRIDIAN,
	HVM_PARAM_IDENT_PT,          HVM_PARAM_VM_GENERATION_ID_ADDR,
	HVM_PARAM_IOREQ_SERVER_PFN,  HVM_PARAM_NR_IOREQ_SERVER_PAGES,
	HVM_PARAM_X87_FIP_WIDTH,     HVM_PARAM_MCA_CAP,
};

struct xdom {
	struct hv_domain dom; /* first */
	char name[HV_NAME_MAX + 1];
	char run[PATH_MAX / 2]; /* Xen's run dir, as it was when the handle was made */
	libxl_ctx *ctx;
	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	xentoollog_logger *lg;
	uint32_t domid;       /* 0 while an incoming one is still being built */
	int lockfd;
	uint64_t nr_frames;
	unsigned vcpus;
	uint64_t mem;
	unsigned rw_disks;    /* writable disks in its libxl configuration */
	bool pvh;             /* PVH: no device model */
	bool logdirty;
	/* the dirty bitmap Xen writes (a hypercall buffer) */
	xc_hypercall_buffer_t hbuf;
	unsigned hbuf_pages;
	/* throttling: the cap before ours */
	bool capped;
	uint16_t cap0;
	/* incoming */
	struct xen_restore *rs;
	pthread_mutex_t rs_lock; /* lanes write from several threads */
	bool incoming, committed;
	void *zero;
	/* output gating (replication): a buffer per vif, one gate */
	pthread_mutex_t out_lock;
	struct xen_netbuf **nbs;
	unsigned nnb;
	bool gating;
	struct xen_gate gate;
	/* watch */
	struct xs_handle *xs;
	pthread_t watcher;
	bool watching;
	int dead_fd, stop_fd;
};

static struct xdom *X(struct hv_domain *d)
{
	return (struct xdom *)d;
}

/* Xen's run dir: QEMU's QMP sockets are there, and ferry's locks. */
static const char *run_dir(void)
{
	const char *d = getenv("FERRY_XEN_RUN_DIR");

	return d && *d ? d : "/run/xen";
}

static void qmp_path(const struct xdom *x, char *buf, size_t len)
{
	snprintf(buf, len, "%s/qmp-libxl-%u", x->run, x->domid);
}

/* ---- handles ---- */

static int handles(struct xdom *x)
{
	x->lg = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
	if (libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, x->lg)) {
		log_error("xen: cannot open libxl (is this a Xen dom0, and are we root?)");
		return -ENODEV;
	}
	x->xch = xc_interface_open(x->lg, NULL, 0);
	x->fmem = xenforeignmemory_open(x->lg, 0);
	if (!x->xch || !x->fmem) {
		log_error("xen: cannot open the hypervisor interface: %s", strerror(errno));
		return -ENODEV;
	}
	return 0;
}

static struct xdom *xdom_new(const char *name)
{
	struct xdom *x = calloc(1, sizeof *x);

	if (!x)
		return NULL;
	x->lockfd = x->dead_fd = x->stop_fd = -1;
	x->hbuf = (xc_hypercall_buffer_t){ .hbuf = NULL, .param_shadow = NULL,
					   HYPERCALL_BUFFER_INIT_NO_BOUNCE };
	snprintf(x->name, sizeof x->name, "%s", name);
	snprintf(x->run, sizeof x->run, "%s", run_dir());
	snprintf(x->dom.uri, sizeof x->dom.uri, "xen:%s", name);
	x->dom.ops = &hv_xen_ops;
	pthread_mutex_init(&x->rs_lock, NULL);
	pthread_mutex_init(&x->out_lock, NULL);
	return x;
}

static void stop_watch(struct xdom *x)
{
	if (x->watching) {
		uint64_t one = 1;

		if (write(x->stop_fd, &one, sizeof one) < 0)
			log_warn("xen:%s: stopping the watcher: %s", x->name, strerror(errno));
		pthread_join(x->watcher, NULL);
		x->watching = false;
	}
	if (x->xs)
		xs_close(x->xs);
	x->xs = NULL;
	close_fd(&x->dead_fd);
	close_fd(&x->stop_fd);
}

/* The vifs' buffers: torn down (end) or left holding (a daemon that stops). */
static void drop_buffers(struct xdom *x, bool end)
{
	for (unsigned i = 0; i < x->nnb; i++)
		if (end)
			xen_netbuf_teardown(x->nbs[i]);
		else
			xen_netbuf_forget(x->nbs[i]);
	free(x->nbs);
	x->nbs = NULL;
	x->nnb = 0;
	x->gating = false;
}

static void xdom_free(struct xdom *x)
{
	drop_buffers(x, false);
	stop_watch(x);
	xen_restore_free(x->rs);
	if (x->hbuf.hbuf)
		xc__hypercall_buffer_free_pages(x->xch, &x->hbuf, (int)x->hbuf_pages);
	if (x->fmem)
		xenforeignmemory_close(x->fmem);
	if (x->xch)
		xc_interface_close(x->xch);
	libxl_ctx_free(x->ctx);
	if (x->lg)
		xtl_logger_destroy(x->lg);
	close_fd(&x->lockfd);
	pthread_mutex_destroy(&x->rs_lock);
	pthread_mutex_destroy(&x->out_lock);
	free(x->zero);
	free(x);
}

/* One owner per domain on this host: a lock file in the run dir, named by
 * the domain's name (key), whether it was opened by name or by domid. */
static int take_lock(struct xdom *x, const char *key)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/ferry", x->run);
	if (mkdir_p(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof path, "%s/ferry/%.*s.lock", x->run, HV_NAME_MAX, key);
	x->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (x->lockfd < 0)
		return -errno;
	if (flock(x->lockfd, LOCK_EX | LOCK_NB))
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	return 0;
}

/* Fill nr_frames, vcpus, mem from the hypervisor. */
static int load_shape(struct xdom *x)
{
	libxl_dominfo di;
	xen_pfn_t gpfns = 0;
	int r;

	libxl_dominfo_init(&di);
	r = libxl_domain_info(x->ctx, &di, x->domid);
	if (r == 0 && di.domain_type != LIBXL_DOMAIN_TYPE_HVM &&
	    di.domain_type != LIBXL_DOMAIN_TYPE_PVH) {
		log_error("xen:%s: a PV domain; ferry moves HVM and PVH domains", x->name);
		r = -EOPNOTSUPP;
	} else if (r == 0) {
		x->pvh = di.domain_type == LIBXL_DOMAIN_TYPE_PVH;
		x->vcpus = di.vcpu_online;
		x->mem = di.max_memkb * 1024;
		/* xc_domain_nr_gpfns: the highest gpfn + 1, as x86_hvm_setup. */
		if (xc_domain_nr_gpfns(x->xch, x->domid, &gpfns) < 0 || gpfns == 0) {
			log_error("xen:%s: cannot read its p2m size: %s", x->name, strerror(errno));
			r = -EIO;
		}
		x->nr_frames = gpfns;
	} else {
		r = -ENOENT;
	}
	libxl_dominfo_dispose(&di);
	if (r == 0) {
		/* Its writable disks: replication refuses a guest whose disk
		 * would not roll back with it. */
		libxl_domain_config cfg;

		libxl_domain_config_init(&cfg);
		if (libxl_retrieve_domain_configuration(x->ctx, x->domid, &cfg, NULL)) {
			log_error("xen:%s: cannot read its libxl configuration", x->name);
			r = -EIO;
		}
		for (int i = 0; r == 0 && i < cfg.num_disks; i++)
			x->rw_disks += cfg.disks[i].readwrite != 0;
		libxl_domain_config_dispose(&cfg);
	}
	return r;
}

/* NAME is the domain's name, or else its domid ("xen:17"); lock it. */
static int resolve(struct xdom *x, const char *name)
{
	char *real = NULL, *end;
	unsigned long id;
	int r;

	if (libxl_name_to_domid(x->ctx, name, &x->domid)) {
		errno = 0;
		id = strtoul(name, &end, 10);
		if (errno || *end || !id || id >= 0x7ff0 || !(real = libxl_domid_to_name(x->ctx, (uint32_t)id)))
			return -ENOENT;
		x->domid = (uint32_t)id;
	}
	if (x->domid == 0) {
		free(real);
		return -ENOENT; /* dom0 is not a guest */
	}
	r = take_lock(x, real ? real : name);
	free(real);
	return r;
}

static int xen_open(const char *name, struct hv_domain **out)
{
	struct xdom *x = xdom_new(name);
	int r;

	if (!x)
		return -ENOMEM;
	if (!name_ok(name, HV_NAME_MAX))
		r = -EINVAL;
	else if ((r = handles(x)))
		;
	else if ((r = resolve(x, name)))
		;
	else
		r = load_shape(x);
	if (r) {
		if (r != -EBUSY && r != -ENOENT)
			log_error("xen:%s: cannot open: %s", name, strerror(-r));
		xdom_free(x);
		return r;
	}
	*out = &x->dom;
	return 0;
}

static void xen_close(struct hv_domain *d)
{
	struct xdom *x = X(d);

	if (!d)
		return;
	/* An incoming domain that was never committed ends with its handle. */
	if (x->incoming && !x->committed) {
		xen_restore_free(x->rs);
		x->rs = NULL;
		if (x->domid)
			libxl_domain_destroy(x->ctx, x->domid, NULL);
	}
	xdom_free(x);
}

/* ---- what a domain is ---- */

static int parse_config(const char *config, uint64_t *mem, unsigned *vcpus, uint64_t *frames,
			char *err, size_t errlen)
{
	unsigned long long m = 0, f = 0;
	unsigned v = 0;
	char type[4] = "";
	int n = -1;

	if (sscanf(config, "mem=%llu vcpus=%u frames=%llu type=%3[a-z]%n", &m, &v, &f, type, &n) != 4 ||
	    n < 0 || config[n] || !m || !v || !f || f > (1ULL << 36) ||
	    (strcmp(type, "hvm") && strcmp(type, "pvh"))) {
		snprintf(err, errlen, "not a Xen config record: \"%s\"", config);
		return -EINVAL;
	}
	*mem = m;
	*vcpus = v;
	*frames = f;
	return 0;
}

static int xen_describe(const char *config, json_t **out, char *err, size_t errlen)
{
	uint64_t mem, frames;
	unsigned vcpus;
	int r = parse_config(config, &mem, &vcpus, &frames, err, errlen);

	if (r)
		return r;
	*out = json_pack("{s:I, s:i, s:I, s:s}", "mem", (json_int_t)mem, "vcpus", (int)vcpus,
			 "frames", (json_int_t)frames, "type", strstr(config, "type=pvh") ? "pvh" : "hvm");
	return *out ? 0 : -ENOMEM;
}

static int xen_info(struct hv_domain *d, struct hv_info *o)
{
	struct xdom *x = X(d);
	libxl_dominfo di;

	memset(o, 0, sizeof *o);
	o->page_size = PAGE;
	o->nr_vcpus = x->vcpus;
	o->nr_frames = x->nr_frames;
	o->logdirty = x->logdirty;
	o->incoming = x->incoming && !x->committed;
	o->pid = -1;
	o->rw_disks = x->rw_disks;
	o->paused = 1;
	snprintf(o->config, sizeof o->config, "mem=%" PRIu64 " vcpus=%u frames=%" PRIu64 " type=%s",
		 x->mem, x->vcpus, x->nr_frames, x->pvh ? "pvh" : "hvm");
	if (!x->domid)
		return 0; /* still being built: paused, by definition */
	libxl_dominfo_init(&di);
	if (libxl_domain_info(x->ctx, &di, x->domid)) {
		libxl_dominfo_dispose(&di);
		return -ENOENT;
	}
	o->paused = di.paused;
	libxl_dominfo_dispose(&di);
	return 0;
}

static int xen_list(int (*fn)(void *ctx, const char *name), void *ctx)
{
	struct xdom *x = xdom_new("list");
	libxl_dominfo *all;
	int n = 0, count = 0, r = 0;

	if (!x)
		return -ENOMEM;
	if ((r = handles(x))) {
		xdom_free(x);
		return r;
	}
	all = libxl_list_domain(x->ctx, &n);
	for (int i = 0; all && i < n && r == 0; i++) {
		char *name;

		if (all[i].domid == 0 || all[i].dying)
			continue;
		name = libxl_domid_to_name(x->ctx, all[i].domid);
		if (name && name_ok(name, HV_NAME_MAX)) {
			count++;
			r = fn(ctx, name);
		}
		free(name);
	}
	if (all)
		libxl_dominfo_list_free(all, n);
	else
		r = -EIO;
	xdom_free(x);
	return r ? r : count;
}

static int xen_launch(const char *name, const struct hv_spec *spec, unsigned flags,
		      struct hv_domain **out, char *err, size_t errlen)
{
	(void)spec, (void)flags, (void)out;
	snprintf(err, errlen, "xen:%s: ferry does not start Xen domains; start it with "
		 "`xl create` and ferry finds it", name);
	return -EOPNOTSUPP;
}

/* ---- running ---- */

/* Whether the domain is paused now; -ENOENT if it is gone. Xen counts the
 * toolstack's pauses, and ours are idempotent: look before each. */
static int is_paused(struct xdom *x)
{
	libxl_dominfo di;
	int r;

	libxl_dominfo_init(&di);
	r = libxl_domain_info(x->ctx, &di, x->domid) ? -ENOENT : di.paused;
	libxl_dominfo_dispose(&di);
	return r;
}

static int xen_pause(struct hv_domain *d)
{
	struct xdom *x = X(d);
	int p;

	if (!x->domid)
		return 0;
	if ((p = is_paused(x)))
		return p < 0 ? p : 0;
	if (libxl_domain_pause(x->ctx, x->domid, NULL)) {
		log_error("xen:%s: cannot pause domain %u", x->name, x->domid);
		return -EIO;
	}
	return 0;
}

static int xen_commit(struct hv_domain *d)
{
	struct xdom *x = X(d);
	char inc[HV_NAME_MAX + sizeof INCOMING_SUFFIX];

	if (!x->incoming || x->committed)
		return 0;
	if (!x->domid) {
		log_error("xen:%s: commit before its context arrived", x->name);
		return -EBUSY;
	}
	snprintf(inc, sizeof inc, "%s" INCOMING_SUFFIX, x->name);
	if (libxl_domain_rename(x->ctx, x->domid, inc, x->name)) {
		log_error("xen:%s: cannot rename domain %u from %s", x->name, x->domid, inc);
		return -EIO;
	}
	x->committed = true;
	return 0;
}

static int xen_unpause(struct hv_domain *d)
{
	struct xdom *x = X(d);
	int r;

	if ((r = xen_commit(d)))
		return r;
	if ((r = is_paused(x)) <= 0)
		return r;
	if (libxl_domain_unpause(x->ctx, x->domid, NULL)) {
		log_error("xen:%s: cannot unpause domain %u", x->name, x->domid);
		return -EIO;
	}
	return 0;
}

/* Throttle through the credit scheduler's cap (a percentage of one pCPU per
 * unit: 100 × vCPUs is all of them); credit2 has the same field. */
static int xen_throttle(struct hv_domain *d, unsigned pct)
{
	struct xdom *x = X(d);
	struct xen_domctl_sched_credit c;
	struct xen_domctl_sched_credit2 c2;
	bool two = false;
	uint16_t cap;

	if (pct > 99)
		return -EINVAL;
	if (xc_sched_credit_domain_get(x->xch, x->domid, &c)) {
		if (xc_sched_credit2_domain_get(x->xch, x->domid, &c2)) {
			log_error("xen:%s: cannot read its scheduler parameters", x->name);
			return -EIO;
		}
		two = true;
		c.cap = c2.cap;
	}
	if (!x->capped && pct) {
		x->cap0 = c.cap;
		x->capped = true;
	}
	if (!pct) {
		if (!x->capped)
			return 0;
		cap = x->cap0;
		x->capped = false;
	} else {
		cap = (uint16_t)((100 - pct) * (x->vcpus ? x->vcpus : 1));
		if (x->cap0 && x->cap0 < cap)
			cap = x->cap0;
	}
	c.cap = cap;
	c2.cap = cap;
	if (two ? xc_sched_credit2_domain_set(x->xch, x->domid, &c2)
		: xc_sched_credit_domain_set(x->xch, x->domid, &c)) {
		log_error("xen:%s: cannot set its scheduler cap to %u", x->name, cap);
		return -EIO;
	}
	return 0;
}

/* ---- log-dirty ---- */

static int xen_logdirty_enable(struct hv_domain *d)
{
	struct xdom *x = X(d);

	if (x->logdirty)
		return 0;
	/* As enable_logdirty in xg_sr_save.c: QEMU's VRAM tracking may hold
	 * log-dirty already; turn it off and enable again. */
	if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) &&
	    (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0) ||
	     xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0))) {
		log_error("xen:%s: cannot enable log-dirty: %s", x->name, strerror(errno));
		return -EIO;
	}
	x->logdirty = true;
	return 0;
}

static int xen_logdirty_disable(struct hv_domain *d)
{
	struct xdom *x = X(d);

	if (!x->logdirty)
		return 0;
	if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0)) {
		log_error("xen:%s: cannot disable log-dirty: %s", x->name, strerror(errno));
		return -EIO;
	}
	x->logdirty = false;
	return 0;
}

static int64_t xen_logdirty_harvest(struct hv_domain *d, struct bitmap *dirty, unsigned flags)
{
	struct xdom *x = X(d);
	xc_shadow_op_stats_t stats;
	const uint64_t words = bitmap_words(x->nr_frames);
	const unsigned pages = (unsigned)((words * 8 + PAGE - 1) / PAGE);
	uint64_t *w, n = 0;
	long long r;

	if (!x->logdirty)
		return -EINVAL;
	if (flags & HV_HARVEST_FINAL) {
		struct hv_info i;

		if (xen_info(d, &i) || !i.paused)
			return -EBUSY;
	}
	if (!x->hbuf.hbuf) {
		if (!xc__hypercall_buffer_alloc_pages(x->xch, &x->hbuf, (int)pages))
			return -ENOMEM;
		x->hbuf_pages = pages;
	}
	w = x->hbuf.hbuf;
	memset(w, 0, words * 8);
	r = xc_logdirty_control(x->xch, x->domid,
				flags & HV_HARVEST_PEEK ? XEN_DOMCTL_SHADOW_OP_PEEK
							: XEN_DOMCTL_SHADOW_OP_CLEAN,
				&x->hbuf, x->nr_frames,
				flags & HV_HARVEST_FINAL ? XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL : 0,
				&stats);
	if (r < 0) {
		log_error("xen:%s: reading the dirty log: %s", x->name, strerror(errno));
		return -EIO;
	}
	/* Xen's bitmap is unsigned longs, bit i of word i / 64: ours too. */
	if (x->nr_frames % 64)
		w[words - 1] &= (1ULL << (x->nr_frames % 64)) - 1;
	for (uint64_t i = 0; i < words; i++) {
		dirty->w[i] |= w[i];
		n += (uint64_t)__builtin_popcountll(w[i]);
	}
	return (int64_t)n;
}

static int64_t xen_populated(struct hv_domain *d, struct bitmap *out)
{
	struct xdom *x = X(d);
	xen_pfn_t *t = malloc(MAP_BATCH * sizeof *t);
	int64_t n = 0;

	if (!t)
		return -ENOMEM;
	bitmap_zero(out);
	for (uint64_t f = 0; f < x->nr_frames; f += MAP_BATCH) {
		unsigned k = x->nr_frames - f < MAP_BATCH ? (unsigned)(x->nr_frames - f) : MAP_BATCH;

		for (unsigned i = 0; i < k; i++)
			t[i] = f + i;
		if (xc_get_pfn_type_batch(x->xch, x->domid, k, t)) {
			log_error("xen:%s: reading page types at %" PRIu64 ": %s", x->name, f,
				  strerror(errno));
			free(t);
			return -EIO;
		}
		for (unsigned i = 0; i < k; i++)
			if ((t[i] & XEN_DOMCTL_PFINFO_LTAB_MASK) != XEN_DOMCTL_PFINFO_XTAB &&
			    (t[i] & XEN_DOMCTL_PFINFO_LTAB_MASK) != XEN_DOMCTL_PFINFO_BROKEN) {
				bitmap_set(out, f + i);
				n++;
			}
	}
	free(t);
	return n;
}

/* ---- pages ---- */

static int check_frames(struct xdom *x, const uint64_t *frames, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (frames[i] >= x->nr_frames)
			return -ERANGE;
	return 0;
}

/*
 * Map n frames (n <= MAP_BATCH) with prot, run fn over each page, unmap.
 * A page that cannot be mapped is a hole if its type says so (fn gets
 * NULL), else the whole call fails.
 */
static int with_mapped(struct xdom *x, int prot, const uint64_t *frames, size_t n,
		       int (*fn)(void *page, size_t i, void *arg), void *arg)
{
	xen_pfn_t pfns[MAP_BATCH];
	int errs[MAP_BATCH];
	uint8_t *m;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		pfns[i] = frames[i];
	m = xenforeignmemory_map(x->fmem, x->domid, prot, n, pfns, errs);
	if (!m) {
		log_error("xen:%s: mapping %zu pages: %s", x->name, n, strerror(errno));
		return -EIO;
	}
	for (size_t i = 0; i < n && !r; i++) {
		if (errs[i]) {
			xen_pfn_t t = frames[i];

			if (prot == PROT_READ && !xc_get_pfn_type_batch(x->xch, x->domid, 1, &t) &&
			    (t & XEN_DOMCTL_PFINFO_LTAB_MASK) == XEN_DOMCTL_PFINFO_XTAB) {
				r = fn(NULL, i, arg);
				continue;
			}
			log_error("xen:%s: page %" PRIu64 " cannot be mapped: %s", x->name,
				  frames[i], strerror(-errs[i]));
			r = -EIO;
			break;
		}
		r = fn(m + i * PAGE, i, arg);
	}
	if (xenforeignmemory_unmap(x->fmem, m, n))
		log_warn("xen:%s: unmapping %zu pages: %s", x->name, n, strerror(errno));
	return r;
}

/*
 * Before writing into a built domain: give the frames that are holes
 * memory, as populate_pfns in xg_sr_restore.c does (a foreign mapping of an
 * unpopulated gfn fails). A standby's epoch may carry a page the guest
 * wrote for the first time after the sync.
 */
static int populate(struct xdom *x, const uint64_t *frames, size_t n)
{
	xen_pfn_t t[MAP_BATCH], holes[MAP_BATCH];
	unsigned k = 0;

	for (size_t i = 0; i < n; i++)
		t[i] = frames[i];
	if (xc_get_pfn_type_batch(x->xch, x->domid, (unsigned)n, t)) {
		log_error("xen:%s: reading page types: %s", x->name, strerror(errno));
		return -EIO;
	}
	for (size_t i = 0; i < n; i++)
		if ((t[i] & XEN_DOMCTL_PFINFO_LTAB_MASK) == XEN_DOMCTL_PFINFO_XTAB)
			holes[k++] = frames[i];
	if (k && xc_domain_populate_physmap_exact(x->xch, x->domid, k, 0, 0, holes)) {
		log_error("xen:%s: giving %u frames memory: %s", x->name, k, strerror(errno));
		return -ENOMEM;
	}
	return 0;
}

static int copy_out(void *page, size_t i, void *arg)
{
	void *const *bufs = arg;

	if (page)
		memcpy(bufs[i], page, PAGE);
	else
		memset(bufs[i], 0, PAGE);
	return 0;
}

static int copy_in(void *page, size_t i, void *arg)
{
	const void *const *bufs = arg;

	memcpy(page, bufs[i], PAGE);
	return 0;
}

static int xen_read_pages(struct hv_domain *d, const uint64_t *frames, size_t n, void *const *bufs)
{
	struct xdom *x = X(d);
	int r = check_frames(x, frames, n);

	if (!r && x->rs)
		r = -EOPNOTSUPP; /* HV_F_CREATE_WRITE_ONLY: still a stream to libxl */
	for (size_t done = 0; !r && done < n; done += MAP_BATCH) {
		size_t k = n - done < MAP_BATCH ? n - done : MAP_BATCH;

		r = with_mapped(x, PROT_READ, frames + done, k, copy_out, (void *)(bufs + done));
	}
	return r;
}

static int xen_write_pages(struct hv_domain *d, const uint64_t *frames, size_t n,
			   const void *const *bufs)
{
	struct xdom *x = X(d);
	int r = check_frames(x, frames, n);

	if (!r && x->rs) {
		pthread_mutex_lock(&x->rs_lock);
		r = xen_restore_pages(x->rs, frames, n, bufs);
		pthread_mutex_unlock(&x->rs_lock);
		if (r)
			log_error("xen:%s: feeding libxl's restore: %s", x->name, strerror(-r));
		return r;
	}
	/* Opened, or built by the restore already (a standby's copy, which
	 * later epochs update as Remus' checkpoints do): into the paused
	 * domain through foreign mappings. */
	if (!r && x->incoming && is_paused(x) != 1)
		return -EBUSY;
	for (size_t done = 0; !r && done < n; done += MAP_BATCH) {
		size_t k = n - done < MAP_BATCH ? n - done : MAP_BATCH;

		if (!(r = populate(x, frames + done, k)))
			r = with_mapped(x, PROT_WRITE, frames + done, k, copy_in,
					(void *)(bufs + done));
	}
	return r;
}

/* Discard: the frames become zero. libxc's stream cannot free a page it
 * has populated, so a zero page is written. */
static int xen_discard_pages(struct hv_domain *d, const uint64_t *frames, size_t n)
{
	struct xdom *x = X(d);
	const void *z[64];
	int r = 0;

	if (!x->zero && !(x->zero = calloc(1, PAGE)))
		return -ENOMEM;
	for (size_t i = 0; i < 64; i++)
		z[i] = x->zero;
	for (size_t done = 0; !r && done < n; done += 64)
		r = xen_write_pages(d, frames + done, n - done < 64 ? n - done : 64, z);
	return r;
}

/* ---- the context and the domain config ---- */

static int emulator_state(struct xdom *x, struct xen_buf *b)
{
	char path[PATH_MAX], qmp[PATH_MAX], err[256];
	struct stat st;
	void *data;
	int fd, r;

	if (x->pvh)
		return 0; /* no device model */
	qmp_path(x, qmp, sizeof qmp);
	snprintf(path, sizeof path, "%s/ferry/%s.dm-state", x->run, x->name);
	unlink(path);
	r = xen_qmp(qmp, "xen-save-devices-state",
		    json_pack("{s:s, s:b}", "filename", path, "live", 0), QMP_TIMEOUT_MS, err,
		    sizeof err);
	if (r) {
		log_error("xen:%s: saving QEMU's device state: %s", x->name, err);
		return r;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size > (off_t)(XEN_BLOB_MAX / 2)) {
		r = fd < 0 ? -errno : -E2BIG;
		close_fd(&fd);
		unlink(path);
		log_error("xen:%s: QEMU's device state: %s", x->name, strerror(-r));
		return r;
	}
	data = malloc((size_t)st.st_size + 1);
	r = !data ? -ENOMEM : pio_full(fd, data, (size_t)st.st_size, 0, false);
	if (!r)
		r = xen_buf_add(b, XREC_EMULATOR, data, (size_t)st.st_size);
	free(data);
	close(fd);
	unlink(path);
	return r;
}

static int xen_save_context(struct hv_domain *d, void **blob, size_t *len)
{
	struct xdom *x = X(d);
	struct xen_buf b = { 0 };
	struct hv_info i;
	uint8_t *hvm = NULL;
	int size, r;

	if ((r = xen_info(d, &i)))
		return r;
	if (!i.paused)
		return -EBUSY;
	{
		/* X86_TSC_INFO, as write_x86_tsc_info. */
		struct {
			uint32_t mode, khz;
			uint64_t nsec;
			uint32_t incarnation, res;
		} tsc = { 0 };

		if (xc_domain_get_tsc_info(x->xch, x->domid, &tsc.mode, &tsc.nsec, &tsc.khz,
					   &tsc.incarnation)) {
			log_error("xen:%s: reading its TSC: %s", x->name, strerror(errno));
			return -EIO;
		}
		if ((r = xen_buf_add(&b, XREC_X86_TSC_INFO, &tsc, sizeof tsc)))
			goto out;
	}
	/* HVM_CONTEXT, as write_hvm_context: ask the size, then the data. */
	size = xc_domain_hvm_getcontext(x->xch, x->domid, NULL, 0);
	if (size <= 0 || (size_t)size > XEN_BLOB_MAX / 2 || !(hvm = malloc((size_t)size)) ||
	    (size = xc_domain_hvm_getcontext(x->xch, x->domid, hvm, (uint32_t)size)) <= 0) {
		log_error("xen:%s: reading its HVM context: %s", x->name, strerror(errno));
		r = -EIO;
		goto out;
	}
	if ((r = xen_buf_add(&b, XREC_HVM_CONTEXT, hvm, (size_t)size)))
		goto out;
	{
		/* HVM_PARAMS, as write_hvm_params: the non-zero ones. */
		struct {
			uint32_t count, res;
			uint64_t e[2 * ARRAY_SIZE(hvm_params)];
		} p = { 0 };

		for (size_t k = 0; k < ARRAY_SIZE(hvm_params); k++) {
			uint64_t v;

			if (xc_hvm_param_get(x->xch, x->domid, hvm_params[k], &v)) {
				log_error("xen:%s: reading HVM param %u: %s", x->name, hvm_params[k],
					  strerror(errno));
				r = -EIO;
				goto out;
			}
			if (v) {
				p.e[2 * p.count] = hvm_params[k];
				p.e[2 * p.count + 1] = v;
				p.count++;
			}
		}
		if (p.count && (r = xen_buf_add(&b, XREC_HVM_PARAMS, &p, 8 + 16 * (size_t)p.count)))
			goto out;
	}
	r = emulator_state(x, &b);
out:
	free(hvm);
	if (r) {
		xen_buf_free(&b);
		return r;
	}
	*blob = b.p;
	*len = b.len;
	return 0;
}

/* QEMU's device state into the running device model of a paused domain,
 * as libxl's COLO secondary does (QMP xen-load-devices-state). */
static int load_emulator(struct xdom *x, const struct xen_rec *r)
{
	char path[PATH_MAX], qmp[PATH_MAX], err[256];
	int fd, e;

	qmp_path(x, qmp, sizeof qmp);
	snprintf(path, sizeof path, "%s/ferry/%s.dm-load", x->run, x->name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	e = pio_full(fd, (void *)r->body, r->len, 0, true);
	close(fd);
	if (!e)
		e = xen_qmp(qmp, "xen-load-devices-state", json_pack("{s:s}", "filename", path),
			    QMP_TIMEOUT_MS, err, sizeof err);
	if (e)
		log_error("xen:%s: loading QEMU's device state: %s", x->name,
			  e == -EIO ? err : strerror(-e));
	unlink(path);
	return e;
}

/*
 * A later context into a domain that exists and is paused (a standby's
 * copy at each epoch): what libxc's restore does at the end of a
 * checkpoint (handle_x86_tsc_info, handle_hvm_context, handle_hvm_params
 * in xg_sr_restore_x86_hvm.c and xg_sr_common_x86.c), and QEMU's state.
 */
static int set_context(struct xdom *x, const void *blob, size_t len)
{
	struct xen_rec r;
	size_t off = 0;
	int e = 0;

	if (is_paused(x) != 1) {
		log_error("xen:%s: a context needs the domain paused", x->name);
		return -EBUSY;
	}
	while (!e && xen_blob_next(blob, len, &off, &r) > 0) {
		const uint8_t *b = r.body;

		switch (r.type) {
		case XREC_X86_TSC_INFO: {
			uint32_t mode, khz, inc;
			uint64_t nsec;

			memcpy(&mode, b, 4);
			memcpy(&khz, b + 4, 4);
			memcpy(&nsec, b + 8, 8);
			memcpy(&inc, b + 16, 4);
			if (xc_domain_set_tsc_info(x->xch, x->domid, mode, nsec, khz, inc))
				e = -EIO;
			break;
		}
		case XREC_HVM_CONTEXT:
			if (xc_domain_hvm_setcontext(x->xch, x->domid, (uint8_t *)r.body, r.len))
				e = -EIO;
			break;
		case XREC_HVM_PARAMS: {
			uint32_t n;

			memcpy(&n, b, 4);
			for (uint32_t i = 0; !e && i < n; i++) {
				uint64_t kv[2];

				memcpy(kv, b + 8 + 16 * (size_t)i, 16);
				if (xc_hvm_param_set(x->xch, x->domid, (uint32_t)kv[0], kv[1]))
					e = -EIO;
			}
			break;
		}
		case XREC_EMULATOR:
			e = load_emulator(x, &r);
			break;
		}
		if (e == -EIO && r.type != XREC_EMULATOR)
			log_error("xen:%s: setting its context (record %#x): %s", x->name, r.type,
				  strerror(errno));
	}
	return e;
}

static int xen_load_context(struct hv_domain *d, const void *blob, size_t len)
{
	struct xdom *x = X(d);
	char err[256];
	int r;

	if ((r = xen_blob_check(XEN_BLOB_CONTEXT, blob, len, err, sizeof err))) {
		log_error("xen:%s: a bad context: %s", x->name, err);
		return r;
	}
	if (!x->rs)
		return set_context(x, blob, len);
	pthread_mutex_lock(&x->rs_lock);
	r = xen_restore_finish(x->rs, blob, len, &x->domid);
	xen_restore_free(x->rs);
	x->rs = NULL;
	pthread_mutex_unlock(&x->rs_lock);
	if (r)
		log_error("xen:%s: the restore failed: %s", x->name, strerror(-r));
	return r;
}

static int xen_domain_config(struct hv_domain *d, void **blob, size_t *len)
{
	struct xdom *x = X(d);
	struct xen_buf b = { 0 };
	libxl_domain_config cfg;
	xc_cpu_policy_t *pol = NULL;
	xen_cpuid_leaf_t *leaves = NULL;
	xen_msr_entry_t *msrs = NULL;
	uint32_t nl = 0, nm = 0;
	char *json = NULL;
	int r = -EIO;

	libxl_domain_config_init(&cfg);
	if (libxl_retrieve_domain_configuration(x->ctx, x->domid, &cfg, NULL) ||
	    !(json = libxl_domain_config_to_json(x->ctx, &cfg))) {
		log_error("xen:%s: cannot read its libxl configuration", x->name);
		goto out;
	}
	if ((r = xen_buf_add(&b, XREC_LIBXL_CONFIG, json, strlen(json) + 1)))
		goto out;
	/* The CPU policy, as write_x86_cpu_policy_records. */
	r = -EIO;
	if (xc_cpu_policy_get_size(x->xch, &nl, &nm) ||
	    !(leaves = calloc(nl ? nl : 1, sizeof *leaves)) ||
	    !(msrs = calloc(nm ? nm : 1, sizeof *msrs)) || !(pol = xc_cpu_policy_init()) ||
	    xc_cpu_policy_get_domain(x->xch, x->domid, pol) ||
	    xc_cpu_policy_serialise(x->xch, pol, leaves, &nl, msrs, &nm)) {
		log_error("xen:%s: cannot read its CPU policy: %s", x->name, strerror(errno));
		goto out;
	}
	if ((nl && (r = xen_buf_add(&b, XREC_X86_CPUID_POLICY, leaves, nl * sizeof *leaves))) ||
	    (nm && (r = xen_buf_add(&b, XREC_X86_MSR_POLICY, msrs, nm * sizeof *msrs))))
		goto out;
	r = b.len > HV_DOMAIN_CONFIG_MAX ? -E2BIG : 0;
	if (r)
		log_error("xen:%s: its configuration is %zu bytes, more than a stream carries",
			  x->name, b.len);
out:
	xc_cpu_policy_destroy(pol);
	free(leaves);
	free(msrs);
	free(json);
	libxl_domain_config_dispose(&cfg);
	if (r) {
		xen_buf_free(&b);
		return r;
	}
	*blob = b.p;
	*len = b.len;
	return 0;
}

static int xen_create(const char *name, const char *config, const void *dconf, size_t dconf_len,
		      struct hv_domain **out)
{
	struct xdom *x = xdom_new(name);
	libxl_domain_config cfg;
	struct xen_rec rec;
	char err[256], inc[HV_NAME_MAX + sizeof INCOMING_SUFFIX];
	uint32_t other;
	int r, ver;

	if (!x)
		return -ENOMEM;
	libxl_domain_config_init(&cfg);
	if (!name_ok(name, HV_NAME_MAX)) {
		r = -EINVAL;
		goto fail;
	}
	if ((r = parse_config(config, &x->mem, &x->vcpus, &x->nr_frames, err, sizeof err)) ||
	    (r = !dconf ? -EINVAL : xen_blob_check(XEN_BLOB_DOMAIN_CONFIG, dconf, dconf_len, err,
						    sizeof err))) {
		if (!dconf)
			snprintf(err, sizeof err, "no domain config came with it");
		log_error("xen:%s: cannot create: %s", name, err);
		goto fail;
	}
	if ((r = handles(x)))
		goto fail;
	snprintf(inc, sizeof inc, "%s" INCOMING_SUFFIX, name);
	if (!libxl_name_to_domid(x->ctx, name, &other) || !libxl_name_to_domid(x->ctx, inc, &other)) {
		r = -EEXIST;
		goto fail;
	}
	if ((r = take_lock(x, name)))
		goto fail;
	xen_blob_find(dconf, dconf_len, XREC_LIBXL_CONFIG, &rec);
	if (libxl_domain_config_from_json(x->ctx, &cfg, rec.body)) {
		log_error("xen:%s: libxl cannot read the domain config that came", name);
		r = -EINVAL;
		goto fail;
	}
	/* Built as NAME--incoming and renamed at commit, as xl does. */
	free(cfg.c_info.name);
	cfg.c_info.name = strdup(inc);
	ver = xc_version(x->xch, XENVER_version, NULL);
	if (!cfg.c_info.name || ver < 0) {
		r = !cfg.c_info.name ? -ENOMEM : -EIO;
		goto fail;
	}
	if ((r = xen_restore_start(x->ctx, &cfg, dconf, dconf_len, ver, &x->rs))) {
		log_error("xen:%s: cannot start libxl's restore: %s", name, strerror(-r));
		libxl_domain_config_init(&cfg); /* taken over */
		goto fail;
	}
	x->incoming = true;
	*out = &x->dom;
	return 0;
fail:
	libxl_domain_config_dispose(&cfg);
	xdom_free(x);
	return r;
}

/* ---- death ---- */

/* @releaseDomain fires for any domain: look whether ours is the one. */
static void *watch_main(void *arg)
{
	struct xdom *x = arg;
	struct pollfd p[2] = { { .fd = xs_fileno(x->xs), .events = POLLIN },
			       { .fd = x->stop_fd, .events = POLLIN } };
	uint64_t one = 1;

	for (;;) {
		libxl_dominfo di;
		bool gone;
		unsigned n;
		char **ev;

		libxl_dominfo_init(&di);
		gone = libxl_domain_info(x->ctx, &di, x->domid) || di.dying || di.shutdown;
		libxl_dominfo_dispose(&di);
		if (gone) {
			if (write(x->dead_fd, &one, sizeof one) < 0)
				log_warn("xen:%s: %s", x->name, strerror(errno));
			return NULL;
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (p[0].revents && (ev = xs_read_watch(x->xs, &n)))
			free(ev);
	}
}

static int xen_watch(struct hv_domain *d, int *fd)
{
	struct xdom *x = X(d);

	if (!x->watching) {
		if (!x->domid)
			return -EBUSY;
		x->dead_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		x->stop_fd = eventfd(0, EFD_CLOEXEC);
		x->xs = xs_open(0);
		if (x->dead_fd < 0 || x->stop_fd < 0 || !x->xs ||
		    !xs_watch(x->xs, "@releaseDomain", "ferry") ||
		    pthread_create(&x->watcher, NULL, watch_main, x)) {
			log_error("xen:%s: cannot watch it through xenstore", x->name);
			stop_watch(x);
			return -EIO;
		}
		x->watching = true;
	}
	*fd = x->dead_fd;
	return 0;
}

static int xen_destroy(struct hv_domain *d)
{
	struct xdom *x = X(d);

	if (x->rs) {
		/* Still being built: ending the stream makes libxl undo it. */
		xen_restore_free(x->rs);
		x->rs = NULL;
		x->committed = true; /* nothing left for close to undo */
		return 0;
	}
	pthread_mutex_lock(&x->out_lock);
	drop_buffers(x, true);
	pthread_mutex_unlock(&x->out_lock);
	if (x->domid && libxl_domain_destroy(x->ctx, x->domid, NULL)) {
		log_error("xen:%s: cannot destroy domain %u", x->name, x->domid);
		return -ETIMEDOUT;
	}
	x->committed = true;
	return 0;
}

/* ---- output gating ---- */

static int plug_all(void *ctx, enum xen_plug_op op)
{
	struct xdom *x = ctx;
	int r = 0;

	for (unsigned i = 0; i < x->nnb; i++) {
		int e = xen_netbuf_plug(x->nbs[i], op);

		r = r ? r : e;
	}
	return r;
}

/* A buffer on every vif of the domain (libxl's nic list: its ifname, or
 * vifDOMID.DEVID as libxl names them). */
static int start_gating(struct xdom *x, uint64_t epoch)
{
	libxl_device_nic *nics;
	int n = 0, r = 0;
	bool held_any = false;

	nics = libxl_device_nic_list(x->ctx, x->domid, &n);
	if (n && !(x->nbs = calloc((size_t)n, sizeof *x->nbs)))
		r = -ENOMEM;
	for (int i = 0; !r && i < n; i++) {
		char vif[32], err[256];
		bool held;

		if (nics[i].ifname)
			snprintf(vif, sizeof vif, "%s", nics[i].ifname);
		else
			snprintf(vif, sizeof vif, "vif%u.%d", x->domid, nics[i].devid);
		r = xen_netbuf_setup(vif, &x->nbs[x->nnb], &held, err, sizeof err);
		if (r)
			log_error("xen:%s: holding the output of %s: %s", x->name, vif, err);
		else
			x->nnb++, held_any |= held;
	}
	if (nics)
		libxl_device_nic_list_free(nics, n);
	if (r) {
		drop_buffers(x, true);
		return r;
	}
	x->gate = (struct xen_gate){ .plug = plug_all, .ctx = x };
	x->gating = true;
	return xen_gate_hold(&x->gate, epoch, held_any);
}

static int xen_output(struct hv_domain *d, enum hv_output op, uint64_t epoch)
{
	struct xdom *x = X(d);
	int r = 0;

	pthread_mutex_lock(&x->out_lock);
	if (op == HV_OUTPUT_HOLD)
		r = x->gating ? xen_gate_mark(&x->gate, epoch) : start_gating(x, epoch);
	else if (!x->gating)
		r = op == HV_OUTPUT_OPEN ? 0 : -EINVAL;
	else if (op == HV_OUTPUT_MARK)
		r = xen_gate_mark(&x->gate, epoch);
	else if (op == HV_OUTPUT_RELEASE)
		r = xen_gate_release(&x->gate, epoch);
	else if (op == HV_OUTPUT_OPEN) {
		r = xen_gate_open(&x->gate);
		drop_buffers(x, true);
	}
	pthread_mutex_unlock(&x->out_lock);
	return r;
}

static int xen_extra(struct hv_domain *d, enum hv_extra what, json_t **out)
{
	struct xdom *x = X(d);
	libxl_dominfo di;

	if (what != HV_EXTRA_STATS)
		return -EOPNOTSUPP;
	libxl_dominfo_init(&di);
	if (libxl_domain_info(x->ctx, &di, x->domid)) {
		libxl_dominfo_dispose(&di);
		return -ENOENT;
	}
	*out = json_pack("{s:i, s:I, s:b}", "domid", (int)x->domid, "cpu_time_ns",
			 (json_int_t)di.cpu_time, "paused", di.paused);
	libxl_dominfo_dispose(&di);
	return *out ? 0 : -ENOMEM;
}

const struct hv_ops hv_xen_ops = {
	.prefix = "xen",
	.flags = HV_F_CREATE_WRITE_ONLY,
	.open = xen_open,
	.close = xen_close,
	.create = xen_create,
	.launch = xen_launch,
	.list = xen_list,
	.describe = xen_describe,
	.info = xen_info,
	.commit = xen_commit,
	.pause = xen_pause,
	.unpause = xen_unpause,
	.throttle = xen_throttle,
	.logdirty_enable = xen_logdirty_enable,
	.logdirty_disable = xen_logdirty_disable,
	.logdirty_harvest = xen_logdirty_harvest,
	.populated = xen_populated,
	.read_pages = xen_read_pages,
	.write_pages = xen_write_pages,
	.discard_pages = xen_discard_pages,
	.save_context = xen_save_context,
	.load_context = xen_load_context,
	.domain_config = xen_domain_config,
	.watch = xen_watch,
	.destroy = xen_destroy,
	.extra = xen_extra,
	.output = xen_output,
};
