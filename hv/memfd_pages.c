/* SPDX-License-Identifier: Apache-2.0 */
/* memfd_pages.c — page I/O on guest RAM held in a memfd; see memfd_pages.h. */
#include "hv/memfd_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"

static int in_range(const struct memfd_pages *p, const uint64_t *frames, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (frames[i] >= p->nr_frames)
			return -ERANGE;
	return 0;
}

static void lock(const struct memfd_pages *p)
{
	if (p->write_lock)
		pthread_mutex_lock(p->write_lock);
}

static void unlock(const struct memfd_pages *p)
{
	if (p->write_lock)
		pthread_mutex_unlock(p->write_lock);
}

int memfd_pages_track_reads(struct memfd_pages *p)
{
	p->reads = calloc(p->nr_frames ? p->nr_frames : 1, 1);
	return p->reads ? 0 : -ENOMEM;
}

/* Whether frames[0..k) are all hot: read through rmap. Otherwise counts
 * this read of each (two threads never read the same frame at once, but
 * the counts are atomic all the same: a lost count would be harmless, a
 * data race is not). */
static bool hot_run(const struct memfd_pages *p, const uint64_t *frames, size_t k)
{
	bool hot = true;

	if (!p->rmap || !p->reads)
		return false;
	for (size_t j = 0; j < k && hot; j++)
		hot = __atomic_load_n(&p->reads[frames[j]], __ATOMIC_RELAXED) >= MEMFD_RMAP_HOT;
	if (hot)
		return true;
	for (size_t j = 0; j < k; j++) {
		uint8_t c = __atomic_load_n(&p->reads[frames[j]], __ATOMIC_RELAXED);

		if (c < MEMFD_RMAP_HOT)
			__atomic_store_n(&p->reads[frames[j]], (uint8_t)(c + 1), __ATOMIC_RELAXED);
	}
	return false;
}

int memfd_pages_track_blocks(struct memfd_pages *p)
{
	uint64_t nblocks = DIV_ROUND_UP(p->nr_frames * p->page_size, 1ull << MEMFD_BLOCK_SHIFT);

	p->blocks = calloc(nblocks / 8 + 1, 1);
	return p->blocks ? 0 : -ENOMEM;
}

void memfd_pages_prealloc(struct memfd_pages *p, const uint64_t *frames, size_t n)
{
	uint64_t size = p->nr_frames * p->page_size;

	if (!p->blocks)
		return;
	for (size_t i = 0; i < n; i++) {
		if (frames[i] >= p->nr_frames)
			continue;
		uint64_t b = (frames[i] * p->page_size) >> MEMFD_BLOCK_SHIFT;
		uint64_t off = b << MEMFD_BLOCK_SHIFT;
		uint8_t bit = (uint8_t)(1u << (b % 8));

		if ((__atomic_load_n(&p->blocks[b / 8], __ATOMIC_RELAXED) & bit) ||
		    (__atomic_fetch_or(&p->blocks[b / 8], bit, __ATOMIC_RELAXED) & bit))
			continue;
		lock(p); /* the inode lock again: see the header */
		(void)fallocate(p->fd, FALLOC_FL_KEEP_SIZE, (off_t)off,
				(off_t)MIN(1ull << MEMFD_BLOCK_SHIFT, size - off));
		unlock(p);
	}
}

int memfd_pages_io(const struct memfd_pages *p, const uint64_t *frames, size_t n,
		   void *const *bufs, bool write)
{
	struct iovec iov[IOV_MAX];
	size_t ps = p->page_size;
	int r = in_range(p, frames, n);

	for (size_t i = 0; !r && i < n;) {
		size_t k = 0, done;
		off_t off = (off_t)(frames[i] * ps);
		ssize_t got;

		do {
			iov[k] = (struct iovec){ bufs[i + k], ps };
			k++;
		} while (i + k < n && k < IOV_MAX && frames[i + k] == frames[i + k - 1] + 1);
		if (!write && k < MEMFD_RMAP_RUN && hot_run(p, frames + i, k)) {
			for (size_t j = 0; j < k; j++)
				memcpy(bufs[i + j], p->rmap + off + j * ps, ps);
			i += k;
			continue;
		}
		if (write)
			lock(p);
		do
			got = write ? pwritev(p->fd, iov, (int)k, off) : preadv(p->fd, iov, (int)k, off);
		while (got < 0 && errno == EINTR);
		if (write)
			unlock(p);
		if (got < 0)
			return -errno;
		done = (size_t)got;
		for (size_t j = done / ps; !r && j < k; j++) {
			size_t skip = j == done / ps ? done % ps : 0;

			r = pio_full(p->fd, (char *)bufs[i + j] + skip, ps - skip,
				     off + (off_t)(j * ps + skip), write);
		}
		i += k;
	}
	return r;
}

int memfd_pages_discard(const struct memfd_pages *p, const uint64_t *frames, size_t n)
{
	int r = in_range(p, frames, n);

	for (size_t i = 0; !r && i < n;) {
		size_t k = 1;

		while (i + k < n && frames[i + k] == frames[i + k - 1] + 1)
			k++;
		if (fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(frames[i] * p->page_size), (off_t)(k * p->page_size)) < 0)
			r = -errno;
		i += k;
	}
	return r;
}

int64_t memfd_pages_populated(const struct memfd_pages *p, struct bitmap *out)
{
	off_t pos = 0, size = (off_t)(p->nr_frames * p->page_size);
	int64_t n = 0;

	if (out->nbits != p->nr_frames)
		return -EINVAL;
	bitmap_zero(out);
	while (pos < size) {
		off_t data = lseek(p->fd, pos, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? n : -errno;
		if ((hole = lseek(p->fd, data, SEEK_HOLE)) < 0)
			return -errno;
		if (hole > size)
			hole = size;
		uint64_t f0 = (uint64_t)data / p->page_size;
		uint64_t f1 = DIV_ROUND_UP((uint64_t)hole, p->page_size);
		bitmap_set_range(out, f0, f1 - f0);
		n += (int64_t)(f1 - f0);
		pos = hole;
	}
	return n;
}

void memfd_pages_free(struct memfd_pages *p)
{
	free(p->blocks);
	p->blocks = NULL;
	free(p->reads);
	p->reads = NULL;
}
