/* SPDX-License-Identifier: Apache-2.0 */
/*
 * uffd_postcopy.h — post-copy into guest RAM that another process maps
 * (the microVM runtime's), through that process's userfaultfd: the frames
 * announced missing are punched out of the memfd, missing-page faults on
 * the mapping are registered, reported and resolved from here (DESIGN.md
 * §6, docs/migration-protocol.md "Post-copy").
 *
 * Why MISSING mode and UFFDIO_COPY, not minor faults and UFFDIO_CONTINUE:
 * a frame that arrived during the pre-copy is already in the memfd's page
 * cache, so it costs the guest nothing (not even a fault) in MISSING mode;
 * minor mode would fault on the first touch of every one of them. And
 * UFFDIO_COPY puts a frame in the page cache and maps it in one step,
 * failing with EEXIST if it is there already, so the two paths a frame may
 * come by (the demand and the background stream) cannot both install it,
 * and the first wakes every thread waiting on it. A write through the
 * memfd would need a separate wake, with a window between.
 *
 * The holder needs no privilege: the fd is the runtime's, sent over its
 * control socket, and every operation on it acts on the runtime's memory.
 * A runtime whose fd was made in user mode only (not root) cannot have
 * the kernel's own faults (its NIC receiving into guest RAM) resolved:
 * such a guest with a NIC is refused.
 *
 * Threads: place and zero from any number of threads at once; faults from
 * one.
 */
#ifndef FERRY_HV_UFFD_POSTCOPY_H
#define FERRY_HV_UFFD_POSTCOPY_H

#include <stdint.h>

#include "common/bitmap.h"
#include "hv/memfd_pages.h"

struct uffd_pc {
	int uffd;            /* the runtime's userfaultfd (ours to close) */
	uint64_t base;       /* guest RAM's address in the runtime */
	uint32_t page_size;
	uint64_t nr_frames;
	struct bitmap missing; /* atomically cleared as frames are placed */
	uint64_t left;         /* set bits in missing (atomic) */
};

/*
 * Begin: pc->uffd, base, page_size and nr_frames are set. Punch the frames
 * set in missing out of the memfd (pages) and register missing-page faults
 * on all of guest RAM (write-protect stays registered: the dirty log). The
 * guest must not run yet. 0 or -errno; on failure nothing is registered.
 */
int uffd_pc_begin(struct uffd_pc *pc, const struct memfd_pages *pages,
		  const struct bitmap *missing);
/* Begin again after the holder restarted (the guest runs; what it has is
 * final): the missing frames are those with no memory (SEEK_HOLE), set in
 * missing (sized nr_frames); register again. 0 or -errno. */
int uffd_pc_reattach(struct uffd_pc *pc, const struct memfd_pages *pages,
		     struct bitmap *missing);
/* Place n frames from bufs: a frame already present stays as it is. 0 or
 * -errno. */
int uffd_pc_place(struct uffd_pc *pc, const uint64_t *frames, size_t n, const void *const *bufs);
/* Place n frames as zero where they are missing; others stay. */
int uffd_pc_zero(struct uffd_pc *pc, const uint64_t *frames, size_t n);
/* Whether frame is still missing (it must not be read through the memfd:
 * that would make it present, as zero). */
bool uffd_pc_missing(struct uffd_pc *pc, uint64_t frame);
/* Faults waiting: up to max missing frames into frames, the count (a frame
 * touched by several threads may repeat); a touched frame that is not
 * missing is placed as zero here. *left: frames still missing. -errno on a
 * broken fd. */
int uffd_pc_faults(struct uffd_pc *pc, uint64_t *frames, size_t max, uint64_t *left);
/* End: every frame is present; missing-page faults are no longer
 * registered. -EBUSY while frames are missing. The fd stays open. */
int uffd_pc_end(struct uffd_pc *pc);
/* Free it and close the fd (a guest still waiting on a frame waits until
 * its runtime ends). */
void uffd_pc_free(struct uffd_pc *pc);

#endif
