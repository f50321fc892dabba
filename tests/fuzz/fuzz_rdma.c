/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_rdma.c — libFuzzer target for what an RDMA peer controls
 * (transport/rdma_proto.c): the hello in the connection's private data, the
 * control-message parser, and the slot validator with the receive-side
 * bookkeeping behind it.
 *
 * The whole input goes to the two parsers. It is also a program for a
 * receiver with a ring of 4 slots of 4 KiB: each step is an op byte and its
 * arguments — land a write (raw bytes from the input, or, with bit 2 set, a
 * slot built right for the expected sequence so that mutations get past the
 * checksum, then with bit 3 one byte of it flipped), read, return credit,
 * close. Whatever happens: parsed values hold the documented limits, a
 * refusal comes with a sentence, and the ring's counters never cross.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "transport/rdma_proto.h"

#include "tests/fuzz/check.h"

#define NSLOTS 4u
#define SLOT 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parsers(const uint8_t *data, size_t size)
{
	struct rdma_ctl_wire w;
	struct rdma_ctl m, again;
	struct rdma_hello h;
	char err[256] = "";

	if (rdma_ctl_parse(data, size, &m, err, sizeof err) == 0) {
		CHECK(size == sizeof w);
		CHECK(m.type >= RDMA_CTL_CREDIT && m.type <= RDMA_CTL_ERROR);
		CHECK(strlen(m.text) <= RDMA_CTL_TEXT_MAX);
		CHECK(m.type == RDMA_CTL_ERROR ? m.arg >= 1 && m.arg <= 4095 : !m.text[0]);
		rdma_ctl_encode(&w, m.type, m.arg, m.text);
		CHECK(memcmp(&w, data, sizeof w) == 0);
		CHECK(rdma_ctl_parse(&w, sizeof w, &again, err, sizeof err) == 0);
		CHECK(again.type == m.type && again.arg == m.arg && !strcmp(again.text, m.text));
	} else {
		CHECK(err[0]);
	}
	err[0] = 0;
	if (rdma_hello_parse(data, size, &h, err, sizeof err) == 0) {
		CHECK(rdma_geom_ok(h.nslots, h.slot_size));
		CHECK(h.addr <= UINT64_MAX - (uint64_t)h.nslots * h.slot_size);
		CHECK(h.version == RDMA_PROTO_VERSION);
	} else {
		CHECK(err[0]);
	}
}

/* Take n bytes from the input, or fewer at its end; zero-filled. */
static uint64_t take(const uint8_t **p, const uint8_t *end, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && *p < end; i++, (*p)++)
		v |= (uint64_t)**p << (8 * i);
	return v;
}

static void land(struct rdma_rx *rx, uint8_t *ring, unsigned op, const uint8_t **p,
		 const uint8_t *end)
{
	uint32_t imm = (uint32_t)take(p, end, 4), wrote = (uint32_t)take(p, end, 2) % (SLOT + 64);
	uint64_t before = rx->landed;
	size_t avail = (size_t)(end - *p);
	char err[256] = "";
	int r;

	if (op & 4) {
		/* A right slot of up to wrote bytes of payload from the input. */
		uint32_t slot = (uint32_t)(rx->landed % NSLOTS);
		struct iovec v = { (void *)*p, MIN(avail, (size_t)wrote) };
		struct rdma_iov_cursor cur;

		rdma_cursor_init(&cur, &v, 1);
		*p += v.iov_len;
		imm = rdma_imm(slot, rx->landed);
		wrote = rdma_slot_fill(ring + slot * SLOT, SLOT, slot, rx->landed, &cur);
		if (op & 8)
			ring[slot * SLOT + take(p, end, 2) % wrote] ^= (uint8_t)(1 + take(p, end, 1) % 255);
	} else {
		/* Raw bytes wherever the immediate points (inside the ring). */
		size_t n = MIN(avail, (size_t)SLOT);

		memcpy(ring + ((imm & 0xffff) % NSLOTS) * SLOT, *p, n);
		*p += n;
	}
	r = rdma_rx_land(rx, imm, wrote, err, sizeof err);
	if (r) {
		CHECK(r == -EPROTO && err[0]);
		CHECK(rx->landed == before);
	} else {
		uint32_t l = rx->len[before % NSLOTS];

		CHECK(rx->landed == before + 1);
		CHECK(l >= 1 && l <= SLOT - sizeof(struct rdma_slot_hdr));
		CHECK(wrote == l + sizeof(struct rdma_slot_hdr));
	}
}

static void receiver(const uint8_t *p, const uint8_t *end)
{
	static uint8_t ring[NSLOTS * SLOT], buf[3 * SLOT];
	struct rdma_rx rx;
	char err[256];

	memset(ring, 0, sizeof ring);
	rdma_rx_init(&rx, ring, NSLOTS, SLOT);
	while (p < end) {
		unsigned op = (unsigned)take(&p, end, 1);
		size_t before = rdma_rx_pending(&rx), n, got;
		uint64_t upto, total;

		switch (op & 3) {
		case 0:
			land(&rx, ring, op, &p, end);
			break;
		case 1:
			n = (size_t)take(&p, end, 2) % sizeof buf;
			got = rdma_rx_read(&rx, buf, n);
			CHECK(got <= n && got <= before);
			CHECK(got == MIN(n, before));
			CHECK(rdma_rx_pending(&rx) == before - got);
			break;
		case 2:
			if (rdma_rx_credit_due(&rx, op & 4, &upto))
				CHECK(upto == rx.consumed && upto == rx.reported);
			break;
		case 3:
			total = take(&p, end, 1);
			err[0] = 0;
			if (rdma_rx_close(&rx, total, err, sizeof err))
				CHECK(err[0]);
			else
				CHECK(rx.closed && total == rx.landed);
			break;
		}
		CHECK(rx.reported <= rx.consumed && rx.consumed <= rx.landed);
		CHECK(rx.landed - rx.consumed <= NSLOTS);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parsers(data, size);
	if (size >= sizeof(struct rdma_ctl_wire))
		parsers(data, sizeof(struct rdma_ctl_wire));
	receiver(data, data + size);
	return 0;
}
