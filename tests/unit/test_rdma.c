/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_rdma.c — the RDMA channel's protocol (transport/rdma_proto.c) without
 * a device: a "fabric" here is a memcpy from the sender's staging slot into
 * the receiver's ring. Credits, slot reuse and wraparound, records split
 * across slots and read in pieces, and every way a slot or a control message
 * can be refused. Built with rdma-core, also that connecting fails with a
 * clear sentence on a machine without an RDMA device (this one).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "transport/rdma_proto.h"
#ifdef HAVE_RDMA
#include "transport/rdma.h"
#endif

#define NSLOTS 4u
#define SLOT 4096u
#define ROOM (SLOT - sizeof(struct rdma_slot_hdr))

/* Two ends of one direction: the sender's staging ring and the receiver's. */
struct pair {
	uint8_t stage[NSLOTS * SLOT], ring[NSLOTS * SLOT];
	struct rdma_tx tx;
	struct rdma_rx rx;
	char err[256];
};

static struct pair *pair_new(void)
{
	struct pair *p = calloc(1, sizeof *p);

	assert_non_null(p);
	rdma_tx_init(&p->tx, NSLOTS, SLOT);
	rdma_rx_init(&p->rx, p->ring, NSLOTS, SLOT);
	return p;
}

/* Write one slot of cur's bytes: what rdma.c does with a WRITE WITH IMM. */
static int write_slot(struct pair *p, struct rdma_iov_cursor *cur)
{
	uint32_t slot, n;
	uint64_t seq;
	int r;

	if ((r = rdma_tx_next(&p->tx, &slot, &seq)))
		return r;
	n = rdma_slot_fill(p->stage + slot * SLOT, SLOT, slot, seq, cur);
	memcpy(p->ring + slot * SLOT, p->stage + slot * SLOT, n);
	return rdma_rx_land(&p->rx, rdma_imm(slot, seq), n, p->err, sizeof p->err);
}

/* Send a whole record, returning credits whenever the sender runs out. */
static void send_record(struct pair *p, const struct iovec *iov, int n)
{
	struct rdma_iov_cursor cur;

	rdma_cursor_init(&cur, iov, n);
	while (!rdma_cursor_done(&cur))
		assert_int_equal(write_slot(p, &cur), 0);
}

static void give_credit(struct pair *p, bool waiting)
{
	uint64_t upto;

	if (rdma_rx_credit_due(&p->rx, waiting, &upto))
		assert_int_equal(rdma_tx_credit(&p->tx, upto, p->err, sizeof p->err), 0);
}

static void fill_pattern(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed);
}

/* A slot written directly, for the tests that corrupt it before it lands. */
static uint32_t raw_slot(struct pair *p, uint32_t slot, uint64_t seq, size_t len)
{
	uint8_t data[SLOT];
	struct iovec v = { data, len };
	struct rdma_iov_cursor cur;

	fill_pattern(data, len, 7);
	rdma_cursor_init(&cur, &v, 1);
	return rdma_slot_fill(p->ring + slot * SLOT, SLOT, slot, seq, &cur);
}

