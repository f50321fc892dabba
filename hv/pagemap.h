/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pagemap.h — Linux's out-of-process dirty log: PAGEMAP_SCAN over a range of
 * another process's memory registered for userfaultfd async write-protect.
 * Used by the microVM backend (hv/mvm.c) and by bench/dirtylog.
 */
#ifndef FERRY_HV_PAGEMAP_H
#define FERRY_HV_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "common/kcompat.h"

struct pagemap_scan {
	int fd;             /* /proc/PID/pagemap of the process owning the RAM (not owned) */
	uint64_t base;      /* address of frame 0 in that process */
	uint64_t nr_frames;
	uint32_t page_size;
	struct page_region *vec; /* result vector, owned */
	size_t vec_len;
	/* Of the last harvest: ioctl calls, regions returned, time inside them. */
	uint64_t calls, regions, ioctl_ns;
};

int pagemap_scan_init(struct pagemap_scan *s, int fd, uint64_t base, uint64_t nr_frames,
		      uint32_t page_size);
void pagemap_scan_free(struct pagemap_scan *s);

/*
 * OR the frames written since the last clearing harvest into *dirty
 * (nr_frames bits) and, with clear, write-protect them again in the same walk.
 * PM_SCAN_CHECK_WPASYNC makes an unregistered range an error (-EPERM) instead
 * of silently reporting nothing. The walk restarts from walk_end until it
 * covers the range, since the result vector can fill first. Returns the
 * number of dirty frames found, or -errno (-ESRCH: the process is gone;
 * -EIO: the kernel answered something impossible). Does not log.
 */
int64_t pagemap_harvest(struct pagemap_scan *s, struct bitmap *dirty, bool clear);

#endif
