/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_wire.c — libFuzzer target for what a migration peer sends before
 * and around the stream (migrate/wire.c): the 16-byte frame header, the
 * HELLO JSON and the 16-byte control messages.
 *
 * Whatever parses must hold the documented limits, and a parsed HELLO must
 * survive wire_hello_json -> wire_hello_parse unchanged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "session/wire.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void hello(const uint8_t *body, size_t len)
{
	struct wire_hello h, again;
	char err[256] = "";
	json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL), *back;

	if (!o)
		return;
	if (wire_hello_parse(o, &h, err, sizeof err)) {
		CHECK(err[0]);
		json_decref(o);
		return;
	}
	bool sends = h.op == WIRE_OP_MIGRATE || h.op == WIRE_OP_PROTECT; /* a guest's stream */

	CHECK(sends || h.op == WIRE_OP_RESOLVE || h.op == WIRE_OP_CHANNEL);
	CHECK(name_ok(h.job, sizeof h.job));
	CHECK(!sends || name_ok(h.name, sizeof h.name));
	CHECK(!sends || (h.channels >= 1 && h.channels <= WIRE_CHANNELS_MAX));
	CHECK(h.op == WIRE_OP_PROTECT || (!h.resync && !h.fencing && !h.heartbeat_ms));
	CHECK(h.op != WIRE_OP_PROTECT || (h.heartbeat_ms >= 20 && h.epoch_ms >= 1));
	CHECK(h.op != WIRE_OP_CHANNEL || (h.index < WIRE_CHANNELS_MAX && wire_valid_token(h.token)));
	back = wire_hello_json(&h);
	CHECK(back);
	CHECK(wire_hello_parse(back, &again, err, sizeof err) == 0);
	CHECK(again.op == h.op && !strcmp(again.job, h.job) && !strcmp(again.from, h.from));
	CHECK(!sends || (again.caps == h.caps && again.channels == h.channels &&
			 again.peer_timeout_ms == h.peer_timeout_ms));
	CHECK(!(h.caps & ~(WIRE_CAPS_ALL | WIRE_CAP_POSTCOPY)));
	CHECK(h.op == WIRE_OP_MIGRATE || !h.resume);
	CHECK(again.resume == h.resume);
	CHECK(!sends || (!strcmp(again.name, h.name) && !strcmp(again.config, h.config)));
	CHECK(h.op != WIRE_OP_PROTECT ||
	      (again.heartbeat_ms == h.heartbeat_ms && again.epoch_ms == h.epoch_ms &&
	       again.fencing == h.fencing && again.resync == h.resync));
	CHECK(h.op != WIRE_OP_CHANNEL || (again.index == h.index && !strcmp(again.token, h.token)));
	json_decref(back);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_frame_hdr hdr;
	uint32_t version, len, type;
	uint64_t arg;

	if (size >= sizeof(struct wire_frame_hdr)) {
		memcpy(&hdr, data, sizeof hdr);
		if (wire_frame_parse_hdr(&hdr, &version, &len) == 0) {
			CHECK(len > 0 && len <= WIRE_FRAME_MAX);
			if (len <= size - sizeof hdr)
				hello(data + sizeof hdr, len);
		}
		if (wire_msg_parse(data, &type, &arg) == 0)
			CHECK(type >= WIRE_READY && type < WIRE_MSG_MAX);
	}
	/* The body alone, so that the JSON paths are reached without a header. */
	hello(data, size);
	return 0;
}
