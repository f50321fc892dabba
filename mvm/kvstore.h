/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstore.h — the kvstore workload's guest: a key-value store whose whole
 * state lives in guest RAM (docs/kvstore.md), served to clients through the
 * virtual NIC's rings (nic.h).
 *
 * Guest RAM, from frame 0 (the layout is a pure function of the config, so
 * nothing about it is kept outside RAM):
 *
 *   NIC header, then `conns` connection slots (nic.h)
 *   store header: magic, counters, the arena's bump pointer and free lists
 *   client table: `clients` records of a client's window of replies
 *   index: a power-of-two table of bucket words (entry offset; 0 empty,
 *          1 deleted), linear probing on XXH3 of the key
 *   arena: entries in size classes 512 B … 8 KiB: a 32-byte header (magic,
 *          lengths, class, state, XXH3 of lengths + key + value, free-list
 *          link), the key, the value
 *
 * Deduplication: every request carries (client, seq). The store keeps, per
 * client, the outcome of its mutating requests (PUT, DELETE, APPEND) for the
 * last `window` sequence numbers the client declared in its HELLO (at least
 * its pipeline depth); a retry within the window is answered from that
 * record and not applied again; one below the window is TOO_OLD, never
 * applied. A GET is not recorded: answering a retried GET from the store is
 * the same as answering it again. The table holds `clients` clients; when
 * it is full, the client idle longest is evicted, and a later HELLO from it
 * that says it sent requests before is refused (UNKNOWN_CLIENT), so that no
 * request is applied twice for want of its record.
 *
 * Threads: one vCPU runs the store (kv_handle); verify runs with every
 * writer parked. Nothing here locks.
 */
#ifndef FERRY_MVM_KVSTORE_H
#define FERRY_MVM_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/proto.h"
#include "mvm/workload.h"

#define KV_STORE_MAGIC 0x45524f5453564b46ULL /* "FKVSTORE" */
#define KV_ENTRY_MAGIC 0x59544e45u           /* "ENTY" */
#define KV_CLASSES 5                         /* 512, 1K, 2K, 4K, 8K */

/* Where everything is, for a guest of mem bytes with workload c. */
struct kv_layout {
	uint64_t nic_off, nslots, ring_bytes, slot_bytes;
	uint64_t store_off;
	uint64_t client_off, clients;
	uint64_t index_off, buckets;
	uint64_t arena_off, arena_end;
};

/* 0 and the layout, or -EINVAL (with a reason) if it does not fit. */
int kv_layout_of(const struct wl_config *c, uint64_t mem, struct kv_layout *l, char *err,
		 size_t errlen);

/* The store as the guest sees it: its RAM and layout. */
struct kv_store {
	uint8_t *ram;
	uint64_t size;
	struct kv_layout l;
	/* Test hooks (failpoints in the runtime): an APPEND acknowledged but
	 * not applied, or applied twice. */
	bool drop_append, double_append;
};

/* Write an empty store into RAM (a new guest; RAM is zero). */
void kv_init(struct kv_store *s);

/* A connection's HELLO state (kept in its NIC slot, in guest RAM). */
struct kv_conn {
	uint64_t client;
	uint32_t window;
	uint32_t hello;
	uint32_t cidx;     /* where its client record was last found: a hint */
	uint32_t reserved;
};

/*
 * Handle one parsed request on connection conn: apply it (at most once per
 * (client, seq)) and write the reply — header and value — into out
 * (KV_MSG_MAX bytes). Returns the reply's length.
 */
size_t kv_handle(struct kv_store *s, struct kv_conn *conn, const struct kv_req *rq, void *out);

/* Counters of the store header. */
struct kv_stats {
	uint64_t entries, clients, requests, applied, retries_answered, evictions, arena_used;
};
void kv_stats(const struct kv_store *s, struct kv_stats *st);

/* Read len bytes at byte offset off of guest RAM (pread on the memfd in the
 * runtime: holes read as zero without being allocated). 0 or -errno. */
typedef int (*kv_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/*
 * The store's own integrity: the header; every index bucket points to a
 * whole entry whose checksum holds and whose key hashes to a probe chain
 * reaching that bucket; every live entry of the arena is in the index
 * exactly once and the counts agree; free lists hold only free entries;
 * every client record is one client's, with its recorded sequence numbers
 * within its window below its highest. Fills why (empty if sound).
 * Returns 0 if it could be checked, -errno if reading failed.
 */
int kv_verify(const struct kv_layout *l, kv_read_fn read, void *ctx, uint64_t *checked,
	      char *why, size_t whylen);

#endif
