/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfd_pages.h — guest RAM held in a memfd, read, written and discarded by
 * frame number: the page I/O shared by the hv backends whose RAM is a memfd
 * (hv/mvm.c, the microVM's) and by replication's shadow image
 * (replicate/shadow.c).
 *
 * Reads and writes go as one preadv/pwritev per run of consecutive frames; a
 * short transfer (rare on a memfd) is finished page by page.
 *
 * Hot frames through a mapping. With a read-only mapping (rmap) and read
 * counts (memfd_pages_track_reads), a run shorter than MEMFD_RMAP_RUN whose
 * frames have each been read MEMFD_RMAP_HOT times already is copied from the
 * mapping instead. On this kind of host (a PVM guest) a system call costs
 * ~1.2 us and a 4 KiB pread ~2.3 us, while the first touch of a page through
 * a mapping costs ~15 us (~7 us even after MAP_POPULATE: the host builds its
 * shadow entry then) and every later one ~0.45 us. So a mapping pays only
 * for frames read again and again: a replication epoch's ~450 scattered
 * kvstore pages (0.83-1.09 ms of copying by system calls, 0.37-0.46 ms
 * through the mapping), not a migration's dirty pages, most read once or
 * twice (through the mapping, 15-20 us a page: a dirtier64 pass of 15k pages
 * took 300-450 ms, and its stop-and-copy's 1-2k pages 5-22 ms of the
 * downtime). Only frames known to be populated may be read through it:
 * reading a hole through a mapping allocates it.
 *
 * Writers: with write_lock, every write (and every block allocation) takes
 * it. A write into a memfd holds its inode lock, and the kernel's waiters
 * spin on it while its owner runs; on a two-core host they took the CPU
 * another channel's TLS or socket work needed (a 1 GiB fill through two
 * ferryd, TLS: 1.27-1.46 s before, 0.98-1.2 s with the lock). A sleeping
 * mutex leaves that CPU to them.
 *
 * Fresh memory: a fresh page costs a fault on its first write on these
 * machines (DESIGN.md §11). With blocks, memfd_pages_prealloc
 * allocates each 2 MiB block with one fallocate before the first write into
 * it, far cheaper, and keeps a sparse guest sparse at the block's grain.
 * The pages are then written with pwritev: 4-8 times faster here than a
 * copy through a mapping of the memfd however the mapping is prepared
 *  (MADV_POPULATE_WRITE included; DESIGN.md §11), and still so
 * with several channels sharing the inode lock (a 1 GiB fill through two
 * ferryd: 1.65 s against 2.30 s through a mapping).
 *
 * Threads: any number may read and write disjoint frames at once; the
 * block bits are claimed atomically, so each block is allocated once.
 */
#ifndef FERRY_HV_MEMFD_PAGES_H
#define FERRY_HV_MEMFD_PAGES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"

#define MEMFD_RMAP_RUN 8       /* runs of fewer pages may be read through rmap */
#define MEMFD_RMAP_HOT 4       /* ... once each was read this often by a system call */
#define MEMFD_BLOCK_SHIFT 21   /* 2 MiB blocks allocated ahead of writes */

struct memfd_pages {
	int fd;                      /* nr_frames * page_size bytes long */
	uint32_t page_size;
	uint64_t nr_frames;
	const uint8_t *rmap;         /* all of it mapped read-only, or NULL */
	pthread_mutex_t *write_lock; /* taken around writes, or NULL */
	uint8_t *blocks;             /* blocks allocated ahead (bits), or NULL */
	uint8_t *reads;              /* per frame: reads by system call (saturating), or NULL */
};

/* Count reads per frame, so that hot frames are read through rmap: 0 or
 * -ENOMEM. */
int memfd_pages_track_reads(struct memfd_pages *p);
/* Track blocks for memfd_pages_prealloc: 0 or -ENOMEM. */
int memfd_pages_track_blocks(struct memfd_pages *p);
/* Allocate the blocks frames[0..n) lie in that are not allocated yet
 * (no-op without blocks). Best effort: a failure leaves the pages to be
 * allocated by the write. Frames out of range are ignored. */
void memfd_pages_prealloc(struct memfd_pages *p, const uint64_t *frames, size_t n);
/* pread (write: pwrite) frames[0..n) into (from) bufs, a page each:
 * 0, -ERANGE (a frame beyond nr_frames; nothing done), or -errno. */
int memfd_pages_io(const struct memfd_pages *p, const uint64_t *frames, size_t n,
		   void *const *bufs, bool write);
/* Punch frames[0..n) out (they read as zero again): 0, -ERANGE or -errno. */
int memfd_pages_discard(const struct memfd_pages *p, const uint64_t *frames, size_t n);
/* Set out (nr_frames bits) to the frames that hold memory; their count,
 * -EINVAL (wrong size) or -errno. */
int64_t memfd_pages_populated(const struct memfd_pages *p, struct bitmap *out);
void memfd_pages_free(struct memfd_pages *p); /* block bits, read counts; not fd or rmap */

#endif
