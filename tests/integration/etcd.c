/* SPDX-License-Identifier: Apache-2.0 */
/* etcd.c — a real etcd for the integration tests; see etcd.h. */
#include "tests/integration/etcd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/mtime.h"
#include "tests/integration/daemon.h"
#include "tests/integration/harness.h"

#define ETCD "/usr/bin/etcd"

extern char **environ;

bool te_available(void)
{
	return access(ETCD, X_OK) == 0;
}

/* Run etcdctl against e (inside its namespace); its exit status, and its
 * standard output in out. */
static int etcdctl(const struct te *e, const char *args, char *out, size_t len)
{
	char cmd[600];
	size_t n = 0;
	FILE *f;
	int st;

	snprintf(cmd, sizeof cmd, "%s%s%s ETCDCTL_API=3 etcdctl --dial-timeout=300ms "
		 "--command-timeout=1s --endpoints=%s %s 2>/dev/null", e->netns ? "ip netns exec " : "",
		 e->netns ? e->netns : "", e->netns ? " env" : "", e->url, args);
	if (!(f = popen(cmd, "r")))
		return -1;
	if (out) {
		n = fread(out, 1, len - 1, f);
		out[n] = '\0';
	} else {
		char sink[256];

		while (fread(sink, 1, sizeof sink, f) > 0)
			;
	}
	st = pclose(f);
	return st;
}

void te_start(struct te *e, const char *dir, const char *ip, const char *netns)
{
	uint16_t cport = td_free_port(), pport = td_free_port();
	char data[320], curl[64], purl[64], cluster[96], log[320], cmd[1024];
	const char *argv[32];
	posix_spawn_file_actions_t fa;
	int argc = 0;

	memset(e, 0, sizeof *e);
	e->netns = netns;
	snprintf(e->dir, sizeof e->dir, "%s/etcd", dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", e->dir, e->dir);
	assert_int_equal(system(cmd), 0);
	snprintf(data, sizeof data, "%s/data", e->dir);
	snprintf(log, sizeof log, "%s/etcd.log", e->dir);
	snprintf(curl, sizeof curl, "http://%s:%u", ip, cport);
	snprintf(purl, sizeof purl, "http://%s:%u", ip, pport);
	snprintf(cluster, sizeof cluster, "t=%s", purl);
	snprintf(e->url, sizeof e->url, "%s", curl);
	if (netns) {
		argv[argc++] = "ip";
		argv[argc++] = "netns";
		argv[argc++] = "exec";
		argv[argc++] = netns;
	}
	argv[argc++] = ETCD;
	argv[argc++] = "--name=t";
	argv[argc++] = "--data-dir";
	argv[argc++] = data;
	argv[argc++] = "--listen-client-urls";
	argv[argc++] = curl;
	argv[argc++] = "--advertise-client-urls";
	argv[argc++] = curl;
	argv[argc++] = "--listen-peer-urls";
	argv[argc++] = purl;
	argv[argc++] = "--initial-advertise-peer-urls";
	argv[argc++] = purl;
	argv[argc++] = "--initial-cluster";
	argv[argc++] = cluster;
	argv[argc++] = "--election-timeout=100";
	argv[argc++] = "--heartbeat-interval=20";
	argv[argc] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	assert_int_equal(posix_spawnp(&e->pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	h_track_pid(e->pid);
	for (uint64_t until = mono_ns() + 10 * NSEC_PER_SEC;; h_sleep_ms(50)) {
		if (etcdctl(e, "endpoint health", NULL, 0) == 0)
			break;
		if (mono_ns() > until)
			fail_msg("etcd at %s did not answer within 10 s (log: %s)", e->url, log);
	}
}

void te_stop(struct te *e)
{
	char cmd[400];

	if (e->pid > 0) {
		kill(e->pid, SIGKILL);
		waitpid(e->pid, NULL, 0);
	}
	e->pid = 0;
	if (e->dir[0]) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", e->dir);
	}
}

char *te_get(const struct te *e, const char *key)
{
	char args[300], out[4096];
	size_t n;

	snprintf(args, sizeof args, "get --print-value-only '%s'", key);
	if (etcdctl(e, args, out, sizeof out) != 0)
		return NULL;
	n = strlen(out);
	if (!n)
		return NULL; /* absent (an empty value prints an empty line) */
	if (out[n - 1] == '\n')
		out[n - 1] = '\0';
	return strdup(out);
}
