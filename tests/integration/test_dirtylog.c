/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_dirtylog.c — the microVM's kernel dirty log is exact.
 *
 * Real ferry-mvm processes; the log is read with PAGEMAP_SCAN through the
 * pagemap fd the runtime passed over its control socket.
 */
#include "tests/integration/harness.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <poll.h>

#include "common/bitmap.h"
#include "mvm/config.h"
#include "mvm/context.h"
#include "mvm/workload.h"

#define MiB (1ULL << 20)

/* The frames a dirtier config's vCPUs write in steps [from[v], to[v]). */
static void expected_set(const char *config, const struct mvm_vcpu_regs *from,
			 const struct mvm_vcpu_regs *to, struct bitmap *out)
{
	struct mvm_config c;
	char err[128];

	assert_int_equal(mvm_config_parse(config, &c, err, sizeof err), 0);
	bitmap_zero(out);
	for (unsigned v = 0; v < c.nr_vcpus; v++) {
		uint64_t lo, hi;
		wl_slice(&c.wl, c.nr_vcpus, v, &lo, &hi);
		for (uint64_t s = from[v].step; s < to[v].step; s++) {
			uint64_t f = wl_pick(&c.wl, from[v].seed, lo, hi, s);
			assert_true(f != UINT64_MAX);
			bitmap_set(out, f);
		}
	}
}

/* After a harvest, a known set of writes yields exactly that set: replay the
 * steps each vCPU made between two paused harvests. */
static void test_harvest_exact_set(void **state)
{
	const char *cfg = "mem=256M vcpus=2 workload=dirtier:ws=256M,rate=512";
	struct hv_domain *d = h_launch("exact", cfg, true);
	struct mvm_vcpu_regs a[2], b[2];
	struct bitmap got, want;
	struct hv_info info;

	(void)state;
	assert_int_equal(hv_info(d, &info), 0);
	assert_int_equal(bitmap_init(&got, info.nr_frames), 0);
	assert_int_equal(bitmap_init(&want, info.nr_frames), 0);
	assert_int_equal(hv_logdirty_enable(d), 0);
	for (unsigned round = 0; round < h_rounds(20); round++) {
		bitmap_zero(&got);
		assert_true(hv_logdirty_harvest(d, &got, HV_HARVEST_FINAL) >= 0);
		h_regs(d, a);
		assert_int_equal(hv_unpause(d), 0);
		h_sleep_ms(20 + (unsigned)(random() % 80));
		h_wait_steps(d, a[0].step + a[1].step + 1, 10000);
		assert_int_equal(hv_pause(d), 0);
		h_regs(d, b);
		bitmap_zero(&got);
		int64_t n = hv_logdirty_harvest(d, &got, HV_HARVEST_FINAL);
		expected_set(cfg, a, b, &want);
		assert_true(b[0].step + b[1].step > a[0].step + a[1].step);
		assert_int_equal(n, (int64_t)bitmap_count(&want));
		assert_true(bitmap_equal(&got, &want));
		/* A second harvest with no writes yields none. */
		bitmap_zero(&got);
		assert_int_equal(hv_logdirty_harvest(d, &got, HV_HARVEST_FINAL), 0);
		assert_int_equal(bitmap_count(&got), 0);
	}
	bitmap_free(&got);
	bitmap_free(&want);
	h_destroy(d);
}

/* PEEK reports without clearing; the normal harvest then clears. */
static void test_harvest_peek(void **state)
{
	const char *cfg = "mem=32M vcpus=1 workload=dirtier:ws=16M,rate=16";
	struct hv_domain *d = h_launch("peek", cfg, false);
	struct bitmap p1, p2, h;
	struct hv_info info;

	(void)state;
	assert_int_equal(hv_info(d, &info), 0);
	bitmap_init(&p1, info.nr_frames);
	bitmap_init(&p2, info.nr_frames);
	bitmap_init(&h, info.nr_frames);
	assert_int_equal(hv_logdirty_enable(d), 0);
	{
		struct hv_mvm_stats st;
		assert_int_equal(hv_mvm_stats(d, &st), 0);
		h_sleep_ms(100);
		h_wait_steps(d, st.steps + 1, 10000);
	}
	assert_int_equal(hv_pause(d), 0);
	assert_true(hv_logdirty_harvest(d, &p1, HV_HARVEST_PEEK) > 0);
	assert_true(hv_logdirty_harvest(d, &p2, HV_HARVEST_PEEK | HV_HARVEST_FINAL) > 0);
	assert_true(bitmap_equal(&p1, &p2));
	assert_int_equal(hv_logdirty_harvest(d, &h, HV_HARVEST_FINAL), (int64_t)bitmap_count(&p1));
	assert_true(bitmap_equal(&p1, &h));
	bitmap_zero(&h);
	assert_int_equal(hv_logdirty_harvest(d, &h, 0), 0);
	bitmap_free(&p1);
	bitmap_free(&p2);
	bitmap_free(&h);
	h_destroy(d);
}

