/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protection.h — ferryd's protected VMs (DESIGN.md §7): the primary's job
 * (protect.c: `ferry protect`, a session to the backup host and the
 * replication engine's primary side; degraded when the backup is lost;
 * unprotect ends it) and the backup's (standby.c: a peer's "protect" HELLO,
 * the engine's backup side, and the takeover when the primary is lost).
 *
 * Fencing (fence.h): with a coordination service configured (coord), the
 * primary owns the VM's key in etcd and names its backup in sync; a backup
 * resumes only with etcd's word. Without one, a pair runs only when the
 * operator said --unsafe-no-fencing (heartbeats alone, as xl remus -F): a
 * network split then gives two primaries.
 */
#ifndef FERRY_DAEMON_PROTECTION_H
#define FERRY_DAEMON_PROTECTION_H

#include <jansson.h>

#include "daemon/job.h"

extern const struct job_kind_ops protect_kind, standby_kind;

/* (L) The members protection adds to the job's JSON. */
void protection_json(const struct job *j, json_t *o);
/* The engine's figures into the job (its stats hook). */
void protection_stats(void *ctx, const struct repl_stats *st);

/* Protect VM name with a standby on peer ("HOST[:PORT]"), asked for with the
 * Idempotency-Key token idem (NULL if none); the job id into id[JOB_ID_LEN].
 * 0 or -errno with err set. */
int protect_start(const char *name, const char *peer, const struct repl_opts *o, bool fencing,
		  unsigned channels, const char *idem, char *id, char *err, size_t errlen);
/* End the protection of VM name (the backup discards its copy). */
int protect_stop(const char *name, char *err, size_t errlen);
/* The operator runs a held standby copy of name anyway (it lacks writes
 * acknowledged since it fell out of sync). */
int standby_force(const char *name, char *err, size_t errlen);
/* session_handlers.open: a peer opens a session to keep a standby here. */
void standby_open(void *ctx, struct session *s, const struct wire_hello *h);

#endif