static void test_geometry_and_hello(void **state)
{
	struct rdma_hello_wire w;
	struct rdma_hello h;
	char err[256];

	(void)state;
	assert_true(rdma_geom_ok(RDMA_SLOTS_DEFAULT, RDMA_SLOT_SIZE_DEFAULT));
	assert_false(rdma_geom_ok(0, SLOT));
	assert_false(rdma_geom_ok(RDMA_SLOTS_MAX + 1, SLOT));
	assert_false(rdma_geom_ok(4, 100));
	assert_false(rdma_geom_ok(4, RDMA_SLOT_SIZE_MAX * 2));
	assert_true(rdma_geom_ok(4, RDMA_SLOT_SIZE_MAX));
	assert_false(rdma_geom_ok(RDMA_SLOTS_MAX, RDMA_SLOT_SIZE_MAX)); /* 4 GiB of staging */

	rdma_hello_encode(&w, 16, 256 << 10, 0x7f0000001000ull, 0xabcd);
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), 0);
	assert_int_equal(h.nslots, 16);
	assert_int_equal(h.slot_size, 256 << 10);
	assert_int_equal(h.addr, 0x7f0000001000ull);
	assert_int_equal(h.rkey, 0xabcd);
	/* The fabric may pad private data: longer is fine, shorter is not. */
	{
		uint8_t padded[56] = { 0 };

		memcpy(padded, &w, sizeof w);
		assert_int_equal(rdma_hello_parse(padded, sizeof padded, &h, err, sizeof err), 0);
	}
	assert_int_equal(rdma_hello_parse(&w, 31, &h, err, sizeof err), -EPROTO);
	assert_int_equal(rdma_hello_parse(NULL, 0, &h, err, sizeof err), -EPROTO);
	w.magic ^= 1;
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "does not speak"));
	rdma_hello_encode(&w, 16, 256 << 10, 0, 1);
	w.version = htole16(2);
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "version 2"));
	rdma_hello_encode(&w, 16, 256 << 10, 0, 1);
	w.reserved1 = 1;
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), -EPROTO);
	rdma_hello_encode(&w, 100000, 256 << 10, 0, 1);
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "100000 slots"));
	rdma_hello_encode(&w, 16, 256 << 10, UINT64_MAX - 4096, 1);
	assert_int_equal(rdma_hello_parse(&w, sizeof w, &h, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "wraps"));
}

static void test_credits(void **state)
{
	struct rdma_tx tx;
	uint32_t slot;
	uint64_t seq;
	char err[256];

	(void)state;
	rdma_tx_init(&tx, NSLOTS, SLOT);
	/* The whole ring is free at first, and only the ring. */
	for (unsigned i = 0; i < NSLOTS; i++) {
		assert_int_equal(rdma_tx_next(&tx, &slot, &seq), 0);
		assert_int_equal(slot, i);
		assert_int_equal(seq, i);
	}
	assert_false(rdma_tx_can_write(&tx));
	assert_int_equal(rdma_tx_next(&tx, &slot, &seq), -EAGAIN);
	/* Two returned: exactly two more, into the slots that were freed. */
	assert_int_equal(rdma_tx_credit(&tx, 2, err, sizeof err), 0);
	assert_int_equal(rdma_tx_next(&tx, &slot, &seq), 0);
	assert_int_equal(slot, 0);
	assert_int_equal(seq, 4);
	assert_int_equal(rdma_tx_next(&tx, &slot, &seq), 0);
	assert_int_equal(slot, 1);
	assert_int_equal(rdma_tx_next(&tx, &slot, &seq), -EAGAIN);
	/* A repeated credit is harmless; one that goes back or ahead is not. */
	assert_int_equal(rdma_tx_credit(&tx, 2, err, sizeof err), 0);
	assert_int_equal(rdma_tx_credit(&tx, 1, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "went back"));
	assert_int_equal(rdma_tx_credit(&tx, 7, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "only 6 were written"));
	assert_int_equal(tx.freed, 2);
}

