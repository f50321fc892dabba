/* SPDX-License-Identifier: Apache-2.0 */
/*
 * confine.h — the runtime's least privilege (docs/ferry-mvm.md,
 * "Confinement").
 *
 * A guest's runtime needs almost nothing of the host: the fds ferryd hands
 * it, its own memory and its threads. It gives up the rest in two steps.
 *
 *  1. mvm_confine_user(), first thing, before it reads anything a peer sent:
 *     it becomes the runtime user (only a runtime started as root changes
 *     users), keeps no supplementary group, no capability in any set
 *     (bounding and ambient included), sets no_new_privs (no exec could give
 *     any back) and stops being dumpable (no other process of that user may
 *     ptrace it or open its /proc files).
 *  2. mvm_confine_syscalls(), once guest RAM, its fds and its threads are
 *     set up and before it serves its control socket (the way anything from
 *     outside reaches it): a seccomp filter on every thread that allows only
 *     the system calls the runtime makes from then on.
 *     Everything else fails with EPERM, and the kernel logs it (an audit
 *     record of type 1326 naming the call). No file can be opened, no
 *     socket made (accepting on the listeners it was handed is allowed), no
 *     exec, no new process or thread, no ptrace, no namespaces;
 *     signals only to itself, scheduling only of the calling thread, ioctl
 *     only userfaultfd's write-protect.
 */
#ifndef FERRY_MVM_CONFINE_H
#define FERRY_MVM_CONFINE_H

#include <stdbool.h>
#include <sys/types.h>

/* Parse "UID:GID" (both > 0). */
int mvm_confine_parse_ids(const char *s, uid_t *uid, gid_t *gid);
/* Step 1. change: become uid:gid (needs root). 0, or -errno (logged). */
int mvm_confine_user(bool change, uid_t uid, gid_t gid);
/* Step 2. 0, or -errno (logged). */
int mvm_confine_syscalls(void);

/*
 * For tests (failpoint mvm-confine-probe): try what a confined runtime must
 * not be able to do, and log one line per attempt, "confine probe: WHAT:
 * denied (ERROR)" or "confine probe: WHAT: ALLOWED". Returns the number
 * allowed.
 */
int mvm_confine_probe(void);

#endif
