/* SPDX-License-Identifier: Apache-2.0 */
/*
 * history.h — what ferry-kv records of every request it made, and the
 * values it writes (docs/kvstore.md).
 *
 * Values: every value ferry-kv writes is a *chunk* that names its writer,
 * "{CLIENT:SEQ:LEN|" (16, 8 and 4 hex digits) then filler that is a function
 * of (client, seq) and a closing "}", LEN bytes in all; an APPEND adds one
 * chunk, so a log's value is a row of chunks. Any value read back therefore
 * says which writes made it, and a byte out of place is caught.
 *
 * History: one line per request, space-separated:
 *   CLIENT SEQ OP KEY LEN OUTCOME STATUS AUX START_NS END_NS RESULT
 * OUTCOME is A (acknowledged: applied, or a read that answered), F (failed:
 * surely not applied) or U (unknown: no answer came); times are
 * CLOCK_REALTIME ns, so histories of several runs merge; RESULT, for an
 * answered GET, is the chunks its value held ("CLIENT:SEQ,..."), "-" if
 * none, "!" if the value was not made of chunks.
 */
#ifndef FERRY_KV_HISTORY_H
#define FERRY_KV_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv/proto.h"

#define CHUNK_MIN 34
#define HIST_CHUNKS_MAX (KV_VAL_MAX / CHUNK_MIN + 1)

struct chunk_id {
	uint64_t client;
	uint32_t seq;
};

/* Write the chunk of (client, seq) of len bytes (CHUNK_MIN..KV_VAL_MAX). */
void chunk_make(void *buf, uint64_t client, uint32_t seq, size_t len);
/* Split a value into its chunks, checking each byte. The count, or -1 if
 * the value is not a row of whole, intact chunks. */
int chunk_parse(const void *val, size_t len, struct chunk_id *ids, int max);

enum outcome { OUT_ACK = 'A', OUT_FAILED = 'F', OUT_UNKNOWN = 'U' };

struct hist {
	uint64_t client, seq;
	enum kv_op op;
	char key[64];
	uint32_t len;
	enum outcome outcome;
	enum kv_status status;
	uint64_t aux;
	uint64_t start_ns, end_ns;
	int nres;          /* GET: chunks read; -1 unparseable; 0 none */
	struct chunk_id *res;
};

/* One line of history to f. */
void hist_write(FILE *f, const struct hist *h);
/* Parse one line; 0, or -EINVAL. res is malloc'd (the caller frees). */
int hist_parse(const char *line, struct hist *h);

#endif
