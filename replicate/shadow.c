/* SPDX-License-Identifier: Apache-2.0 */
/* shadow.c — a guest image held apart; see shadow.h. */
#include "replicate/shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "hv/memfd_pages.h"

#define APPLY_BATCH 512u

struct shadow {
	struct hv_domain dom;  /* first: what the receiver fills */
	struct hv_ops ops;
	struct hv_info info;   /* the copy's geometry */
	int fd;                /* the memfd, nr_frames pages long */
	struct memfd_pages pages; /* its page I/O, blocks allocated ahead */
	struct bitmap written; /* frames with contents (atomic bits) */
	void *ctx;             /* the context, once loaded */
	size_t ctx_len;
};

static struct shadow *sh_of(struct hv_domain *d)
{
	return (struct shadow *)d;
}

static void mark(struct bitmap *b, uint64_t f, bool on)
{
	uint64_t bit = 1ull << (f % 64);

	if (on)
		__atomic_fetch_or(&b->w[f / 64], bit, __ATOMIC_RELAXED);
	else
		__atomic_fetch_and(&b->w[f / 64], ~bit, __ATOMIC_RELAXED);
}

/* Read or write frames[0..n); a write marks them written. */
static int page_io(struct shadow *sh, const uint64_t *frames, size_t n, void *const *bufs,
		   bool write)
{
	int r;

	if (write)
		memfd_pages_prealloc(&sh->pages, frames, n);
	if ((r = memfd_pages_io(&sh->pages, frames, n, bufs, write)) || !write)
		return r;
	for (size_t i = 0; i < n; i++)
		mark(&sh->written, frames[i], true);
	return 0;
}

static int sh_info(struct hv_domain *d, struct hv_info *out)
{
	*out = sh_of(d)->info;
	return 0;
}

static int sh_read_pages(struct hv_domain *d, const uint64_t *frames, size_t n,
			 void *const *bufs)
{
	return page_io(sh_of(d), frames, n, bufs, false);
}

static int sh_write_pages(struct hv_domain *d, const uint64_t *frames, size_t n,
			  const void *const *bufs)
{
	return page_io(sh_of(d), frames, n, (void *const *)bufs, true);
}

static int sh_discard_pages(struct hv_domain *d, const uint64_t *frames, size_t n)
{
	struct shadow *sh = sh_of(d);
	int r = memfd_pages_discard(&sh->pages, frames, n);

	for (size_t i = 0; !r && i < n; i++)
		mark(&sh->written, frames[i], false);
	return r;
}

static int sh_save_context(struct hv_domain *d, void **blob, size_t *len)
{
	struct shadow *sh = sh_of(d);

	if (!sh->ctx)
		return -ENODATA;
	if (!(*blob = malloc(sh->ctx_len)))
		return -ENOMEM;
	memcpy(*blob, sh->ctx, sh->ctx_len);
	*len = sh->ctx_len;
	return 0;
}

static int sh_load_context(struct hv_domain *d, const void *blob, size_t len)
{
	struct shadow *sh = sh_of(d);
	void *c;

	if (len > HV_CONTEXT_MAX)
		return -EINVAL;
	if (!(c = malloc(len ? len : 1)))
		return -ENOMEM;
	memcpy(c, blob, len);
	free(sh->ctx);
	sh->ctx = c;
	sh->ctx_len = len;
	return 0;
}

static void sh_close(struct hv_domain *d)
{
	(void)d; /* shadow_free ends it */
}

static int sh_destroy(struct hv_domain *d)
{
	(void)d;
	return 0;
}

