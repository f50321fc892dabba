/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_snapshot.c — save a running microVM to a file and restore it, with
 * real ferry-mvm processes.
 */
#include "tests/integration/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint/snapshot.h"
#include "checkpoint/writer.h"
#include "common/util.h"

static char dir[64];

/* dir/name; four buffers in turn, so that one call may use several. */
static const char *path(const char *name)
{
	static char p[4][128];
	static unsigned k;
	char *b = p[k++ % 4];

	snprintf(b, sizeof p[0], "%s/%s", dir, name);
	return b;
}

static off_t file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? st.st_size : -1;
}

static void verify_ok(struct hv_domain *d)
{
	struct mvm_verify v;

	assert_int_equal(hv_mvm_verify(d, &v), 0);
	if (v.why != MVM_VERIFY_OK)
		fail_msg("verify: %s", v.msg);
}

static struct snapshot_opts opts(void)
{
	struct snapshot_opts o = { 0 };

	codec_opts_default(&o.codec);
	return o;
}

/* No stray temporary files next to the snapshots. */
static void no_tmp_files(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp-", dir);
	assert_int_not_equal(system(cmd), 0);
}

/* A 1 GiB dirtier saved and restored continues from the saved step; verify
 * passes there. */
static void test_save_restore_dirtier(void **state)
{
	const char *cfg = "mem=1G vcpus=2 workload=dirtier:ws=128M,rate=64";
	struct hv_domain *d = h_launch("snap", cfg, false), *r;
	struct snapshot_opts o = opts();
	struct snapshot_stats st;
	struct hv_mvm_stats s2;
	struct mvm_vcpu_regs a[2], b[2];
	struct hv_info info;
	char err[512];

	(void)state;
	h_sleep_ms(500);
	h_wait_steps(d, 1000, 10000);
	/* Pause to know the step it is saved at; the save keeps it paused, then
	 * stops it. */
	assert_int_equal(hv_pause(d), 0);
	h_regs(d, a);
	assert_true(a[0].step + a[1].step >= 1000);
	if (snapshot_save(d, path("dirtier.snap"), &o, &st, err, sizeof err))
		fail_msg("save: %s", err);
	hv_close(d); /* destroyed by the save */
	assert_true(st.bytes > 10 * 4096);
	o.paused = true;
	assert_int_equal(snapshot_restore(path("dirtier.snap"), NULL, &o, &r, &st, err, sizeof err), 0);
	assert_int_equal(hv_info(r, &info), 0);
	h_track_pid(info.pid);
	assert_int_equal(info.paused, 1);
	h_regs(r, b);
	for (unsigned v = 0; v < 2; v++) {
		assert_int_equal(b[v].step, a[v].step); /* exactly the saved step */
		assert_int_equal(b[v].seed, a[v].seed);
	}
	verify_ok(r);
	assert_int_equal(hv_unpause(r), 0);
	h_wait_steps(r, a[0].step + a[1].step + 1, 10000);
	assert_int_equal(hv_mvm_stats(r, &s2), 0);
	assert_true(s2.steps > a[0].step + a[1].step); /* and it goes on */
	verify_ok(r);
	h_destroy(r);
}

/* All holes, and all zeros: files of a few KiB. A fill guest: its data. */
static void test_file_sizes(void **state)
{
	struct hv_domain *d, *r;
	struct snapshot_opts o = opts();
	struct snapshot_stats st;
	struct hv_info info;
	char err[512];
	static char zero[4096];

	(void)state;
	o.keep_running = true;
	d = h_launch("holes", "mem=1G vcpus=1 workload=idle", false);
	assert_int_equal(snapshot_save(d, path("holes.snap"), &o, &st, err, sizeof err), 0);
	assert_true(file_size(path("holes.snap")) < 8192);

	/* Write zeros into every page (through the memfd: populated, zero). */
	assert_int_equal(hv_info(d, &info), 0);
	{
		uint64_t f[512];
		const void *b[512];
		for (uint64_t base = 0; base < info.nr_frames; base += 512) {
			for (unsigned i = 0; i < 512; i++) {
				f[i] = base + i;
				b[i] = zero;
			}
			assert_int_equal(hv_write_pages(d, f, 512, b), 0);
		}
		struct bitmap pop;
		bitmap_init(&pop, info.nr_frames);
		assert_int_equal(hv_populated(d, &pop), (int64_t)info.nr_frames);
		bitmap_free(&pop);
	}
	assert_int_equal(snapshot_save(d, path("zeros.snap"), &o, &st, err, sizeof err), 0);
	assert_true(file_size(path("zeros.snap")) < 8192);
	assert_int_equal(st.zero_frames, info.nr_frames);
	h_destroy(d);

	/* fill: 64 MiB of incompressible data, and little more. */
	d = h_launch("filled", "mem=256M vcpus=2 workload=fill:ws=64M", false);
	h_wait_halted(d, 60000);
	assert_int_equal(snapshot_save(d, path("fill.snap"), &o, &st, err, sizeof err), 0);
	{
		off_t sz = file_size(path("fill.snap"));
		assert_true(sz >= 64 << 20 && sz < (64 << 20) + (64 << 20) / 100);
	}
	verify_ok(d);
	h_destroy(d);
	assert_int_equal(snapshot_restore(path("fill.snap"), "filled-2", &o, &r, &st, err,
					  sizeof err), 0);
	assert_int_equal(hv_info(r, &info), 0);
	h_track_pid(info.pid);
	verify_ok(r);
	h_destroy(r);
	no_tmp_files();
}

