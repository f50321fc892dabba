/* SPDX-License-Identifier: Apache-2.0 */
/* uffd_postcopy.c — post-copy through another process's userfaultfd; see
 * uffd_postcopy.h. */
#include "hv/uffd_postcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kcompat.h"
#include "common/log.h"
#include "common/util.h"

#define DISCARD_BATCH 4096

/* Clear frame's bit; whether it was set. */
static bool take(struct uffd_pc *pc, uint64_t f)
{
	if (!bitmap_test_and_clear_atomic(&pc->missing, f))
		return false;
	__atomic_fetch_sub(&pc->left, 1, __ATOMIC_RELAXED);
	return true;
}

bool uffd_pc_missing(struct uffd_pc *pc, uint64_t f)
{
	return f < pc->nr_frames && bitmap_test_atomic(&pc->missing, f);
}

static int reg(struct uffd_pc *pc, uint64_t mode)
{
	struct uffdio_register r = { .range = { .start = pc->base,
						.len = pc->nr_frames * pc->page_size },
				     .mode = mode };

	return ioctl(pc->uffd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
}

int uffd_pc_begin(struct uffd_pc *pc, const struct memfd_pages *pages,
		  const struct bitmap *missing)
{
	uint64_t *batch, f, k = 0;
	int r;

	if (missing->nbits != pc->nr_frames || pages->nr_frames != pc->nr_frames)
		return -EINVAL;
	if ((r = bitmap_init(&pc->missing, pc->nr_frames)))
		return r;
	bitmap_or(&pc->missing, missing);
	pc->left = bitmap_count(missing);
	if (!(batch = malloc(DISCARD_BATCH * sizeof *batch)))
		return -ENOMEM;
	bitmap_for_each_set(f, missing) {
		batch[k++] = f;
		if (k == DISCARD_BATCH) {
			if ((r = memfd_pages_discard(pages, batch, k)))
				break;
			k = 0;
		}
	}
	if (!r && k)
		r = memfd_pages_discard(pages, batch, k);
	free(batch);
	if (r)
		return r;
	return reg(pc, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
}

int uffd_pc_reattach(struct uffd_pc *pc, const struct memfd_pages *pages,
		     struct bitmap *missing)
{
	int64_t n;
	int r;

	if (missing->nbits != pc->nr_frames || pages->nr_frames != pc->nr_frames)
		return -EINVAL;
	if ((n = memfd_pages_populated(pages, missing)) < 0)
		return (int)n;
	for (uint64_t i = 0; i < bitmap_words(missing->nbits); i++)
		missing->w[i] = ~missing->w[i];
	if (missing->nbits % 64)
		missing->w[missing->nbits / 64] &= (1ull << (missing->nbits % 64)) - 1;
	if ((r = bitmap_init(&pc->missing, pc->nr_frames)))
		return r;
	bitmap_or(&pc->missing, missing);
	pc->left = bitmap_count(missing);
	return reg(pc, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
}

/* Install len bytes at frame f from src; 0, or -EEXIST if (part of) it was
 * there already. */
static int copy_in(struct uffd_pc *pc, uint64_t f, const void *src, uint64_t len)
{
	struct uffdio_copy c = { .dst = pc->base + f * pc->page_size, .src = (uintptr_t)src,
				 .len = len };

	while (ioctl(pc->uffd, UFFDIO_COPY, &c) < 0) {
		if (errno == EAGAIN) /* the mapping is changing (rare): again */
			continue;
		return -errno;
	}
	return 0;
}

int uffd_pc_place(struct uffd_pc *pc, const uint64_t *frames, size_t n, const void *const *bufs)
{
	for (size_t i = 0; i < n; i++) {
		int r;

		if (frames[i] >= pc->nr_frames)
			return -ERANGE;
		if (!uffd_pc_missing(pc, frames[i]))
			continue; /* came the other way already (or was never missing) */
		/* Install first, then clear: a fault on it meanwhile still
		 * counts as missing (and its thread is woken by the copy). */
		r = copy_in(pc, frames[i], bufs[i], pc->page_size);
		if (r && r != -EEXIST)
			return r;
		take(pc, frames[i]);
	}
	return 0;
}

/* Place frame f as zero: the zero page, or a wake if it is there. */
static int zero_one(struct uffd_pc *pc, uint64_t f)
{
	struct uffdio_zeropage z = { .range = { .start = pc->base + f * pc->page_size,
						.len = pc->page_size } };

	while (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
		struct uffdio_range w = z.range;

		if (errno == EAGAIN)
			continue;
		if (errno != EEXIST)
			return -errno;
		/* Present (placed meanwhile): whoever waits on it runs. */
		return ioctl(pc->uffd, UFFDIO_WAKE, &w) < 0 ? -errno : 0;
	}
	return 0;
}

int uffd_pc_zero(struct uffd_pc *pc, const uint64_t *frames, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r;

		if (frames[i] >= pc->nr_frames)
			return -ERANGE;
		if (!uffd_pc_missing(pc, frames[i]))
			continue;
		if ((r = zero_one(pc, frames[i])))
			return r;
		take(pc, frames[i]);
	}
	return 0;
}

int uffd_pc_faults(struct uffd_pc *pc, uint64_t *frames, size_t max, uint64_t *left)
{
	struct uffd_msg msg[16];
	size_t k = 0;

	while (k < max) {
		ssize_t got = read(pc->uffd, msg, MIN(sizeof msg, (max - k) * sizeof msg[0]));

		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		for (size_t i = 0; i < (size_t)got / sizeof msg[0]; i++) {
			uint64_t a = msg[i].arg.pagefault.address, f;
			int r;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT || a < pc->base)
				continue;
			f = (a - pc->base) / pc->page_size;
			if (f >= pc->nr_frames)
				continue;
			if (uffd_pc_missing(pc, f))
				frames[k++] = f;
			else if ((r = zero_one(pc, f))) /* a hole at the source too */
				return r;
		}
		if ((size_t)got < sizeof msg)
			break;
	}
	*left = __atomic_load_n(&pc->left, __ATOMIC_RELAXED);
	return (int)k;
}

int uffd_pc_end(struct uffd_pc *pc)
{
	if (__atomic_load_n(&pc->left, __ATOMIC_RELAXED))
		return -EBUSY;
	return reg(pc, UFFDIO_REGISTER_MODE_WP);
}

void uffd_pc_free(struct uffd_pc *pc)
{
	if (pc->uffd >= 0)
		close(pc->uffd);
	pc->uffd = -1;
	bitmap_free(&pc->missing);
}
