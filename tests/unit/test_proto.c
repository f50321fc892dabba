/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_proto.c — mvm/proto (control message validation) and mvm/context (the
 * vCPU context blob).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "mvm/context.h"
#include "mvm/proto.h"

#define ERRLEN 256

/* A request packet in buf: header plus body_bytes of body (filled with a
 * pattern); the header claims body_len. Returns the packet length. */
static size_t mk_req(void *buf, uint32_t magic, uint16_t version, uint16_t type, uint32_t seq,
		     uint32_t body_len, size_t body_bytes)
{
	struct mvm_req_hdr h = {
		.magic = htole32(magic),
		.version = htole16(version),
		.type = htole16(type),
		.seq = htole32(seq),
		.body_len = htole32(body_len),
	};
	char *p = buf;

	memcpy(p, &h, sizeof h);
	for (size_t i = 0; i < body_bytes; i++)
		p[sizeof h + i] = (char)(i * 7 + 1);
	return sizeof h + body_bytes;
}

static size_t mk_valid(void *buf, uint16_t type, uint32_t seq, size_t body)
{
	return mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, type, seq, (uint32_t)body, body);
}

/* Parse, expecting failure with code; out must echo seq/type; err must be
 * non-empty and contain needle. */
static void expect_req_fail(const void *buf, size_t len, int nfds, int code, uint32_t seq,
			    unsigned type, const char *needle)
{
	struct mvm_req out;
	char err[ERRLEN];
	int r;

	memset(&out, 0x5a, sizeof out);
	memset(err, 0, sizeof err);
	r = mvm_req_parse(buf, len, nfds, &out, err, sizeof err);
	if (r != code)
		fail_msg("len %zu nfds %d: got %d (%s), expected %d", len, nfds, r, err, code);
	assert_int_equal(out.seq, seq);
	assert_int_equal((unsigned)out.type, type);
	assert_true(strlen(err) > 0);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static size_t body_size_for(unsigned type)
{
	switch (type) {
	case MVM_THROTTLE:
	case MVM_LOGDIRTY:
		return sizeof(struct mvm_u32);
	case MVM_OUTPUT:
		return sizeof(struct mvm_output);
	default:
		return 0;
	}
}

static void test_req_valid_every_type(void **state)
{
	char buf[256];

	(void)state;
	for (unsigned t = 1; t < MVM_MSG_TYPE_MAX; t++) {
		struct mvm_req out;
		char err[ERRLEN] = "";
		size_t body = body_size_for(t), len;

		if (t == MVM_SET_CONTEXT)
			continue; /* test_req_set_context, with a real context */
		len = mk_valid(buf, (uint16_t)t, 1000 + t, body);
		memset(&out, 0x5a, sizeof out);
		if (mvm_req_parse(buf, len, 0, &out, err, sizeof err) != 0)
			fail_msg("type %u (%s): %s", t, mvm_msg_name(t), err);
		assert_int_equal((unsigned)out.type, t);
		assert_int_equal(out.seq, 1000 + t);
		assert_int_equal(out.body_len, body);
		assert_ptr_equal(out.body, buf + sizeof(struct mvm_req_hdr));
	}
	/* UNPAUSE may carry the next epoch's output mark. */
	{
		struct mvm_req out;
		char err[ERRLEN] = "";
		size_t len = mk_valid(buf, MVM_UNPAUSE, 7, sizeof(struct mvm_output));

		if (mvm_req_parse(buf, len, 0, &out, err, sizeof err) != 0)
			fail_msg("unpause with a mark: %s", err);
		assert_int_equal(out.body_len, sizeof(struct mvm_output));
	}
}

static void test_req_set_context(void **state)
{
	struct mvm_context c = { .nr_vcpus = 2, .guest_ns = 123456789, .real_ns = 42 };
	char *buf = malloc(sizeof(struct mvm_req_hdr) + MVM_CONTEXT_MAX + 1);
	struct mvm_req out;
	char err[ERRLEN] = "";
	size_t blen, len;

	(void)state;
	assert_non_null(buf);
	c.regs[0].seed = 11;
	c.regs[1].step = 22;
	blen = mvm_ctx_encode(&c, buf + sizeof(struct mvm_req_hdr));
	mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_SET_CONTEXT, 77, (uint32_t)blen, 0);
	len = sizeof(struct mvm_req_hdr) + blen;
	assert_int_equal(mvm_req_parse(buf, len, 0, &out, err, sizeof err), 0);
	assert_int_equal(out.type, MVM_SET_CONTEXT);
	assert_int_equal(out.seq, 77);
	assert_int_equal(out.body_len, blen);
	assert_ptr_equal(out.body, buf + sizeof(struct mvm_req_hdr));
	{
		struct mvm_context d;
		assert_int_equal(mvm_ctx_decode(out.body, out.body_len, 2, &d, err, sizeof err), 0);
		assert_int_equal(d.regs[0].seed, 11);
		assert_int_equal(d.regs[1].step, 22);
	}

	/* Variable body: empty and exactly the maximum are accepted here (the
	 * context decoder judges the content). */
	len = mk_valid(buf, MVM_SET_CONTEXT, 78, 0);
	assert_int_equal(mvm_req_parse(buf, len, 0, &out, err, sizeof err), 0);
	assert_int_equal(out.body_len, 0);
	len = mk_valid(buf, MVM_SET_CONTEXT, 79, MVM_CONTEXT_MAX);
	assert_int_equal(mvm_req_parse(buf, len, 0, &out, err, sizeof err), 0);
	assert_int_equal(out.body_len, MVM_CONTEXT_MAX);

	/* One byte more than the largest context. */
	len = mk_valid(buf, MVM_SET_CONTEXT, 80, MVM_CONTEXT_MAX + 1);
	expect_req_fail(buf, len, 0, -EBADMSG, 80, MVM_SET_CONTEXT, "set-context");
	free(buf);
}

