/* SPDX-License-Identifier: Apache-2.0 */
/* rdma_proto.c — the RDMA channel's wire formats and bookkeeping; see rdma_proto.h. */
#include "transport/rdma_proto.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "common/xxh.h"

#define HDR_LEN ((uint32_t)sizeof(struct rdma_slot_hdr))
#define CSUM_COVERS offsetof(struct rdma_slot_hdr, csum) /* header bytes under the checksum */

typedef unsigned long long ull; /* for printing uint64_t with %llu */

bool rdma_geom_ok(uint32_t nslots, uint32_t slot_size)
{
	return nslots >= 1 && nslots <= RDMA_SLOTS_MAX && slot_size >= RDMA_SLOT_SIZE_MIN &&
	       slot_size <= RDMA_SLOT_SIZE_MAX && slot_size % 64 == 0 &&
	       (uint64_t)nslots * slot_size <= RDMA_RING_MAX;
}

/* ---- hello ---- */

void rdma_hello_encode(struct rdma_hello_wire *w, uint32_t nslots, uint32_t slot_size,
		       uint64_t addr, uint32_t rkey)
{
	memset(w, 0, sizeof *w);
	w->magic = htole32(RDMA_HELLO_MAGIC);
	w->version = htole16(RDMA_PROTO_VERSION);
	w->nslots = htole32(nslots);
	w->slot_size = htole32(slot_size);
	w->addr = htole64(addr);
	w->rkey = htole32(rkey);
}

int rdma_hello_parse(const void *buf, size_t len, struct rdma_hello *out, char *err,
		     size_t errlen)
{
	struct rdma_hello_wire w;
	struct rdma_hello h;

	if (!buf || len < sizeof w) {
		snprintf(err, errlen, "the peer sent %zu bytes of connection data, not a ferry RDMA hello",
			 buf ? len : 0);
		return -EPROTO;
	}
	memcpy(&w, buf, sizeof w);
	if (le32toh(w.magic) != RDMA_HELLO_MAGIC) {
		snprintf(err, errlen, "the peer does not speak ferry's RDMA protocol");
		return -EPROTO;
	}
	h.version = le16toh(w.version);
	if (h.version != RDMA_PROTO_VERSION) {
		snprintf(err, errlen, "the peer speaks RDMA protocol version %u, this host %u",
			 h.version, RDMA_PROTO_VERSION);
		return -EPROTO;
	}
	if (w.reserved0 || w.reserved1) {
		snprintf(err, errlen, "the peer's RDMA hello has reserved fields set");
		return -EPROTO;
	}
	h.nslots = le32toh(w.nslots);
	h.slot_size = le32toh(w.slot_size);
	h.addr = le64toh(w.addr);
	h.rkey = le32toh(w.rkey);
	if (!rdma_geom_ok(h.nslots, h.slot_size)) {
		snprintf(err, errlen, "the peer's receive ring of %u slots of %u bytes is not allowed",
			 h.nslots, h.slot_size);
		return -EPROTO;
	}
	if (h.addr > UINT64_MAX - (uint64_t)h.nslots * h.slot_size) {
		snprintf(err, errlen, "the peer's receive ring wraps the address space");
		return -EPROTO;
	}
	*out = h;
	return 0;
}

/* ---- slots ---- */

uint32_t rdma_imm(uint32_t slot, uint64_t seq)
{
	return (uint32_t)(seq & 0xffff) << 16 | (slot & 0xffff);
}

/* The checksum of a slot: header (wire form, up to csum) seeds the payload's. */
static uint64_t slot_csum(const struct rdma_slot_hdr *wire, const void *payload, uint32_t len)
{
	return XXH3_64bits_withSeed(payload, len, XXH3_64bits(wire, CSUM_COVERS));
}

void rdma_cursor_init(struct rdma_iov_cursor *cur, const struct iovec *iov, int n)
{
	*cur = (struct rdma_iov_cursor){ .iov = iov, .n = n };
	while (cur->i < cur->n && !cur->iov[cur->i].iov_len)
		cur->i++;
}

bool rdma_cursor_done(const struct rdma_iov_cursor *cur)
{
	return cur->i >= cur->n;
}

uint32_t rdma_slot_fill(void *slot, uint32_t slot_size, uint32_t index, uint64_t seq,
			struct rdma_iov_cursor *cur)
{
	uint8_t *payload = (uint8_t *)slot + HDR_LEN;
	uint32_t room = slot_size - HDR_LEN, len = 0;
	struct rdma_slot_hdr h;

	while (len < room && !rdma_cursor_done(cur)) {
		const struct iovec *v = &cur->iov[cur->i];
		size_t n = MIN(v->iov_len - cur->off, (size_t)(room - len));

		memcpy(payload + len, (const uint8_t *)v->iov_base + cur->off, n);
		len += (uint32_t)n;
		cur->off += n;
		if (cur->off == v->iov_len) {
			cur->off = 0;
			do
				cur->i++;
			while (cur->i < cur->n && !cur->iov[cur->i].iov_len);
		}
	}
	h = (struct rdma_slot_hdr){
		.magic = htole32(RDMA_SLOT_MAGIC),
		.len = htole32(len),
		.seq = htole64(seq),
		.slot = htole32(index),
	};
	h.csum = htole64(slot_csum(&h, payload, len));
	memcpy(slot, &h, sizeof h);
	return HDR_LEN + len;
}