static void test_roundtrip_across_slots(void **state)
{
	struct pair *p = pair_new();
	size_t total = 3 * ROOM + 100;
	uint8_t *a = malloc(total), *back = malloc(total);
	uint8_t hdr[24];
	struct iovec iov[3];

	(void)state;
	fill_pattern(a, total, 1);
	fill_pattern(hdr, sizeof hdr, 2);
	/* A small header piece, an empty one, then the bulk: as the stream sends. */
	iov[0] = (struct iovec){ hdr, sizeof hdr };
	iov[1] = (struct iovec){ NULL, 0 };
	iov[2] = (struct iovec){ a, total };
	send_record(p, iov, 3);
	assert_int_equal(p->rx.landed, 4);
	assert_int_equal(rdma_rx_pending(&p->rx), total + sizeof hdr);
	/* Exact reads of awkward sizes, spanning slot boundaries. */
	{
		static const size_t sizes[] = { 1, 7, ROOM - 1, 3, ROOM + 5, 4096, 100000 };
		uint8_t h2[24];
		size_t got = 0, k = 0;

		assert_int_equal(rdma_rx_read(&p->rx, h2, sizeof h2), sizeof h2);
		assert_memory_equal(h2, hdr, sizeof hdr);
		while (got < total) {
			size_t want = sizes[k++ % (sizeof sizes / sizeof *sizes)];

			if (want > total - got)
				want = total - got;

			assert_int_equal(rdma_rx_read(&p->rx, back + got, want), want);
			got += want;
		}
	}
	assert_memory_equal(back, a, total);
	assert_int_equal(rdma_rx_pending(&p->rx), 0);
	assert_int_equal(rdma_rx_read(&p->rx, back, 1), 0);
	assert_int_equal(p->rx.consumed, 4);
	free(a);
	free(back);
	free(p);
}

static void test_wraparound_and_reuse(void **state)
{
	struct pair *p = pair_new();
	uint8_t rec[1000], got[1000];

	(void)state;
	/* Many more records than slots: every slot is reused many times, and
	 * the 16-bit sequence in the immediate wraps too. */
	for (unsigned i = 0; i < 70000; i++) {
		struct iovec v = { rec, sizeof rec };
		struct rdma_iov_cursor cur;

		fill_pattern(rec, sizeof rec, i);
		rdma_cursor_init(&cur, &v, 1);
		if (!rdma_tx_can_write(&p->tx)) {
			/* The sender is stuck: the reader must return what it read
			 * before it waits, or both would wait forever. */
			assert_int_equal(write_slot(p, &cur), -EAGAIN);
			give_credit(p, true);
		}
		assert_int_equal(write_slot(p, &cur), 0);
		if (i % 3 == 2) {
			/* Read in bursts, so that the ring fills up at times. */
			for (unsigned k = 0; k < 3; k++) {
				assert_int_equal(rdma_rx_read(&p->rx, got, sizeof got), sizeof got);
				fill_pattern(rec, sizeof rec, i - 2 + k);
				assert_memory_equal(got, rec, sizeof rec);
			}
		}
	}
	assert_true(p->tx.freed <= p->rx.consumed);
	free(p);
}

static void test_credit_policy(void **state)
{
	struct pair *p = pair_new();
	uint8_t b[ROOM];
	uint64_t upto;

	(void)state;
	for (unsigned i = 0; i < NSLOTS; i++) {
		struct iovec v = { b, sizeof b };

		send_record(p, &v, 1);
	}
	assert_false(rdma_rx_credit_due(&p->rx, true, &upto)); /* nothing read yet */
	assert_int_equal(rdma_rx_read(&p->rx, b, ROOM / 2), ROOM / 2);
	assert_false(rdma_rx_credit_due(&p->rx, true, &upto)); /* the slot is still in use */
	assert_int_equal(rdma_rx_read(&p->rx, b, ROOM / 2), ROOM / 2);
	/* One slot of four free: a quarter, due at once. */
	assert_true(rdma_rx_credit_due(&p->rx, false, &upto));
	assert_int_equal(upto, 1);
	assert_false(rdma_rx_credit_due(&p->rx, true, &upto));
	free(p);
}