static void test_req_body_max(void **state)
{
	(void)state;
	assert_int_equal(mvm_req_body_max(MVM_THROTTLE), sizeof(struct mvm_u32));
	assert_int_equal(mvm_req_body_max(MVM_LOGDIRTY), sizeof(struct mvm_u32));
	assert_int_equal(mvm_req_body_max(MVM_SET_CONTEXT), MVM_CONTEXT_MAX);
	assert_int_equal(mvm_req_body_max(MVM_HELLO), 0);
	assert_int_equal(mvm_req_body_max(MVM_PING), 0);
	assert_int_equal(mvm_req_body_max(MVM_VERIFY), 0);
	assert_true(MVM_CONTEXT_MAX + sizeof(struct mvm_req_hdr) <= MVM_MSG_MAX);
}

static void test_req_truncated_header(void **state)
{
	char buf[sizeof(struct mvm_req_hdr)];

	(void)state;
	mk_valid(buf, MVM_PING, 5, 0);
	/* Nothing can be read: seq/type are 0. */
	for (size_t len = 0; len < sizeof buf; len++)
		expect_req_fail(buf, len, 0, -EBADMSG, 0, 0, "truncated");
}

static void test_req_truncated_body(void **state)
{
	char buf[64];
	size_t len;

	(void)state;
	/* THROTTLE claims 8 body bytes, only 4 arrived. */
	len = mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_THROTTLE, 9, 8, 4);
	expect_req_fail(buf, len, 0, -EBADMSG, 9, MVM_THROTTLE, "8");
	/* ... none arrived. */
	len = mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_THROTTLE, 10, 8, 0);
	expect_req_fail(buf, len, 0, -EBADMSG, 10, MVM_THROTTLE, NULL);
	/* SET_CONTEXT claims 96, 95 arrived. */
	len = mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_SET_CONTEXT, 11, 96, 48);
	expect_req_fail(buf, len, 0, -EBADMSG, 11, MVM_SET_CONTEXT, NULL);
	/* Body longer than the header says is as wrong. */
	len = mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_PING, 12, 0, 8);
	expect_req_fail(buf, len, 0, -EBADMSG, 12, MVM_PING, NULL);
	/* A huge body_len in the header. */
	len = mk_req(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_THROTTLE, 13, UINT32_MAX, 8);
	expect_req_fail(buf, len, 0, -EBADMSG, 13, MVM_THROTTLE, NULL);
}

