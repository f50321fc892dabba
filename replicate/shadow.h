/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shadow.h — a guest image held apart from the standby copy it will
 * replace (docs/replication.md, "ferryd on the primary restarts").
 *
 * A restarted primary resyncs its standby in full while the standby keeps
 * the copy it had: until the whole sync has arrived, that copy is the one
 * a takeover runs. So the sync is received here, not into the copy, and
 * applied to the copy in one step once it is complete — the resync staged
 * as one epoch.
 *
 * The image is a sparse memfd of the guest's size (the frames written, a
 * bitmap of them; the rest reads as zero) and a context blob. It is seen
 * as an hv_domain (shadow_domain) that the migration receiver fills as it
 * fills a created domain (migrate_opts.into): info, read, write and
 * discard pages, load and save the context. Its close is a no-op and its
 * destroy empties nothing (shadow_free ends it); it has no other op.
 *
 * Memory: up to the guest's size, for the length of a sync (allocated in
 * 2 MiB blocks as frames arrive). Threads: the receiver's lanes write
 * disjoint frames at once; shadow_apply runs alone.
 */
#ifndef FERRY_REPLICATE_SHADOW_H
#define FERRY_REPLICATE_SHADOW_H

#include <stdint.h>

#include "hv/hv.h"

struct shadow;

/* An empty image with copy's geometry (its hv_info): 0, -ENOMEM, or the
 * memfd's -errno. */
int shadow_new(struct hv_domain *copy, struct shadow **out);
void shadow_free(struct shadow *sh);
/* The domain the receiver fills (owned by sh). */
struct hv_domain *shadow_domain(struct shadow *sh);
/*
 * Make copy (paused) equal to the image: the frames written are copied
 * into it, every other frame it has is discarded, and the context is
 * loaded. 0, or -errno with the copy torn (part old, part new: it must not
 * run). -ENODATA, with nothing touched, if the image has no context yet.
 */
int shadow_apply(struct shadow *sh, struct hv_domain *copy);
/* Bytes of memory the image holds now. */
uint64_t shadow_bytes(const struct shadow *sh);

#endif
