/* SPDX-License-Identifier: Apache-2.0 */
/* kvtool.c — ferry-kv from the integration tests; see kvtool.h. */
#include "tests/integration/kvtool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/mtime.h"
#include "tests/integration/daemon.h"
#include "tests/integration/harness.h"

extern char **environ;

const char *kt_path(void)
{
	static char p[PATH_MAX + 32];
	const char *e = getenv("FERRY_KV");
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (e && *e)
		return e;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return "ferry-kv";
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')))
		*slash = '\0';
	snprintf(p, sizeof p, "%s/../../ferry-kv", exe);
	return p;
}

const char *kt_netns;

static pid_t spawn(const char *const *argv_in, const char *out)
{
	const char *argv[80] = { "/usr/sbin/ip", "netns", "exec", kt_netns };
	const char *const *argv_p = argv_in;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int r, n = 4;

	if (kt_netns) {
		for (int i = 0; argv_in[i] && n < 79; i++)
			argv[n++] = argv_in[i];
		argv[n] = NULL;
		argv_p = argv;
	}

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	r = posix_spawn(&pid, argv_p[0], &fa, NULL, (char *const *)argv_p, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		fail_msg("cannot run %s: %s", argv_p[0], strerror(r));
	h_track_pid(pid);
	return pid;
}

static int wait_exit(pid_t pid, int timeout_ms, const char *what)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	int st;

	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (mono_ns() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("%s did not exit within %d ms", what, timeout_ms);
		}
		h_sleep_ms(20);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void kt_load_start(struct kt_load *l, const char *dir, const char *tag, const char *addrs,
		   const char *hist, const char *extra)
{
	const char *argv[40] = { kt_path(), "load", addrs, "--history", hist };
	char buf[512], *save = NULL, *tok;
	int argc = 5;

	memset(l, 0, sizeof *l);
	snprintf(l->out, sizeof l->out, "%s/%s.out", dir, tag);
	snprintf(buf, sizeof buf, "%s", extra ? extra : "");
	for (tok = strtok_r(buf, " ", &save); tok && argc < 39; tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	l->pid = spawn(argv, l->out);
}

void kt_load_stop(struct kt_load *l)
{
	char text[2048] = "";
	FILE *f;
	int st;

	kill(l->pid, SIGTERM);
	st = wait_exit(l->pid, 60000, "ferry-kv load");
	if ((f = fopen(l->out, "re"))) {
		size_t n = fread(text, 1, sizeof text - 1, f);

		text[n] = '\0';
		fclose(f);
	}
	if (st != 0)
		fail_msg("ferry-kv load exited %d: %s", st, text);
	if (sscanf(strstr(text, "\"requests\"") ? strstr(text, "\"requests\"") : "",
		   "\"requests\":%lu,\"acked\":%lu,\"failed\":%lu,\"unknown\":%lu", &l->requests,
		   &l->acked, &l->failed, &l->unknown) != 4)
		fail_msg("ferry-kv load said: %s", text);
	if (strstr(text, "\"reconnects\":"))
		sscanf(strstr(text, "\"reconnects\":"), "\"reconnects\":%lu", &l->reconnects);
	if (strstr(text, "\"per_s\":"))
		sscanf(strstr(text, "\"per_s\":"), "\"per_s\":%lf,\"latency_p50_ms\":%lf,"
		       "\"latency_p99_ms\":%lf,\"max_wait_ms\":%lf", &l->per_s, &l->p50_ms,
		       &l->p99_ms, &l->max_wait_ms);
}

int kt_check(const char *dir, const char *addr, const char *const *hists, unsigned n, char *out,
	     size_t outlen)
{
	const char **argv = calloc(2 * n + 4, sizeof *argv);
	char path[300];
	int argc = 3, st;
	FILE *f;

	assert_non_null(argv);
	argv[0] = kt_path();
	argv[1] = "check";
	argv[2] = addr;
	for (unsigned i = 0; i < n; i++) {
		argv[argc++] = "--history";
		argv[argc++] = hists[i];
	}
	argv[argc] = NULL;
	snprintf(path, sizeof path, "%s/check.out", dir);
	st = wait_exit(spawn(argv, path), 120000, "ferry-kv check");
	free(argv);
	out[0] = '\0';
	if ((f = fopen(path, "re"))) {
		size_t k = fread(out, 1, outlen - 1, f);

		out[k] = '\0';
		fclose(f);
	}
	return st;
}

void kt_create(struct td *d, const char *vm, uint16_t port)
{
	char net[32];

	snprintf(net, sizeof net, "127.0.0.1:%u", port);
	json_decref(td_ok(d, "{s:s, s:s, s:s, s:i, s:s, s:s}", "op", "create", "name", vm, "mem",
			  "128M", "vcpus", 1, "workload", KT_KVCONF, "net", net));
}
