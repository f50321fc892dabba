/* SPDX-License-Identifier: Apache-2.0 */
/* sink.c — apply and stage sinks; see sink.h. */
#include "checkpoint/sink.h"

#include "checkpoint/codec.h"
#include "checkpoint/writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- apply: straight into a domain ---- */

static int a_base(void *ctx, uint64_t frame, void *page)
{
	struct apply_sink *a = ctx;

	return hv_read_pages(a->d, &frame, 1, &page);
}

static void a_count(struct apply_sink *a, uint64_t n)
{
	a->done += n;
	if (a->on_frames)
		a->on_frames(a->on_frames_ctx, a->done, a->total);
}

static int a_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct apply_sink *a = ctx;
	int r = hv_write_pages(a->d, frames, n, (const void *const *)pages);

	/* From now on a zero extent may cover a frame written before. */
	a->fresh = false;
	if (!r)
		a_count(a, n);
	return r;
}

static int a_zero(void *ctx, uint64_t first, uint64_t count)
{
	struct apply_sink *a = ctx;
	uint64_t f[512];
	int r = 0;

	/* A fresh domain is all zero already; otherwise make the frames holes. */
	for (uint64_t done = 0; !a->fresh && !r && done < count;) {
		unsigned k = count - done < 512 ? (unsigned)(count - done) : 512;
		for (unsigned i = 0; i < k; i++)
			f[i] = first + done + i;
		r = hv_discard_pages(a->d, f, k);
		done += k;
	}
	if (!r)
		a_count(a, count);
	return r;
}

static int a_context(void *ctx, const void *blob, size_t len)
{
	struct apply_sink *a = ctx;
	int r = hv_load_context(a->d, blob, len);

	if (!r)
		a->contexts++;
	return r;
}

struct stream_sink apply_sink(struct apply_sink *a)
{
	return (struct stream_sink){ .ctx = a, .base = a_base, .pages = a_pages,
				     .zero = a_zero, .context = a_context };
}

/* ---- stage: hold an epoch until its COMMIT ---- */

enum staged_kind { ST_PAGES, ST_ZERO, ST_CONTEXT, ST_DEVICE };

struct staged {
	enum staged_kind kind;
	unsigned n;        /* ST_PAGES: pages */
	uint64_t first, count; /* ST_ZERO */
	uint64_t *frames;  /* ST_PAGES */
	uint8_t *data;     /* pages (n * page_size) or the blob */
	size_t len;
};

static void drop(struct stage_sink *s)
{
	s->staged_bytes = 0;
	for (size_t i = 0; i < s->n; i++) {
		free(s->items[i].frames);
		free(s->items[i].data);
	}
	s->n = 0;
}

void stage_sink_free(struct stage_sink *s)
{
	drop(s);
	free(s->items);
	s->items = NULL;
	s->cap = 0;
}

static struct staged *push(struct stage_sink *s)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct staged *p = realloc(s->items, cap * sizeof *p);
		if (!p)
			return NULL;
		s->items = p;
		s->cap = cap;
	}
	memset(&s->items[s->n], 0, sizeof s->items[0]);
	return &s->items[s->n++];
}

static int s_header(void *ctx, const struct stream_info *i)
{
	struct stage_sink *s = ctx;

	s->page_size = i->page_size;
	s->nr_frames = i->nr_frames;
	return s->inner.header ? s->inner.header(s->inner.ctx, i) : 0;
}

/* Inside an epoch the base of a delta is the frame's latest staged version,
 * if this epoch staged one; else the inner sink's. */
static int s_base(void *ctx, uint64_t frame, void *page)
{
	struct stage_sink *s = ctx;

	for (size_t i = s->in_epoch ? s->n : 0; i-- > 0;) {
		struct staged *it = &s->items[i];
		if (it->kind == ST_ZERO && frame >= it->first && frame - it->first < it->count) {
			memset(page, 0, s->page_size);
			return 0;
		}
		if (it->kind != ST_PAGES)
			continue;
		for (unsigned k = it->n; k-- > 0;)
			if (it->frames[k] == frame) {
				memcpy(page, it->data + (size_t)k * s->page_size, s->page_size);
				return 0;
			}
	}
	return s->inner.base ? s->inner.base(s->inner.ctx, frame, page) : -EOPNOTSUPP;
}

