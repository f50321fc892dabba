/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_xen.c — the Xen backend (hv/xen.c) against the SHIM in
 * tests/xenshim, which stands in for Xen's libraries and a guest (shim.h):
 * batch mapping and holes, the dirty bitmap across word boundaries, a page
 * that cannot be mapped in the middle of a batch, cleanup on error paths,
 * and a whole move between two shim hosts through libxl's restore stream,
 * verified page by page. None of this has run on a Xen host.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "hv/hv.h"
#include "hv/xen_blob.h"
#include "tests/xenshim/shim.h"

#ifndef XENSHIM_BIN
#error XENSHIM_BIN
#endif

static char hostA[PATH_MAX], hostB[PATH_MAX];

static void on(const char *host)
{
	setenv("FERRY_XEN_RUN_DIR", host, 1);
}


static int setup(void **state)
{
	(void)state;
	snprintf(hostA, sizeof hostA, "/tmp/ferry-xenshim-A.XXXXXX");
	snprintf(hostB, sizeof hostB, "/tmp/ferry-xenshim-B.XXXXXX");
	if (!mkdtemp(hostA) || !mkdtemp(hostB))
		return -1;
	on(hostA);
	return 0;
}

static int teardown(void **state)
{
	char cmd[2 * PATH_MAX + 32];

	(void)state;
	shim_tool(hostA, "destroy-all");
	shim_tool(hostB, "destroy-all");
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", hostA, hostB);
	return system(cmd) == 0 ? 0 : -1;
}

static struct shim_map map_of(const char *host, const char *name)
{
	struct shim_map m;
	uint32_t domid;

	assert_int_equal(shim_dom_find(host, name, &domid), 0);
	assert_int_equal(shim_dom_map(host, domid, &m), 0);
	return m;
}

/* Open, info, one owner, pause, the context needs a pause, launch says how. */
static void test_open_info(void **state)
{
	struct hv_domain *d, *d2;
	struct hv_info i;
	char err[256];
	void *blob;
	size_t len;

	(void)state;
	assert_int_equal(shim_tool(hostA, "create web1 65536 1024 5000"), 0);
	assert_int_equal(hv_open("xen:nosuch", &d), -ENOENT);
	assert_int_equal(hv_open("xen:web1", &d), 0);
	assert_int_equal(hv_open("xen:web1", &d2), -EBUSY);
	{
		/* By domid too ("xen:1"), one owner still; dom0 and nonsense are not guests. */
		char uri[32];
		uint32_t domid;

		assert_int_equal(shim_dom_find(hostA, "web1", &domid), 0);
		snprintf(uri, sizeof uri, "xen:%u", domid);
		assert_int_equal(hv_open(uri, &d2), -EBUSY);
		assert_int_equal(hv_open("xen:0", &d2), -ENOENT);
		assert_int_equal(hv_open("xen:999", &d2), -ENOENT);
	}
	assert_int_equal(hv_info(d, &i), 0);
	assert_int_equal(i.nr_frames, 16384);
	assert_int_equal(i.page_size, 4096);
	assert_int_equal(i.nr_vcpus, 1);
	assert_false(i.paused);
	assert_string_equal(i.config, "mem=67108864 vcpus=1 frames=16384 type=hvm");
	assert_int_equal(hv_save_context(d, &blob, &len), -EBUSY);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_pause(d), 0); /* idempotent: one pause in Xen's count */
	assert_int_equal(hv_info(d, &i), 0);
	assert_true(i.paused);
	assert_int_equal(hv_save_context(d, &blob, &len), 0);
	assert_int_equal(xen_blob_check(XEN_BLOB_CONTEXT, blob, len, err, sizeof err), 0);
	free(blob);
	assert_int_equal(hv_domain_config(d, &blob, &len), 0);
	assert_int_equal(xen_blob_check(XEN_BLOB_DOMAIN_CONFIG, blob, len, err, sizeof err), 0);
	free(blob);
	assert_int_equal(hv_unpause(d), 0);
	assert_int_equal(hv_unpause(d), 0);
	{
		struct shim_map m = map_of(hostA, "web1");

		assert_int_equal(m.st->pause_count, 0);
		shim_dom_unmap(&m);
	}
	assert_int_equal(i.rw_disks, 0);
	assert_int_equal(hv_launch("xen:new", &(struct hv_spec){ 0 }, 0, &d2, err, sizeof err),
			 -EOPNOTSUPP);
	assert_non_null(strstr(err, "xl create"));
	hv_close(d);
	{
		char uri[32];
		uint32_t domid;

		assert_int_equal(shim_dom_find(hostA, "web1", &domid), 0);
		snprintf(uri, sizeof uri, "xen:%u", domid);
		assert_int_equal(hv_open(uri, &d), 0);
		assert_int_equal(hv_open("xen:web1", &d2), -EBUSY);
		hv_close(d);
	}
	/* A writable disk is seen (replication refuses such a guest). */
	assert_int_equal(shim_tool(hostA, "create disky 65536 10 10 rw-disk"), 0);
	assert_int_equal(hv_open("xen:disky", &d), 0);
	assert_int_equal(hv_info(d, &i), 0);
	assert_int_equal(i.rw_disks, 1);
	hv_close(d);
	assert_int_equal(shim_counts().handles, 0);
	assert_int_equal(shim_counts().maps, 0);
	assert_int_equal(shim_counts().hbufs, 0);
}

