/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sink.h — where a stream reader's contents go (struct stream_sink):
 *
 *  - apply: straight into a domain, as they arrive (migration, restore);
 *  - stage: hold each replication epoch (CKPT_BEGIN … CKPT_COMMIT) apart
 *    and hand it to an inner sink only when its COMMIT has arrived, so that
 *    an epoch cut short is never partly applied. The inner sink sees
 *    ckpt(BEGIN) before the epoch's contents and ckpt(COMMIT) after them:
 *    a replica over several channels holds every channel at its BEGIN
 *    until all have their epoch staged (replicate/backup.c);
 *  - file: write what arrives as a new stream (e.g. an incoming guest kept
 *    as a snapshot), re-encoded by its own codec.
 */
#ifndef FERRY_CHECKPOINT_SINK_H
#define FERRY_CHECKPOINT_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/reader.h"
#include "hv/hv.h"

/* Called now and then with the frames done so far of all. */
typedef void (*stream_frames_fn)(void *ctx, uint64_t done, uint64_t total);

struct apply_sink {
	struct hv_domain *d;
	bool fresh;     /* the domain is all zero and no page was applied yet:
			 * zero extents need no work (cleared by the first page) */
	unsigned contexts; /* CONTEXT records applied */
	stream_frames_fn on_frames;
	void *on_frames_ctx;
	uint64_t done, total; /* frames applied (pages + extents) of nr_frames */
};

/* A stream_sink over a (the caller's) apply_sink. header is left NULL: the
 * caller creates the domain; wrap it if it needs to. */
struct stream_sink apply_sink(struct apply_sink *a);

struct stage_sink {
	struct stream_sink inner;
	/* Private. */
	bool in_epoch;
	uint64_t epoch;     /* current, or last committed */
	struct stream_ckpt begin; /* the current epoch's BEGIN */
	bool any_epoch;
	uint64_t committed; /* epochs handed over */
	struct staged *items;
	size_t n, cap;
	uint32_t page_size;
	uint64_t nr_frames;
	uint64_t staged_bytes; /* of the current epoch; at most 2 x the guest */
};

struct stream_sink stage_sink(struct stage_sink *s, struct stream_sink inner);
/* Drop whatever is staged (an epoch that will never commit). */
void stage_sink_free(struct stage_sink *s);
/* The epoch whose BEGIN came and whose COMMIT has not, or 0. */
static inline uint64_t stage_sink_partial(const struct stage_sink *s)
{
	return s->in_epoch ? s->epoch : 0;
}

struct codec;
struct stream_writer;

struct file_sink {
	struct stream_writer *w; /* not yet started: the header starts it */
	struct xsink out;
	uint32_t kind;           /* of the stream written (STREAM_KIND_SNAPSHOT) */
	struct codec *codec;     /* NULL: pages go raw */
	void *scratch;           /* STREAM_PAGES_MAX * codec_out_max(page_size) */
};

/* A stream_sink that writes into f->w. It cannot supply delta bases, so a
 * stream with DELTA pages is refused (a snapshot never has them). */
struct stream_sink file_sink(struct file_sink *f);

#endif
