/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vm.h — the domains ferryd owns: the list, their records in STATE/vms/,
 * death watches, adoption at start-up. A domain is known by its name and
 * reached through the hypervisor interface by its URI (hv/hv.h); nothing
 * here knows a backend.
 *
 * Locking (core.h): D.lock guards the list and every field marked (L). A
 * guest's handle is used by one thread at a time: a long operation marks the
 * VM busy (L) and then owns the handle; a short one (info) takes vm->hlock
 * and skips a busy VM. A VM leaves the list only on the loop thread
 * (vm_remove), and its memory goes with the last reference.
 */
#ifndef FERRY_DAEMON_VM_H
#define FERRY_DAEMON_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "hv/hv.h"

#define NAME_LEN HV_NAME_MAX
#define JOB_ID_LEN 13 /* 12 hex digits */

struct event;

struct vm {
	struct vm *next;              /* (L) */
	int refs;                     /* (L) */
	bool listed;                  /* (L) in D.vms */
	char name[NAME_LEN];
	char uri[HV_URI_MAX];         /* BACKEND:NAME */
	char config[HV_CONFIG_MAX];
	struct hv_domain *d;          /* NULL while incoming */
	int32_t pid;                  /* the domain's process (hv_info.pid), or -1 */
	bool paused;                  /* (L) as ferryd last set it */
	bool dead;                    /* (L) it ended */
	const char *busy;             /* (L) "migrating", "verifying", ... or NULL */
	char job[JOB_ID_LEN];         /* (L) the job holding it */
	pthread_mutex_t hlock;        /* short uses of d */
	struct event *watch;          /* loop thread only */
	int64_t created;              /* Unix seconds */
	/* Its service address (net.c), from its config. */
	char net[64];                 /* "ADDR:PORT" or "" */
	bool net_up;                  /* (L) listening here for it */
	char net_state[200];          /* (L) the listener's and the hook's last word */
};

/* A new VM of the default backend (one reference, the caller's); not
 * listed. NULL if out of memory or name is not a valid name. */
struct vm *vm_new(const char *name);
struct vm *vm_get(const char *name);        /* listed, with a reference */
void vm_put(struct vm *v);
int vm_busy(struct vm *v, const char *what, const char *job, char *err, size_t errlen);
void vm_unbusy(struct vm *v);
/* List it (the list takes a reference); -EEXIST if the name is listed. */
int vm_add(struct vm *v);
int vm_add_locked(struct vm *v);            /* (L) */
bool vm_name_taken(const char *name);       /* (L) listed here, any state */
/* The domain runs here now through handle d (taken over): remember what it
 * is (its config from the domain itself) and watch it. */
void vm_attach(struct vm *v, struct hv_domain *d);
/* v->net from its config (what its backend's describe says). */
void vm_describe_net(struct vm *v);
void vm_remove(void *v);                    /* loop thread: unlist, stop watching */
/* Who is told, on the loop thread, that a listed VM is no longer on this
 * host (it ended, was destroyed, or went away): one callback, registered at
 * start-up (main.c). */
void vm_on_gone(void (*fn)(struct vm *v));
void vm_unlist(struct vm *v);               /* any thread: unlist now, forget on the loop */
void vm_watch_start(void *v);               /* loop thread; consumes a reference */
/*
 * Its record: it is ours from now on, also if ferryd dies next. Written
 * atomically but not fsync'd: a record lost with the page cache was lost
 * with the host, and its guests with it; a stale one (the guest gone) is
 * forgotten at the next start. So it costs no disk flush in a downtime or
 * a takeover (0.5-1 ms here).
 */
int vm_record_write(struct vm *v);
void vm_record_remove(const char *name);
json_t *vm_json(struct vm *v);              /* caller holds D.lock */
/* What this host offers its guests and what they hold (takes D.lock):
 * cpus, vcpus_committed, mem_total, mem_committed, mem_free, mem_available
 * (the machine's MemAvailable), vms. NULL if out of memory. */
json_t *vms_capacity(void);
/* Start-up, on the loop thread: adopt every domain recorded in STATE/vms/
 * (keeping the records of those that may still live). */
void vms_adopt(void);

#endif