/* The dirty bitmap: bits at word edges, the last frame, PEEK keeps, CLEAN
 * clears; FINAL needs a pause; a failing hypercall leaks nothing. */
static void test_dirty_bitmap(void **state)
{
	static const uint64_t at[] = { 0, 63, 64, 127, 128, 4095, 4096, 16383 };
	struct hv_domain *d;
	struct bitmap b;
	struct shim_map m;

	(void)state;
	assert_int_equal(shim_tool(hostA, "create quiet 65536 0 0"), 0);
	assert_int_equal(hv_open("xen:quiet", &d), 0);
	assert_int_equal(bitmap_init(&b, 16384), 0);
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), -EINVAL); /* off */
	assert_int_equal(hv_logdirty_enable(d), 0);
	assert_int_equal(hv_logdirty_enable(d), 0);
	m = map_of(hostA, "quiet");
	for (size_t k = 0; k < ARRAY_SIZE(at); k++)
		m.dirty[at[k] / 64] |= 1ULL << (at[k] % 64);
	assert_int_equal(hv_logdirty_harvest(d, &b, HV_HARVEST_PEEK), ARRAY_SIZE(at));
	bitmap_zero(&b);
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), ARRAY_SIZE(at));
	for (size_t k = 0; k < ARRAY_SIZE(at); k++)
		assert_true(bitmap_test(&b, at[k]));
	assert_int_equal(bitmap_count(&b), ARRAY_SIZE(at));
	bitmap_zero(&b);
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), 0);
	assert_int_equal(hv_logdirty_harvest(d, &b, HV_HARVEST_FINAL), -EBUSY);
	/* A hypercall that fails: an error, nothing kept, nothing leaked. */
	m.st->fail_logdirty = 1;
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), -EIO);
	assert_int_equal(hv_logdirty_disable(d), 0);
	m.st->fail_logdirty = 1; /* one failure: retried after OFF, as Xen does */
	assert_int_equal(hv_logdirty_enable(d), 0);
	assert_int_equal(hv_logdirty_disable(d), 0);
	m.st->fail_logdirty = 3;
	assert_int_equal(hv_logdirty_enable(d), -EIO);
	shim_dom_unmap(&m);
	bitmap_free(&b);
	hv_close(d);
	assert_int_equal(shim_counts().handles, 0);
	assert_int_equal(shim_counts().hbufs, 0);
}

/* Reads: holes read as zero (their type says XTAB), a page that cannot be
 * mapped in the middle of a batch fails the batch and unmaps it, frames
 * past the end are -ERANGE. */
static void test_read_batches(void **state)
{
	struct hv_domain *d;
	struct bitmap pop;
	struct shim_map m;
	uint64_t f[1500];
	void *bufs[1500];
	uint8_t *mem = malloc(1500 * 4096);
	int64_t n;

	(void)state;
	assert_int_equal(shim_tool(hostA, "create reader 65536 2000 20000"), 0);
	assert_int_equal(hv_open("xen:reader", &d), 0);
	m = map_of(hostA, "reader");
	usleep(150000); /* the guest writes ~3000 pages */
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(bitmap_init(&pop, 16384), 0);
	n = hv_populated(d, &pop);
	assert_true(n > 100 && n < 16384);
	/* 1500 frames: more than one mapping batch, holes among them. */
	for (int i = 0; i < 1500; i++) {
		f[i] = (uint64_t)i * 10;
		bufs[i] = mem + (size_t)i * 4096;
	}
	assert_int_equal(hv_read_pages(d, f, 1500, bufs), 0);
	for (int i = 0; i < 1500; i++) {
		uint8_t *want = m.ram + f[i] * 4096;

		if (bitmap_test(&pop, f[i]))
			assert_memory_equal(bufs[i], want, 4096);
		else
			for (int k = 0; k < 4096; k++)
				assert_int_equal(((uint8_t *)bufs[i])[k], 0);
	}
	/* A populated page that cannot be mapped, in the middle of a batch. */
	for (int i = 100; i < 1024; i++)
		if (bitmap_test(&pop, f[i])) {
			m.st->fail_map_pfn = f[i] + 1;
			break;
		}
	assert_int_not_equal(m.st->fail_map_pfn, 0);
	assert_int_equal(hv_read_pages(d, f, 1500, bufs), -EIO);
	assert_int_equal(shim_counts().maps, 0);
	m.st->fail_map_pfn = 0;
	f[7] = 16384;
	assert_int_equal(hv_read_pages(d, f, 8, bufs), -ERANGE);
	shim_dom_unmap(&m);
	bitmap_free(&pop);
	free(mem);
	hv_close(d);
	assert_int_equal(shim_counts().handles, 0);
}

