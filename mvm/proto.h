/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.h — the microVM control protocol, between a ferry-mvm runtime and its
 * owner (ferryd through hv/mvm.c, or a test).
 *
 * Transport: a Unix SOCK_SEQPACKET socket, one message per packet, so a
 * message is never split or merged. Every field is little-endian and fixed
 * width; every wire struct has its size pinned by a static assertion.
 *
 *   request  = struct mvm_req_hdr, then body_len bytes of body
 *   reply    = struct mvm_rep_hdr, then body_len bytes of body
 *
 * Requests carry no file descriptors but NET_ATTACH (at most one: the
 * service address's listening socket); the GET_FDS reply carries exactly
 * two (the guest RAM memfd, then the runtime's /proc/self/pagemap). A request
 * that is truncated, oversized, of unknown type, of the wrong body size for
 * its type, or that carries fds it should not, is answered with an error
 * reply (status a negative errno, body a short text) and the runtime keeps
 * running.
 */
#ifndef FERRY_MVM_PROTO_H
#define FERRY_MVM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define MVM_REQ_MAGIC 0x43564d46u /* "FMVC" */
#define MVM_REP_MAGIC 0x52564d46u /* "FMVR" */
#define MVM_PROTO_VERSION 1
#define MVM_MSG_MAX (64u * 1024) /* header included, either direction */

enum mvm_msg_type {
	MVM_HELLO = 1,    /* take ownership; reply: mvm_info. -EBUSY if owned */
	MVM_INFO,         /* reply: mvm_info */
	MVM_GET_FDS,      /* reply: mvm_fds + 2 fds (memfd, pagemap) */
	MVM_PAUSE,        /* park every writer; reply when all are parked: the context blob */
	MVM_UNPAUSE,      /* an incoming runtime commits on its first unpause;
			   * optional body: an mvm_output MARK, taken first
			   * (a replication epoch's mark and resume in one trip);
			   * reply: mvm_u64, how long the pause before this one
			   * stopped the guest: from its PAUSE's arrival until
			   * every writer ran again (0: unknown) */
	MVM_THROTTLE,     /* body: mvm_u32 (percent, 0..99) */
	MVM_LOGDIRTY,     /* body: mvm_u32 (1 on, 0 off) */
	MVM_GET_CONTEXT,  /* paused only; reply: the context blob */
	MVM_SET_CONTEXT,  /* paused only; body: the context blob */
	MVM_VERIFY,       /* pauses, checks every page, restores run state; reply: mvm_verify */
	MVM_QUIT,         /* reply, then exit */
	MVM_PING,
	MVM_COMMIT,       /* an incoming runtime becomes permanent without running */
	MVM_NET_ATTACH,   /* 1 fd: the listening socket of the service address; none:
			   * stop listening (kvstore guests; else -EOPNOTSUPP) */
	MVM_OUTPUT,       /* body: mvm_output (gate the NIC's output per epoch) */
	MVM_NIC_INFO,     /* reply: mvm_nic_info */
	MVM_GET_UFFD,     /* reply: mvm_u32 (MVM_UFFD_* flags) + 1 fd, the userfaultfd
			   * guest RAM is registered with (post-copy: its holder
			   * registers MISSING faults and resolves them) */
	MVM_MSG_TYPE_MAX
};

struct mvm_req_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t seq;
	uint32_t body_len;
};
_Static_assert(sizeof(struct mvm_req_hdr) == 16, "wire size");

struct mvm_rep_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t seq;
	int32_t status; /* 0 or -errno */
	uint32_t body_len;
	uint32_t reserved;
};
_Static_assert(sizeof(struct mvm_rep_hdr) == 24, "wire size");

struct mvm_u32 {
	uint32_t v;
	uint32_t reserved;
};
_Static_assert(sizeof(struct mvm_u32) == 8, "wire size");

/* MVM_GET_UFFD's flags */
#define MVM_UFFD_KERNEL 0x1 /* it reports the kernel's faults too (a NIC's
			     * receive into guest RAM), not only the user's */

