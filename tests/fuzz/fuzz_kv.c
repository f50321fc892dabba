/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_kv.c — libFuzzer target for the kvstore guest's request parser
 * (kv/proto.c) and the store behind it (mvm/kvstore.c): the input is a
 * client's byte stream, parsed request by request as the guest does and
 * applied to a small store. Whatever arrives, a malformed request is refused
 * with a sentence, every reply parses, and the store stays sound by its own
 * verifier.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/proto.h"
#include "mvm/kvstore.h"

#include "tests/fuzz/check.h"

#define MEM (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct kv_store *s = ctx;

	if (off + len > s->size)
		return -EIO;
	memcpy(buf, s->ram + off, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram, out[KV_MSG_MAX];
	static struct wl_config w;
	struct kv_store s = { 0 };
	struct kv_conn conn = { 0 };
	char err[256];
	size_t off = 0;
	uint64_t n;

	if (!ram) {
		ram = malloc(MEM);
		CHECK(ram && !wl_parse("kvstore:conns=2,ring=8K,clients=16", MEM / 4096, 4096, &w,
				       err, sizeof err));
	}
	memset(ram, 0, MEM);
	s.ram = ram;
	s.size = MEM;
	CHECK(!kv_layout_of(&w, MEM, &s.l, err, sizeof err));
	kv_init(&s);
	while (off < size) {
		struct kv_req rq;
		struct kv_rep rep;
		size_t used, rused, rl;
		int r = kv_req_parse(data + off, size - off, &rq, &used, err, sizeof err);

		if (r == -EAGAIN)
			break;
		if (r) {
			CHECK(r == -EPROTO && err[0]);
			break;
		}
		CHECK(used > 0 && used <= size - off);
		rl = kv_handle(&s, &conn, &rq, out);
		CHECK(rl <= KV_MSG_MAX);
		CHECK(!kv_rep_parse(out, rl, &rep, &rused, err, sizeof err) && rused == rl);
		CHECK(rep.seq == rq.seq);
		off += used;
	}
	CHECK(!kv_verify(&s.l, mem_read, &s, &n, err, sizeof err));
	if (err[0]) {
		fprintf(stderr, "store unsound: %s\n", err);
		abort();
	}
	return 0;
}