/* Throttle: the credit cap, then the cap before. */
static void test_throttle(void **state)
{
	struct hv_domain *d;
	struct shim_map m;

	(void)state;
	assert_int_equal(shim_tool(hostA, "create slow 65536 100 100"), 0);
	assert_int_equal(hv_open("xen:slow", &d), 0);
	m = map_of(hostA, "slow");
	assert_int_equal(hv_throttle(d, 100), -EINVAL);
	assert_int_equal(hv_throttle(d, 60), 0);
	assert_int_equal(m.st->cap, 40);
	assert_int_equal(hv_throttle(d, 90), 0);
	assert_int_equal(m.st->cap, 10);
	assert_int_equal(hv_throttle(d, 0), 0);
	assert_int_equal(m.st->cap, 0);
	shim_dom_unmap(&m);
	hv_close(d);
}

/* A whole move from host A to host B, as the engine does it: log-dirty,
 * a full pass, passes of dirty pages while the guest writes, pause, the
 * last pass, the context; the destination is built by (the shim's) libxl
 * restore from the stream xen.c writes. The guest then runs on B and its
 * every page checks out. */
static void test_move(void **state)
{
	struct hv_domain *s, *dd;
	struct hv_info si, di;
	struct bitmap dirty, pop;
	struct shim_map m;
	uint8_t *buf = malloc(512 * 4096);
	void *bufs[512], *blob, *dconf;
	size_t blen, dlen;
	uint64_t f[512], steps;
	char why[256];
	int watch;

	(void)state;
	for (int i = 0; i < 512; i++)
		bufs[i] = buf + (size_t)i * 4096;
	assert_int_equal(shim_tool(hostA, "create mover 65536 4000 20000"), 0);
	usleep(100000);
	on(hostA);
	assert_int_equal(hv_open("xen:mover", &s), 0);
	assert_int_equal(hv_info(s, &si), 0);
	assert_int_equal(hv_domain_config(s, &dconf, &dlen), 0);
	assert_int_equal(bitmap_init(&dirty, si.nr_frames), 0);
	assert_int_equal(bitmap_init(&pop, si.nr_frames), 0);
	on(hostB);
	assert_int_equal(hv_create("xen:mover", si.config, NULL, 0, &dd), -EINVAL);
	assert_int_equal(hv_create("xen:mover", si.config, dconf, dlen, &dd), 0);
	assert_int_equal(hv_info(dd, &di), 0);
	assert_true(di.incoming);
	assert_int_equal(di.nr_frames, si.nr_frames);
	assert_int_equal(hv_read_pages(dd, f, 0, bufs), -EOPNOTSUPP);
	assert_true(dd->ops->flags & HV_F_CREATE_WRITE_ONLY);

	on(hostA);
	assert_int_equal(hv_logdirty_enable(s), 0);
	assert_true(hv_populated(s, &pop) > 0);
	for (int pass = 0; pass < 4; pass++) {
		struct bitmap *set = pass == 0 ? &pop : &dirty;
		uint64_t fr = bitmap_next_set(set, 0);

		if (pass == 3)
			assert_int_equal(hv_pause(s), 0);
		if (pass) {
			bitmap_zero(&dirty);
			assert_true(hv_logdirty_harvest(s, &dirty, pass == 3 ? HV_HARVEST_FINAL : 0) >= 0);
			fr = bitmap_next_set(set, 0);
		}
		while (fr != BITMAP_NONE) {
			unsigned k = 0;

			for (; k < 512 && fr != BITMAP_NONE; fr = bitmap_next_set(set, fr + 1))
				f[k++] = fr;
			on(hostA);
			assert_int_equal(hv_read_pages(s, f, k, bufs), 0);
			on(hostB);
			assert_int_equal(hv_write_pages(dd, f, k, (const void *const *)bufs), 0);
		}
		on(hostA);
		if (pass < 3)
			usleep(50000);
	}
	assert_int_equal(hv_save_context(s, &blob, &blen), 0);
	on(hostB);
	/* A broken context is refused before anything reaches libxl. */
	assert_int_equal(hv_load_context(dd, blob, blen - 8), -EINVAL);
	assert_int_equal(hv_load_context(dd, blob, blen), 0);
	/* Built: later writes and contexts go into the paused domain (a
	 * standby's epochs); they need it paused. */
	assert_int_equal(hv_write_pages(dd, f, 1, (const void *const *)bufs), 0);
	assert_int_equal(hv_load_context(dd, blob, blen), 0);
	{
		/* A frame that is a hole on B gets memory first (a foreign
		 * mapping of a hole fails, as on Xen). */
		uint64_t last = si.nr_frames - 1;
		struct shim_map mb = map_of(hostB, "mover--incoming");

		assert_false(mb.pop[last / 64] >> (last % 64) & 1);
		memset(bufs[0], 0, 4096);
		assert_int_equal(hv_write_pages(dd, &last, 1, (const void *const *)bufs), 0);
		assert_true(mb.pop[last / 64] >> (last % 64) & 1);
		shim_dom_unmap(&mb);
	}
	assert_int_equal(hv_info(dd, &di), 0);
	assert_true(di.paused);
	m = map_of(hostB, "mover--incoming");
	assert_int_equal(shim_verify(&m, why, sizeof why), 0);
	steps = m.st->regs.steps;
	assert_memory_equal(m.st->dev, "SHIMDEV mover", 13);
	assert_int_equal(hv_unpause(dd), 0); /* commits: renamed as xl does */
	shim_dom_unmap(&m);
	m = map_of(hostB, "mover");
	for (int i = 0; i < 200 && m.st->regs.steps == steps; i++)
		usleep(10000);
	assert_true(m.st->regs.steps > steps); /* it runs on B */
	shim_dom_unmap(&m);
	assert_int_equal(shim_tool(hostB, "verify mover"), 0);
	/* The source goes; its watch says so. */
	on(hostA);
	assert_int_equal(hv_watch(s, &watch), 0);
	assert_int_equal(hv_destroy(s), 0);
	{
		struct pollfd p = { .fd = watch, .events = POLLIN };

		assert_int_equal(poll(&p, 1, 3000), 1);
	}
	hv_close(s);
	on(hostB);
	hv_close(dd);
	assert_int_equal(shim_tool(hostB, "verify mover"), 0); /* committed: outlives the handle */
	free(blob);
	free(dconf);
	free(buf);
	bitmap_free(&dirty);
	bitmap_free(&pop);
	assert_int_equal(shim_counts().handles, 0);
	assert_int_equal(shim_counts().maps, 0);
	on(hostA);
}

