/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core.h — ferryd's core: the settings, the one lock, the event loop and
 * the threads. Every other file of the daemon uses it; it calls none of
 * them (what it must run elsewhere it is handed as a callback).
 *
 * Threads: the libevent loop (control API, peer listener, guest death
 * watches) never blocks on a guest; each job has its own thread, and each
 * control request that talks to a guest runs on a short-lived task thread.
 * D.lock guards the VM and job lists and every field marked (L) in vm.h and
 * job.h. D.threads counts the job and task threads, so that shutdown can
 * wait for them.
 */
#ifndef FERRY_DAEMON_CORE_H
#define FERRY_DAEMON_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/precopy.h"
#include "session/session.h"

#define PEER_LEN 300

struct vm;
struct job;

struct daemon {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t idle;          /* threads dropped to 0 */
	pthread_cond_t changed;       /* a job changed state (job.c) */
	struct vm *vms;               /* (L) vm.c's list */
	struct job *jobs;             /* (L) job.c's list, newest first */
	unsigned threads;             /* (L) job and task threads alive */
	unsigned incoming;            /* (L) incoming migrations now */
	bool stopping;                /* (L) shutting down */

	/* Settings (settings.c: the config file, then flags). */
	char config_path[256];
	char socket_path[256];
	char listen[PEER_LEN];
	char state_dir[256];
	char run_dir[256];
	char hostname[256];
	int peer_timeout_ms;
	int handshake_timeout_ms;     /* an incoming connection's TLS and HELLO */
	/* The migration port's budgets (gate.h). */
	unsigned max_pending;         /* connections before their HELLO, in all */
	unsigned max_pending_per_source; /* ... from one address */
	unsigned source_penalty_s;    /* a misbehaving address's first penalty; 0: none */
	char pool_addresses[1024];    /* addresses served as pool hosts from the start */
	unsigned max_incoming;
	uint64_t downtime_ms;
	unsigned max_iters;
	unsigned job_history;         /* finished jobs kept (listed, journaled) */
#define JOB_HISTORY_DEFAULT 200
	enum noconv_policy on_no_converge;
	uint32_t caps;                /* codecs this host offers and accepts */
	unsigned channels;            /* offered for outgoing, most accepted incoming */
	/* Transport: TLS unless plaintext; allow_from "*" or host names. */
	char pki_dir[256];
	char tls_ca[256], tls_cert[256], tls_key[256];
	char allow_from[1024];
	bool plaintext;
	/* Service addresses (net.c): the hook run to claim and release them. */
	char net_hook[256];           /* "" for none */
	int net_hook_timeout_ms;
	/* The coordination service (fence.c): etcd endpoints, "" for none; the
	 * lease TTL of a protected VM's key; the deadline of one call. */
	char coord[512];
	int coord_ttl_s;
	int coord_timeout_ms;
	int pool_ttl_s;               /* the lease of this host's pool record */
	/* The remote API (remote.c): HTTPS on this address, "" for none. */
	char api_listen[PEER_LEN];
	/* What this host offers its guests (the API's host capacity): bytes
	 * of RAM and CPUs; 0 for all the machine has. */
	uint64_t host_mem;
	unsigned host_cpus;

	/* Built at start-up (peers.c); read-only after. */
	struct session_conf peers;
};

extern struct daemon D;

/* Make the event loop (D.base) and what loop_call needs. */
void core_init(void);
/* Run fn(arg) on the loop thread soon; callable from any thread. */
void loop_call(void (*fn)(void *), void *arg);
/* Start a detached thread counted in D.threads. 0 or -errno. */
int spawn_thread(void *(*fn)(void *), void *arg);
/* The calling thread's last act: no longer counted. */
void thread_done(void);
/* Wait until no counted thread is left, running the loop meanwhile. */
void core_wait_threads(void);
/* Whether ferryd is shutting down (takes D.lock). */
bool core_stopping(void);

#endif