static void test_req_oversized(void **state)
{
	size_t sz = MVM_MSG_MAX + 64;
	char *buf = calloc(1, sz);
	size_t len;

	(void)state;
	assert_non_null(buf);
	mk_valid(buf, MVM_SET_CONTEXT, 3, MVM_MSG_MAX + 1 - sizeof(struct mvm_req_hdr));
	expect_req_fail(buf, MVM_MSG_MAX + 1, 0, -EMSGSIZE, 0, 0, "oversized");
	expect_req_fail(buf, sz, 0, -EMSGSIZE, 0, 0, "oversized");
	/* Exactly MVM_MSG_MAX is not oversized: it fails on the body size. */
	len = mk_valid(buf, MVM_SET_CONTEXT, 4, MVM_MSG_MAX - sizeof(struct mvm_req_hdr));
	assert_int_equal(len, MVM_MSG_MAX);
	expect_req_fail(buf, len, 0, -EBADMSG, 4, MVM_SET_CONTEXT, "at most");
	free(buf);
}

static void test_req_bad_magic(void **state)
{
	char buf[64];
	size_t len;

	(void)state;
	len = mk_req(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_PING, 21, 0, 0);
	expect_req_fail(buf, len, 0, -EBADMSG, 21, MVM_PING, "magic");
	len = mk_req(buf, 0, MVM_PROTO_VERSION, MVM_INFO, 22, 0, 0);
	expect_req_fail(buf, len, 0, -EBADMSG, 22, MVM_INFO, "magic");
	len = mk_req(buf, __builtin_bswap32(MVM_REQ_MAGIC), MVM_PROTO_VERSION, MVM_INFO, 23, 0, 0);
	expect_req_fail(buf, len, 0, -EBADMSG, 23, MVM_INFO, "magic");
}

static void test_req_bad_version(void **state)
{
	static const uint16_t versions[] = { 0, MVM_PROTO_VERSION + 1, 0x0100, 0xffff };
	char buf[64];

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(versions); k++) {
		size_t len = mk_req(buf, MVM_REQ_MAGIC, versions[k], MVM_HELLO, 31, 0, 0);
		expect_req_fail(buf, len, 0, -EPROTONOSUPPORT, 31, MVM_HELLO, "version");
	}
}

static void test_req_unknown_type(void **state)
{
	static const uint16_t types[] = { 0, MVM_MSG_TYPE_MAX, MVM_MSG_TYPE_MAX + 1, 0x100, 0xffff };
	char buf[64];

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(types); k++) {
		size_t len = mk_valid(buf, types[k], 41, 0);
		expect_req_fail(buf, len, 0, -EOPNOTSUPP, 41, types[k], "type");
		/* Also with a body: the type is what is wrong. */
		len = mk_valid(buf, types[k], 42, 8);
		expect_req_fail(buf, len, 0, -EOPNOTSUPP, 42, types[k], "type");
	}
}