/* An incoming domain whose handle closes before its context: libxl's
 * restore fails and nothing is left on the host. */
static void test_incoming_abandoned(void **state)
{
	struct hv_domain *s, *dd;
	struct hv_info si;
	void *dconf;
	size_t dlen;
	uint32_t domid;

	(void)state;
	assert_int_equal(shim_tool(hostA, "create left 65536 100 100"), 0);
	on(hostA);
	assert_int_equal(hv_open("xen:left", &s), 0);
	assert_int_equal(hv_info(s, &si), 0);
	assert_int_equal(hv_domain_config(s, &dconf, &dlen), 0);
	on(hostB);
	assert_int_equal(hv_create("xen:left", si.config, dconf, dlen, &dd), 0);
	{
		/* One write of more pages than a PAGE_DATA record holds. */
		static uint64_t f[1500];
		static const void *bufs[1500];
		void *zero = calloc(1, 4096);

		for (int i = 0; i < 1500; i++)
			f[i] = (uint64_t)i, bufs[i] = zero;
		assert_int_equal(hv_write_pages(dd, f, 1500, bufs), 0);
		free(zero);
	}
	hv_close(dd);
	assert_int_equal(shim_dom_find(hostB, "left--incoming", &domid), -ENOENT);
	assert_int_equal(shim_dom_find(hostB, "left", &domid), -ENOENT);
	on(hostA);
	hv_close(s);
	free(dconf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_info),
		cmocka_unit_test(test_dirty_bitmap),
		cmocka_unit_test(test_read_batches),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_move),
		cmocka_unit_test(test_incoming_abandoned),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
