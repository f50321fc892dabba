/* SPDX-License-Identifier: Apache-2.0 */
/*
 * migration.h — what the two migration kinds of job (migrate_out.c,
 * migrate_in.c) share: their statistics, channels and options in the job's
 * JSON and journal, and the engine's statistics hook.
 */
#ifndef FERRY_DAEMON_MIGRATION_H
#define FERRY_DAEMON_MIGRATION_H

#include <jansson.h>

#include "daemon/job.h"

/* (L) The members a migration adds to the job's JSON. */
void migration_json(const struct job *j, json_t *o);
/* Its options back from a journal record. */
void migration_load(struct job *j, json_t *o);
/* migrate_hooks.stats: keep the engine's figures in the job. */
void migration_stats(void *ctx, const struct migrate_stats *st);
/* Whether a downtime missed its target: by more than 10 % (a downtime a
 * hair over it is the target kept, given how single runs vary). */
bool migration_missed(uint64_t downtime_ns, uint64_t target_ns);
/* Note the agreed channels, codecs and transport of the job's session. */
void migration_session(struct job *j, const struct session *s);

/* A peer's HELLO asks to send a guest here (a migration, or a standby):
 * claim its name and the job id for a job of kind. 0 and the job (listed)
 * and the VM (listed, busy "incoming", paused), or -errno with why set. */
int migration_claim(const struct wire_hello *h, enum job_kind kind, struct job **jp,
		    struct vm **vp, char *why, size_t len);

/*
 * An outgoing job of kind k for VM name toward peer ("HOST[:PORT]"): the VM
 * held busy as what, the job made (not listed) with j->v, vm and peer set,
 * and the Idempotency-Key token that asked for it (idem, NULL if none).
 * The caller sets its options, then migration_launch. 0 or -errno with err.
 */
int migration_new_out(enum job_kind k, const char *name, const char *peer, const char *what,
		      const char *idem, struct job **out, char *err, size_t errlen);
/* List j, journal it entering first, run fn(j) on its own thread; its id into
 * id[JOB_ID_LEN]. On failure the job fails and lets its VM go. */
int migration_launch(struct job *j, enum job_state first, void *(*fn)(void *), char *id,
		     char *err, size_t errlen);
/* Connect the job's session to its peer with HELLO h (name and config from
 * v), timeout_ms the peer timeout; the agreed codecs into *codec. */
int migration_connect(struct job *j, struct vm *v, struct wire_hello *h, int timeout_ms,
		      struct codec_opts *codec, char *err, size_t errlen);
/* The guest is free again (no longer busy, the job's reference to it put)
 * while the job's thread may still run: a job that rolled back does this
 * before it says it ended, so that whoever sees it ended can use the guest
 * at once. Idempotent. */
void migration_free_vm(struct job *j);
/* The job lets its guest go (migration_free_vm) and no thread works on it
 * from now on. */
void migration_release(struct job *j);
/* The job's thread lets go of its VM and ends; returns NULL for it. */
void *migration_thread_end(struct job *j);
/* ... and has fn(arg) run on the loop thread once it has (NULL: nothing). */
void *migration_thread_end_call(struct job *j, void (*fn)(void *), void *arg);

extern const struct job_kind_ops migrate_out_kind, migrate_in_kind;

/* Start an outgoing migration of VM name to dest ("HOST[:PORT]"), asked for
 * with the Idempotency-Key token idem (NULL if none); its id into
 * id[JOB_ID_LEN]. 0 or -errno with err set. */
int migrate_out_start(const char *name, const char *dest, const struct migrate_opts *o,
		      unsigned channels, const char *idem, char *id, char *err, size_t errlen);
/* session_handlers.open: a peer opens a session to send us a guest. */
void migrate_in_open(void *ctx, struct session *s, const struct wire_hello *h);

#endif
