/* SPDX-License-Identifier: Apache-2.0 */
/*
 * staging.h — one replication epoch's pages, copied out of the guest while
 * it is paused, so that the epoch can be sent while the guest runs on
 * (DESIGN.md §7).
 *
 * The area is bounded (at most max bytes of pages, never more than the
 * guest): an epoch that dirtied more than fits is not copied; the engine
 * then sends it straight from the guest, which stays paused meanwhile
 * (slower, never wrong). The area is seen through a read-only hv_domain
 * (staging_domain) whose read_pages serves the staged copies, so that the
 * lanes (checkpoint/lanes.h) send an epoch exactly as they send a
 * migration pass. In pass-through mode it reads the guest itself.
 *
 * Ownership: the caller keeps the guest's handle; one thread fills the area
 * (staging_fill) while no pass runs, and the lanes' threads read it during
 * one.
 */
#ifndef FERRY_REPLICATE_STAGING_H
#define FERRY_REPLICATE_STAGING_H

#include <stdbool.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "hv/hv.h"

struct staging;

/* An area for guest d (info: its hv_info) of at most max bytes of pages
 * (0: the guest's size). 0 or -ENOMEM. */
int staging_new(struct hv_domain *d, const struct hv_info *info, uint64_t max,
		struct staging **out);
void staging_free(struct staging *st);
/*
 * Copy the frames set in dirty (count of them: n) out of the paused guest.
 * 0 once copied; 1 if they do not fit: nothing is copied and the area
 * reads the guest itself until the next fill (keep it paused while an epoch
 * is sent); -errno from read_pages.
 */
int staging_fill(struct staging *st, const struct bitmap *dirty, uint64_t n);
/* The domain to hand the lanes: reads the staged copies (or the guest). */
struct hv_domain *staging_domain(struct staging *st);
/* Bytes the area holds now (memory in use, for status). */
uint64_t staging_bytes(const struct staging *st);
/* The bound, in bytes. */
uint64_t staging_max(const struct staging *st);

#endif
