/*
 * fuzz_mig_wire.c — libFuzzer target for what a migration peer sends before
 * and around the stream (migrate/wire.c): the 16-byte frame header, the
 * HELLO JSON and the 16-byte control messages.
 *
 * Whatever parses must hold the documented limits, and a parsed HELLO must
 * survive mig_hello_json -> mig_hello_parse unchanged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/wire.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void hello(const uint8_t *body, size_t len)
{
	struct mig_hello h, again;
	char err[256] = "";
	json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL), *back;

	if (!o)
		return;
	if (mig_hello_parse(o, &h, err, sizeof err)) {
		CHECK(err[0]);
		json_decref(o);
		return;
	}
	CHECK(h.op == MIG_OP_MIGRATE || h.op == MIG_OP_RESOLVE || h.op == MIG_OP_CHANNEL);
	CHECK(mig_valid_id(h.job, sizeof h.job));
	CHECK(h.op != MIG_OP_MIGRATE || mig_valid_id(h.name, sizeof h.name));
	CHECK(h.op != MIG_OP_MIGRATE || (h.channels >= 1 && h.channels <= MIG_CHANNELS_MAX));
	CHECK(h.op != MIG_OP_CHANNEL || (h.index < MIG_CHANNELS_MAX && mig_valid_token(h.token)));
	back = mig_hello_json(&h);
	CHECK(back);
	CHECK(mig_hello_parse(back, &again, err, sizeof err) == 0);
	CHECK(again.op == h.op && !strcmp(again.job, h.job) && !strcmp(again.from, h.from));
	CHECK(h.op != MIG_OP_MIGRATE || (again.caps == h.caps && again.channels == h.channels &&
				      again.peer_timeout_ms == h.peer_timeout_ms));
	CHECK(!(h.caps & ~MIG_CAPS_ALL));
	CHECK(h.op != MIG_OP_MIGRATE ||
	      (!strcmp(again.name, h.name) && !strcmp(again.config, h.config)));
	CHECK(h.op != MIG_OP_CHANNEL || (again.index == h.index && !strcmp(again.token, h.token)));
	json_decref(back);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_frame_hdr hdr;
	uint32_t version, len, type;
	uint64_t arg;

	if (size >= sizeof(struct mig_frame_hdr)) {
		memcpy(&hdr, data, sizeof hdr);
		if (mig_frame_parse_hdr(&hdr, &version, &len) == 0) {
			CHECK(len > 0 && len <= MIG_FRAME_MAX);
			if (len <= size - sizeof hdr)
				hello(data + sizeof hdr, len);
		}
		if (mig_msg_parse(data, &type, &arg) == 0)
			CHECK(type >= MIG_READY && type <= MIG_ABORT);
	}
	/* The body alone, so that the JSON paths are reached without a header. */
	hello(data, size);
	return 0;
}