int shadow_new(struct hv_domain *copy, struct shadow **out)
{
	struct shadow *sh = calloc(1, sizeof *sh);
	uint64_t size;
	int r;

	*out = NULL;
	if (!sh)
		return -ENOMEM;
	sh->fd = -1;
	if ((r = hv_info(copy, &sh->info)))
		goto fail;
	size = sh->info.nr_frames * sh->info.page_size;
	sh->info.paused = 1;
	sh->info.logdirty = 0;
	sh->info.incoming = 1;
	sh->info.pid = -1;
	if ((r = bitmap_init(&sh->written, sh->info.nr_frames)))
		goto fail;
	if ((sh->fd = memfd_create("ferry-shadow", MFD_CLOEXEC)) < 0 ||
	    ftruncate(sh->fd, (off_t)size) < 0) {
		r = -errno;
		goto fail;
	}
	sh->pages = (struct memfd_pages){ .fd = sh->fd, .page_size = sh->info.page_size,
					  .nr_frames = sh->info.nr_frames };
	if ((r = memfd_pages_track_blocks(&sh->pages)))
		goto fail;
	sh->ops = (struct hv_ops){ .prefix = copy->ops->prefix, .info = sh_info,
				   .read_pages = sh_read_pages, .write_pages = sh_write_pages,
				   .discard_pages = sh_discard_pages,
				   .save_context = sh_save_context,
				   .load_context = sh_load_context, .close = sh_close,
				   .destroy = sh_destroy };
	sh->dom.ops = &sh->ops;
	memcpy(sh->dom.uri, copy->uri, sizeof sh->dom.uri);
	*out = sh;
	return 0;
fail:
	shadow_free(sh);
	return r;
}

void shadow_free(struct shadow *sh)
{
	if (!sh)
		return;
	if (sh->fd >= 0)
		close(sh->fd);
	bitmap_free(&sh->written);
	memfd_pages_free(&sh->pages);
	free(sh->ctx);
	free(sh);
}

struct hv_domain *shadow_domain(struct shadow *sh)
{
	return &sh->dom;
}

uint64_t shadow_bytes(const struct shadow *sh)
{
	struct stat s;

	return fstat(sh->fd, &s) ? 0 : (uint64_t)s.st_blocks * 512;
}

/* Frames the image has into copy, APPLY_BATCH at a time. */
static int copy_written(struct shadow *sh, struct hv_domain *copy, uint8_t *buf)
{
	uint32_t ps = sh->info.page_size;
	uint64_t frames[APPLY_BATCH], f;
	void *bufs[APPLY_BATCH];
	unsigned k = 0;
	int r;

	for (unsigned i = 0; i < APPLY_BATCH; i++)
		bufs[i] = buf + (size_t)i * ps;
	bitmap_for_each_set(f, &sh->written) {
		frames[k++] = f;
		if (k == APPLY_BATCH) {
			if ((r = page_io(sh, frames, k, bufs, false)) ||
			    (r = hv_write_pages(copy, frames, k, (const void *const *)bufs)))
				return r;
			k = 0;
		}
	}
	if (k && ((r = page_io(sh, frames, k, bufs, false)) ||
		  (r = hv_write_pages(copy, frames, k, (const void *const *)bufs))))
		return r;
	return 0;
}

/* Frames copy has and the image has not: discarded. have: copy's
 * populated frames (scratch). */
static int discard_rest(struct shadow *sh, struct hv_domain *copy, struct bitmap *have)
{
	uint64_t frames[APPLY_BATCH], f;
	unsigned k = 0;
	int64_t n = hv_populated(copy, have);
	int r;

	if (n == -EOPNOTSUPP)
		bitmap_set_range(have, 0, sh->info.nr_frames);
	else if (n < 0)
		return (int)n;
	bitmap_andnot(have, &sh->written);
	bitmap_for_each_set(f, have) {
		frames[k++] = f;
		if (k == APPLY_BATCH) {
			if ((r = hv_discard_pages(copy, frames, k)))
				return r;
			k = 0;
		}
	}
	return k ? hv_discard_pages(copy, frames, k) : 0;
}

int shadow_apply(struct shadow *sh, struct hv_domain *copy)
{
	struct bitmap have = { 0 };
	uint8_t *buf;
	int r;

	if (!sh->ctx)
		return -ENODATA;
	if (!(buf = malloc((size_t)APPLY_BATCH * sh->info.page_size)) ||
	    bitmap_init(&have, sh->info.nr_frames)) {
		free(buf);
		return -ENOMEM;
	}
	if (!(r = discard_rest(sh, copy, &have)) && !(r = copy_written(sh, copy, buf)))
		r = hv_load_context(copy, sh->ctx, sh->ctx_len);
	bitmap_free(&have);
	free(buf);
	return r;
}
