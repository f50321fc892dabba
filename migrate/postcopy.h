/* SPDX-License-Identifier: Apache-2.0 */
/*
 * postcopy.h — the post-copy half of a migration (DESIGN.md §6,
 * docs/migration-protocol.md "Post-copy"), inside migrate/: the pre-copy
 * engine runs it when it switches over with frames still missing.
 *
 * With WIRE_CAP_POSTCOPY agreed, the session's last channel is the
 * post-copy channel: the source writes a stream of its own on it (its
 * HEADER at setup, then one PAGES record per batch of demanded frames, raw,
 * flushed at once), and nothing else goes on it, so a demanded frame never
 * waits behind the background stream. The other channels carry the
 * migration's streams as usual.
 *
 * At the switch the source pauses, sends POSTCOPY records (the frames it
 * has not sent since they were last written) and the context on channel 0,
 * and commits as a pre-copy does (READY, GO, RUNNING). The destination
 * punches those frames out (hv postcopy_begin) before READY, resumes on GO,
 * and from then on asks for each frame a thread of the guest waits on
 * (WIRE_PC_REQ on channel 0), once. The source sends every missing frame
 * exactly once: by demand or in the background pass that follows RUNNING,
 * whichever claims it first. Either way the destination places it with
 * hv_write_pages, which keeps the first copy and wakes its waiters. When no
 * frame is missing the destination says WIRE_PC_DONE (with its fault
 * latency), and the source's copy ends.
 */
#ifndef FERRY_MIGRATE_POSTCOPY_H
#define FERRY_MIGRATE_POSTCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/reader.h"
#include "common/bitmap.h"
#include "hv/hv.h"
#include "session/session.h"

/* ---- source ---- */

struct pc_src;

/* Start the post-copy channel's stream (its HEADER) on ch for d. need is
 * the engine's bitmap of frames still to send; it is claimed (bits
 * cleared) from pc_src_serve on. 0 or -errno. */
int pc_src_open(struct hv_domain *d, const struct hv_info *info, struct chan *ch,
		struct bitmap *need, struct pc_src **out);
/* The session's on_msg hook (the monitor's thread): WIRE_PC_REQ queues a
 * frame. */
void pc_src_on_msg(void *ctx, uint32_t type, uint64_t arg);
/* need is final (the guest is paused): answer demands from now on, on a
 * thread of its own. 0 or -errno. */
int pc_src_serve(struct pc_src *p);
/* Claim frame for sending: true once per frame of need (lanes' claim). */
bool pc_src_claim(void *ctx, uint64_t frame);
/* Frames sent on demand so far; the first send error (0: none). */
uint64_t pc_src_demand(const struct pc_src *p);
int pc_src_error(const struct pc_src *p);
/* Stop the thread and free it; NULL is fine. */
void pc_src_close(struct pc_src *p);
/*
 * A paused post-copy goes on over a new session s: read what the
 * destination says it still lacks (its stream on the post-copy channel ch:
 * HEADER, POSTCOPY records, END) into need, cleared first. 0, or -errno
 * with err set.
 */
int pc_src_learn(struct session *s, struct chan *ch, const struct hv_info *info,
		 struct bitmap *need, char *err, size_t errlen);

/* WIRE_PC_DONE's argument: the destination's fault latency in µs, packed
 * p50 (bits 0-20), p99 (21-41), max (42-63), each saturating. */
uint64_t pc_latency_pack(uint32_t p50, uint32_t p99, uint32_t max);
void pc_latency_unpack(uint64_t v, uint32_t *p50, uint32_t *p99, uint32_t *max);

/* ---- destination ---- */

struct pc_dst;

int pc_dst_new(uint64_t nr_frames, struct pc_dst **out);
/* A POSTCOPY record's bits (stream order), into the missing set. */
int pc_dst_add(struct pc_dst *p, uint64_t first, uint64_t count, const void *bits);
const struct bitmap *pc_dst_missing(const struct pc_dst *p);
/* The missing set, whole (a restarted destination's: its holes). */
void pc_dst_set_missing(struct pc_dst *p, const struct bitmap *missing);
/* Frames were placed (by either path): ends their waits' latency. */
void pc_dst_placed(struct pc_dst *p, const uint64_t *frames, unsigned n);
/* Frames [first, first + count) were placed as zero. */
void pc_dst_placed_zero(struct pc_dst *p, uint64_t first, uint64_t count);
/* A new session (a paused post-copy goes on): tell the source on ch what
 * is still missing (HEADER as info says, POSTCOPY records, END), then ask
 * again on s for every frame a thread still waits on. 0 or -errno. */
int pc_dst_rejoin(struct pc_dst *p, struct session *s, struct chan *ch,
		  const struct stream_info *info);
/*
 * The guest runs over missing frames (d after hv_postcopy_begin gave fd):
 * demand each frame a thread waits on, until none is missing or stop(ctx)
 * says so (a lane failed). 0 once all are here, -errno otherwise; *backend
 * is set if the domain failed (not the session). *left: frames missing.
 */
int pc_dst_serve(struct pc_dst *p, struct hv_domain *d, struct session *s, int fd,
		 bool (*stop)(void *ctx), void *ctx, bool *backend, uint64_t *left);
/* Frames demanded, and the fault latency so far (µs). */
void pc_dst_stats(const struct pc_dst *p, uint64_t *demand, uint32_t *p50, uint32_t *p99,
		  uint32_t *max);
void pc_dst_free(struct pc_dst *p);

#endif
