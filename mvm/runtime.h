/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runtime.h — the ferry-mvm process: one running microVM.
 *
 * Threads: the control thread (main) serves the control socket; one thread
 * per vCPU runs the workload; a kvstore guest also has the virtual NIC's
 * network thread (nic.c), a writer of guest RAM that parks like a vCPU. Guest RAM is a sealed memfd mapped MAP_SHARED
 * and registered with userfaultfd in async write-protect mode, so that the
 * kernel logs every write for PAGEMAP_SCAN. The process never forks after the
 * registration (a child's writes would not be logged).
 */
#ifndef FERRY_MVM_RUNTIME_H
#define FERRY_MVM_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mvm/config.h"
#include "mvm/context.h"
#include "mvm/kvstore.h"
#include "mvm/nic.h"
#include "mvm/proto.h"

struct mvm;

struct mvm_vcpu {
	struct mvm *m;
	unsigned id;
	pthread_t thread;
	uint64_t lo, hi;  /* slice of the working set */
	uint64_t limit;   /* steps after which it halts */
	bool resumed;     /* parked since the last step: record resume_gap_ns */
	/* Registers: written by the vCPU thread while it runs, read and written by
	 * the control thread only while the vCPU is parked (under m->lock).
	 * step is also read racily (atomically) for progress reports. */
	struct mvm_vcpu_regs regs;
};

struct mvm {
	char name[MVM_NAME_MAX];
	struct mvm_config cfg;
	char config_text[MVM_CONFIG_MAX];

	/* Set up before the vCPUs start; constant afterwards. */
	int memfd;
	int uffd;
	bool uffd_kernel; /* uffd reports kernel-mode faults too (made as root) */
	int pagemap;
	char *ram;
	uint64_t nr_frames;
	size_t page_size;

	/* Guest clock: CLOCK_MONOTONIC + offset (ns). */
	_Atomic int64_t clock_offset;

	/* Run control. pause_req and quit are read by vCPUs without the lock at
	 * every step boundary; everything else here is under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* vCPUs wait here: parked, paced, idle */
	pthread_cond_t parked_cv; /* the control thread waits here for parking */
	atomic_bool pause_req;
	atomic_bool quit;
	atomic_uint throttle;    /* percent, 0..99 */
	unsigned parked;         /* writers parked at a step boundary */
	unsigned started;        /* writers whose thread has started (its libc
				  * and sanitizer set-up done) */
	unsigned writers;        /* vCPUs, and the network thread if any */
	unsigned run_gen;        /* bumped on unpause: vCPUs reset pacing */
	/* Work for a serving vCPU (mvm_kick_vcpus): kicks only grows; a vCPU
	 * that found nothing sleeps (counted in nappers) until it changes. */
	_Atomic uint64_t kicks;
	atomic_uint nappers;

	/* Owned by the control thread. */
	bool paused;
	uint64_t pause_t0; /* control thread: when the PAUSE in force arrived (mono
			    * ns; 0: none) */
	uint64_t gap_start; /* (lock) an unpaused pause's pause_t0, until the last
			     * writer runs again */
	_Atomic uint64_t last_gap; /* the last pause that ended, to that moment */
	bool incoming; /* until the first unpause */
	bool logdirty;

	unsigned nr_vcpus;
	struct mvm_vcpu *vcpus;

	/* kvstore guests: the store and the virtual NIC (vCPU 0 serves). */
	struct kv_store kv;
	struct nic *nic;
};

static inline uint64_t mvm_guest_ns(struct mvm *m);

/* ram.c */
int mvm_ram_setup(struct mvm *m);
int mvm_ram_logdirty(struct mvm *m, bool on);

/* vcpu.c */
int mvm_vcpus_start(struct mvm *m);
/* Park every vCPU at a step boundary; returns once all are parked. Idempotent. */
void mvm_pause(struct mvm *m);
void mvm_unpause(struct mvm *m);
void mvm_throttle(struct mvm *m, unsigned pct);
/* A writer's thread, first thing in its start routine: it has started. */
void mvm_thread_started(struct mvm *m);
/* Wait until every writer's thread has started: what each thread's set-up
 * does (glibc's, a sanitizer's) is done before the seccomp filter. */
void mvm_wait_started(struct mvm *m);
/* A writer's side of pause: park until unpaused (also the NIC's thread). */
void mvm_park(struct mvm *m);
/* Wake the vCPUs waiting for work (the NIC received bytes). */
void mvm_kick_vcpus(struct mvm *m);
unsigned mvm_halted(struct mvm *m);
uint64_t mvm_total_steps(struct mvm *m);

/* ctl.c */
int mvm_serve(struct mvm *m, int listen_fd, int link_fd);

#include "common/mtime.h"
static inline uint64_t mvm_guest_ns(struct mvm *m)
{
	return (uint64_t)((int64_t)mono_ns() + atomic_load(&m->clock_offset));
}

#endif
