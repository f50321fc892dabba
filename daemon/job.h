/* SPDX-License-Identifier: Apache-2.0 */
/*
 * job.h — ferryd's jobs and their one state machine.
 *
 * A job has a kind (a migration out or in now; a protected VM's primary or
 * backup next) and a state, changed only by job_set_state: it checks the
 * transition against the table in job.c, journals the job where the table
 * says (durably — fsync — exactly where a crash must not lose the step:
 * before GO, before READY, before resuming; DESIGN.md §6), records it in the
 * job's history, and tells whoever listens (the log, API clients waiting on
 * D.changed, registered listeners).
 *
 * What a kind does lives in its own file (migrate_out.c, migrate_in.c) and
 * reaches the machine through a registered struct job_kind_ops: this file calls
 * no kind by name.
 *
 * Locking (core.h): D.lock guards the list and every field marked (L);
 * journal writes of one job are ordered by its jlock.
 */
#ifndef FERRY_DAEMON_JOB_H
#define FERRY_DAEMON_JOB_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/core.h"
#include "daemon/vm.h"
#include "migrate/precopy.h"
#include "replicate/replicate.h"
#include "session/session.h"

enum job_kind { JOB_MIGRATE_OUT, JOB_MIGRATE_IN, JOB_PRIMARY, JOB_BACKUP, JOB_KIND_MAX };

/*
 * States, in order: made, then each kind's steps in the order it takes them,
 * then the ends (every state from JOB_COMPLETED on is final).
 */
enum job_state {
	JOB_NEW,           /* made, not started */
	/* migrate-out */
	JOB_SENDING,       /* copying; any failure rolls back */
	JOB_COMMITTED,     /* journaled before the stop-and-copy: GO may follow */
	JOB_UNRESOLVED,    /* GO sent, no RUNNING: which copy runs is being found out */
	/* migrate-in */
	JOB_RECEIVING,
	JOB_READY,         /* everything applied, journaled before READY */
	JOB_RESUMING,      /* GO came, journaled before resuming */
	JOB_RUNNING,       /* resumed here, RUNNING on its way */
	JOB_POSTCOPY,      /* out and in: the guest runs at the destination, part of
			    * its memory still at the source (journaled) */
	JOB_PC_PAUSED,     /* ... and its session failed: each host keeps its half;
			    * the source connects again, the destination waits */
	/* protect (the primary) and standby (the backup) */
	JOB_SYNCING,       /* the initial sync runs */
	JOB_PROTECTED,     /* primary: epochs commit on the backup */
	JOB_DEGRADED,      /* primary: the backup is lost; the guest runs alone */
	JOB_STANDBY,       /* backup: holds the copy, applies epochs */
	JOB_TAKING_OVER,   /* backup: the primary is lost; resuming the copy here */
	JOB_HELD,          /* backup: the primary is lost, but the copy may not run
			    * (not in sync, or no authority): it waits, paused,
			    * for an operator (ferry takeover --force, unprotect) */
	/* the ends */
	JOB_COMPLETED,     /* the guest runs where it was sent: there (out), here (in) */
	JOB_FAILED,        /* out: it runs here as before; in: no copy runs here */
	JOB_CANCELLED,     /* out: rolled back on request */
	JOB_RESUME_FAILED, /* in: resuming after GO failed, and the copy may run */
	JOB_FAILED_OVER,   /* standby: the guest runs here now */
	JOB_FENCED,        /* primary: it lost the authority to run; its copy is
			    * paused here (destroyed once another host owns it) */
	JOB_LOST,          /* out and in: post-copy failed; the guest is lost (no
			    * copy runs: the source's is stale, and stays paused
			    * for an operator; the destination's is destroyed) */
	JOB_STATE_MAX
};

static inline bool job_state_final(enum job_state s) { return s >= JOB_COMPLETED; }

enum job_force { FORCE_NONE, FORCE_SOURCE, FORCE_DESTINATION };

#define JOB_HISTORY_MAX 32
#define JOB_IDEM_LEN 132

struct fence;

struct job_step {
	enum job_state state;
	int64_t at_ms; /* Unix milliseconds */
};

struct job {
	struct job *next;             /* (L) */
	char id[JOB_ID_LEN];
	enum job_kind kind;
	char vm[NAME_LEN];
	char peer[PEER_LEN];          /* out: HOST:PORT asked for; in: the peer's name */
	char peer_job[JOB_ID_LEN];    /* out: the id the peer knows it by, if not id
				       * (a primary pairing again: one per pairing) */
	char idem[JOB_IDEM_LEN];      /* the remote API's Idempotency-Key that started
				       * it, as idem.h's token; "" if none */

	/* (L) The state machine's: changed only by job_set_state. */
	enum job_state state;
	bool go;                      /* it passed JOB_COMMITTED */
	unsigned seq;                 /* transitions made */
	struct job_step history[JOB_HISTORY_MAX]; /* the last transitions, oldest first */
	unsigned nhist;
	char error[512];              /* why it ended as it did, if not completed */
	int64_t started, ended;       /* Unix seconds */
	pthread_mutex_t jlock;        /* orders its journal writes */

