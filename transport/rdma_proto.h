/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rdma_proto.h — the RDMA channel's protocol, without verbs (DESIGN.md §8):
 * what goes on the wire and the bookkeeping around it, so that all of it is
 * tested and fuzzed on machines without an RDMA device. transport/rdma.c
 * moves the bytes; this file decides whether they may be used.
 *
 * Each side registers a receive ring of nslots slots of slot_size bytes and
 * tells the peer where it is (struct rdma_hello, in the connection's private
 * data). The sender copies a record into its next slot — a 32-byte header
 * and up to slot_size - 32 bytes of payload — and RDMA-writes it into the
 * same slot of the peer's ring with an immediate value naming the slot.
 * Slots are used strictly in turn: sequence number s goes to slot
 * s % nslots, and may be written only once the receiver has returned slot
 * s - nslots (credits, counted cumulatively in CREDIT control messages).
 *
 * The receiver checks each slot (magic, slot, sequence, length, XXH3 over
 * header and payload) before any byte of it is read, and remembers the
 * checked length in its own memory: nothing taken from the ring is trusted
 * twice. A bad slot is -EPROTO with a sentence saying what was wrong.
 *
 * Control messages (SEND/RECV): CREDIT (slots freed so far), CLOSE (slots
 * written in all: the end of the data), ERROR (an errno and a short text).
 *
 * Every integer on the wire is little-endian. Nothing here locks: the
 * caller serialises access to a struct rdma_tx / rdma_rx.
 */
#ifndef FERRY_TRANSPORT_RDMA_PROTO_H
#define FERRY_TRANSPORT_RDMA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define RDMA_PROTO_VERSION 1
#define RDMA_HELLO_MAGIC 0x48445246u /* "FRDH" */
#define RDMA_SLOT_MAGIC 0x53445246u  /* "FRDS" */
#define RDMA_CTL_MAGIC 0x43445246u   /* "FRDC" */

#define RDMA_SLOTS_DEFAULT 16u
#define RDMA_SLOT_SIZE_DEFAULT (256u << 10)
#define RDMA_SLOTS_MAX 256u
#define RDMA_SLOT_SIZE_MIN 4096u
#define RDMA_SLOT_SIZE_MAX (16u << 20)
#define RDMA_RING_MAX (64u << 20) /* a peer's ring is mirrored in our staging: bound it */
#define RDMA_CTL_TEXT_MAX 48u

/* Where a side's receive ring is: sent in the connection's private data. */
struct rdma_hello_wire {
	uint32_t magic;     /* RDMA_HELLO_MAGIC */
	uint16_t version;   /* RDMA_PROTO_VERSION */
	uint16_t reserved0; /* 0 */
	uint32_t nslots;
	uint32_t slot_size; /* bytes, header included */
	uint64_t addr;      /* the ring's address in the peer's registration */
	uint32_t rkey;
	uint32_t reserved1; /* 0 */
};
_Static_assert(sizeof(struct rdma_hello_wire) == 32, "wire size");

struct rdma_hello {
	uint32_t version, nslots, slot_size, rkey;
	uint64_t addr;
};

/* The header at the start of every slot. */
struct rdma_slot_hdr {
	uint32_t magic;    /* RDMA_SLOT_MAGIC */
	uint32_t len;      /* payload bytes after the header */
	uint64_t seq;      /* the sender's slot sequence number, from 0 */
	uint32_t slot;     /* seq % nslots: where the sender meant it to land */
	uint32_t reserved; /* 0 */
	uint64_t csum;     /* XXH3-64 of the payload, seeded with XXH3-64 of the 24 bytes above */
};
_Static_assert(sizeof(struct rdma_slot_hdr) == 32, "wire size");

enum rdma_ctl_type { RDMA_CTL_CREDIT = 1, RDMA_CTL_CLOSE = 2, RDMA_CTL_ERROR = 3 };

struct rdma_ctl_wire {
	uint32_t magic;    /* RDMA_CTL_MAGIC */
	uint16_t type;     /* enum rdma_ctl_type */
	uint16_t text_len; /* ERROR only; the rest of text[] is zero */
	uint64_t arg;      /* CREDIT: slots freed in all; CLOSE: slots written in all; ERROR: errno */
	char text[RDMA_CTL_TEXT_MAX];
};
_Static_assert(sizeof(struct rdma_ctl_wire) == 64, "wire size");

struct rdma_ctl {
	enum rdma_ctl_type type;
	uint64_t arg;
	char text[RDMA_CTL_TEXT_MAX + 1]; /* NUL-terminated */
};

/* Whether a ring of nslots x slot_size is one this protocol allows (each
 * within its limits, slot_size a multiple of 64, at most RDMA_RING_MAX). */
bool rdma_geom_ok(uint32_t nslots, uint32_t slot_size);

/* The hello for a ring; parse a received one (len: the private data's size,
 * which the fabric may have padded). Parse: 0, or -EPROTO with err set. */