static void test_bad_slots(void **state)
{
	struct pair *p = pair_new();
	struct rdma_slot_hdr h;
	uint32_t n, len;
	char *err = p->err;

	(void)state;
	/* Corrupt magic. */
	n = raw_slot(p, 0, 0, 100);
	p->ring[0] ^= 0xff;
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "corrupt header"));
	/* Reserved field set. */
	n = raw_slot(p, 0, 0, 100);
	memcpy(&h, p->ring, sizeof h);
	h.reserved = htole32(1);
	memcpy(p->ring, &h, sizeof h);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	/* A flipped payload bit, and a flipped header bit under the checksum. */
	n = raw_slot(p, 0, 0, 100);
	p->ring[sizeof h + 50] ^= 1;
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "checksum mismatch"));
	n = raw_slot(p, 0, 0, 100);
	memcpy(&h, p->ring, sizeof h);
	h.len = htole32(99);
	memcpy(p->ring, &h, sizeof h);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n - 1, err, 256), -EPROTO);
	assert_non_null(strstr(err, "checksum mismatch"));
	/* Over-long length, and a length the write does not match. */
	n = raw_slot(p, 0, 0, 100);
	memcpy(&h, p->ring, sizeof h);
	h.len = htole32(SLOT);
	memcpy(p->ring, &h, sizeof h);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "not within 1.."));
	n = raw_slot(p, 0, 0, 100);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n + 8, err, 256), -EPROTO);
	assert_non_null(strstr(err, "the write carried"));
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), SLOT + 1, err, 256), -EPROTO);
	assert_non_null(strstr(err, "does not fit"));
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), 8, err, 256), -EPROTO);
	/* Slot index out of range, in the immediate and in a direct check. */
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(NSLOTS, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "out of range"));
	assert_int_equal(rdma_slot_check(p->ring, SLOT, NSLOTS, 9, 0, n, &len, err, 256), -EPROTO);
	assert_non_null(strstr(err, "out of range"));
	/* A header written for another slot. */
	raw_slot(p, 1, 0, 100);
	memcpy(p->ring, p->ring + SLOT, SLOT);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "header of slot 1"));
	/* Nothing of the above landed. */
	assert_int_equal(p->rx.landed, 0);
	assert_int_equal(rdma_rx_pending(&p->rx), 0);
	free(p);
}

static void test_bad_sequence(void **state)
{
	struct pair *p = pair_new();
	uint32_t n;
	char *err = p->err;

	(void)state;
	/* A gap: sequence 1 where 0 is expected (header and immediate). */
	n = raw_slot(p, 0, 1, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "gap"));
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(1, 1), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "expected slot 0"));
	/* Land 0 properly, then replay it. */
	n = raw_slot(p, 0, 0, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), 0);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, 0), n, err, 256), -EPROTO);
	n = raw_slot(p, 1, 0, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(1, 1), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "replay"));
	/* Wrong sequence bits in the immediate only. */
	n = raw_slot(p, 1, 1, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(1, 5), n, err, 256), -EPROTO);
	/* Overrun: the sender writes a slot the reader has not returned. */
	for (uint64_t s = 1; s < NSLOTS; s++) {
		n = raw_slot(p, (uint32_t)s, s, 10);
		assert_int_equal(rdma_rx_land(&p->rx, rdma_imm((uint32_t)s, s), n, err, 256), 0);
	}
	n = raw_slot(p, 0, NSLOTS, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(0, NSLOTS), n, err, 256), -EPROTO);
	assert_non_null(strstr(err, "before it was returned"));
	assert_int_equal(p->rx.landed, NSLOTS);
	free(p);
}

static void test_close(void **state)
{
	struct pair *p = pair_new();
	uint8_t b[10];
	struct iovec v = { b, sizeof b };
	uint32_t n;

	(void)state;
	send_record(p, &v, 1);
	assert_int_equal(rdma_rx_close(&p->rx, 2, p->err, sizeof p->err), -EPROTO);
	assert_non_null(strstr(p->err, "closed after 2 slots, but 1 landed"));
	assert_int_equal(rdma_rx_close(&p->rx, 1, p->err, sizeof p->err), 0);
	assert_true(p->rx.closed);
	/* What landed before CLOSE is still read; nothing may land after. */
	assert_int_equal(rdma_rx_read(&p->rx, b, sizeof b), sizeof b);
	n = raw_slot(p, 1, 1, 10);
	assert_int_equal(rdma_rx_land(&p->rx, rdma_imm(1, 1), n, p->err, 256), -EPROTO);
	assert_non_null(strstr(p->err, "after the peer's CLOSE"));
	assert_int_equal(rdma_rx_close(&p->rx, 1, p->err, sizeof p->err), -EPROTO);
	free(p);
}