static void test_req_wrong_body_size(void **state)
{
	static const struct {
		uint16_t type;
		size_t body;
	} cases[] = {
		{ MVM_HELLO, 1 },    { MVM_HELLO, 8 },	  { MVM_INFO, 4 },     { MVM_GET_FDS, 16 },
		{ MVM_PAUSE, 8 },    { MVM_UNPAUSE, 1 },  { MVM_UNPAUSE, 15 }, { MVM_UNPAUSE, 17 },
		{ MVM_THROTTLE, 0 }, { MVM_THROTTLE, 4 },
		{ MVM_THROTTLE, 7 }, { MVM_THROTTLE, 9 }, { MVM_THROTTLE, 16 }, { MVM_LOGDIRTY, 0 },
		{ MVM_LOGDIRTY, 12 }, { MVM_GET_CONTEXT, 32 }, { MVM_VERIFY, 8 }, { MVM_QUIT, 1 },
		{ MVM_PING, 8 },
	};
	char buf[64];

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		size_t len = mk_valid(buf, cases[k].type, 50 + (uint32_t)k, cases[k].body);
		expect_req_fail(buf, len, 0, -EBADMSG, 50 + (uint32_t)k, cases[k].type,
				mvm_msg_name(cases[k].type));
	}
}

static void test_req_with_fds(void **state)
{
	char buf[64];
	size_t len;

	(void)state;
	len = mk_valid(buf, MVM_PING, 61, 0);
	expect_req_fail(buf, len, 1, -EBADMSG, 61, MVM_PING, "file descriptor");
	expect_req_fail(buf, len, 2, -EBADMSG, 61, MVM_PING, "file descriptor");
	len = mk_valid(buf, MVM_THROTTLE, 62, 8);
	expect_req_fail(buf, len, 1, -EBADMSG, 62, MVM_THROTTLE, "file descriptor");
	/* NET_ATTACH alone brings one (the listening socket), never two. */
	len = mk_valid(buf, MVM_NET_ATTACH, 63, 0);
	expect_req_fail(buf, len, 2, -EBADMSG, 63, MVM_NET_ATTACH, "at most one");
	{
		struct mvm_req out;
		char err[ERRLEN];

		assert_int_equal(mvm_req_parse(buf, len, 1, &out, err, sizeof err), 0);
		assert_int_equal(mvm_req_parse(buf, len, 0, &out, err, sizeof err), 0);
	}
}

static void test_req_err_truncated_safely(void **state)
{
	char buf[64], err[16];
	struct mvm_req out;
	size_t len;

	(void)state;
	/* A short error buffer gets a NUL-terminated prefix and nothing beyond. */
	memset(err, 'x', sizeof err);
	len = mk_req(buf, 0xdeadbeef, MVM_PROTO_VERSION, MVM_PING, 1, 0, 0);
	assert_int_equal(mvm_req_parse(buf, len, 0, &out, err, 8), -EBADMSG);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(err[8], 'x');
}

static size_t mk_rep(void *buf, uint32_t magic, uint16_t version, uint16_t type, uint32_t seq,
		     int32_t status, uint32_t body_len, size_t body_bytes)
{
	struct mvm_rep_hdr h = {
		.magic = htole32(magic),
		.version = htole16(version),
		.type = htole16(type),
		.seq = htole32(seq),
		.status = (int32_t)htole32((uint32_t)status),
		.body_len = htole32(body_len),
	};
	char *p = buf;

	memcpy(p, &h, sizeof h);
	for (size_t i = 0; i < body_bytes; i++)
		p[sizeof h + i] = (char)(i + 3);
	return sizeof h + body_bytes;
}

static void expect_rep_fail(const void *buf, size_t len, uint16_t type, uint32_t seq, int code,
			    const char *needle)
{
	char err[ERRLEN] = "";
	int32_t status = 12345;
	const void *body = NULL;
	uint32_t body_len = 999;
	int r = mvm_rep_parse(buf, len, type, seq, &status, &body, &body_len, err, sizeof err);

	if (r != code)
		fail_msg("reply len %zu: got %d (%s), expected %d", len, r, err, code);
	assert_true(strlen(err) > 0);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_rep_parse_valid(void **state)
{
	char buf[128], err[ERRLEN] = "";
	int32_t status = 0;
	const void *body = NULL;
	uint32_t body_len = 0;
	size_t len;

	(void)state;
	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, -EBUSY, 40, 40);
	assert_int_equal(mvm_rep_parse(buf, len, MVM_INFO, 7, &status, &body, &body_len, err,
				       sizeof err),
			 0);
	assert_int_equal(status, -EBUSY);
	assert_ptr_equal(body, buf + sizeof(struct mvm_rep_hdr));
	assert_int_equal(body_len, 40);

	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_PING, 0xffffffffu, 0, 0, 0);
	assert_int_equal(mvm_rep_parse(buf, len, MVM_PING, 0xffffffffu, &status, &body, &body_len,
				       err, sizeof err),
			 0);
	assert_int_equal(status, 0);
	assert_int_equal(body_len, 0);
}