void rdma_hello_encode(struct rdma_hello_wire *w, uint32_t nslots, uint32_t slot_size,
		       uint64_t addr, uint32_t rkey);
int rdma_hello_parse(const void *buf, size_t len, struct rdma_hello *out, char *err,
		     size_t errlen);

/* The immediate value of a slot's write: the low 16 bits of seq and the slot. */
uint32_t rdma_imm(uint32_t slot, uint64_t seq);

/* A position in a record's scatter-gather list, as the sender fills slots. */
struct rdma_iov_cursor {
	const struct iovec *iov;
	int n, i;   /* pieces, and the current one */
	size_t off; /* bytes of iov[i] already taken */
};

void rdma_cursor_init(struct rdma_iov_cursor *cur, const struct iovec *iov, int n);
bool rdma_cursor_done(const struct rdma_iov_cursor *cur);

/*
 * Fill one slot (slot_size bytes at slot, which the caller owns) with the
 * next bytes of cur and its header for slot index / sequence seq. Returns
 * the bytes to write (header and payload).
 */
uint32_t rdma_slot_fill(void *slot, uint32_t slot_size, uint32_t index, uint64_t seq,
			struct rdma_iov_cursor *cur);

/*
 * Check a slot of size slot_size in a ring of nslots that should hold
 * sequence seq at index, and of which the fabric says wrote bytes arrived.
 * 0 and its payload length in *len, or -EPROTO with a sentence in err.
 */
int rdma_slot_check(const void *slot, uint32_t slot_size, uint32_t nslots, uint32_t index,
		    uint64_t seq, uint32_t wrote, uint32_t *len, char *err, size_t errlen);

/* A control message; parse one received in len bytes: 0, or -EPROTO with err. */
void rdma_ctl_encode(struct rdma_ctl_wire *w, enum rdma_ctl_type type, uint64_t arg,
		     const char *text);
int rdma_ctl_parse(const void *buf, size_t len, struct rdma_ctl *out, char *err, size_t errlen);

/* The sending side: which slot of the peer's ring is next, and may it be written. */
struct rdma_tx {
	uint32_t nslots, slot_size; /* the peer's ring */
	uint64_t seq;               /* slots written so far (the next sequence number) */
	uint64_t freed;             /* slots the peer has returned so far */
};

void rdma_tx_init(struct rdma_tx *tx, uint32_t nslots, uint32_t slot_size);
/* Whether a slot may be written now (the peer has returned enough). */
bool rdma_tx_can_write(const struct rdma_tx *tx);
/* Take the next slot: 0 and its index and sequence, or -EAGAIN without credit. */
int rdma_tx_next(struct rdma_tx *tx, uint32_t *slot, uint64_t *seq);
/* A CREDIT saying freed slots are free in all: 0, or -EPROTO with err set
 * (fewer than before, or more than were ever written). */
int rdma_tx_credit(struct rdma_tx *tx, uint64_t freed, char *err, size_t errlen);

/*
 * The receiving side: slots that have landed and been checked, and the
 * reader's position in them. ring is the registered receive ring (the
 * caller's); len[] keeps each checked slot's length out of the peer's reach.
 */
struct rdma_rx {
	const uint8_t *ring;
	uint32_t nslots, slot_size;
	uint64_t landed;   /* slots checked so far: the next expected sequence */
	uint64_t consumed; /* slots read to their end */
	uint64_t reported; /* slots returned to the sender in CREDITs */
	uint32_t off;      /* bytes of the first unread slot already read */
	bool closed;       /* CLOSE received: nothing more will land */
	uint32_t len[RDMA_SLOTS_MAX];
};

void rdma_rx_init(struct rdma_rx *rx, const void *ring, uint32_t nslots, uint32_t slot_size);
/*
 * A write with immediate imm of wrote bytes has completed: check its slot.
 * 0 (its bytes are now readable), or -EPROTO with err set: an immediate
 * that names the wrong slot or sequence, a slot that was not returned yet,
 * a write after CLOSE, or a bad slot (rdma_slot_check).
 */
int rdma_rx_land(struct rdma_rx *rx, uint32_t imm, uint32_t wrote, char *err, size_t errlen);
/* Bytes checked and not yet read. */
size_t rdma_rx_pending(const struct rdma_rx *rx);
/* Copy up to len checked bytes to buf, across slots; returns how many. */
size_t rdma_rx_read(struct rdma_rx *rx, void *buf, size_t len);
/*
 * Whether to send a CREDIT now, and with which total (*upto): when a
 * quarter of the ring is free and unreported, or when any is and the reader
 * is about to wait (the sender may be waiting for exactly those slots).
 * Marks *upto reported.
 */
bool rdma_rx_credit_due(struct rdma_rx *rx, bool waiting, uint64_t *upto);
/* CLOSE after total slots: 0, or -EPROTO with err if that is not how many
 * landed (or CLOSE came twice). */
int rdma_rx_close(struct rdma_rx *rx, uint64_t total, char *err, size_t errlen);

#endif
