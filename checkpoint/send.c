/* SPDX-License-Identifier: Apache-2.0 */
/* send.c — sending frame sets; see send.h. */
#include "checkpoint/send.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH STREAM_PAGES_MAX

int page_sender_init(struct page_sender *s, struct hv_domain *d, struct stream_writer *w,
		     struct codec *codec, uint32_t page_size, uint64_t nr_frames)
{
	memset(s, 0, sizeof *s);
	s->d = d;
	s->w = w;
	s->codec = codec;
	s->ps = page_size;
	s->nr_frames = nr_frames;
	s->nstripes = 1;
	s->pages_buf = malloc((size_t)BATCH * page_size);
	s->scratch = malloc((size_t)BATCH * codec_out_max(page_size));
	if (!s->pages_buf || !s->scratch) {
		page_sender_free(s);
		return -ENOMEM;
	}
	return 0;
}

void page_sender_free(struct page_sender *s)
{
	free(s->pages_buf);
	free(s->scratch);
	s->pages_buf = s->scratch = NULL;
}

static int flush_zero(struct page_sender *s)
{
	int r = 0;

	if (s->zcount)
		r = stream_write_zero_extent(s->w, s->zfirst, s->zcount);
	if (!r)
		s->zero_frames += s->zcount;
	s->zcount = 0;
	return r;
}

static int flush_pages(struct page_sender *s)
{
	int r = 0;

	if (s->n)
		r = stream_write_pages(s->w, s->codec, s->frames, s->bufs, s->n, s->scratch);
	if (!r)
		s->pages += s->n;
	s->n = 0;
	return r;
}

/* Frame f is zero (a hole or a page of zeros): extend or start a zero run. */
static int add_zero(struct page_sender *s, uint64_t f)
{
	int r;

	if (s->codec)
		codec_forget(s->codec, f);
	if (s->zcount && s->zfirst + s->zcount == f) {
		s->zcount++;
		return 0;
	}
	if ((r = flush_zero(s)))
		return r;
	s->zfirst = f;
	s->zcount = 1;
	return 0;
}

/* The first frame at or after f in the sender's stripe. */
static uint64_t in_stripe(const struct page_sender *s, uint64_t f)
{
	uint64_t b = f >> STREAM_STRIPE_SHIFT, skip;

	if (s->nstripes == 1 || b % s->nstripes == s->stripe)
		return f;
	skip = (s->stripe + s->nstripes - b % s->nstripes) % s->nstripes;
	return (b + skip) << STREAM_STRIPE_SHIFT;
}

/* The next frame at or after f to send, or nr_frames. */
static uint64_t next_frame(const struct page_sender *s, const struct bitmap *set, uint64_t f)
{
	for (;;) {
		uint64_t n;

		f = in_stripe(s, f);
		if (f >= s->nr_frames)
			return s->nr_frames;
		if (!set)
			return f;
		n = bitmap_next_set(set, f);
		if (n == BITMAP_NONE)
			return s->nr_frames;
		if (in_stripe(s, n) == n)
			return n;
		f = n;
	}
}

int page_sender_send(struct page_sender *s, const struct bitmap *set,
		     const struct bitmap *populated)
{
	uint64_t batch[BATCH], f = next_frame(s, set, 0);
	void *rb[BATCH];
	int r;

	while (f < s->nr_frames) {
		unsigned k = 0;

		if (s->cancel && *s->cancel)
			return -ECANCELED;

		/* Up to BATCH frames to read; known-zero ones go to the run. */
		for (; f < s->nr_frames && k < BATCH; f = next_frame(s, set, f + 1)) {
			if (s->claim && !s->claim(s->claim_ctx, f))
				continue;
			if (populated && !bitmap_test(populated, f)) {
				if ((r = add_zero(s, f)))
					return r;
				continue;
			}
			rb[k] = s->pages_buf + (size_t)k * s->ps;
			batch[k++] = f;
		}
		if (k && (r = hv_read_pages(s->d, batch, k, rb)))
			return r;
		/* One PAGES record per read batch, straight from the snapshot
		 * buffers (the codec works on these, never on live RAM). */
		for (unsigned i = 0; i < k; i++) {
			if (codec_page_is_zero(rb[i], s->ps)) {
				if ((r = add_zero(s, batch[i])))
					return r;
				continue;
			}
			s->frames[s->n] = batch[i];
			s->bufs[s->n++] = rb[i];
		}
		if ((r = flush_pages(s)))
			return r;
		if (s->on_frames)
			s->on_frames(s->on_frames_ctx, f, s->nr_frames);
	}
	return flush_zero(s);
}
