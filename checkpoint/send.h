/* SPDX-License-Identifier: Apache-2.0 */
/*
 * send.h — send sets of a domain's frames through a stream writer: frames
 * that are holes or hold only zeros as zero extents, the others in PAGES
 * records encoded by a codec. Used by save (every frame once) and by
 * migration (all frames, then the dirty ones, again and again).
 */
#ifndef FERRY_CHECKPOINT_SEND_H
#define FERRY_CHECKPOINT_SEND_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "checkpoint/sink.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "hv/hv.h"

/*
 * Stripes: a migration over n channels sends each frame on channel
 * stream_stripe(frame, n), always the same one, so that a frame's copies
 * arrive in order and its delta base is the one its channel last sent.
 * Blocks of 512 frames (2 MiB of 4 KiB pages) keep runs of frames together
 * for the reader and the receiver's writes.
 */
#define STREAM_STRIPE_SHIFT 9

static inline unsigned stream_stripe(uint64_t frame, unsigned n)
{
	return (unsigned)((frame >> STREAM_STRIPE_SHIFT) % n);
}

/* Whether frames [first, first + count) all belong to channel idx of n
 * (count >= 1): what a receiver checks before it takes them. */
static inline bool stream_stripe_owns(uint64_t first, uint64_t count, unsigned n, unsigned idx)
{
	uint64_t last = first + count - 1;

	return n == 1 || (stream_stripe(first, n) == idx &&
			  (first >> STREAM_STRIPE_SHIFT) == (last >> STREAM_STRIPE_SHIFT));
}

struct page_sender {
	struct hv_domain *d;        /* read with read_pages: snapshots */
	struct stream_writer *w;
	struct codec *codec;        /* NULL: raw */
	stream_frames_fn on_frames;
	void *on_frames_ctx;
	const volatile sig_atomic_t *cancel; /* if set and non-zero: stop, -ECANCELED */
	unsigned stripe, nstripes; /* send only frames of this stripe (0 of 1: all) */
	/* If set: a frame of the set is sent only if claim says yes (post-copy:
	 * a frame that went on demand already is not sent again). */
	bool (*claim)(void *ctx, uint64_t frame);
	void *claim_ctx;
	/* Totals over all sends. */
	uint64_t pages, zero_frames;
	/* Private. */
	uint32_t ps;
	uint64_t nr_frames;
	uint64_t zfirst, zcount;    /* pending run of zero frames */
	uint64_t frames[STREAM_PAGES_MAX];
	void *bufs[STREAM_PAGES_MAX];
	unsigned n;
	uint8_t *pages_buf, *scratch;
};

/* Buffers for a domain of nr_frames of page_size; all frames (stripe 0 of
 * 1) until the caller sets stripe and nstripes. 0 or -ENOMEM. */
int page_sender_init(struct page_sender *s, struct hv_domain *d, struct stream_writer *w,
		     struct codec *codec, uint32_t page_size, uint64_t nr_frames);
void page_sender_free(struct page_sender *s);

/*
 * Send the frames of its stripe set in set (every frame if NULL), in frame order. Frames
 * not set in populated (if given) are known zero and not read. A frame sent
 * as zero is forgotten by the codec, so that a later delta is never taken
 * against a version the receiver does not have. 0 or -errno.
 */
int page_sender_send(struct page_sender *s, const struct bitmap *set,
		     const struct bitmap *populated);

#endif
