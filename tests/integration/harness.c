/* SPDX-License-Identifier: Apache-2.0 */
/* harness.c — see harness.h. */
#include "tests/integration/harness.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "common/xxh.h"
#include "mvm/context.h"

static char run_dir[PATH_MAX];
static pid_t pids[256];
static volatile sig_atomic_t npids;

void h_track_pid(pid_t pid)
{
	if ((size_t)npids < ARRAY_SIZE(pids))
		pids[npids] = pid, npids = npids + 1;
}

/* The test process is being killed (timeout, Ctrl-C) or aborts (a sanitizer):
 * end the runtimes it started, which live in sessions of their own and would
 * otherwise outlive it. Only async-signal-safe calls. */
static void on_fatal_signal(int sig)
{
	for (int i = 0; i < npids; i++)
		kill(pids[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

int h_group_setup(void **state)
{
	static const int fatal[] = { SIGTERM, SIGINT, SIGHUP, SIGABRT };
	char exe[PATH_MAX], *slash;
	ssize_t n;

	(void)state;
	log_init("test", LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ARRAY_SIZE(fatal); i++)
		signal(fatal[i], on_fatal_signal);
	/* The runtime next to the build tree's top, unless FERRY_MVM says. */
	if (!getenv("FERRY_MVM")) {
		n = readlink("/proc/self/exe", exe, sizeof exe - 64);
		if (n > 0) {
			exe[n] = '\0';
			slash = strrchr(exe, '/');
			if (slash) {
				strcpy(slash, "/../../ferry-mvm");
				setenv("FERRY_MVM", exe, 1);
			}
		}
	}
	snprintf(run_dir, sizeof run_dir, "/tmp/ferry-test.XXXXXX");
	if (!mkdtemp(run_dir))
		return -1;
	ferry_set_run_dir(run_dir);
	return 0;
}

int h_group_teardown(void **state)
{
	char cmd[PATH_MAX + 128];
	bool bad;

	(void)state;
	for (int i = 0; i < npids; i++) {
		if (waitpid(pids[i], NULL, WNOHANG) == 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
	npids = 0;
	/* The runtimes log to RUN_DIR/mvm/NAME.log: a sanitizer report there
	 * fails the group even if no test noticed. */
	snprintf(cmd, sizeof cmd,
		 "grep -H -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' '%s'/mvm/*.log 2>/dev/null",
		 run_dir);
	bad = system(cmd) == 0;
	if (bad)
		fprintf(stderr, "not ok - a ferry-mvm runtime reported a sanitizer error (above)\n");
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
	if (system(cmd) != 0 || bad)
		return -1;
	return 0;
}

struct hv_domain *h_launch(const char *name, const char *config, bool paused)
{
	struct hv_domain *d = NULL;
	char uri[128];
	pid_t pid;

	assert_int_equal(hv_mvm_launch(name, config, paused, &pid), 0);
	h_track_pid(pid);
	snprintf(uri, sizeof uri, "mvm:%s", name);
	assert_int_equal(hv_open(uri, &d), 0);
	return d;
}

void h_destroy(struct hv_domain *d)
{
	struct hv_info i;

	if (!d)
		return;
	if (hv_info(d, &i) == 0) {
		hv_destroy(d);
		waitpid(i.pid, NULL, 0);
	}
	hv_close(d);
}

void *h_ram_read(struct hv_domain *d, uint64_t *nr)
{
	struct hv_info info;
	enum { BATCH = 256 };
	uint64_t frames[BATCH];
	void *bufs[BATCH];
	char *ram;

	assert_int_equal(hv_info(d, &info), 0);
	ram = malloc(info.nr_frames * info.page_size);
	assert_non_null(ram);
	for (uint64_t f = 0; f < info.nr_frames; f += BATCH) {
		size_t n = MIN((uint64_t)BATCH, info.nr_frames - f);
		for (size_t i = 0; i < n; i++) {
			frames[i] = f + i;
			bufs[i] = ram + (f + i) * info.page_size;
		}
		assert_int_equal(hv_read_pages(d, frames, n, bufs), 0);
	}
	*nr = info.nr_frames;
	return ram;
}

uint64_t h_ram_hash(struct hv_domain *d)
{
	uint64_t n, h;
	void *ram = h_ram_read(d, &n);

	h = XXH3_64bits(ram, n * 4096);
	free(ram);
	return h;
}

void h_wait_halted(struct hv_domain *d, int timeout_ms)
{
	struct hv_info info;
	struct hv_mvm_stats st;
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	assert_int_equal(hv_info(d, &info), 0);
	for (;;) {
		assert_int_equal(hv_mvm_stats(d, &st), 0);
		if (st.halted == info.nr_vcpus)
			return;
		if (mono_ns() > until)
			fail_msg("guest did not halt within %d ms (%u of %u vCPUs)", timeout_ms,
				 st.halted, info.nr_vcpus);
		h_sleep_ms(10);
	}
}

void h_wait_steps(struct hv_domain *d, uint64_t steps, int timeout_ms)
{
	struct hv_mvm_stats st;
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;;) {
		assert_int_equal(hv_mvm_stats(d, &st), 0);
		if (st.steps >= steps)
			return;
		if (mono_ns() > until)
			fail_msg("guest made %lu of %lu steps within %d ms", (unsigned long)st.steps,
				 (unsigned long)steps, timeout_ms);
		h_sleep_ms(5);
	}
}

unsigned h_regs(struct hv_domain *d, struct mvm_vcpu_regs *regs)
{
	struct mvm_context c;
	char err[128];
	void *blob;
	size_t len;

	assert_int_equal(hv_save_context(d, &blob, &len), 0);
	assert_int_equal(mvm_ctx_decode(blob, len, 0, &c, err, sizeof err), 0);
	free(blob);
	memcpy(regs, c.regs, c.nr_vcpus * sizeof *regs);
	return c.nr_vcpus;
}

void h_sleep_ms(unsigned ms)
{
	mono_sleep_ns((uint64_t)ms * NSEC_PER_MSEC);
}

unsigned h_rounds(unsigned def)
{
	const char *e = getenv("FERRY_TEST_ROUNDS");
	uint64_t v;

	return e && parse_u64(e, 1, 100000, &v) == 0 ? (unsigned)v : def;
}

void h_proc_status(pid_t pid, const char *tid, const char *key, char *out, size_t len)
{
	char path[128], line[512];
	size_t kl = strlen(key);
	FILE *f;

	if (tid)
		snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid, tid);
	else
		snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	assert_non_null(f = fopen(path, "r"));
	out[0] = '\0';
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, kl) != 0 || line[kl] != ':')
			continue;
		for (char *save, *t = strtok_r(line + kl + 1, " \t\n", &save); t;
		     t = strtok_r(NULL, " \t\n", &save))
			snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? " " : "", t);
		break;
	}
	fclose(f);
}
