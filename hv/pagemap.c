/* SPDX-License-Identifier: Apache-2.0 */
/* pagemap.c — PAGEMAP_SCAN harvest; see pagemap.h. */
#include "hv/pagemap.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "common/mtime.h"

#define VEC_LEN 4096

int pagemap_scan_init(struct pagemap_scan *s, int fd, uint64_t base, uint64_t nr_frames,
		      uint32_t page_size)
{
	*s = (struct pagemap_scan){ .fd = fd, .base = base, .nr_frames = nr_frames,
				    .page_size = page_size, .vec_len = VEC_LEN };
	s->vec = calloc(VEC_LEN, sizeof *s->vec);
	return s->vec ? 0 : -ENOMEM;
}

void pagemap_scan_free(struct pagemap_scan *s)
{
	free(s->vec);
	s->vec = NULL;
}

int64_t pagemap_harvest(struct pagemap_scan *s, struct bitmap *dirty, bool clear)
{
	const uint64_t ps = s->page_size, end = s->base + s->nr_frames * ps;
	uint64_t start = s->base, found = 0;

	if (dirty->nbits != s->nr_frames)
		return -EINVAL;
	s->calls = s->regions = s->ioctl_ns = 0;
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof a,
			.flags = PM_SCAN_CHECK_WPASYNC | (clear ? PM_SCAN_WP_MATCHING : 0),
			.start = start,
			.end = end,
			.vec = (uintptr_t)s->vec,
			.vec_len = s->vec_len,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		uint64_t t0 = mono_ns();
		long n = ioctl(s->fd, PAGEMAP_SCAN, &a);

		s->ioctl_ns += mono_ns() - t0;
		if (n < 0)
			return -errno;
		s->calls++;
		s->regions += (uint64_t)n;
		for (long i = 0; i < n; i++) {
			const struct page_region *pr = &s->vec[i];

			if (pr->start < start || pr->end > end || pr->end <= pr->start ||
			    (pr->start - s->base) % ps || (pr->end - s->base) % ps)
				return -EIO;
			bitmap_set_range(dirty, (pr->start - s->base) / ps, (pr->end - pr->start) / ps);
			found += (pr->end - pr->start) / ps;
		}
		if (a.walk_end <= start || a.walk_end > end)
			return -EIO;
		start = a.walk_end;
	}
	return (int64_t)found;
}