static int s_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct stage_sink *s = ctx;
	struct staged *it;

	if (!s->in_epoch && s->any_epoch)
		return -EPROTO; /* after the first epoch, state comes in epochs only */
	if (!s->in_epoch)
		return s->inner.pages ? s->inner.pages(s->inner.ctx, frames, pages, n) : -EOPNOTSUPP;
	/* What one epoch may stage is bounded by the guest, whatever the wire
	 * says: twice its memory. */
	s->staged_bytes += (uint64_t)n * s->page_size;
	if (s->staged_bytes > 2 * s->nr_frames * s->page_size)
		return -EFBIG;
	if (!s->inner.pages)
		return -EOPNOTSUPP;
	if (!(it = push(s)))
		return -ENOMEM;
	it->kind = ST_PAGES;
	it->frames = malloc(n * sizeof *frames);
	it->data = malloc((size_t)n * s->page_size);
	if (!it->frames || !it->data)
		return -ENOMEM; /* freed by drop() */
	it->n = n;
	memcpy(it->frames, frames, n * sizeof *frames);
	for (unsigned i = 0; i < n; i++)
		memcpy(it->data + (size_t)i * s->page_size, pages[i], s->page_size);
	return 0;
}

static int s_zero(void *ctx, uint64_t first, uint64_t count)
{
	struct stage_sink *s = ctx;
	struct staged *it;

	if (!s->in_epoch && s->any_epoch)
		return -EPROTO; /* after the first epoch, state comes in epochs only */
	if (!s->in_epoch)
		return s->inner.zero ? s->inner.zero(s->inner.ctx, first, count) : -EOPNOTSUPP;
	if (!s->inner.zero)
		return -EOPNOTSUPP;
	if (!(it = push(s)))
		return -ENOMEM;
	it->kind = ST_ZERO;
	it->first = first;
	it->count = count;
	return 0;
}

static int stage_blob(struct stage_sink *s, enum staged_kind kind, const void *blob, size_t len)
{
	struct staged *it = push(s);

	if (!it)
		return -ENOMEM;
	it->kind = kind;
	it->data = malloc(len ? len : 1);
	if (!it->data)
		return -ENOMEM;
	memcpy(it->data, blob, len);
	it->len = len;
	return 0;
}

static int s_context(void *ctx, const void *blob, size_t len)
{
	struct stage_sink *s = ctx;

	if (!s->inner.context)
		return -EOPNOTSUPP;
	if (!s->in_epoch && s->any_epoch)
		return -EPROTO;
	if (!s->in_epoch)
		return s->inner.context(s->inner.ctx, blob, len);
	return stage_blob(s, ST_CONTEXT, blob, len);
}

static int s_device(void *ctx, const void *blob, size_t len)
{
	struct stage_sink *s = ctx;

	if (!s->inner.device)
		return -EOPNOTSUPP;
	if (!s->in_epoch && s->any_epoch)
		return -EPROTO;
	if (!s->in_epoch)
		return s->inner.device(s->inner.ctx, blob, len);
	return stage_blob(s, ST_DEVICE, blob, len);
}

/* Hand a complete epoch to the inner sink, in the order it arrived,
 * framed by its BEGIN and (by the caller) its COMMIT. */
static int commit(struct stage_sink *s)
{
	const struct stream_sink *in = &s->inner;
	int r = in->ckpt ? in->ckpt(in->ctx, STREAM_REC_CKPT_BEGIN, &s->begin) : 0;

	for (size_t i = 0; i < s->n && !r; i++) {
		struct staged *it = &s->items[i];
		void *pages[STREAM_PAGES_MAX];

		switch (it->kind) {
		case ST_PAGES:
			for (unsigned k = 0; k < it->n; k++)
				pages[k] = it->data + (size_t)k * s->page_size;
			r = in->pages ? in->pages(in->ctx, it->frames, pages, it->n) : -EOPNOTSUPP;
			break;
		case ST_ZERO:
			r = in->zero ? in->zero(in->ctx, it->first, it->count) : -EOPNOTSUPP;
			break;
		case ST_CONTEXT:
			r = in->context ? in->context(in->ctx, it->data, it->len) : -EOPNOTSUPP;
			break;
		case ST_DEVICE:
			r = in->device(in->ctx, it->data, it->len);
			break;
		}
	}
	drop(s);
	return r;
}