	/* (L) Its work. */
	bool running;                 /* a thread works on it */
	volatile sig_atomic_t cancel;
	enum job_force force;         /* resolve: what the operator decided */
	pthread_cond_t wake;          /* resolve: try again now */
	struct session *s;            /* its peer session while connected */
	struct session *resume_s;     /* in: a paused post-copy's new session, handed
				       * from the listener to the job's thread */
	struct vm *v;                 /* out: the guest, held busy */

	/* Migrations (both kinds). */
	struct migrate_stats st;      /* (L) */
	struct migrate_opts opts;
	unsigned channels;            /* asked for, then agreed */
	char transport[8];            /* "tls", "tcp": the channels' kind */
	uint32_t caps;                /* agreed */

	/* Protection (both kinds); cancel asks it to end cleanly. */
	struct repl_opts ropts;
	struct repl_stats *rst;       /* (L) the engine's figures */
	bool fencing;                 /* fenced by etcd (else unsafe-no-fencing) */
	struct fence *fence;          /* primary: its claim in etcd, while it has one */
	int64_t fence_lease;          /* ... as journaled: its lease and token */
	uint64_t fence_token;
	unsigned resyncs;             /* primary: pairing again after its backup was
				       * lost, the attempts since it last was protected */
	bool staged_resync;           /* primary: the next pairing is a restarted
				       * primary's, staged by the standby (HELLO
				       * resync); the standby keeps its copy until it
				       * is whole */
	/* (L) Backup: a restarted primary's resync offered to the thread that
	 * keeps the copy (standby.c). */
	bool waiting;                 /* the copy waits for etcd's word */
	int offer;                    /* 1 offered, 2 taken (handed below), -1 refused */
	struct hv_domain *handed;     /* the copy, handed with the job's vm (v) */
	uint64_t handed_epoch;        /* the epoch it is whole at */
};

/* What a kind does, registered once at start-up (main.c). */
struct job_kind_ops {
	const char *name;             /* "migrate-out" */
	const char *direction;        /* "out", "in" */
	/* (L) Its own members of the job's JSON. */
	void (*json)(const struct job *j, json_t *o);
	/* Its own members back from a journal record. */
	void (*load)(struct job *j, json_t *o);
	/* Start-up: bring a job that was in flight when ferryd stopped to a
	 * safe state. */
	void (*recover)(struct job *j);
	/* (L) Optional. Shutdown: end the job gently (NULL: a job in an
	 * interruptible state is cancelled and its session cut). */
	void (*stop)(struct job *j);
};

void job_kind_register(enum job_kind k, const struct job_kind_ops *ops);
const char *job_kind_name(enum job_kind k);
const char *job_state_name(enum job_state s);
/* The state as the API has always said it: active, completed, failed,
 * cancelled, unresolved. */
const char *job_state_api(enum job_state s);

/* A job of kind k (a fresh id if id is NULL), not listed. */
struct job *job_new(enum job_kind k, const char *id);
/* A fresh random id (12 hex digits). */
void job_make_id(char id[JOB_ID_LEN]);
void job_free(struct job *j);
void job_link(struct job *j);                /* (L) list it */
struct job *job_find(const char *id);       /* (L) */
/* (L) The job of VM vm that matters now: its newest active job, else its
 * newest; NULL if it has none. */
struct job *job_find_vm(const char *vm);
json_t *job_json(const struct job *j);      /* (L) */

/*
 * The only way a job's state changes: from its current state to `to`, if
 * the table allows it; why (may be NULL) is kept as its error when `to` is
 * a failure. Journals it where the table says (a journal failure leaves
 * the state as it was and is returned); then logs and notifies. 0, -EPERM
 * for a forbidden transition (nothing changes), or the journal's -errno.
 */
int job_set_state(struct job *j, enum job_state to, const char *why);
/* Write the job's record again, durably, in the state it is in (a kind's
 * own members changed: a claim that must survive a crash). 0 or -errno. */
int job_journal(struct job *j);
/* Whether from -> to is allowed (the table). */
bool job_transition_ok(enum job_state from, enum job_state to);
/* Whether the table journals a job entering s, and durably. */
bool job_state_journaled(enum job_state s, bool *durable);

/* Someone wants to know about every transition (metrics, events). Called
 * after the transition, outside D.lock; at most 8. */
void job_listen(void (*fn)(void *ctx, struct job *j, enum job_state from), void *ctx);
/* Wait up to timeout_ms until job id has made more than seq transitions.
 * (L) on entry and return. */
void job_wait_change(struct job *j, unsigned seq, int timeout_ms);

/* The job's channels: hand them over, cancel them. (L) */
void job_shutdown_session(struct job *j);

int job_cancel(const char *id, char *err, size_t errlen);
int job_resolve(const char *id, enum job_force force, char *err, size_t errlen);
/* A paused post-copy (out): connect again now, to dest if given (a new
 * address). 0, or -ENOENT / -EINVAL with err set. */
int job_resume(const char *id, const char *dest, char *err, size_t errlen);
/* What a peer asking about job id hears: "running", "discarded",
 * "pending", "unknown". */
const char *job_peer_state(const char *id);
/* A job from a journal record (a JSON object as job_json wrote it, or as
 * earlier versions did); NULL if it is not one. Not listed. */
struct job *job_from_json(json_t *o);
/* Start-up, after vms_adopt: read the journal, recover the jobs in flight. */
void jobs_recover(void);
/* Shutdown: cancel or cut what can still be undone; wake the waiters. */
void jobs_stop(void);

#endif