static void test_rep_parse_mismatch(void **state)
{
	char buf[128];
	size_t len;

	(void)state;
	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, 0, 0, 0);
	expect_rep_fail(buf, len, MVM_INFO, 8, -EBADMSG, "#7"); /* wrong seq */
	expect_rep_fail(buf, len, MVM_PING, 7, -EBADMSG, "info"); /* wrong type */
	expect_rep_fail(buf, len, MVM_PING, 8, -EBADMSG, NULL);

	len = mk_rep(buf, MVM_REQ_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, 0, 0, 0);
	expect_rep_fail(buf, len, MVM_INFO, 7, -EBADMSG, "magic");
	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION + 1, MVM_INFO, 7, 0, 0, 0);
	expect_rep_fail(buf, len, MVM_INFO, 7, -EBADMSG, "version");

	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, 0, 8, 4);
	expect_rep_fail(buf, len, MVM_INFO, 7, -EBADMSG, "length");
	len = mk_rep(buf, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, 0, 0, 4);
	expect_rep_fail(buf, len, MVM_INFO, 7, -EBADMSG, "length");

	for (size_t l = 0; l < sizeof(struct mvm_rep_hdr); l++)
		expect_rep_fail(buf, l, MVM_INFO, 7, -EBADMSG, "truncated");
	{
		char *big = calloc(1, MVM_MSG_MAX + 1);
		assert_non_null(big);
		mk_rep(big, MVM_REP_MAGIC, MVM_PROTO_VERSION, MVM_INFO, 7, 0,
		       MVM_MSG_MAX + 1 - sizeof(struct mvm_rep_hdr), 0);
		expect_rep_fail(big, MVM_MSG_MAX + 1, MVM_INFO, 7, -EMSGSIZE, "oversized");
		free(big);
	}
}

static void test_msg_name(void **state)
{
	(void)state;
	for (unsigned t = 1; t < MVM_MSG_TYPE_MAX; t++) {
		assert_non_null(mvm_msg_name(t));
		assert_string_not_equal(mvm_msg_name(t), "unknown");
		for (unsigned u = 1; u < t; u++)
			assert_string_not_equal(mvm_msg_name(t), mvm_msg_name(u));
	}
	assert_string_equal(mvm_msg_name(MVM_SET_CONTEXT), "set-context");
	assert_string_equal(mvm_msg_name(MVM_PING), "ping");
	assert_string_equal(mvm_msg_name(0), "unknown");
	assert_string_equal(mvm_msg_name(MVM_MSG_TYPE_MAX), "unknown");
	assert_string_equal(mvm_msg_name(0xffffffffu), "unknown");
}

/* ---- context blob ---- */

static void fill_ctx(struct mvm_context *c, unsigned n)
{
	memset(c, 0, sizeof *c);
	c->nr_vcpus = n;
	c->guest_ns = 0x0102030405060708ULL;
	c->real_ns = 0x1112131415161718ULL;
	for (unsigned i = 0; i < n; i++) {
		c->regs[i].seed = 0xa000000000000000ULL + i;
		c->regs[i].step = 1000ULL * i + 1;
		c->regs[i].last_step_ns = UINT64_MAX - i;
		c->regs[i].max_gap_ns = (uint64_t)i << 32;
		c->regs[i].resume_gap_ns = (uint64_t)i << 20;
	}
}