int rdma_slot_check(const void *slot, uint32_t slot_size, uint32_t nslots, uint32_t index,
		    uint64_t seq, uint32_t wrote, uint32_t *len, char *err, size_t errlen)
{
	struct rdma_slot_hdr h;
	uint32_t l, at;
	uint64_t s;

	if (index >= nslots) {
		snprintf(err, errlen, "RDMA slot index %u is out of range (ring of %u)", index, nslots);
		return -EPROTO;
	}
	if (wrote < HDR_LEN || wrote > slot_size) {
		snprintf(err, errlen, "RDMA write of %u bytes into slot %u does not fit a %u-byte slot with its header",
			 wrote, index, slot_size);
		return -EPROTO;
	}
	memcpy(&h, slot, sizeof h);
	if (le32toh(h.magic) != RDMA_SLOT_MAGIC || h.reserved) {
		snprintf(err, errlen, "RDMA slot %u has a corrupt header (magic 0x%08x)", index,
			 le32toh(h.magic));
		return -EPROTO;
	}
	at = le32toh(h.slot);
	if (at != index) {
		snprintf(err, errlen, "RDMA slot %u holds the header of slot %u", index, at);
		return -EPROTO;
	}
	s = le64toh(h.seq);
	if (s != seq) {
		snprintf(err, errlen, "RDMA slot %u: %s: sequence %llu where %llu was expected", index,
			 s > seq ? "gap" : "replay", (ull)s, (ull)seq);
		return -EPROTO;
	}
	l = le32toh(h.len);
	if (l == 0 || l > slot_size - HDR_LEN) {
		snprintf(err, errlen, "RDMA slot %u: length %u is not within 1..%u", index, l,
			 slot_size - HDR_LEN);
		return -EPROTO;
	}
	if (HDR_LEN + l != wrote) {
		snprintf(err, errlen, "RDMA slot %u: header says %u bytes, the write carried %u",
			 index, HDR_LEN + l, wrote);
		return -EPROTO;
	}
	if (le64toh(h.csum) != slot_csum(&h, (const uint8_t *)slot + HDR_LEN, l)) {
		snprintf(err, errlen, "RDMA slot %u (sequence %llu): checksum mismatch", index, (ull)s);
		return -EPROTO;
	}
	*len = l;
	return 0;
}

/* ---- control messages ---- */

