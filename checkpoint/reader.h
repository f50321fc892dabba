/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reader.h — reads and validates a ferry stream and hands its contents to a
 * sink.
 *
 * Every length, frame number, count, padding byte, sequence number and
 * checksum is checked before the sink sees a record; a PAGES record is
 * decoded completely into the reader's buffers before the sink gets any page
 * of it. stream_read() returns 0 only after a valid END record whose totals
 * match what was read: a stream cut anywhere, even at a record boundary, is
 * an error. Errors name the record, its type and its byte offset.
 */
#ifndef FERRY_CHECKPOINT_READER_H
#define FERRY_CHECKPOINT_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/io.h"
#include "checkpoint/stream.h"

struct stream_info {
	uint16_t major, minor;
	uint32_t kind;
	uint32_t page_size;
	uint64_t nr_frames;
	char backend[17];
	char name[65];
	char config[STREAM_CONFIG_MAX + 1];
	/* The DOMAIN_CONFIG record's body, if the stream has one (else NULL,
	 * 0): valid during the header callback only. */
	const void *domain_config;
	size_t domain_config_len;
};

/*
 * Where the contents go: apply now (migration), stage until commit
 * (replication), or a file. Every callback returns 0 or -errno (which stops
 * the read); NULL callbacks: header/end/iter_end/ckpt are optional, a stream
 * with a record whose callback is NULL is refused (e.g. DELTA pages need
 * base, DEVICE needs device).
 */
struct stream_sink {
	void *ctx;
	int (*header)(void *ctx, const struct stream_info *info);
	/* The receiver's current version of frame, the base of a DELTA page. */
	int (*base)(void *ctx, uint64_t frame, void *page);
	/* n decoded pages, frames strictly increasing; valid during the call
	 * only (a RAW page points into the record: no copy, any alignment). */
	int (*pages)(void *ctx, const uint64_t *frames, void *const *pages, unsigned n);
	int (*zero)(void *ctx, uint64_t first, uint64_t count);
	int (*context)(void *ctx, const void *blob, size_t len);
	int (*device)(void *ctx, const void *blob, size_t len);
	int (*iter_end)(void *ctx, const struct stream_iter_end *it);
	/* CKPT_BEGIN / CKPT_COMMIT (c in host order). The reader has checked
	 * that a COMMIT's count and digest match the records since the BEGIN
	 * before it (and that there was one). */
	int (*ckpt)(void *ctx, uint32_t type, const struct stream_ckpt *c);
	int (*end)(void *ctx, const struct stream_end *totals);
	/* POSTCOPY: frames [first, first + count) whose bit is set in bits
	 * (le64 words, bit i of word j = frame first + 64 j + i; checked: first
	 * a multiple of 64, inside the domain, no bit past count) are missing
	 * from here on. NULL: the stream is refused if it has one. */
	int (*postcopy)(void *ctx, uint64_t first, uint64_t count, const void *bits);
};

struct stream_read_stats {
	uint64_t records, bytes, zero_frames;
	uint64_t pages[STREAM_ENC_MAX];
	uint64_t skipped; /* unknown optional records */
};

/*
 * Read one whole stream from src into sink. With expect_eof, the source
 * must end right after END (a file). Returns 0, or -errno with a one-line
 * reason in err.
 */
int stream_read(const struct xsource *src, const struct stream_sink *sink, bool expect_eof,
		struct stream_read_stats *stats, char *err, size_t errlen);

#endif
