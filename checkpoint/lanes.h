/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lanes.h — sending one domain's frames over several channels at once
 * (DESIGN.md §8). A lane is one channel with its own stream writer, codec
 * and page sender; frame f always goes on lane stream_stripe(f, n) (2 MiB
 * stripes, send.h), so its copies arrive in order and its delta base is the
 * one its lane sent last. Lane 0 is driven by the caller's thread, the others
 * by threads of their own. Any engine opens lanes over its session's
 * channels: pre-copy sends its passes on them, replication its epochs.
 *
 * A pass is a set of frames: every lane sends its stripe of it, then calls
 * the engine's trailer on its own thread to end the pass on its stream
 * (ITER_END, CKPT_COMMIT, END). A lane that fails shuts the other channels
 * but 0 (the peer's reason for it may be on its way there) and the pass
 * returns its error. The bandwidth limit is shared by all lanes.
 *
 * Ownership: the caller keeps the domain and the channels; lanes_close
 * stops the threads and frees the rest. One thread drives the lanes.
 */
#ifndef FERRY_CHECKPOINT_LANES_H
#define FERRY_CHECKPOINT_LANES_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "hv/hv.h"
#include "transport/chan.h"

struct lanes;

struct lanes_conf {
	uint32_t kind;             /* of the streams (STREAM_KIND_MIGRATION) */
	const char *name;          /* the domain's name in their headers */
	const void *domain_config; /* hv_domain_config's blob for lane 0's */
	size_t domain_config_len;  /* stream, or NULL, 0 */
	struct codec_opts codec;   /* the delta cache is shared out among lanes */
	uint64_t bandwidth;        /* bytes/s over all lanes; 0: no limit */
	const volatile sig_atomic_t *cancel; /* non-zero: a pass stops, -ECANCELED */
	void *ctx;
	/* On lane i's thread after its stripe of a pass: end the pass on w.
	 * pass_frames: pages and zero frames this lane sent in it. */
	int (*trailer)(void *ctx, unsigned i, struct stream_writer *w, uint64_t pass_frames);
	/* Lane 0's progress through a pass (standing for all), in frames. */
	void (*on_frames)(void *ctx, uint64_t done, uint64_t total);
};

/* Start a stream on each of ch[0..n) for domain d (info: its hv_info) and
 * the threads of lanes 1..n-1. 0 or -errno (-ENOMEM, or the channel's). */
int lanes_open(struct hv_domain *d, const struct hv_info *info, struct chan *const *ch,
	       unsigned n, const struct lanes_conf *c, struct lanes **out);
/*
 * One pass: every lane sends its stripe of set (every frame if NULL; frames
 * not in pop, if given, are known zero and not read), then its trailer.
 * Returns when all lanes are done: 0 or the first error; *ns is how long
 * the pass took.
 */
int lanes_send(struct lanes *l, const struct bitmap *set, const struct bitmap *pop,
	       uint64_t *ns);
/* Lane i's writer, for records outside passes (the context on lane 0). */
struct stream_writer *lanes_writer(struct lanes *l, unsigned i);
/* Stream bytes sent on all lanes so far; safe while a pass runs (a
 * progress figure). */
uint64_t lanes_bytes(const struct lanes *l);
/* Pages sent (not zero frames) over all passes, all lanes. */
uint64_t lanes_pages(const struct lanes *l);
/* Pages by encoding and zero frames over all lanes (between passes). */
void lanes_stats(const struct lanes *l, uint64_t pages[STREAM_ENC_MAX], uint64_t *zero_frames);
/* Whether the codecs keep pages they send for the first time as delta
 * bases (off for a first pass, whose pages are rarely sent again soon). */
void lanes_cache_new_pages(struct lanes *l, bool on);
/* From the next pass on: send a frame only if claim(ctx, frame) says yes
 * (NULL: every frame), and never as a delta (post-copy: the receiver has
 * dropped the bases). Between passes. */
void lanes_postcopy(struct lanes *l, bool (*claim)(void *ctx, uint64_t frame), void *ctx);
/* Stop the threads and free everything; NULL is fine. */
void lanes_close(struct lanes *l);

#endif
