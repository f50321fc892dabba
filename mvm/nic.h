/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nic.h — the microVM's virtual NIC (DESIGN.md §4): receive and send rings
 * in guest RAM, one pair per connection slot, and the runtime's network
 * thread that moves bytes between them and host TCP connections accepted on
 * the guest's service address.
 *
 * Guest RAM at layout.nic_off: a header (magic, incarnation, slots), then per
 * slot a header page (its state, ring positions, the guest's per-connection
 * state) and its receive and send rings. Positions only grow; a ring's bytes
 * are [head, tail) modulo its size. The network thread produces receive
 * bytes and consumes send bytes; the guest (vCPU 0, nic_serve_step) the reverse.
 * Both write guest RAM, so both park on pause.
 *
 * Incarnation: a slot belongs to the NIC incarnation it was opened in. The
 * runtime bumps the incarnation when the guest first runs on a new host (an
 * incoming or restored runtime's commit) and frees every slot of an older
 * one: connections are host sockets and do not survive a move; nothing of
 * an old connection is ever delivered to a new one (clients reconnect and
 * retry, docs/kvstore.md).
 *
 * Output gating (for replication's output commit): off by default. When
 * held, bytes the guest produced in epoch e leave the host only once epoch e
 * is released; marks, taken at epoch boundaries while the guest is paused,
 * record where each epoch's output ends in every send ring.
 */
#ifndef FERRY_MVM_NIC_H
#define FERRY_MVM_NIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mvm/kvstore.h"

#define NIC_MAGIC 0x31434e494d564d46ULL /* "FMVMNIC1" */

/* Slot state bits. */
#define NIC_OPEN 0x1       /* a connection is attached (set by the network thread) */
#define NIC_PEER_GONE 0x2  /* the client closed or failed (network thread) */
#define NIC_GUEST_DONE 0x4 /* the guest is done with it (guest) */

struct nic_hdr {
	uint64_t magic;
	uint32_t version, nslots;
	uint64_t ring_bytes;
	uint64_t incarnation; /* bumped on every resume on a new host */
	uint64_t conns;       /* connections ever opened */
};

struct nic_slot {
	uint64_t incarnation; /* the NIC's when this connection opened; 0 free */
	uint64_t conn;
	uint32_t state;
	uint32_t reserved;
	uint64_t rx_head, rx_tail, tx_head, tx_tail;
	struct kv_conn kv;    /* the guest's state of this connection */
};

struct mvm;
struct nic;

enum nic_gate_op { NIC_GATE_HOLD = 1, NIC_GATE_MARK, NIC_GATE_RELEASE, NIC_GATE_OPEN };

struct nic_stats {
	uint64_t incarnation, open, accepted, refused, rx_bytes, tx_bytes, held_bytes;
	uint64_t epoch, released;
	bool gated;
};

/* Set the NIC up over guest RAM (a fresh guest: write its header too) and
 * start the network thread, which counts as a writer of guest RAM. A
 * connection the guest cannot serve for stall_ms (half a request, answers
 * not read) is closed; 0: never. */
int nic_start(struct mvm *m, const struct kv_layout *l, uint64_t stall_ms, bool fresh);
/* Take listen_fd (a listening TCP socket) as the service address, closing
 * the previous one; -1: stop listening, and, if every writer is parked (the
 * guest is leaving: a migration's GO), reset every client connection so that
 * clients reconnect at once. 0 or -errno. Control thread. */
int nic_listen(struct nic *n, int listen_fd, bool parked);
/* The guest runs on a new host: bump the incarnation, free every slot.
 * Every writer must be parked. */
void nic_new_host(struct nic *n);
/* Output gating (see above). epoch: HOLD, MARK: the epoch starting now;
 * RELEASE: the last epoch whose output may leave. A HOLD while the gate is
 * on keeps what it holds, as epoch - 1. 0 or -EINVAL. */
int nic_gate(struct nic *n, enum nic_gate_op op, uint64_t epoch);
void nic_stats(struct nic *n, struct nic_stats *st);

/* The guest's side (vCPU 0): serve one request of some connection. Returns
 * whether there was anything to do. */
bool nic_serve_step(struct nic *n, struct kv_store *s);
/* Wake the network thread (the guest produced output). */
void nic_kick(struct nic *n);

#endif
