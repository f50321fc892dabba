/* shadow.c — a guest image held apart; see shadow.h. */
#include "replicate/shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"

#define BLOCK_SHIFT 21 /* allocated 2 MiB at a time: see prealloc */
#define APPLY_BATCH 512u
#define IOV_BATCH 64u

struct shadow {
	struct hv_domain dom;  /* first: what the receiver fills */
	struct hv_ops ops;
	struct hv_info info;   /* the copy's geometry */
	int fd;                /* the memfd, nr_frames pages long */
	struct bitmap written; /* frames with contents (atomic bits) */
	uint8_t *blocks;       /* 2 MiB blocks allocated (atomic bits) */
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

static int in_range(const struct shadow *sh, const uint64_t *frames, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (frames[i] >= sh->info.nr_frames)
			return -ERANGE;
	return 0;
}

/* The first write into a 2 MiB block allocates all of it at once: far
 * cheaper here than a fault per page (hv/mvm.c, prealloc). Best effort. */
static void prealloc(struct shadow *sh, uint64_t frame)
{
	uint64_t size = sh->info.nr_frames * sh->info.page_size;
	uint64_t b = (frame * sh->info.page_size) >> BLOCK_SHIFT;
	uint8_t bit = (uint8_t)(1u << (b % 8));
	off_t off = (off_t)(b << BLOCK_SHIFT);

	if ((__atomic_load_n(&sh->blocks[b / 8], __ATOMIC_RELAXED) & bit) ||
	    (__atomic_fetch_or(&sh->blocks[b / 8], bit, __ATOMIC_RELAXED) & bit))
		return;
	(void)fallocate(sh->fd, FALLOC_FL_KEEP_SIZE, off,
			(off_t)MIN((uint64_t)1 << BLOCK_SHIFT, size - (uint64_t)off));
}

/* pread or pwrite frames[0..n) as runs of consecutive frames. */
static int page_io(struct shadow *sh, const uint64_t *frames, size_t n, void *const *bufs,
		   bool write)
{
	uint32_t ps = sh->info.page_size;
	struct iovec v[IOV_BATCH];

	for (size_t i = 0; i < n;) {
		size_t k = 0;
		ssize_t got;

		do {
			v[k] = (struct iovec){ bufs[i + k], ps };
			k++;
		} while (i + k < n && k < IOV_BATCH && frames[i + k] == frames[i + k - 1] + 1);
		if (write)
			prealloc(sh, frames[i]), prealloc(sh, frames[i + k - 1]);
		got = write ? pwritev(sh->fd, v, (int)k, (off_t)(frames[i] * ps))
			    : preadv(sh->fd, v, (int)k, (off_t)(frames[i] * ps));
		if (got < 0)
			return -errno;
		if ((size_t)got != k * ps)
			return -EIO;
		if (write)
			for (size_t j = 0; j < k; j++)
				mark(&sh->written, frames[i + j], true);
		i += k;
	}
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
	int r = in_range(sh_of(d), frames, n);

	return r ? r : page_io(sh_of(d), frames, n, bufs, false);
}

static int sh_write_pages(struct hv_domain *d, const uint64_t *frames, size_t n,
			  const void *const *bufs)
{
	int r = in_range(sh_of(d), frames, n);

	return r ? r : page_io(sh_of(d), frames, n, (void *const *)bufs, true);
}

static int sh_discard_pages(struct hv_domain *d, const uint64_t *frames, size_t n)
{
	struct shadow *sh = sh_of(d);
	uint32_t ps = sh->info.page_size;
	int r = in_range(sh, frames, n);

	for (size_t i = 0; !r && i < n; i++) {
		mark(&sh->written, frames[i], false);
		if (fallocate(sh->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(frames[i] * ps), ps) < 0)
			r = -errno;
	}
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
	if ((r = bitmap_init(&sh->written, sh->info.nr_frames)) ||
	    !(sh->blocks = calloc((size >> BLOCK_SHIFT) / 8 + 1, 1))) {
		r = r ? r : -ENOMEM;
		goto fail;
	}
	if ((sh->fd = memfd_create("ferry-shadow", MFD_CLOEXEC)) < 0 ||
	    ftruncate(sh->fd, (off_t)size) < 0) {
		r = -errno;
		goto fail;
	}
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
	free(sh->blocks);
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