struct mvm_u64 {
	uint64_t v;
};
_Static_assert(sizeof(struct mvm_u64) == 8, "wire size");

enum mvm_output_op { MVM_OUTPUT_HOLD = 1, MVM_OUTPUT_MARK, MVM_OUTPUT_RELEASE, MVM_OUTPUT_OPEN };

struct mvm_output {
	uint32_t op;      /* enum mvm_output_op */
	uint32_t reserved;
	uint64_t epoch;
};
_Static_assert(sizeof(struct mvm_output) == 16, "wire size");

struct mvm_nic_info {
	uint64_t incarnation;
	uint64_t open;       /* connections attached now */
	uint64_t accepted, refused;
	uint64_t rx_bytes, tx_bytes;
	uint64_t held_bytes; /* produced, not yet released (gated) */
	uint64_t epoch, released;
	uint32_t gated, reserved;
	/* The store's (kvstore). */
	uint64_t entries, clients, requests, applied, retries, evictions, arena_used;
};
_Static_assert(sizeof(struct mvm_nic_info) == 136, "wire size");

#define MVM_CONFIG_MAX 512
#define MVM_NAME_MAX 64

struct mvm_info {
	uint32_t page_size;
	uint32_t nr_vcpus;
	uint64_t nr_frames;
	uint32_t paused;
	uint32_t logdirty;
	int32_t pid;
	uint32_t incoming; /* 1 until an incoming runtime's first unpause */
	uint32_t halted;   /* vCPUs that reached their step limit */
	uint32_t throttle;
	uint64_t steps;    /* sum of all vCPUs' step counters */
	char name[MVM_NAME_MAX];
	char config[MVM_CONFIG_MAX]; /* "mem=... vcpus=... workload=..." NUL-terminated */
	uint64_t max_gap_ns;    /* the largest of the vCPUs' registers */
	uint64_t resume_gap_ns; /* ditto */
};
_Static_assert(sizeof(struct mvm_info) == 640, "wire size");

struct mvm_fds {
	uint64_t ram_base; /* address of guest RAM in the runtime, for PAGEMAP_SCAN */
	uint64_t ram_size;
};
_Static_assert(sizeof(struct mvm_fds) == 16, "wire size");

enum mvm_verify_why { MVM_VERIFY_OK, MVM_VERIFY_LOST, MVM_VERIFY_STALE, MVM_VERIFY_TORN,
		      MVM_VERIFY_CORRUPT };

struct mvm_verify {
	uint32_t why; /* enum mvm_verify_why */
	uint32_t reserved;
	uint64_t frame;        /* first bad frame */
	uint64_t expected_gen;
	uint64_t found_gen;
	uint64_t pages_checked;
	uint64_t pages_written; /* frames with generation > 0 */
	char msg[208];
};
_Static_assert(sizeof(struct mvm_verify) == 256, "wire size");

/* A request as the runtime sees it after validation. */
struct mvm_req {
	enum mvm_msg_type type;
	uint32_t seq;
	const void *body; /* points into the caller's buffer */
	uint32_t body_len;
};

/*
 * Validate one received request packet of len bytes that came with nfds file
 * descriptors (len > MVM_MSG_MAX means the packet was cut: oversized).
 * On success fills *out and returns 0. On failure returns -errno, writes a
 * one-line reason to err, and sets out->seq/out->type to whatever could be
 * read (0 otherwise) so the error reply can echo them.
 */
int mvm_req_parse(const void *buf, size_t len, int nfds, struct mvm_req *out, char *err,
		  size_t errlen);

/* Validate a reply packet against the request it answers. Same conventions. */
int mvm_rep_parse(const void *buf, size_t len, uint16_t type, uint32_t seq, int32_t *status,
		  const void **body, uint32_t *body_len, char *err, size_t errlen);

const char *mvm_msg_name(unsigned type);

/* Body size rules per type: exact size, or a maximum for variable bodies. */
size_t mvm_req_body_max(unsigned type);

#endif
