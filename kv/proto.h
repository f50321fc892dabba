/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.h — the kvstore protocol: what a client says to the microVM's
 * kvstore guest (mvm/kvstore.c) over TCP, and what it answers
 * (docs/kvstore.md). Shared by the guest, ferry-kv and the fuzz target.
 *
 * Every message is a 32-byte header, then the key, then the value; all
 * integers little-endian. A connection starts with HELLO (the client's id,
 * its window, and the lowest sequence number it may still send); every
 * request carries the client's id and a sequence number, so that a retry
 * after a reconnect is answered from the store's record instead of being
 * applied twice.
 */
#ifndef FERRY_KV_PROTO_H
#define FERRY_KV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_REQ_MAGIC 0x3151564bu /* "KVQ1" */
#define KV_REP_MAGIC 0x3152564bu /* "KVR1" */
#define KV_KEY_MAX 256
#define KV_VAL_MAX 4096
#define KV_WINDOW_MAX 256 /* replies a client may ask the store to keep */
#define KV_MSG_MAX (32 + KV_KEY_MAX + KV_VAL_MAX)

enum kv_op {
	KV_HELLO = 1,  /* value: u32 window (1..KV_WINDOW_MAX); seq: the lowest
			* sequence number the client may still send */
	KV_PUT = 2,    /* key, value: set */
	KV_GET = 3,    /* key: reply value (or NOT_FOUND) */
	KV_DELETE = 4, /* key: remove (NOT_FOUND if absent) */
	KV_APPEND = 5, /* key, value: append (creates the key); reply aux: new length */
	KV_OP_MAX
};

enum kv_status {
	KV_OK = 0,
	KV_NOT_FOUND = 1,
	KV_TOO_OLD = 2,       /* seq below the client's window: its outcome is not
			       * known any more (it was answered before) */
	KV_BAD_REQUEST = 3,   /* malformed; the connection is closed after it */
	KV_NO_SPACE = 4,      /* the store is full: not applied */
	KV_TOO_BIG = 5,       /* an APPEND beyond KV_VAL_MAX: not applied */
	KV_UNKNOWN_CLIENT = 6, /* no HELLO first, or the store does not know this
				* client's earlier requests (evicted): not applied */
	KV_STATUS_MAX
};

struct kv_req_hdr {
	uint32_t magic;
	uint8_t op;
	uint8_t flags;    /* 0 */
	uint16_t key_len;
	uint32_t val_len;
	uint32_t reserved; /* 0 */
	uint64_t client;
	uint64_t seq;
};
_Static_assert(sizeof(struct kv_req_hdr) == 32, "wire size");

struct kv_rep_hdr {
	uint32_t magic;
	uint8_t op;
	uint8_t status;
	uint16_t reserved; /* 0 */
	uint32_t val_len;
	uint32_t reserved2; /* 0 */
	uint64_t seq;
	uint64_t aux;     /* APPEND: the value's new length */
};
_Static_assert(sizeof(struct kv_rep_hdr) == 32, "wire size");

/* A request as parsed (host order; key and val point into the caller's
 * buffer). */
struct kv_req {
	enum kv_op op;
	uint64_t client, seq;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *val;
	size_t val_len;
	uint32_t window; /* HELLO */
};

struct kv_rep {
	enum kv_op op;
	enum kv_status status;
	uint64_t seq, aux;
	const uint8_t *val;
	size_t val_len;
};

/*
 * Parse the request at the start of buf[0..len). 0 and *out and *used (the
 * request's bytes) when it is whole; -EAGAIN if more bytes are needed (at
 * most KV_MSG_MAX in all); -EPROTO with a sentence in err if it can never
 * be a request (bad magic, unknown op, flags or reserved set, a key or value
 * too long or missing where required, a bad window).
 */
int kv_req_parse(const void *buf, size_t len, struct kv_req *out, size_t *used, char *err,
		 size_t errlen);
/* The same for a reply. */
int kv_rep_parse(const void *buf, size_t len, struct kv_rep *out, size_t *used, char *err,
		 size_t errlen);

/* Encode a request header into h (key and value follow it on the wire). */
void kv_req_hdr_make(struct kv_req_hdr *h, enum kv_op op, uint64_t client, uint64_t seq,
		     size_t key_len, size_t val_len);
/* A whole request into buf (KV_MSG_MAX bytes): header, key, value (each
 * may be NULL when its length is 0). Returns its length. */
size_t kv_req_make(void *buf, enum kv_op op, uint64_t client, uint64_t seq, const void *key,
		   size_t key_len, const void *val, size_t val_len);
/* Encode a reply header. */
void kv_rep_hdr_make(struct kv_rep_hdr *h, enum kv_op op, enum kv_status st, uint64_t seq,
		     uint64_t aux, size_t val_len);

const char *kv_op_name(enum kv_op op);
const char *kv_status_name(enum kv_status st);
/* Whether a reply with this status means the request was applied, or
 * surely was not (else its outcome is not known). */
bool kv_status_applied(enum kv_op op, enum kv_status st);
bool kv_status_not_applied(enum kv_status st);

#endif