/* A write error (file size limit, as a full disk would) leaves the guest
 * running and no partial file. */
static void test_save_write_error(void **state)
{
	struct hv_domain *d = h_launch("nospace", "mem=64M vcpus=1 workload=fill:ws=32M", false);
	struct snapshot_opts o = opts();
	struct snapshot_stats st;
	struct rlimit old, lim = { 1 << 20, 1 << 20 };
	struct hv_info info;
	char err[512];
	int r;

	(void)state;
	h_wait_halted(d, 60000);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	r = snapshot_save(d, path("full.snap"), &o, &st, err, sizeof err);
	setrlimit(RLIMIT_FSIZE, &old);
	assert_int_equal(r, -EFBIG);
	assert_non_null(strstr(err, "File too large"));
	assert_int_equal(file_size(path("full.snap")), -1);
	no_tmp_files();
	assert_int_equal(hv_info(d, &info), 0);
	assert_int_equal(info.paused, 0); /* running, as it was */
	verify_ok(d);
	h_destroy(d);
}

/* A corrupt or truncated file is refused and leaves no guest behind. */
static void test_restore_bad_file(void **state)
{
	struct hv_domain *d = h_launch("good", "mem=16M vcpus=1 workload=fill:ws=1M", false), *r;
	struct snapshot_opts o = opts();
	struct snapshot_stats st;
	char err[512], cmd[600];
	int fd;

	(void)state;
	h_wait_halted(d, 10000);
	o.keep_running = true;
	assert_int_equal(snapshot_save(d, path("good.snap"), &o, &st, err, sizeof err), 0);
	h_destroy(d);
	/* Flip a byte in the middle of the page data. */
	snprintf(cmd, sizeof cmd, "cp %s %s", path("good.snap"), path("bad.snap"));
	assert_int_equal(system(cmd), 0);
	fd = open(path("bad.snap"), O_RDWR);
	assert_true(fd >= 0);
	{
		unsigned char c;
		off_t at = file_size(path("bad.snap")) / 2;
		assert_int_equal(pread(fd, &c, 1, at), 1);
		c ^= 0x10;
		assert_int_equal(pwrite(fd, &c, 1, at), 1);
	}
	close(fd);
	assert_int_equal(snapshot_restore(path("bad.snap"), "bad", &o, &r, &st, err, sizeof err),
			 -EBADMSG);
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(hv_open("mvm:bad", &r), -ENOENT);
	/* Truncated at a record boundary would lack END; anywhere, refused. */
	assert_int_equal(truncate(path("good.snap"), file_size(path("good.snap")) - 32), 0);
	assert_int_equal(snapshot_restore(path("good.snap"), "cut", &o, &r, &st, err, sizeof err),
			 -EBADMSG);
	assert_int_equal(hv_open("mvm:cut", &r), -ENOENT);
	/* Restoring over a name that is taken is refused. */
	d = h_launch("taken", "mem=4M vcpus=1 workload=idle", false);
	assert_int_equal(snapshot_restore(path("holes.snap"), "taken", &o, &r, &st, err, sizeof err),
			 -EEXIST);
	h_destroy(d);
}

/* Write a crafted snapshot of cfg: frame 3 sent with data and then as a zero
 * extent; with the given number of copies of a real context. */
