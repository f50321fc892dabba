/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hv/mvm.h — what the microVM backend offers beyond the hv_ops table:
 * starting a new guest, and the workload verifier.
 */
#ifndef FERRY_HV_MVM_H
#define FERRY_HV_MVM_H

#include <stdbool.h>
#include <sys/types.h>

#include "hv/hv.h"
#include "mvm/proto.h"

/*
 * Start a ferry-mvm runtime for a new guest NAME with config text
 * ("mem=1G vcpus=2 workload=dirtier:ws=256M,rate=64"), running (or paused),
 * in its own session so that it outlives the caller. Returns once it serves
 * its control socket; *pid is its pid (a child of the caller, who reaps it).
 * -EEXIST if NAME is taken, -EINVAL for a bad config (logged).
 */
int hv_mvm_launch(const char *name, const char *config, bool paused, pid_t *pid);

struct hv_mvm_stats {
	uint64_t steps;  /* steps of all vCPUs so far */
	unsigned halted; /* vCPUs that reached their step limit */
	bool incoming;   /* not yet committed */
	uint64_t max_gap_ns;    /* largest gap between two steps a vCPU saw */
	uint64_t resume_gap_ns; /* the gap before its first step after the last pause */
};
int hv_mvm_stats(struct hv_domain *d, struct hv_mvm_stats *out);

/* Replay the workload and check every page (pauses the guest meanwhile). */
int hv_mvm_verify(struct hv_domain *d, struct mvm_verify *out);

/* The ferry-mvm binary: $FERRY_MVM, else next to the running program, else
 * the installed one. */
const char *hv_mvm_runtime_path(void);

#endif
