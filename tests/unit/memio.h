/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memio.h — in-memory sink, source and guest for stream tests and fuzzing.
 */
#ifndef FERRY_TESTS_MEMIO_H
#define FERRY_TESTS_MEMIO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/uio.h>

#include "checkpoint/io.h"
#include "checkpoint/reader.h"

struct membuf {
	uint8_t *p;
	size_t len, cap, pos;
	size_t fail_after; /* writes fail with -ENOSPC once len would pass this (0: never) */
};

static inline int membuf_writev(void *ctx, const struct iovec *iov, int n)
{
	struct membuf *m = ctx;

	for (int i = 0; i < n; i++) {
		if (m->fail_after && m->len + iov[i].iov_len > m->fail_after)
			return -ENOSPC;
		if (m->len + iov[i].iov_len > m->cap) {
			size_t cap = (m->cap + iov[i].iov_len) * 2;
			uint8_t *p = realloc(m->p, cap);
			if (!p)
				return -ENOMEM;
			m->p = p;
			m->cap = cap;
		}
		memcpy(m->p + m->len, iov[i].iov_base, iov[i].iov_len);
		m->len += iov[i].iov_len;
	}
	return 0;
}

static inline int membuf_read(void *ctx, void *buf, size_t len)
{
	struct membuf *m = ctx;
	size_t left = m->len - m->pos;

	if (!len)
		return 0;
	if (!left)
		return -ENODATA;
	if (left < len) {
		m->pos = m->len;
		return -EIO;
	}
	memcpy(buf, m->p + m->pos, len);
	m->pos += len;
	return 0;
}

/* A guest in memory: the sink of a reader. */
struct memguest {
	uint8_t *ram;
	uint64_t nr_frames;
	uint32_t page_size;
	uint64_t max_frames; /* refuse headers above this */
	void *ctx;
	size_t ctx_len;
	bool ended;
	struct stream_info info;
	void *dconf; /* a copy of info.domain_config */
	uint64_t missing; /* frames POSTCOPY records said are missing */
};

static inline int mg_header(void *c, const struct stream_info *i)
{
	struct memguest *g = c;

	if (i->nr_frames > g->max_frames)
		return -EFBIG;
	g->info = *i;
	if (i->domain_config_len) {
		g->dconf = malloc(i->domain_config_len);
		if (!g->dconf)
			return -ENOMEM;
		memcpy(g->dconf, i->domain_config, i->domain_config_len);
		g->info.domain_config = g->dconf;
	}
	g->nr_frames = i->nr_frames;
	g->page_size = i->page_size;
	g->ram = calloc(i->nr_frames, i->page_size);
	return g->ram ? 0 : -ENOMEM;
}

static inline int mg_base(void *c, uint64_t f, void *page)
{
	struct memguest *g = c;

	memcpy(page, g->ram + f * g->page_size, g->page_size);
	return 0;
}

static inline int mg_pages(void *c, const uint64_t *f, void *const *pages, unsigned n)
{
	struct memguest *g = c;

	for (unsigned i = 0; i < n; i++)
		memcpy(g->ram + f[i] * g->page_size, pages[i], g->page_size);
	return 0;
}

static inline int mg_zero(void *c, uint64_t first, uint64_t count)
{
	struct memguest *g = c;

	memset(g->ram + first * g->page_size, 0, count * g->page_size);
	return 0;
}

static inline int mg_context(void *c, const void *blob, size_t len)
{
	struct memguest *g = c;

	free(g->ctx);
	g->ctx = malloc(len ? len : 1);
	if (!g->ctx)
		return -ENOMEM;
	memcpy(g->ctx, blob, len);
	g->ctx_len = len;
	return 0;
}

static inline int mg_end(void *c, const struct stream_end *e)
{
	struct memguest *g = c;

	(void)e;
	g->ended = true;
	return 0;
}

static inline int mg_postcopy(void *c, uint64_t first, uint64_t count, const void *bits)
{
	struct memguest *g = c;
	const uint8_t *b = bits;

	(void)first;
	for (uint64_t j = 0; j < (count + 63) / 64; j++) {
		uint64_t v;

		memcpy(&v, b + j * 8, 8);
		g->missing += (uint64_t)__builtin_popcountll(le64toh(v));
	}
	return 0;
}

static inline struct stream_sink memguest_sink(struct memguest *g)
{
	struct stream_sink s = { .ctx = g, .header = mg_header, .base = mg_base,
				 .pages = mg_pages, .zero = mg_zero, .context = mg_context,
				 .end = mg_end, .postcopy = mg_postcopy };
	return s;
}

static inline void memguest_free(struct memguest *g)
{
	free(g->ram);
	free(g->ctx);
	free(g->dconf);
	g->ram = NULL;
	g->ctx = NULL;
	g->dconf = NULL;
}

#endif