/* While paused nothing is written: no dirty pages, no steps, same RAM. */
static void test_paused_writes_nothing(void **state)
{
	const char *cfg = "mem=64M vcpus=2 workload=dirtier:ws=64M,rate=max";
	struct hv_domain *d = h_launch("still", cfg, false);
	struct hv_mvm_stats s1, s2;
	struct bitmap b;
	struct hv_info info;
	uint64_t h1, h2;

	(void)state;
	assert_int_equal(hv_info(d, &info), 0);
	bitmap_init(&b, info.nr_frames);
	assert_int_equal(hv_logdirty_enable(d), 0);
	for (unsigned round = 0; round < 5; round++) {
		struct hv_mvm_stats s0;

		assert_int_equal(hv_mvm_stats(d, &s0), 0);
		h_sleep_ms(30);
		h_wait_steps(d, s0.steps + 1, 10000); /* it does write while running */
		assert_int_equal(hv_pause(d), 0);
		assert_int_equal(hv_pause(d), 0); /* idempotent */
		assert_true(hv_logdirty_harvest(d, &b, HV_HARVEST_FINAL) > 0);
		assert_int_equal(hv_mvm_stats(d, &s1), 0);
		h1 = h_ram_hash(d);
		h_sleep_ms(150);
		bitmap_zero(&b);
		assert_int_equal(hv_logdirty_harvest(d, &b, HV_HARVEST_FINAL), 0);
		assert_int_equal(hv_mvm_stats(d, &s2), 0);
		h2 = h_ram_hash(d);
		assert_int_equal(s1.steps, s2.steps);
		assert_true(h1 == h2);
		assert_int_equal(hv_unpause(d), 0);
	}
	bitmap_free(&b);
	h_destroy(d);
}

/* Read the frames set in b from d into their places in shadow. */
static void copy_set(struct hv_domain *d, const struct bitmap *b, char *shadow, uint64_t *frames,
		     void **bufs)
{
	size_t n = 0;
	uint64_t f;

	bitmap_for_each_set(f, b) {
		frames[n] = f;
		bufs[n++] = shadow + f * 4096;
	}
	assert_int_equal(hv_read_pages(d, frames, n, bufs), 0);
}

/*
 * A shadow copy kept up to date only by harvest + read_pages while a 2-vCPU
 * dirtier runs, then pause + FINAL harvest + read, equals guest RAM byte for
 * byte. This is pre-copy migration in miniature.
 */
static void test_shadow_copy(void **state)
{
	const char *cfg = "mem=64M vcpus=2 workload=dirtier:ws=48M,rate=128,pattern=hotcold";
	struct hv_domain *d = h_launch("shadow", cfg, false);
	struct hv_info info;
	struct bitmap dirty, pop;
	uint64_t nr, f, *frames;
	void **bufs;
	char *shadow, *ram;

	(void)state;
	assert_int_equal(hv_info(d, &info), 0);
	nr = info.nr_frames;
	shadow = calloc(nr, info.page_size);
	frames = calloc(nr, sizeof *frames);
	bufs = calloc(nr, sizeof *bufs);
	assert_non_null(shadow);
	bitmap_init(&dirty, nr);
	bitmap_init(&pop, nr);
	for (unsigned round = 0; round < h_rounds(20); round++) {
		/* Iteration 0: enable the log first, then copy what exists. */
		assert_int_equal(hv_logdirty_enable(d), 0);
		memset(shadow, 0, nr * info.page_size);
		assert_true(hv_populated(d, &pop) >= 0);
		copy_set(d, &pop, shadow, frames, bufs);
		/* Iterations while it runs. */
		for (unsigned it = 0; it < 4; it++) {
			h_sleep_ms((unsigned)(random() % 40));
			bitmap_zero(&dirty);
			assert_true(hv_logdirty_harvest(d, &dirty, 0) >= 0);
			copy_set(d, &dirty, shadow, frames, bufs);
		}
		/* Stop and copy. */
		assert_int_equal(hv_pause(d), 0);
		bitmap_zero(&dirty);
		assert_true(hv_logdirty_harvest(d, &dirty, HV_HARVEST_FINAL) >= 0);
		copy_set(d, &dirty, shadow, frames, bufs);
		ram = h_ram_read(d, &nr);
		for (f = 0; f < nr; f++)
			if (memcmp(ram + f * info.page_size, shadow + f * info.page_size,
				   info.page_size))
				fail_msg("round %u: shadow differs from guest RAM at frame %lu", round,
					 (unsigned long)f);
		free(ram);
		assert_int_equal(hv_logdirty_disable(d), 0);
		assert_int_equal(hv_unpause(d), 0);
	}
	free(shadow);
	free(frames);
	free(bufs);
	bitmap_free(&dirty);
	bitmap_free(&pop);
	h_destroy(d);
}

