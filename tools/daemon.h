/*
 * daemon.h — ferryd's shared state: the microVMs it owns, its jobs, and the
 * few rules that keep its threads apart.
 *
 * Threads: the libevent loop (control API, migration listener, guest death
 * watches) never blocks on a guest; each job has its own thread, and each
 * control request that talks to a runtime runs on a short-lived task thread.
 * D.lock guards both lists and every field marked (L). A guest's handle is
 * used by one thread at a time: a long operation marks the VM busy (L) and
 * then owns the handle; a short one (info) takes vm->hlock and skips a busy
 * VM. A VM leaves the list only on the loop thread (vm_remove), and its
 * memory goes with the last reference.
 */
#ifndef FERRY_TOOLS_DAEMON_H
#define FERRY_TOOLS_DAEMON_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "hv/hv.h"
#include "migrate/precopy.h"
#include "session/wire.h"
#include "transport/link.h"

#define JOB_ID_LEN 13 /* 12 hex digits */
#define NAME_LEN 64
#define PEER_LEN 300

struct event;

struct vm {
	struct vm *next;              /* (L) */
	int refs;                     /* (L) */
	bool listed;                  /* (L) in D.vms */
	char name[NAME_LEN];
	char config[HV_CONFIG_MAX];
	struct hv_domain *d;          /* NULL while incoming */
	pid_t pid;
	bool child;                   /* spawned by create: reaped when it ends */
	bool paused;                  /* (L) as ferryd last set it */
	bool dead;                    /* (L) its runtime ended */
	const char *busy;             /* (L) "migrating", "verifying", ... or NULL */
	char job[JOB_ID_LEN];         /* (L) the job holding it */
	pthread_mutex_t hlock;        /* short uses of d */
	struct event *watch;          /* loop thread only */
	int64_t created;              /* Unix seconds */
};

enum job_state { JOB_ACTIVE, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED, JOB_UNRESOLVED };
enum job_force { FORCE_NONE, FORCE_SOURCE, FORCE_DESTINATION };

struct job {
	struct job *next;             /* (L) */
	char id[JOB_ID_LEN];
	bool out;                     /* we are the source */
	char vm[NAME_LEN];
	char peer[PEER_LEN];          /* out: HOST:PORT asked for; in: the peer's name */
	enum job_state state;         /* (L) */
	char in_state[16];            /* (L) destination: receiving, ready, resuming, running, discarded */
	char error[512];              /* (L) */
	int64_t started, ended;       /* (L) Unix seconds */
	struct migrate_stats st;      /* (L) */
	struct migrate_opts opts;
	volatile sig_atomic_t cancel;
	bool go;                      /* (L) source: GO journaled; cancel refused */
	struct chan *ch[WIRE_CHANNELS_MAX]; /* (L) the job's channels while connected */
	unsigned nch;                 /* (L) how many of ch are set (a prefix) */
	unsigned channels;            /* agreed in the handshake */
	char transport[8];            /* "tls", "tcp": the channels' kind */
	bool accepting;               /* (L) in: waiting for its further channels */
	bool joining;                 /* (L) in: a further channel is being answered */
	char token[WIRE_TOKEN_LEN + 1];/* in: what the further channels must bring */
	char peer_id[300];            /* in: who opened channel 0 (certificate names or
				       * address); the others must be the same */
	enum job_force force;         /* (L) */
	bool running;                 /* (L) a thread works on it */
	pthread_cond_t wake;          /* resolve: try again now; in: a channel came */
	struct vm *v;                 /* out: the guest, held busy */
	uint32_t caps;                /* agreed in the handshake */
};

struct daemon {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t idle;          /* threads dropped to 0 */
	struct vm *vms;               /* (L) */
	struct job *jobs;             /* (L) */
	unsigned threads;             /* (L) job and task threads alive */
	unsigned incoming;            /* (L) incoming migrations now */
	unsigned greeting;            /* (L) connections before their HELLO */
	bool stopping;                /* (L) */