void rdma_ctl_encode(struct rdma_ctl_wire *w, enum rdma_ctl_type type, uint64_t arg,
		     const char *text)
{
	size_t n = 0;

	memset(w, 0, sizeof *w);
	w->magic = htole32(RDMA_CTL_MAGIC);
	w->type = htole16((uint16_t)type);
	w->arg = htole64(arg);
	if (type == RDMA_CTL_ERROR && text) {
		/* Printable ASCII only, as the parser insists. */
		for (; text[n] && n < RDMA_CTL_TEXT_MAX; n++)
			w->text[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
	}
	w->text_len = htole16((uint16_t)n);
}

static bool zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int rdma_ctl_parse(const void *buf, size_t len, struct rdma_ctl *out, char *err, size_t errlen)
{
	struct rdma_ctl_wire w;
	unsigned type, tl;

	if (len != sizeof w) {
		snprintf(err, errlen, "RDMA control message of %zu bytes (expected %zu)", len, sizeof w);
		return -EPROTO;
	}
	memcpy(&w, buf, sizeof w);
	if (le32toh(w.magic) != RDMA_CTL_MAGIC) {
		snprintf(err, errlen, "RDMA control message with a bad magic (0x%08x)", le32toh(w.magic));
		return -EPROTO;
	}
	type = le16toh(w.type);
	tl = le16toh(w.text_len);
	if (type < RDMA_CTL_CREDIT || type > RDMA_CTL_ERROR) {
		snprintf(err, errlen, "RDMA control message of unknown type %u", type);
		return -EPROTO;
	}
	if (tl > RDMA_CTL_TEXT_MAX || (tl && type != RDMA_CTL_ERROR) ||
	    !zero(w.text + tl, RDMA_CTL_TEXT_MAX - tl)) {
		snprintf(err, errlen, "RDMA control message of type %u with a malformed text (%u bytes)",
			 type, tl);
		return -EPROTO;
	}
	for (unsigned i = 0; i < tl; i++) {
		if (w.text[i] < 0x20 || w.text[i] >= 0x7f) {
			snprintf(err, errlen, "RDMA error message with unprintable text");
			return -EPROTO;
		}
	}
	out->type = (enum rdma_ctl_type)type;
	out->arg = le64toh(w.arg);
	if (type == RDMA_CTL_ERROR && (out->arg == 0 || out->arg > 4095)) {
		snprintf(err, errlen, "RDMA error message with errno %llu", (ull)out->arg);
		return -EPROTO;
	}
	memcpy(out->text, w.text, tl);
	out->text[tl] = 0;
	return 0;
}

/* ---- the sending side ---- */

void rdma_tx_init(struct rdma_tx *tx, uint32_t nslots, uint32_t slot_size)
{
	*tx = (struct rdma_tx){ .nslots = nslots, .slot_size = slot_size };
}

bool rdma_tx_can_write(const struct rdma_tx *tx)
{
	return tx->seq - tx->freed < tx->nslots;
}

int rdma_tx_next(struct rdma_tx *tx, uint32_t *slot, uint64_t *seq)
{
	if (!rdma_tx_can_write(tx))
		return -EAGAIN;
	*seq = tx->seq++;
	*slot = (uint32_t)(*seq % tx->nslots);
	return 0;
}

int rdma_tx_credit(struct rdma_tx *tx, uint64_t freed, char *err, size_t errlen)
{
	if (freed < tx->freed) {
		snprintf(err, errlen, "RDMA credit went back from %llu to %llu slots", (ull)tx->freed,
			 (ull)freed);
		return -EPROTO;
	}
	if (freed > tx->seq) {
		snprintf(err, errlen, "RDMA credit returns %llu slots; only %llu were written",
			 (ull)freed, (ull)tx->seq);
		return -EPROTO;
	}
	tx->freed = freed;
	return 0;
}

/* ---- the receiving side ---- */

void rdma_rx_init(struct rdma_rx *rx, const void *ring, uint32_t nslots, uint32_t slot_size)
{
	memset(rx, 0, sizeof *rx);
	rx->ring = ring;
	rx->nslots = nslots;
	rx->slot_size = slot_size;
}

int rdma_rx_land(struct rdma_rx *rx, uint32_t imm, uint32_t wrote, char *err, size_t errlen)
{
	uint32_t slot = imm & 0xffff, seq16 = imm >> 16, want = (uint32_t)(rx->landed % rx->nslots);
	uint32_t len;
	int r;

	if (rx->closed) {
		snprintf(err, errlen, "RDMA slot %u landed after the peer's CLOSE", slot);
		return -EPROTO;
	}
	if (slot >= rx->nslots) {
		snprintf(err, errlen, "RDMA slot index %u is out of range (ring of %u)", slot,
			 rx->nslots);
		return -EPROTO;
	}
	if (rx->landed - rx->consumed >= rx->nslots) {
		snprintf(err, errlen, "RDMA slot %u was written before it was returned (all %u in use)",
			 slot, rx->nslots);
		return -EPROTO;
	}
	if (slot != want || seq16 != (rx->landed & 0xffff)) {
		snprintf(err, errlen, "RDMA write names slot %u, sequence %u; expected slot %u, sequence %u (mod 65536)",
			 slot, seq16, want, (unsigned)(rx->landed & 0xffff));
		return -EPROTO;
	}
	r = rdma_slot_check(rx->ring + (size_t)slot * rx->slot_size, rx->slot_size, rx->nslots,
			    slot, rx->landed, wrote, &len, err, errlen);
	if (r)
		return r;
	rx->len[slot] = len;
	rx->landed++;
	return 0;
}

size_t rdma_rx_pending(const struct rdma_rx *rx)
{
	size_t n = 0;

	for (uint64_t s = rx->consumed; s < rx->landed; s++)
		n += rx->len[s % rx->nslots];
	return n - (rx->landed > rx->consumed ? rx->off : 0);
}

size_t rdma_rx_read(struct rdma_rx *rx, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len && rx->consumed < rx->landed) {
		uint32_t idx = (uint32_t)(rx->consumed % rx->nslots), have = rx->len[idx];
		size_t n = MIN((size_t)(have - rx->off), len - done);
		const uint8_t *p = rx->ring + (size_t)idx * rx->slot_size + HDR_LEN + rx->off;

		memcpy((uint8_t *)buf + done, p, n);
		done += n;
		rx->off += (uint32_t)n;
		if (rx->off == have) {
			rx->consumed++;
			rx->off = 0;
		}
	}
	return done;
}

bool rdma_rx_credit_due(struct rdma_rx *rx, bool waiting, uint64_t *upto)
{
	uint64_t unreported = rx->consumed - rx->reported;

	if (!unreported || (!waiting && unreported < MAX(rx->nslots / 4, 1u)))
		return false;
	rx->reported = rx->consumed;
	*upto = rx->reported;
	return true;
}

int rdma_rx_close(struct rdma_rx *rx, uint64_t total, char *err, size_t errlen)
{
	if (rx->closed) {
		snprintf(err, errlen, "the RDMA peer sent CLOSE twice");
		return -EPROTO;
	}
	if (total != rx->landed) {
		snprintf(err, errlen, "the RDMA peer closed after %llu slots, but %llu landed",
			 (ull)total, (ull)rx->landed);
		return -EPROTO;
	}
	rx->closed = true;
	return 0;
}
