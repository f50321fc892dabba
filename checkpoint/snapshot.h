/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshot.h — save a running domain to a file and restore it, as one
 * ferry stream of kind SNAPSHOT. Library code: the CLI calls it now, ferryd
 * will later.
 */
#ifndef FERRY_CHECKPOINT_SNAPSHOT_H
#define FERRY_CHECKPOINT_SNAPSHOT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "checkpoint/reader.h"
#include "checkpoint/sink.h"
#include "hv/hv.h"

struct snapshot_opts {
	bool keep_running;       /* save: leave the guest running; else stop it after the save */
	bool paused;             /* restore: leave the new guest paused */
	struct codec_opts codec;
	stream_frames_fn on_frames;
	void *on_frames_ctx;
	const volatile sig_atomic_t *cancel; /* save: non-zero stops it (e.g. Ctrl-C) */
};

struct snapshot_stats {
	uint64_t bytes;          /* file size */
	uint64_t pages[STREAM_ENC_MAX];
	uint64_t zero_frames;    /* covered by zero extents */
	uint64_t ns;             /* wall time */
	uint64_t paused_ns;      /* save: how long the guest was paused */
};

/*
 * Save domain d (open, owned by the caller) to path: pause, write
 * path.tmp-XXXXXX, fsync, rename over path, fsync the directory; then stop
 * the guest (destroy) or, with keep_running, let it run again. On any error
 * (a full disk included) the partial file is removed and the guest is left
 * as it was (running if it was running). Returns 0 or -errno with a reason
 * in err.
 */
int snapshot_save(struct hv_domain *d, const char *path, const struct snapshot_opts *o,
		  struct snapshot_stats *st, char *err, size_t errlen);

/*
 * Restore path into a new domain (name, or the saved name if NULL), running
 * unless o->paused. On success *out is the open handle (the caller closes
 * it; the guest lives on). On any error the half-made domain is discarded.
 */
int snapshot_restore(const char *path, const char *name, const struct snapshot_opts *o,
		     struct hv_domain **out, struct snapshot_stats *st, char *err, size_t errlen);

/* Whether d, created from a stream's header, has the header's geometry;
 * -EINVAL with a reason if not. Shared with the migration receiver. */
int check_created(struct hv_domain *d, const struct stream_info *i, char *err, size_t errlen);

#endif