	/* Settings (config file, then flags). */
	char config_path[256];
	char socket_path[256];
	char listen[PEER_LEN];
	char state_dir[256];
	char run_dir[256];
	char hostname[256];
	int peer_timeout_ms;
	unsigned max_incoming;
	uint64_t downtime_ms;
	unsigned max_iters;
	enum noconv_policy on_no_converge;
	uint32_t caps;                /* codecs this host offers and accepts */
	unsigned channels;            /* offered for outgoing, most accepted incoming */
	/* Transport: TLS unless plaintext; allow_from "*" or host names. */
	char pki_dir[256];
	char tls_ca[256], tls_cert[256], tls_key[256];
	char allow_from[1024];
	bool plaintext;
	struct link_conf link;        /* built at start-up; its tls is shared */
};

extern struct daemon D;

/* ferryd.c */
/* Run fn(arg) on the loop thread soon; callable from any thread. */
void loop_call(void (*fn)(void *), void *arg);
/* Start a detached thread counted in D.threads. 0 or -errno. */
int spawn_thread(void *(*fn)(void *), void *arg);
void thread_done(void);
/* Write a JSON object durably to dir/name (tmp, fsync, rename, fsync dir). */
int write_json_file(const char *dir, const char *name, json_t *o);

/* d_vm.c */
struct vm *vm_new(const char *name);
struct vm *vm_get(const char *name);        /* listed, with a reference */
void vm_put(struct vm *v);
int vm_busy(struct vm *v, const char *what, const char *job, char *err, size_t errlen);
void vm_unbusy(struct vm *v);
/* List it (the list takes a reference); -EEXIST if the name is listed. */
int vm_add(struct vm *v);
int vm_add_locked(struct vm *v);            /* (L) */
void vm_remove(void *v);                    /* loop thread: unlist, stop watching */
void vm_unlist(struct vm *v);               /* any thread: unlist now, forget on the loop */
void vm_forget(void *v);                    /* loop thread, after vm_unlist */
void vm_watch_start(void *v);               /* loop thread */
int vm_record_write(struct vm *v);
void vm_record_remove(const char *name);
json_t *vm_json(struct vm *v);              /* caller holds D.lock */
void vms_adopt(void);
struct vm *vm_adopt(const char *name, int64_t created);                       /* start-up: open what vms/ records */
bool vm_name_taken(const char *name);       /* (L) listed here, any state */

/* d_link.c */
/* Open a channel to "HOST[:PORT]" as configured (TLS or plaintext). */
int peer_open(const char *peer, int timeout_ms, struct chan **out, char *err, size_t errlen);
/* Send a HELLO and read the answer: 0 and *reply (decref it), or -errno. */
int peer_hello(struct chan *c, const struct wire_hello *h, int timeout_ms, json_t **reply,
	       char *err, size_t errlen);
/* Answer a HELLO with {"ok": false, "error": ...} and log it. */
void peer_refuse(struct chan *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the peer of c may send guests here (allow-from); if not, why. */
bool peer_allowed(const struct chan *c, char *why, size_t len);
/* Who is at the other end: certificate names (TLS) or the address. */
void peer_identity(const struct chan *c, char *buf, size_t len);
/* Build D.link from the settings; exits with a message if it cannot. */
void link_setup(void);

/* d_job.c; the part d_incoming.c shares */
struct job *job_new(bool out, const char *id);
void job_link(struct job *j);                /* (L) */
int job_save(struct job *j);                 /* journal it durably */
void job_finish(struct job *j, enum job_state s, const char *why);
void job_free_chans(struct job *j);
void on_progress(void *ctx, const struct migrate_stats *st);  /* migrate_hooks */
int on_journal(void *ctx, enum mig_point pt);
void on_resumed(void *ctx, struct hv_domain *d);

/* d_job.c */
struct job *job_find(const char *id);       /* (L) */
json_t *job_json(const struct job *j);      /* (L) */
int job_start_out(const char *name, const char *dest, const struct migrate_opts *o,
		  unsigned channels, char *id, char *err, size_t errlen);
void job_accept(int fd);                    /* a migration connection: takes fd */
int job_cancel(const char *id, char *err, size_t errlen);
int job_resolve(const char *id, enum job_force force, char *err, size_t errlen);
void jobs_recover(void);                    /* start-up, after vms_adopt */
void jobs_stop(void);                       /* shutdown: cancel what can be */

/* d_api.c */
/* Handle one request that passed api_check (tools/api.h); may block when
 * the op is slow. */
json_t *api_handle(json_t *req);

#endif
