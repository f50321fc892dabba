/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_memfd_pages.c — hv/memfd_pages: page I/O by frame on a memfd, and
 * which frames are read through the read-only mapping. The mapping given
 * here is a decoy (other bytes than the memfd holds), so a read shows which
 * way it went: a frame is read by system call until it has been read
 * MEMFD_RMAP_HOT times, then through the mapping, and only in short runs
 * whose frames are all hot.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv/memfd_pages.h"

#define PS 4096u
#define NF 64u
#define DECOY 0xee

struct fx {
	struct memfd_pages p;
	uint8_t *decoy;
	uint8_t *buf; /* NF pages */
};

/* Frame f of the memfd holds bytes f + 1; the decoy mapping holds DECOY. */
static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof *x);
	int fd = memfd_create("test-memfd-pages", MFD_CLOEXEC);
	uint8_t page[PS];

	assert_non_null(x);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)NF * PS), 0);
	for (unsigned f = 0; f < NF; f++) {
		memset(page, (int)(f + 1), PS);
		assert_int_equal(pwrite(fd, page, PS, (off_t)f * PS), PS);
	}
	x->decoy = mmap(NULL, (size_t)NF * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	assert_true(x->decoy != MAP_FAILED);
	memset(x->decoy, DECOY, (size_t)NF * PS);
	x->buf = malloc((size_t)NF * PS);
	assert_non_null(x->buf);
	x->p = (struct memfd_pages){ .fd = fd, .page_size = PS, .nr_frames = NF,
				     .rmap = x->decoy };
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	memfd_pages_free(&x->p);
	close(x->p.fd);
	munmap(x->decoy, (size_t)NF * PS);
	free(x->buf);
	free(x);
	return 0;
}

/* Read frames[0..n) into x->buf; the byte each page holds (all its bytes
 * must agree). */
static void read_frames(struct fx *x, const uint64_t *frames, size_t n, uint8_t *got)
{
	void *bufs[NF];

	for (size_t i = 0; i < n; i++)
		bufs[i] = x->buf + i * PS;
	assert_int_equal(memfd_pages_io(&x->p, frames, n, bufs, false), 0);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *pg = x->buf + i * PS;

		for (size_t b = 1; b < PS; b++)
			assert_int_equal(pg[b], pg[0]);
		got[i] = pg[0];
	}
}

static void test_cold_then_hot(void **state)
{
	struct fx *x = *state;
	uint64_t f = 5;
	uint8_t got;

	assert_int_equal(memfd_pages_track_reads(&x->p), 0);
	for (unsigned i = 0; i < MEMFD_RMAP_HOT; i++) {
		read_frames(x, &f, 1, &got);
		assert_int_equal(got, f + 1); /* by system call */
	}
	read_frames(x, &f, 1, &got);
	assert_int_equal(got, DECOY); /* hot: through the mapping */
	/* Another frame is still cold. */
	f = 6;
	read_frames(x, &f, 1, &got);
	assert_int_equal(got, f + 1);
}

/* A short run goes through the mapping only if every frame in it is hot;
 * a run that does not counts a read of each of its frames. */
static void test_mixed_run(void **state)
{
	struct fx *x = *state;
	uint64_t hot = 10, run[2] = { 10, 11 };
	uint8_t got[2];

	assert_int_equal(memfd_pages_track_reads(&x->p), 0);
	for (unsigned i = 0; i < MEMFD_RMAP_HOT; i++)
		read_frames(x, &hot, 1, got);
	for (unsigned i = 0; i < MEMFD_RMAP_HOT; i++) {
		read_frames(x, run, 2, got);
		assert_int_equal(got[0], 11); /* frame 11 is not hot yet */
		assert_int_equal(got[1], 12);
	}
	read_frames(x, run, 2, got);
	assert_int_equal(got[0], DECOY);
	assert_int_equal(got[1], DECOY);
}

/* Runs of MEMFD_RMAP_RUN frames or more are always system calls. */
static void test_long_run(void **state)
{
	struct fx *x = *state;
	uint64_t frames[MEMFD_RMAP_RUN];
	uint8_t got[MEMFD_RMAP_RUN];

	assert_int_equal(memfd_pages_track_reads(&x->p), 0);
	for (unsigned i = 0; i < MEMFD_RMAP_RUN; i++)
		frames[i] = 20 + i;
	for (unsigned r = 0; r < 2 * MEMFD_RMAP_HOT + 2; r++) {
		read_frames(x, frames, MEMFD_RMAP_RUN, got);
		for (unsigned i = 0; i < MEMFD_RMAP_RUN; i++)
			assert_int_equal(got[i], frames[i] + 1);
	}
}

/* Without read counts, never through the mapping. */
static void test_untracked(void **state)
{
	struct fx *x = *state;
	uint64_t f = 3;
	uint8_t got;

	for (unsigned i = 0; i < 2 * MEMFD_RMAP_HOT + 2; i++) {
		read_frames(x, &f, 1, &got);
		assert_int_equal(got, f + 1);
	}
}

/* Writes, discards, the populated set, and a frame out of range. */
static void test_write_discard(void **state)
{
	struct fx *x = *state;
	uint64_t frames[3] = { 40, 41, 50 }, bad = NF;
	void *bufs[3];
	struct bitmap pop;
	uint8_t got[3];

	x->p.rmap = NULL;
	for (unsigned i = 0; i < 3; i++) {
		bufs[i] = x->buf + i * PS;
		memset(bufs[i], 0x70 + (int)i, PS);
	}
	assert_int_equal(memfd_pages_io(&x->p, frames, 3, bufs, true), 0);
	read_frames(x, frames, 3, got);
	assert_int_equal(got[0], 0x70);
	assert_int_equal(got[1], 0x71);
	assert_int_equal(got[2], 0x72);
	assert_int_equal(memfd_pages_discard(&x->p, frames, 2), 0);
	read_frames(x, frames, 3, got);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 0);
	assert_int_equal(got[2], 0x72);
	assert_int_equal(bitmap_init(&pop, NF), 0);
	assert_int_equal(memfd_pages_populated(&x->p, &pop), NF - 2);
	assert_false(bitmap_test(&pop, 40));
	assert_true(bitmap_test(&pop, 50));
	bitmap_free(&pop);
	assert_int_equal(memfd_pages_io(&x->p, &bad, 1, bufs, false), -ERANGE);
	assert_int_equal(memfd_pages_discard(&x->p, &bad, 1), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cold_then_hot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untracked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_discard, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