static void test_ctl_messages(void **state)
{
	struct rdma_ctl_wire w;
	struct rdma_ctl c;
	char err[256];

	(void)state;
	rdma_ctl_encode(&w, RDMA_CTL_CREDIT, 12345, NULL);
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), 0);
	assert_int_equal(c.type, RDMA_CTL_CREDIT);
	assert_int_equal(c.arg, 12345);
	assert_string_equal(c.text, "");
	rdma_ctl_encode(&w, RDMA_CTL_ERROR, EIO, "disk\non fire, and this text is far too long to fit");
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), 0);
	assert_int_equal(c.arg, EIO);
	assert_int_equal(strlen(c.text), RDMA_CTL_TEXT_MAX);
	assert_memory_equal(c.text, "disk?on fire", 12);

	/* Malformed: size, magic, type, text where none belongs, garbage after
	 * the text, unprintable text, an errno out of range. */
	rdma_ctl_encode(&w, RDMA_CTL_CLOSE, 3, NULL);
	assert_int_equal(rdma_ctl_parse(&w, sizeof w - 1, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "63 bytes"));
	assert_int_equal(rdma_ctl_parse(&w, 0, &c, err, sizeof err), -EPROTO);
	w.magic ^= 0x100;
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "bad magic"));
	rdma_ctl_encode(&w, 9, 0, NULL);
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "unknown type 9"));
	rdma_ctl_encode(&w, RDMA_CTL_CREDIT, 1, NULL);
	w.text_len = htole16(1);
	w.text[0] = 'x';
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "malformed text"));
	rdma_ctl_encode(&w, RDMA_CTL_ERROR, EIO, "ab");
	w.text[10] = 'z';
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	rdma_ctl_encode(&w, RDMA_CTL_ERROR, EIO, "ab");
	w.text_len = htole16(RDMA_CTL_TEXT_MAX + 1);
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	rdma_ctl_encode(&w, RDMA_CTL_ERROR, EIO, "ab");
	w.text[1] = '\x01';
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "unprintable"));
	rdma_ctl_encode(&w, RDMA_CTL_ERROR, 0, "ab");
	assert_int_equal(rdma_ctl_parse(&w, sizeof w, &c, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "errno 0"));
}

static void test_connect_without_device(void **state)
{
	(void)state;
#ifdef HAVE_RDMA
	struct chan *c = NULL;
	char err[256] = "";
	int r = chan_rdma_connect("127.0.0.1:7481", 7481, 1000, &c, err, sizeof err);

	/* This machine has no RDMA device; a machine with one skips this. */
	if (r == -ENODEV) {
		assert_null(c);
		assert_non_null(strstr(err, "no RDMA device"));
		{
			struct chan_rdma_listener *l = NULL;

			err[0] = 0;
			assert_int_equal(chan_rdma_listen("127.0.0.1:7481", 7481, &l, err, sizeof err),
					 -ENODEV);
			assert_null(l);
			assert_non_null(strstr(err, "no RDMA device"));
		}
	} else {
		/* A device exists: whatever else happened, it was said. */
		assert_true(r < 0 ? err[0] != 0 : c != NULL);
		chan_free(c);
	}
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry_and_hello),
		cmocka_unit_test(test_credits),
		cmocka_unit_test(test_roundtrip_across_slots),
		cmocka_unit_test(test_wraparound_and_reuse),
		cmocka_unit_test(test_credit_policy),
		cmocka_unit_test(test_bad_slots),
		cmocka_unit_test(test_bad_sequence),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_ctl_messages),
		cmocka_unit_test(test_connect_without_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