static int s_ckpt(void *ctx, uint32_t type, const struct stream_ckpt *c)
{
	struct stage_sink *s = ctx;
	uint64_t epoch = c->epoch;
	int r;

	if (type == STREAM_REC_CKPT_BEGIN) {
		/* Epochs go up by one; no BEGIN inside an epoch. */
		if (s->in_epoch || (s->any_epoch && epoch != s->epoch + 1))
			return -EPROTO;
		s->in_epoch = s->any_epoch = true;
		s->epoch = epoch;
		s->begin = *c;
		return 0;
	}
	if (!s->in_epoch || epoch != s->epoch)
		return -EPROTO;
	s->in_epoch = false;
	r = commit(s);
	if (!r) {
		s->committed++;
		if (s->inner.ckpt)
			r = s->inner.ckpt(s->inner.ctx, type, c);
	}
	return r;
}

static int s_iter_end(void *ctx, const struct stream_iter_end *it)
{
	struct stage_sink *s = ctx;

	return s->inner.iter_end ? s->inner.iter_end(s->inner.ctx, it) : 0;
}

static int s_end(void *ctx, const struct stream_end *e)
{
	struct stage_sink *s = ctx;

	if (s->in_epoch)
		return -EPROTO; /* END inside an epoch: the epoch never committed */
	return s->inner.end ? s->inner.end(s->inner.ctx, e) : 0;
}

struct stream_sink stage_sink(struct stage_sink *s, struct stream_sink inner)
{
	memset(s, 0, sizeof *s);
	s->inner = inner;
	return (struct stream_sink){ .ctx = s, .header = s_header, .base = s_base,
				     .pages = s_pages, .zero = s_zero, .context = s_context,
				     .device = s_device, .iter_end = s_iter_end,
				     .ckpt = s_ckpt, .end = s_end };
}

/* ---- file: a new stream ---- */

static int f_header(void *ctx, const struct stream_info *i)
{
	struct file_sink *f = ctx;

	return stream_writer_start(f->w, f->out, f->kind, i->page_size, i->nr_frames, i->backend,
				   i->name, i->config, i->domain_config, i->domain_config_len);
}

static int f_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct file_sink *f = ctx;

	return stream_write_pages(f->w, f->codec, frames, pages, n, f->scratch);
}

static int f_zero(void *ctx, uint64_t first, uint64_t count)
{
	struct file_sink *f = ctx;

	/* The receiver of the new stream has zeros there now: no delta may be
	 * taken against what was sent before. */
	if (f->codec)
		for (uint64_t i = 0; i < count; i++)
			codec_forget(f->codec, first + i);
	return stream_write_zero_extent(f->w, first, count);
}

static int f_context(void *ctx, const void *blob, size_t len)
{
	struct file_sink *f = ctx;

	return stream_write_context(f->w, blob, len);
}

static int f_ckpt(void *ctx, uint32_t type, const struct stream_ckpt *c)
{
	struct file_sink *f = ctx;

	return stream_write_ckpt(f->w, type, c->epoch, c->token);
}

static int f_end(void *ctx, const struct stream_end *e)
{
	struct file_sink *f = ctx;

	(void)e; /* the new stream has totals of its own */
	return stream_write_end(f->w);
}

struct stream_sink file_sink(struct file_sink *f)
{
	return (struct stream_sink){ .ctx = f, .header = f_header, .pages = f_pages,
				     .zero = f_zero, .context = f_context, .ckpt = f_ckpt,
				     .end = f_end };
}
