/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_mvm_ctl.c — libFuzzer target for the microVM control protocol: request
 * and reply validation (mvm/proto.c) and the context blob (mvm/context.c).
 *
 * Input layout:
 *   byte 0   bits 0-1: number of fds that came with the packet (mod 3)
 *            bit 2:    use a short (8-byte) error buffer
 *            bit 7:    pretend the packet was cut at MVM_MSG_MAX + 1 (oversized)
 *   byte 1   expect_vcpus for the context decoder (mod 66: 0 = any, 65 = invalid)
 *   rest     the packet
 *
 * Besides not crashing or leaking, the target checks what the parsers promise:
 * an accepted request has a known type, nfds 0 and a body of the allowed size
 *   (UNPAUSE: none, or its optional output mark)
 * that lies inside the packet; a rejected one has a non-empty, terminated
 * reason; a decoded context re-encodes to exactly the same bytes.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvm/context.h"
#include "mvm/workload.h"
#include "mvm/proto.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err, size_t errlen)
{
	size_t n = strnlen(err, errlen);

	CHECK(n < errlen); /* terminated inside the buffer */
	CHECK(n > 0 || errlen == 1);
}

static void check_ctx(const void *buf, size_t len, unsigned expect)
{
	static unsigned char again[MVM_CONTEXT_MAX];
	struct mvm_context c;
	char err[128];
	int r;

	memset(err, 0, sizeof err);
	r = mvm_ctx_decode(buf, len, expect, &c, err, sizeof err);
	if (r) {
		CHECK(r == -EINVAL);
		check_err(err, sizeof err);
		return;
	}
	CHECK(c.nr_vcpus >= 1 && c.nr_vcpus <= MVM_VCPUS_MAX);
	CHECK(!expect || c.nr_vcpus == expect);
	CHECK(len == sizeof(struct mvm_ctx_hdr) + c.nr_vcpus * sizeof(struct mvm_vcpu_regs));
	for (unsigned i = 0; i < c.nr_vcpus; i++)
		for (unsigned k = 0; k < 3; k++)
			CHECK(c.regs[i].reserved[k] == 0);
	/* The wire form is canonical: decode then encode gives the same bytes. */
	CHECK(mvm_ctx_encode(&c, again) == len);
	CHECK(memcmp(again, buf, len) == 0);
	CHECK(c.guest_ns <= MVM_CTX_TIME_MAX && c.real_ns <= MVM_CTX_TIME_MAX);

	/* What the runtime checks next (SET_CONTEXT): registers against a
	 * dirtier with the same vCPU count; accepted steps are bounded. */
	{
		struct wl_config w;
		char e2[128];

		CHECK(wl_parse("dirtier:ws=1M,rate=max", 1024, 4096, &w, e2, sizeof e2) == 0);
		if (wl_check_regs(&w, c.nr_vcpus, c.regs, e2, sizeof e2) == 0)
			for (unsigned i = 0; i < c.nr_vcpus; i++)
				CHECK(c.regs[i].step <= WL_STEPS_MAX &&
				      c.regs[i].seed == wl_vcpu_seed(&w, i));
	}
}

static void check_req(const uint8_t *pkt, size_t len, int nfds, size_t errlen, unsigned expect)
{
	struct mvm_req out;
	char err[128];
	int r;

	memset(err, 0, sizeof err);
	r = mvm_req_parse(pkt, len, nfds, &out, err, errlen);
	CHECK(mvm_msg_name(out.type) != NULL);
	if (r) {
		CHECK(r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EOPNOTSUPP);
		check_err(err, errlen);
		return;
	}
	CHECK(nfds == 0 || (nfds == 1 && out.type == MVM_NET_ATTACH));
	CHECK(len >= sizeof(struct mvm_req_hdr) && len <= MVM_MSG_MAX);
	CHECK(out.type >= 1 && out.type < MVM_MSG_TYPE_MAX);
	CHECK((const uint8_t *)out.body == pkt + sizeof(struct mvm_req_hdr));
	CHECK(out.body_len == len - sizeof(struct mvm_req_hdr));
	CHECK(out.body_len <= mvm_req_body_max(out.type));
	if (out.type == MVM_SET_CONTEXT)
		check_ctx(out.body, out.body_len, expect);
	else if (out.type == MVM_UNPAUSE) /* its output mark is optional */
		CHECK(out.body_len == 0 || out.body_len == mvm_req_body_max(out.type));
	else
		CHECK(out.body_len == mvm_req_body_max(out.type));
}

static void check_rep(const uint8_t *pkt, size_t len, size_t errlen)
{
	struct mvm_rep_hdr h = { 0 };
	uint16_t type = 0;
	uint32_t seq = 0;
	int32_t status = 0;
	const void *body = NULL;
	uint32_t body_len = 0;
	char err[128];
	int r;

	/* Answer the request the reply claims to answer, so that well-formed
	 * replies get past the type/seq match; then a mismatching one. */
	if (len >= sizeof h && len <= MVM_MSG_MAX) {
		memcpy(&h, pkt, sizeof h);
		type = le16toh(h.type);
		seq = le32toh(h.seq);
	}
	memset(err, 0, sizeof err);
	r = mvm_rep_parse(pkt, len, type, seq, &status, &body, &body_len, err, errlen);
	if (r) {
		CHECK(r == -EMSGSIZE || r == -EBADMSG);
		check_err(err, errlen);
	} else {
		CHECK(len >= sizeof h && len <= MVM_MSG_MAX);
		CHECK((const uint8_t *)body == pkt + sizeof h);
		CHECK(body_len == len - sizeof h);
		CHECK(status == (int32_t)le32toh((uint32_t)h.status));
		memset(err, 0, sizeof err);
		r = mvm_rep_parse(pkt, len, type, seq + 1, &status, &body, &body_len, err, errlen);
		CHECK(r == -EBADMSG);
		check_err(err, errlen);
		memset(err, 0, sizeof err);
		r = mvm_rep_parse(pkt, len, (uint16_t)(type + 1), seq, &status, &body, &body_len,
				  err, errlen);
		CHECK(r == -EBADMSG);
		check_err(err, errlen);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *pkt;
	size_t len, errlen;
	int nfds;
	unsigned expect;
	uint8_t *big = NULL;

	if (size < 2)
		return 0;
	nfds = (data[0] & 3) % 3;
	errlen = data[0] & 4 ? 8 : 128;
	expect = data[1] % (MVM_VCPUS_MAX + 2);
	pkt = data + 2;
	len = size - 2;
	if (data[0] & 0x80) {
		/* A packet cut by the receive buffer: MVM_MSG_MAX + 1 bytes, the
		 * input's bytes first. */
		big = calloc(1, MVM_MSG_MAX + 1);
		if (!big)
			return 0;
		memcpy(big, pkt, len < MVM_MSG_MAX + 1 ? len : MVM_MSG_MAX + 1);
		pkt = big;
		len = MVM_MSG_MAX + 1;
	}

	check_req(pkt, len, nfds, errlen, expect);
	check_rep(pkt, len, errlen);
	/* The decoder on its own, fed the whole packet. */
	if (len <= MVM_CONTEXT_MAX + 64)
		check_ctx(pkt, len, expect);

	free(big);
	return 0;
}
