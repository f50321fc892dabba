/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_stream.c — libFuzzer target for the stream reader (checkpoint/reader.c)
 * and the page decoder it calls (checkpoint/codec.c).
 *
 * The input is a whole stream, read into an in-memory guest of at most 4096
 * frames. Whatever the input, the reader must not crash or leak, must give a
 * reason when it refuses, and must not report success without an END.
 *
 * Random bytes almost never carry a valid XXH3, which would keep the fuzzer
 * at the checksum check. So inputs whose first byte is odd are read with the
 * sequence numbers and checksums of every whole record recomputed (the rest
 * of the input after that byte is the stream); even ones are read as they
 * are, checksums included (and COMMITs' counts and digests recomputed too).
 * Inputs whose first byte has bit 1 set are read through the stage sink
 * (replication epochs).
 */
#include <stdio.h>
#include <stdlib.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "checkpoint/reader.h"
#include "checkpoint/sink.h"
#include "tests/unit/memio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Give every whole record in s[0..n) its right sequence number and checksum,
 * and every CKPT_COMMIT the right count and digest of its epoch's records. */
static void fix_trailers(uint8_t *s, size_t n)
{
	size_t off = STREAM_MAGIC_LEN;
	uint64_t recs = 0, dig = 0;

	for (uint64_t seq = 0; off + sizeof(struct stream_rec_hdr) <= n; seq++) {
		struct stream_rec_hdr h;
		uint64_t body, le;
		XXH3_state_t st;
		uint32_t type;

		memcpy(&h, s + off, sizeof h);
		body = le64toh(h.length);
		type = le32toh(h.type);
		if (type == STREAM_REC_CKPT_COMMIT && body == sizeof(struct stream_ckpt) &&
		    n - off - sizeof h >= body) {
			struct stream_ckpt c;

			memcpy(&c, s + off + sizeof h, sizeof c);
			c.records = htole64(recs);
			c.digest = htole64(dig);
			memcpy(s + off + sizeof h, &c, sizeof c);
		}
		if (body > n)
			return;
		body += -body & 7;
		if (n - off - sizeof h < body + sizeof(struct stream_rec_trl))
			return;
		le = htole64(seq);
		memcpy(s + off + sizeof h + body, &le, sizeof le);
		XXH3_64bits_reset(&st);
		XXH3_64bits_update(&st, s + off, sizeof h + body + sizeof le);
		le = htole64(XXH3_64bits_digest(&st));
		memcpy(s + off + sizeof h + body + 8, &le, sizeof le);
		if (type == STREAM_REC_CKPT_BEGIN || type == STREAM_REC_CKPT_COMMIT) {
			recs = dig = 0;
		} else {
			recs++;
			dig = XXH3_64bits_withSeed(&le, sizeof le, dig);
		}
		off += sizeof h + body + sizeof(struct stream_rec_trl);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = NULL;
	struct membuf mb = { .p = (uint8_t *)data, .len = size };
	struct xsource src = { membuf_read, &mb };
	struct memguest g = { .max_frames = 4096 };
	struct stream_sink sink = memguest_sink(&g);
	struct stream_read_stats st;
	char err[256];
	int r;

	if (size && (data[0] & 1)) {
		copy = malloc(size);
		if (!copy)
			return 0;
		memcpy(copy, data + 1, size - 1);
		fix_trailers(copy, size - 1);
		mb.p = copy;
		mb.len = size - 1;
	}
	/* Bit 1 of the first byte: read through the epoch-staging sink, so that
	 * CKPT records and staging are fuzzed too. */
	struct stage_sink stage;
	bool staged = size && (data[0] & 2);

	if (staged)
		sink = stage_sink(&stage, memguest_sink(&g));
	r = stream_read(&src, &sink, true, &st, err, sizeof err);
	if (staged)
		stage_sink_free(&stage);

	if (r == 0 && !g.ended)
		abort(); /* success without END */
	if (r != 0 && err[0] == '\0')
		abort(); /* refused without a reason */
	memguest_free(&g);
	free(copy);
	return 0;
}