static void check_roundtrip(unsigned n)
{
	struct mvm_context c, d;
	unsigned char *buf = malloc(MVM_CONTEXT_MAX);
	char err[ERRLEN] = "";
	size_t len;

	assert_non_null(buf);
	fill_ctx(&c, n);
	memset(buf, 0xee, MVM_CONTEXT_MAX);
	len = mvm_ctx_encode(&c, buf);
	assert_int_equal(len, sizeof(struct mvm_ctx_hdr) + n * sizeof(struct mvm_vcpu_regs));
	/* Little-endian on the wire: "FMCX", version 1, n. */
	assert_memory_equal(buf, "FMCX", 4);
	assert_int_equal(buf[4] | buf[5] << 8, MVM_CTX_VERSION);
	assert_int_equal(buf[6] | buf[7] << 8, n);
	assert_int_equal(buf[8], 0x08);
	assert_int_equal(buf[15], 0x01);
	for (size_t i = 24; i < 32; i++)
		assert_int_equal(buf[i], 0); /* header reserved */
	for (unsigned v = 0; v < n; v++)
		for (size_t i = 40; i < 64; i++)
			assert_int_equal(buf[32 + v * 64 + i], 0); /* regs reserved */

	memset(&d, 0x77, sizeof d);
	if (mvm_ctx_decode(buf, len, n, &d, err, sizeof err) != 0)
		fail_msg("decode %u vCPUs: %s", n, err);
	assert_int_equal(d.nr_vcpus, n);
	assert_int_equal(d.guest_ns, c.guest_ns);
	assert_int_equal(d.real_ns, c.real_ns);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(d.regs[i].seed, c.regs[i].seed);
		assert_int_equal(d.regs[i].step, c.regs[i].step);
		assert_int_equal(d.regs[i].last_step_ns, c.regs[i].last_step_ns);
		assert_int_equal(d.regs[i].max_gap_ns, c.regs[i].max_gap_ns);
		assert_int_equal(d.regs[i].resume_gap_ns, c.regs[i].resume_gap_ns);
		for (unsigned k = 0; k < 3; k++)
			assert_int_equal(d.regs[i].reserved[k], 0);
	}
	/* expect_vcpus 0 accepts any count. */
	assert_int_equal(mvm_ctx_decode(buf, len, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.nr_vcpus, n);
	free(buf);
}

static void test_ctx_roundtrip_1(void **state)
{
	(void)state;
	check_roundtrip(1);
}

static void test_ctx_roundtrip_64(void **state)
{
	(void)state;
	check_roundtrip(MVM_VCPUS_MAX);
	check_roundtrip(3);
}

