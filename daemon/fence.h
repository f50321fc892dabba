/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fence.h — who may run a protected VM, decided by the coordination service
 * (DESIGN.md §7; docs/replication.md "Fencing"). Two keys per VM in etcd:
 *
 *   /ferry/vm/NAME/owner    the primary's host, bound to its lease; the
 *                           key's creation revision is the fencing token
 *                           carried in every epoch
 *   /ferry/vm/NAME/in-sync  "job=ID" of the pairing whose backup is in sync,
 *                           or "" — not bound to a lease, so it outlives a
 *                           dead primary
 *   /ferry/vm/NAME/host     where the VM last ran with etcd's word (set by
 *                           the primary's claim and by a takeover): a
 *                           fenced old primary destroys its copy once this
 *                           names another host
 *
 * The primary creates the owner key (only if absent) and keeps its lease
 * alive; it names its backup in sync once the backup holds the initial
 * sync, and removes the name — in a transaction that checks it still owns
 * the key — before it releases any output that backup has not acknowledged.
 * A backup takes over only by one transaction that holds only if the owner
 * key is gone (the primary's lease expired) and the in-sync key names its
 * own pairing; the same transaction makes it the owner. So a backup that
 * fell behind never resumes an old image over acknowledged writes, and a
 * split never runs two primaries.
 *
 * Lease validity is judged by this host's monotonic clock: the send time of
 * the last keep-alive etcd confirmed, plus the TTL, less a margin.
 */
#ifndef FERRY_DAEMON_FENCE_H
#define FERRY_DAEMON_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fence;

/* Start-up: the etcd client, if a coordination service is configured
 * (D.coord). 0, or -EINVAL with err set. */
int fence_init(char *err, size_t errlen);
void fence_exit(void);
/* Whether one is configured. */
bool fence_configured(void);

/* Primary: own vm's key under a new lease (kept alive by a thread of the
 * fence's own), with no backup in sync. -EEXIST (why says who owns it),
 * or etcd's error. */
int fence_acquire(const char *vm, struct fence **out, char *why, size_t len);
/* The fencing token: the owner key's creation revision; the lease's id. */
uint64_t fence_token(const struct fence *f);
int64_t fence_lease(const struct fence *f);
/* A restarted ferryd: the claim it journaled (lease and token), if the lease
 * still lives: 0 and *out, kept alive again; -ESTALE if it expired; else
 * etcd's error. */
int fence_resume(const char *vm, int64_t lease, uint64_t token, struct fence **out, char *why,
		 size_t len);
/* Whether the lease is surely valid by this host's clock now. */
bool fence_valid(const struct fence *f);
/* Name the pairing job as in sync ("" : none), if the key is still ours:
 * 0; -ESTALE if it is not (someone else owns it, or nobody); else etcd
 * could not be asked (the caller must assume nothing changed). */
int fence_set_insync(struct fence *f, const char *job, char *why, size_t len);
/* Protection ends: delete both keys if still ours, revoke the lease, stop
 * the keep-alive, free. NULL is fine. */
void fence_release(struct fence *f);
/* Stop the keep-alive and free, leaving the keys as they are (a fenced
 * primary: what is there is someone else's now). NULL is fine. */
void fence_drop(struct fence *f);

/*
 * Backup: try once to take vm over for pairing job (the primary is lost):
 * 0 and *out (the key is ours, the in-sync name cleared, the VM's location
 * set to this host); -EAGAIN while the primary's lease lives; -EPERM if this
 * pairing is not the one in sync (why says what is); else etcd's error.
 */
int fence_takeover(const char *vm, const char *job, struct fence **out, char *why, size_t len);
/* Who owns vm's key now (owner), or where it last ran with etcd's word
 * (host): 0 and the host's name, -ENOENT if none is recorded, or etcd's
 * error. */
int fence_owner(const char *vm, char *owner, size_t len, char *why, size_t whylen);
int fence_host(const char *vm, char *host, size_t len, char *why, size_t whylen);

#endif