static void craft(const char *file, const char *cfg, const void *ctx, size_t clen,
		  unsigned contexts)
{
	struct stream_writer w;
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct xsink sink = { xsink_fd_writev, &fd };
	static uint8_t page[4096];
	uint64_t f = 3;
	void *b = page;

	assert_true(fd >= 0);
	memset(page, 0xab, sizeof page);
	assert_int_equal(stream_writer_start(&w, sink, STREAM_KIND_SNAPSHOT, 4096, 1024, "mvm",
					     "crafted", cfg, NULL, 0), 0);
	assert_int_equal(stream_write_pages(&w, NULL, &f, &b, 1, NULL), 0);
	assert_int_equal(stream_write_zero_extent(&w, 2, 3), 0);
	for (unsigned i = 0; i < contexts; i++)
		assert_int_equal(stream_write_context(&w, ctx, clen), 0);
	assert_int_equal(stream_write_end(&w), 0);
	close(fd);
}

/* A zero extent after a page of the same frame zeroes it; a snapshot must
 * carry exactly one context. */
static void test_restore_rules(void **state)
{
	const char *cfg = "mem=4194304 vcpus=1 workload=idle";
	struct hv_domain *d = h_launch("ctxsrc", cfg, true), *r;
	struct snapshot_opts o = opts();
	struct snapshot_stats st;
	struct hv_info info;
	uint8_t page[4096];
	void *ctx, *pb = page;
	uint64_t f = 3;
	size_t clen;
	char err[512];

	(void)state;
	assert_int_equal(hv_save_context(d, &ctx, &clen), 0);
	h_destroy(d);
	o.paused = true;
	craft(path("crafted.snap"), cfg, ctx, clen, 1);
	assert_int_equal(snapshot_restore(path("crafted.snap"), NULL, &o, &r, &st, err, sizeof err), 0);
	assert_int_equal(hv_info(r, &info), 0);
	h_track_pid(info.pid);
	assert_int_equal(hv_read_pages(r, &f, 1, &pb), 0);
	for (size_t i = 0; i < sizeof page; i++)
		if (page[i])
			fail_msg("frame 3 byte %zu is 0x%x after a zero extent", i, page[i]);
	h_destroy(r);
	for (unsigned n = 0; n <= 2; n += 2) {
		craft(path("crafted.snap"), cfg, ctx, clen, n);
		assert_int_equal(snapshot_restore(path("crafted.snap"), NULL, &o, &r, &st, err,
						  sizeof err), -EBADMSG);
		assert_non_null(strstr(err, "exactly one CONTEXT"));
		assert_int_equal(hv_open("mvm:crafted", &r), -ENOENT);
	}
	free(ctx);
}

/* The command line: ferry save / ferry restore, their exit codes and --json. */
static void test_cli(void **state)
{
	struct hv_domain *d = h_launch("cli", "mem=16M vcpus=1 workload=fill:ws=2M", false), *r;
	char ferry[600], cmd[1400], out[512];
	const char *mvm = getenv("FERRY_MVM");
	struct hv_info info;
	FILE *p;

	(void)state;
	assert_non_null(mvm);
	snprintf(ferry, sizeof ferry, "%.*s/ferry --run-dir %s", (int)(strrchr(mvm, '/') - mvm),
		 mvm, ferry_run_dir());
	h_wait_halted(d, 10000);
	hv_close(d); /* the CLI opens it itself */
	snprintf(cmd, sizeof cmd, "%s save --json mvm:cli %s", ferry, path("cli.snap"));
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof out, p));
	assert_int_equal(pclose(p), 0);
	assert_non_null(strstr(out, "\"saved\":\"mvm:cli\""));
	assert_int_equal(hv_open("mvm:cli", &r), -ENOENT); /* stopped after the save */
	snprintf(cmd, sizeof cmd, "%s restore --name cli2 %s >/dev/null", ferry, path("cli.snap"));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(hv_open("mvm:cli2", &r), 0);
	assert_int_equal(hv_info(r, &info), 0);
	h_track_pid(info.pid);
	verify_ok(r);
	h_destroy(r);
	/* Not a snapshot: exit status 1 and a reason. */
	snprintf(cmd, sizeof cmd, "%s restore %s 2>&1", ferry, "/etc/hostname");
	p = popen(cmd, "r");
	assert_non_null(fgets(out, sizeof out, p));
	assert_int_equal(WEXITSTATUS(pclose(p)), 1);
	assert_non_null(strstr(out, "not a ferry stream"));
	snprintf(cmd, sizeof cmd, "%s save mvm:nobody %s 2>/dev/null", ferry, path("x.snap"));
	assert_int_equal(WEXITSTATUS(system(cmd)), 1);
}

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/ferry-snap.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	return h_group_setup(state);
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		return -1;
	return h_group_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_save_restore_dirtier),
		cmocka_unit_test(test_file_sizes),
		cmocka_unit_test(test_save_write_error),
		cmocka_unit_test(test_restore_bad_file),
		cmocka_unit_test(test_restore_rules),
		cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests_name("snapshot", tests, setup, teardown);
}