/* populated() follows the memfd's holes: exactly the frames a fill wrote;
 * discard_pages makes holes again. */
static void test_populated(void **state)
{
	const char *cfg = "mem=16M vcpus=2 workload=fill:ws=8M,steps=100";
	struct hv_domain *d = h_launch("pop", cfg, false);
	struct hv_info info;
	struct bitmap pop, want;
	struct mvm_config c;
	char err[128];
	uint64_t drop[3] = { 0, 1, 2 };

	(void)state;
	assert_int_equal(mvm_config_parse(cfg, &c, err, sizeof err), 0);
	h_wait_halted(d, 10000);
	assert_int_equal(hv_info(d, &info), 0);
	bitmap_init(&pop, info.nr_frames);
	bitmap_init(&want, info.nr_frames);
	for (unsigned v = 0; v < 2; v++) {
		uint64_t lo, hi;
		wl_slice(&c.wl, 2, v, &lo, &hi);
		bitmap_set_range(&want, lo, 100);
	}
	assert_int_equal(hv_populated(d, &pop), 200);
	assert_true(bitmap_equal(&pop, &want));
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_discard_pages(d, drop, 3), 0);
	bitmap_clear_range(&want, 0, 3);
	assert_int_equal(hv_populated(d, &pop), 197);
	assert_true(bitmap_equal(&pop, &want));
	bitmap_free(&pop);
	bitmap_free(&want);
	h_destroy(d);
}

/* Misuse and a vanished runtime give errors, not wrong answers. */
static void test_harvest_errors(void **state)
{
	struct hv_domain *d = h_launch("errs", "mem=8M vcpus=1 workload=idle", false);
	struct hv_info info;
	struct bitmap b;
	struct pollfd p;
	uint64_t bad = 1ULL << 40;
	char page[4096];
	void *buf = page;

	(void)state;
	assert_int_equal(hv_info(d, &info), 0);
	bitmap_init(&b, info.nr_frames);
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), -EINVAL); /* log off */
	assert_int_equal(hv_logdirty_enable(d), 0);
	assert_int_equal(hv_logdirty_harvest(d, &b, HV_HARVEST_FINAL), -EBUSY); /* running */
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), 0); /* idle writes nothing */
	assert_int_equal(hv_read_pages(d, &bad, 1, &buf), -ERANGE);
	assert_int_equal(hv_throttle(d, 100), -EINVAL);
	assert_int_equal(hv_throttle(d, 50), 0);
	/* The runtime dies: the pagemap fd answers ESRCH, watch fires. */
	kill(info.pid, SIGKILL);
	waitpid(info.pid, NULL, 0);
	assert_int_equal(hv_watch(d, &p.fd), 0);
	p.events = POLLIN;
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(hv_logdirty_harvest(d, &b, 0), -ESRCH);
	assert_true(hv_pause(d) < 0);
	hv_close(d);
	bitmap_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_harvest_exact_set),
		cmocka_unit_test(test_harvest_peek),
		cmocka_unit_test(test_paused_writes_nothing),
		cmocka_unit_test(test_shadow_copy),
		cmocka_unit_test(test_populated),
		cmocka_unit_test(test_harvest_errors),
	};
	return cmocka_run_group_tests_name("dirtylog", tests, h_group_setup, h_group_teardown);
}
