/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hv.h — the hypervisor interface: everything an engine (migrate/, replicate/)
 * or a tool may do to a domain.
 *
 * A backend is one ops table (struct hv_ops) in its own file, registered under
 * a URI prefix: "mvm:web1" is the microVM named web1, "xen:17" would be a Xen
 * domid. Callers use the hv_*() wrappers, which pick the backend from the URI
 * and otherwise pass straight through. Nothing outside hv/ knows a backend by
 * name: a daemon lists, launches, adopts and describes domains through these
 * ops, and reaches a backend's extras (mvm's verifier) through the optional
 * extra op.
 *
 * Common rules, for every op and every backend:
 *  - Return 0 (or a count, where stated) on success, a negative errno on
 *    failure; the backend logs a message naming the domain.
 *  - Every op may block (on the domain's runtime or the hypervisor). A handle
 *    is used by one thread at a time; different handles are independent.
 *    The one exception is output: any thread may call it at any time, also
 *    while another op runs on the handle (replication releases output when
 *    an acknowledgement arrives, in the middle of the next epoch).
 *  - Frames are guest page frame numbers in [0, nr_frames); a frame outside
 *    that range is -ERANGE and nothing is touched.
 *  - Bitmaps passed in are sized nr_frames bits (struct bitmap from common/).
 *  - The caller owns everything it passes in; blobs handed out
 *    (save_context) are malloc'd and owned by the caller afterwards.
 */
#ifndef FERRY_HV_H
#define FERRY_HV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/bitmap.h"

struct hv_domain;

#define HV_CONFIG_MAX 512 /* config record, a NUL-terminated key=value list */
#define HV_NAME_MAX 64    /* a domain's name: name_ok(name, HV_NAME_MAX) */
#define HV_URI_MAX 128
#define HV_CONTEXT_MAX (1u << 20)
#define HV_DOMAIN_CONFIG_MAX (64u << 10) /* = STREAM_DOMAIN_CONFIG_MAX */

struct hv_info {
	uint32_t page_size;
	uint32_t nr_vcpus;
	uint64_t nr_frames;
	uint32_t paused;    /* 1 if every writer of guest RAM is parked */
	uint32_t logdirty;  /* 1 if write tracking is on */
	uint32_t incoming;  /* made by create and not committed yet: it ends with
			     * its handle */
	int32_t pid;        /* runtime process, or -1 where there is none */
	uint32_t rw_disks;  /* writable disks attached (the microVM has none) */
	/* Backend config, e.g. "mem=1073741824 vcpus=2 workload=dirtier:ws=256M".
	 * It is what create() needs to make a matching empty domain. */
	char config[HV_CONFIG_MAX];
};

/* What a new domain should be (launch): the generic part, and one text
 * that only its backend reads. */
struct hv_spec {
	uint64_t mem;       /* bytes of RAM; 0: the backend's default */
	unsigned vcpus;     /* 0: the backend's default */
	const char *detail; /* backend-specific, NULL for its default; mvm: the
			     * guest's workload ("dirtier:ws=256M,rate=64") */
	const char *net;    /* the guest's service address "ADDR:PORT", or NULL:
			     * it moves with the guest (hv_net_attach) */
};

/* Output gating (hv_ops.output): a guest's network output held per epoch,
 * for replication's output commit. */
enum hv_output {
	HV_OUTPUT_HOLD = 1, /* from now on output waits; epoch: the one starting.
			     * Output still held from before (a hold already on:
			     * the primary's daemon restarted) stays held, as
			     * epoch - 1 */
	HV_OUTPUT_MARK,     /* a new epoch starts now (the guest is paused): output
			     * before it belongs to the earlier epochs */
	HV_OUTPUT_RELEASE,  /* output of every epoch up to epoch may leave */
	HV_OUTPUT_OPEN,     /* no more gating: everything leaves at once */
};

/* hv_ops.flags */
#define HV_F_CREATE_WRITE_ONLY 0x1 /* a created domain's pages cannot be read
				    * back before its commit (Xen: they are
				    * fed to the toolstack's restore as a
				    * stream), so no delta against them */

/* launch flags */
#define HV_LAUNCH_PAUSED 0x1 /* start with every writer parked */

/* The optional extras a backend may offer (hv_ops.extra). */
enum hv_extra {
	/* The domain's own statistics, as a JSON object of the backend's keys
	 * (mvm: steps, halted, max_gap_ms, resume_gap_ms). */
	HV_EXTRA_STATS,
	/* A deep check of the guest's memory (pauses it meanwhile):
	 * {"verified": bool, "result": "ok" or why not, and the backend's
	 * counts}. */
	HV_EXTRA_VERIFY,
};

/* logdirty_harvest flags */
#define HV_HARVEST_PEEK 0x1  /* report without clearing */
#define HV_HARVEST_FINAL 0x2 /* the paused pass of stop-and-copy; -EBUSY if not paused */

struct hv_ops {
	const char *prefix; /* "mvm" */

	/*
	 * open: attach to the running domain NAME (the URI without its prefix).
	 * One owner at a time: a second open of the same domain, from any
	 * process, is -EBUSY (not logged: the caller says what it means).
	 * -ENOENT if there is no such domain.
	 */
	int (*open)(const char *name, struct hv_domain **out);
	/* close: detach; the domain keeps running as it is (paused stays paused,
	 * logdirty stays as it is). Never fails; NULL is a no-op. */
	void (*close)(struct hv_domain *d);
	/*
	 * create: make an empty, paused domain NAME on this host whose memory
	 * size and vCPUs match config (hv_info.config of the source). Its RAM is
	 * all zero. For the microVM it is an incoming runtime that exits if the
	 * returned handle is closed before the first unpause (the commit); it is
	 * the caller's child, reaped by close/destroy once it has ended (a
	 * committed one that outlives its handle is the caller's to reap).
	 * dconf: the source's domain_config blob (NULL, 0 if it gave none);
	 * a backend that needs one and got none, or got one it cannot read,
	 * says -EINVAL. -EEXIST if NAME is taken.
	 */
	int (*create)(const char *name, const char *config, const void *dconf, size_t dconf_len,
		      struct hv_domain **out);
	/*
	 * Optional. domain_config: the domain's whole configuration as the
	 * toolstack knows it, for create on another host, where the short
	 * config text is not enough (Xen: the libxl domain configuration and
	 * the CPU policy). *blob is malloc'd (at most HV_DOMAIN_CONFIG_MAX
	 * bytes) and the caller's. NULL: the config text is all there is.
	 */
	int (*domain_config)(struct hv_domain *d, void **blob, size_t *len);
	/* HV_F_* */
	unsigned flags;
	/*
	 * launch: start a new, running (HV_LAUNCH_PAUSED: paused) domain NAME
	 * as spec says, committed from the start: it outlives the handle, so a
	 * daemon that ends leaves it running. -EEXIST if NAME is taken; -EINVAL
	 * for a spec the backend refuses, with a sentence in err.
	 */
	int (*launch)(const char *name, const struct hv_spec *spec, unsigned flags,
		      struct hv_domain **out, char *err, size_t errlen);
	/*
	 * list: call fn(ctx, name) for every domain of this backend alive on
	 * this host now (whoever holds it open). Stops at the first non-zero
	 * value of fn and returns it; else the count, or -errno.
	 */
	int (*list)(int (*fn)(void *ctx, const char *name), void *ctx);
	/*
	 * describe: what a config record (hv_info.config) asks for, as a JSON
	 * object for listings: "mem" (bytes) and "vcpus", "net" (the service
	 * address) if it has one, then the backend's own keys (mvm:
	 * "workload"). *out is the caller's. -EINVAL with a sentence in err if
	 * the record is not one of this backend's.
	 */
	int (*describe)(const char *config, json_t **out, char *err, size_t errlen);
	int (*info)(struct hv_domain *d, struct hv_info *out);
	/*
	 * commit: make a created domain permanent without running it: from now
	 * on it outlives its handle. The first unpause commits too. Idempotent;
	 * a no-op for a domain that was opened rather than created.
	 */
	int (*commit)(struct hv_domain *d);

	/*
	 * pause: stop every writer of guest RAM (vCPUs, device and network
	 * threads) at a step boundary and return once all are parked. unpause:
	 * let them run. Both are idempotent.
	 */
	int (*pause)(struct hv_domain *d);
	int (*unpause)(struct hv_domain *d);
	/*
	 * Optional. warm: a pause that must be quick follows (a migration's
	 * stop-and-copy): do now, while the guest runs, what would otherwise
	 * make it slow. Best effort; NULL is a no-op.
	 */
	void (*warm)(struct hv_domain *d);
	/*
	 * Optional. paused_ns: the guest's own pause, as the domain measured
	 * it — from the pause's arrival until the guest ran again, without the
	 * caller's round trips before and after — one behind: after an
	 * unpause, the pause that the unpause before it ended (so that no
	 * unpause waits for the guest to run). 0 if unknown (NULL: always).
	 */
	uint64_t (*paused_ns)(struct hv_domain *d);
	/* throttle: slow the vCPUs to (100 - pct)% of their speed; 0 undoes it.
	 * pct in [0, 99], else -EINVAL. */
	int (*throttle)(struct hv_domain *d, unsigned pct);

	/*
	 * logdirty_enable: start write tracking; from now on every frame written
	 * (by a vCPU or a device of the domain) is reported by the next harvest.
	 * logdirty_disable: stop it. Both idempotent.
	 */
	int (*logdirty_enable)(struct hv_domain *d);
	int (*logdirty_disable)(struct hv_domain *d);
	/*
	 * logdirty_harvest: OR the frames written since the last harvest (or
	 * since enable) into *dirty, and clear the log unless HV_HARVEST_PEEK.
	 * Exact: no written frame is ever missed; a frame is reported at most
	 * once per write-after-harvest. Returns the number of dirty frames found
	 * (>= 0). -EINVAL if logging is off.
	 * On any other error part of the log may already have been read and
	 * cleared: the bits set in *dirty so far are valid and must be kept, and
	 * the caller must treat every frame as dirty before it trusts the log
	 * again (a migration sends everything, or gives up).
	 */
	int64_t (*logdirty_harvest)(struct hv_domain *d, struct bitmap *dirty, unsigned flags);
	/* populated: set in *out (after zeroing it) every frame that exists; the
	 * others read as zero and need not be read. Returns the count. */
	int64_t (*populated)(struct hv_domain *d, struct bitmap *out);

	/*
	 * read_pages: copy n frames into bufs[i] (page_size bytes each): a
	 * snapshot that later guest writes do not change. May be called while
	 * the domain runs. write_pages: store n frames from bufs (destination
	 * side, domain paused). discard_pages: make n frames zero and release
	 * their memory.
	 */
	int (*read_pages)(struct hv_domain *d, const uint64_t *frames, size_t n, void *const *bufs);
	int (*write_pages)(struct hv_domain *d, const uint64_t *frames, size_t n,
			   const void *const *bufs);
	int (*discard_pages)(struct hv_domain *d, const uint64_t *frames, size_t n);

	/*
	 * save_context: the vCPU, platform and device state as one opaque blob
	 * (at most HV_CONTEXT_MAX bytes); domain must be paused (-EBUSY).
	 * *blob is malloc'd and the caller frees it. load_context: install such a
	 * blob into a paused domain; the blob is validated, -EINVAL if malformed.
	 */
	int (*save_context)(struct hv_domain *d, void **blob, size_t *len);
	int (*load_context)(struct hv_domain *d, const void *blob, size_t len);

	/*
	 * watch: an fd, owned by the handle, that polls readable once the domain
	 * has died. Valid until close.
	 */
	int (*watch)(struct hv_domain *d, int *fd);
	/* destroy: end the domain and free its resources; the handle must still
	 * be closed afterwards. -ETIMEDOUT if it could not be ended. */
	int (*destroy)(struct hv_domain *d);

	/*
	 * Optional (NULL: hv_extra says -EOPNOTSUPP). extra: one of the
	 * backend's extras as a JSON object (*out, the caller's; NULL on
	 * failure).
	 */
	int (*extra)(struct hv_domain *d, enum hv_extra what, json_t **out);
	/*
	 * Optional. net_attach: give the domain fd (taken over), a listening TCP
	 * socket bound to its service address, from which it accepts its
	 * clients (the microVM: host sockets stand in for the guest's own
	 * network stack; a Xen guest needs none); fd -1: stop listening. The
	 * daemon makes the socket where the guest runs (at create and at
	 * resume) and takes it away at GO, so that two hosts never listen at
	 * once.
	 */
	int (*net_attach)(struct hv_domain *d, int fd);
	/* Optional. output: gate the domain's network output per epoch
	 * (enum hv_output; Xen: the plug qdisc, as xl remus). */
	int (*output)(struct hv_domain *d, enum hv_output op, uint64_t epoch);

	/*
	 * Optional, all four or none: post-copy, on the destination (NULL:
	 * the backend has none; Xen 4.17 has none).
	 * postcopy_begin (domain paused, made by create): from now on the
	 * frames set in missing are missing — their content is dropped, and
	 * any thread of the domain (vCPU or device, user or kernel access)
	 * that touches one waits until it is placed. *fd (the handle's) polls
	 * readable while touches wait. -EOPNOTSUPP with a log line if this
	 * domain cannot (mvm: a runtime not started as root, with a NIC).
	 * Until postcopy_end, write_pages and discard_pages place frames:
	 * a frame already present stays as it is (whichever copy comes first
	 * wins), every thread waiting on a placed frame runs on, and they may
	 * be called from any thread while the domain runs; read_pages of a
	 * missing frame is -EAGAIN.
	 * postcopy_faults: up to max missing frames touched since the last
	 * call (a frame may repeat), their count or -errno; a touched frame
	 * that is not missing (a hole) is placed as zero on the spot. *left:
	 * the frames still missing.
	 * postcopy_end: every frame is present, touches are no longer
	 * reported; -EBUSY while frames are missing.
	 */
	int (*postcopy_begin)(struct hv_domain *d, const struct bitmap *missing, int *fd);
	/* postcopy_reattach: the same for a domain that runs in post-copy
	 * already, whose handle's holder ended (a daemon restart): the frames
	 * with no memory are missing (into *missing, sized nr_frames; it may
	 * name some that are zero at the source too), nothing is dropped. */
	int (*postcopy_reattach)(struct hv_domain *d, struct bitmap *missing, int *fd);
	int (*postcopy_faults)(struct hv_domain *d, uint64_t *frames, size_t max, uint64_t *left);
	int (*postcopy_end)(struct hv_domain *d);
};

/* A handle: the backend's ops and its private state. */
struct hv_domain {
	const struct hv_ops *ops;
	char uri[HV_URI_MAX];
};

/* Backend registry, keyed by URI prefix. */
const struct hv_ops *hv_backend(const char *uri, const char **name);
/* The backend used where none is named: the first registered (mvm). */
const char *hv_default_backend(void);
/* "BACKEND:NAME" into buf (backend NULL: the default). -ENAMETOOLONG,
 * -EINVAL for an unknown backend or a name that is not name_ok. */
int hv_uri(char *buf, size_t len, const char *backend, const char *name);
/* The part of uri after its prefix (uri itself if it has none). */
const char *hv_uri_name(const char *uri);
/* The backend a handle belongs to ("mvm"): what a stream's header names. */
static inline const char *hv_backend_name(const struct hv_domain *d) { return d->ops->prefix; }

int hv_open(const char *uri, struct hv_domain **out);
int hv_create(const char *uri, const char *config, const void *dconf, size_t dconf_len,
	      struct hv_domain **out);
/* The domain's domain_config blob: 0 and *blob (malloc'd) and *len, or 0
 * with NULL, 0 where the backend has none. */
int hv_domain_config(struct hv_domain *d, void **blob, size_t *len);
int hv_launch(const char *uri, const struct hv_spec *spec, unsigned flags,
	      struct hv_domain **out, char *err, size_t errlen);
int hv_describe(const char *uri, const char *config, json_t **out, char *err, size_t errlen);
/* hv_list over the backend named in uri's prefix ("mvm:" lists microVMs). */
int hv_list(const char *backend, int (*fn)(void *ctx, const char *name), void *ctx);
/*
 * The unprivileged user that backends run their guests' processes as (the
 * microVM runtime; on Xen, the device model). Default HV_RUNTIME_USER; an
 * empty name keeps the caller's own user. hv_runtime_ids() looks it up afresh at each
 * launch (a user made after the daemon started is found): 0 and its ids; 1
 * if no change applies (the caller is not root, or the setting is empty); or
 * -ENOENT (no such user), -EINVAL (it is root), logged and said in err (if
 * not NULL).
 */
#define HV_RUNTIME_USER "ferry-mvm"
void hv_set_runtime_user(const char *user);
int hv_runtime_ids(uid_t *uid, gid_t *gid, char *err, size_t errlen);

/*
 * Adopt a domain after a daemon restart: open it, waiting up to timeout_ms
 * while a previous owner's handle lets go. -EBUSY: someone else holds it
 * still (it is alive: never forget it); -ENOENT: it is gone.
 */
int hv_adopt(const char *uri, int timeout_ms, struct hv_domain **out);

static inline void hv_close(struct hv_domain *d)
{
	if (d)
		d->ops->close(d);
}
static inline int hv_info(struct hv_domain *d, struct hv_info *o) { return d->ops->info(d, o); }
static inline int hv_commit(struct hv_domain *d) { return d->ops->commit(d); }
static inline int hv_pause(struct hv_domain *d) { return d->ops->pause(d); }
static inline int hv_unpause(struct hv_domain *d) { return d->ops->unpause(d); }
static inline void hv_warm(struct hv_domain *d)
{
	if (d->ops->warm)
		d->ops->warm(d);
}
static inline uint64_t hv_paused_ns(struct hv_domain *d)
{
	return d->ops->paused_ns ? d->ops->paused_ns(d) : 0;
}
static inline int hv_throttle(struct hv_domain *d, unsigned pct) { return d->ops->throttle(d, pct); }
static inline int hv_logdirty_enable(struct hv_domain *d) { return d->ops->logdirty_enable(d); }
static inline int hv_logdirty_disable(struct hv_domain *d) { return d->ops->logdirty_disable(d); }
static inline int64_t hv_logdirty_harvest(struct hv_domain *d, struct bitmap *b, unsigned f)
{
	return d->ops->logdirty_harvest(d, b, f);
}
static inline int64_t hv_populated(struct hv_domain *d, struct bitmap *b)
{
	return d->ops->populated(d, b);
}
static inline int hv_read_pages(struct hv_domain *d, const uint64_t *f, size_t n, void *const *b)
{
	return d->ops->read_pages(d, f, n, b);
}
static inline int hv_write_pages(struct hv_domain *d, const uint64_t *f, size_t n,
				 const void *const *b)
{
	return d->ops->write_pages(d, f, n, b);
}
static inline int hv_discard_pages(struct hv_domain *d, const uint64_t *f, size_t n)
{
	return d->ops->discard_pages(d, f, n);
}
static inline int hv_save_context(struct hv_domain *d, void **blob, size_t *len)
{
	return d->ops->save_context(d, blob, len);
}
static inline int hv_load_context(struct hv_domain *d, const void *blob, size_t len)
{
	return d->ops->load_context(d, blob, len);
}
static inline int hv_watch(struct hv_domain *d, int *fd) { return d->ops->watch(d, fd); }
static inline int hv_destroy(struct hv_domain *d) { return d->ops->destroy(d); }
static inline int hv_extra(struct hv_domain *d, enum hv_extra what, json_t **out)
{
	*out = NULL;
	return d->ops->extra ? d->ops->extra(d, what, out) : -EOPNOTSUPP;
}
static inline int hv_net_attach(struct hv_domain *d, int fd)
{
	return d->ops->net_attach ? d->ops->net_attach(d, fd) : -EOPNOTSUPP;
}
static inline int hv_output(struct hv_domain *d, enum hv_output op, uint64_t epoch)
{
	return d->ops->output ? d->ops->output(d, op, epoch) : -EOPNOTSUPP;
}
static inline bool hv_can_postcopy(const struct hv_domain *d)
{
	return d->ops->postcopy_begin != NULL;
}
static inline int hv_postcopy_begin(struct hv_domain *d, const struct bitmap *missing, int *fd)
{
	return d->ops->postcopy_begin ? d->ops->postcopy_begin(d, missing, fd) : -EOPNOTSUPP;
}
static inline int hv_postcopy_reattach(struct hv_domain *d, struct bitmap *missing, int *fd)
{
	return d->ops->postcopy_reattach ? d->ops->postcopy_reattach(d, missing, fd) : -EOPNOTSUPP;
}
static inline int hv_postcopy_faults(struct hv_domain *d, uint64_t *frames, size_t max,
				     uint64_t *left)
{
	return d->ops->postcopy_faults(d, frames, max, left);
}
static inline int hv_postcopy_end(struct hv_domain *d) { return d->ops->postcopy_end(d); }
/* One number of an extra (HV_EXTRA_STATS "steps"): 0 and *v, -ENOENT if the
 * backend does not give it, or hv_extra's error. */
int hv_extra_number(struct hv_domain *d, enum hv_extra what, const char *key, double *v);

#endif