static void expect_decode_fail(const void *buf, size_t len, unsigned expect, const char *needle)
{
	struct mvm_context d;
	char err[ERRLEN] = "";
	int r = mvm_ctx_decode(buf, len, expect, &d, err, sizeof err);

	if (r != -EINVAL)
		fail_msg("decode of %zu bytes (expect %u): got %d, expected -EINVAL", len, expect, r);
	assert_true(strlen(err) > 0);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void set_nr_vcpus(unsigned char *buf, unsigned n)
{
	buf[6] = (unsigned char)n;
	buf[7] = (unsigned char)(n >> 8);
}

static void test_ctx_decode_rejects(void **state)
{
	struct mvm_context c;
	unsigned char *buf = calloc(1, MVM_CONTEXT_MAX + 64);
	size_t len;

	(void)state;
	assert_non_null(buf);
	fill_ctx(&c, 2);
	len = mvm_ctx_encode(&c, buf);

	/* Truncated: inside the header, and inside the registers. */
	expect_decode_fail(buf, 0, 2, "truncated");
	expect_decode_fail(buf, sizeof(struct mvm_ctx_hdr) - 1, 2, "truncated");
	expect_decode_fail(buf, sizeof(struct mvm_ctx_hdr), 2, NULL);
	expect_decode_fail(buf, len - 1, 2, NULL);
	expect_decode_fail(buf, len - sizeof(struct mvm_vcpu_regs), 2, NULL);
	/* Trailing bytes. */
	expect_decode_fail(buf, len + 1, 2, NULL);
	expect_decode_fail(buf, len + sizeof(struct mvm_vcpu_regs), 2, NULL);

	/* Wrong vCPU count against the domain. */
	expect_decode_fail(buf, len, 1, "vCPUs");
	expect_decode_fail(buf, len, 3, "vCPUs");

	/* Bad magic / version. */
	buf[0] ^= 0x01;
	expect_decode_fail(buf, len, 2, "magic");
	buf[0] ^= 0x01;
	buf[4] = 2;
	expect_decode_fail(buf, len, 2, "version");
	buf[4] = MVM_CTX_VERSION;
	assert_int_equal(mvm_ctx_decode(buf, len, 2, &c, (char[64]){ 0 }, 64), 0);

	/* nr_vcpus 0 and > 64, with a length that would fit them. */
	set_nr_vcpus(buf, 0);
	expect_decode_fail(buf, sizeof(struct mvm_ctx_hdr), 0, "0 vCPUs");
	expect_decode_fail(buf, len, 0, NULL);
	set_nr_vcpus(buf, MVM_VCPUS_MAX + 1);
	expect_decode_fail(buf,
			   sizeof(struct mvm_ctx_hdr) +
				   (MVM_VCPUS_MAX + 1) * sizeof(struct mvm_vcpu_regs),
			   0, "65 vCPUs");
	set_nr_vcpus(buf, 0xffff);
	expect_decode_fail(buf, len, 0, NULL);
	set_nr_vcpus(buf, 2);

	/* Nonzero reserved fields: header, then every reserved word of the last vCPU. */
	buf[24] = 1;
	expect_decode_fail(buf, len, 2, NULL);
	buf[24] = 0;
	buf[31] = 0x80;
	expect_decode_fail(buf, len, 2, NULL);
	buf[31] = 0;
	for (unsigned k = 0; k < 3; k++) {
		size_t off = sizeof(struct mvm_ctx_hdr) + sizeof(struct mvm_vcpu_regs) +
			     offsetof(struct mvm_vcpu_regs, reserved) + k * 8 + k;
		buf[off] = 0x10;
		expect_decode_fail(buf, len, 2, "reserved");
		buf[off] = 0;
	}
	/* And the first vCPU's. */
	buf[sizeof(struct mvm_ctx_hdr) + offsetof(struct mvm_vcpu_regs, reserved)] = 1;
	expect_decode_fail(buf, len, 2, "vCPU 0");
	buf[sizeof(struct mvm_ctx_hdr) + offsetof(struct mvm_vcpu_regs, reserved)] = 0;

	/* Restored: decodes again. */
	assert_int_equal(mvm_ctx_decode(buf, len, 2, &c, (char[64]){ 0 }, 64), 0);
	assert_int_equal(c.nr_vcpus, 2);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_valid_every_type),
		cmocka_unit_test(test_req_set_context),
		cmocka_unit_test(test_req_body_max),
		cmocka_unit_test(test_req_truncated_header),
		cmocka_unit_test(test_req_truncated_body),
		cmocka_unit_test(test_req_oversized),
		cmocka_unit_test(test_req_bad_magic),
		cmocka_unit_test(test_req_bad_version),
		cmocka_unit_test(test_req_unknown_type),
		cmocka_unit_test(test_req_wrong_body_size),
		cmocka_unit_test(test_req_with_fds),
		cmocka_unit_test(test_req_err_truncated_safely),
		cmocka_unit_test(test_rep_parse_valid),
		cmocka_unit_test(test_rep_parse_mismatch),
		cmocka_unit_test(test_msg_name),
		cmocka_unit_test(test_ctx_roundtrip_1),
		cmocka_unit_test(test_ctx_roundtrip_64),
		cmocka_unit_test(test_ctx_decode_rejects),
	};

	return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
