/* SPDX-License-Identifier: Apache-2.0 */
/*
 * writer.h — writes a ferry stream (stream.h) to a byte sink.
 *
 * Records go out with one scatter-gather write each: header, the caller's
 * body pieces as they are (page data is not copied), padding and trailer.
 * The writer keeps the sequence number and the totals for END. A write error
 * is sticky: every later call returns the first error.
 */
#ifndef FERRY_CHECKPOINT_WRITER_H
#define FERRY_CHECKPOINT_WRITER_H

#include <stdint.h>
#include <sys/uio.h>

#include "checkpoint/io.h"
#include "checkpoint/stream.h"

struct codec;

struct stream_writer {
	struct xsink sink;
	uint32_t page_size;
	uint64_t nr_frames;
	uint64_t seq;     /* of the next record */
	int error;        /* first error, sticky */
	/* Totals so far (END carries them). */
	uint64_t records, pages, zero_frames, bytes;
	/* Since the last CKPT_BEGIN: records, and the chain of their checksums
	 * (stream.h, struct stream_ckpt). */
	uint64_t ckpt_records, ckpt_digest;
};

/* Write the magic and HEADER, and the DOMAIN_CONFIG record after it if
 * dconf_len > 0 (at most STREAM_DOMAIN_CONFIG_MAX). config may be NULL. */
int stream_writer_start(struct stream_writer *w, struct xsink sink, uint32_t kind,
			uint32_t page_size, uint64_t nr_frames, const char *backend,
			const char *name, const char *config, const void *dconf,
			size_t dconf_len);

/* One record from body pieces (n <= 1000). */
int stream_write_record(struct stream_writer *w, uint32_t type, uint32_t flags,
			const struct iovec *body, int n);

/*
 * A PAGES record of n (<= STREAM_PAGES_MAX) page snapshots: each is encoded
 * with codec into scratch (n * codec_out_max bytes, caller's) — or, if codec
 * is NULL, sent raw straight from pages[i].
 */
int stream_write_pages(struct stream_writer *w, struct codec *codec, const uint64_t *frames,
		       void *const *pages, unsigned n, void *scratch);
int stream_write_zero_extent(struct stream_writer *w, uint64_t first, uint64_t count);
int stream_write_context(struct stream_writer *w, const void *blob, size_t len);
/* CKPT_BEGIN or CKPT_COMMIT of epoch under fencing token; COMMIT carries
 * the count and digest of the records since BEGIN. */
int stream_write_ckpt(struct stream_writer *w, uint32_t type, uint64_t epoch, uint64_t token);
/* POSTCOPY records saying that the frames set in missing (nbits = the
 * stream's nr_frames) are missing at the receiver: one record per
 * STREAM_POSTCOPY_FRAMES_MAX frames that has any set. */
struct bitmap;
int stream_write_postcopy(struct stream_writer *w, const struct bitmap *missing);
/* END with the totals; afterwards the writer takes nothing more. */
int stream_write_end(struct stream_writer *w);

#endif
