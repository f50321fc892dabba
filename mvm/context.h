/* SPDX-License-Identifier: Apache-2.0 */
/*
 * context.h — the microVM's vCPU and platform state: the blob that
 * save_context / load_context move (opaque to everything above hv/).
 *
 *   struct mvm_ctx_hdr, then nr_vcpus x struct mvm_vcpu_regs, little-endian.
 *
 * Guest time is host CLOCK_MONOTONIC plus an offset. The blob carries the
 * guest time and the sender's CLOCK_REALTIME at save, so that guest time keeps
 * flowing in real time across a move (as a VM's clock does) and the guest can
 * itself observe how long it was stopped.
 */
#ifndef FERRY_MVM_CONTEXT_H
#define FERRY_MVM_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#define MVM_CTX_MAGIC 0x58434d46u /* "FMCX" */
#define MVM_CTX_VERSION 1
#define MVM_VCPUS_MAX 64
#define MVM_CTX_TIME_MAX (1ULL << 62) /* ns; clocks beyond it are refused */

struct mvm_ctx_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nr_vcpus;
	uint64_t guest_ns; /* guest clock at save */
	uint64_t real_ns;  /* sender's CLOCK_REALTIME at save */
	uint64_t reserved;
};
_Static_assert(sizeof(struct mvm_ctx_hdr) == 32, "wire size");

/* One vCPU's registers: all of its workload state that is not in guest RAM. */
struct mvm_vcpu_regs {
	uint64_t seed;         /* per-vCPU stream seed */
	uint64_t step;         /* steps completed */
	uint64_t last_step_ns; /* guest time of the last step */
	uint64_t max_gap_ns;   /* largest guest-time gap between two steps seen */
	uint64_t resume_gap_ns; /* the gap before the first step after the last pause:
				 * a migration's downtime as the guest saw it */
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct mvm_vcpu_regs) == 64, "wire size");

#define MVM_CONTEXT_MAX (sizeof(struct mvm_ctx_hdr) + MVM_VCPUS_MAX * sizeof(struct mvm_vcpu_regs))

/* Host-order view of a context. */
struct mvm_context {
	unsigned nr_vcpus;
	uint64_t guest_ns;
	uint64_t real_ns;
	struct mvm_vcpu_regs regs[MVM_VCPUS_MAX];
};

/* Serialise into buf (MVM_CONTEXT_MAX bytes); returns the length. */
size_t mvm_ctx_encode(const struct mvm_context *c, void *buf);
/* Validate and decode; expect_vcpus (0 = any) must match. -EINVAL + err. */
int mvm_ctx_decode(const void *buf, size_t len, unsigned expect_vcpus, struct mvm_context *c,
		   char *err, size_t errlen);

#endif
