/* SPDX-License-Identifier: Apache-2.0 */
/*
 * etcd.h — a real etcd (Debian's etcd-server) for the integration tests: a
 * single member with its own data directory, on loopback or inside a
 * network namespace, with short election timings (--election-timeout 100,
 * --heartbeat-interval 20) so that 1 s leases expire on time. Its PID is
 * remembered for clean-up, also after a failed test.
 */
#ifndef FERRY_TESTS_ETCD_H
#define FERRY_TESTS_ETCD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct te {
	pid_t pid;
	char dir[300];
	char url[64];    /* http://IP:PORT, for --coord */
	const char *netns;
};

/* Whether etcd is installed (scripts/setup installs it). */
bool te_available(void);
/* Start it with its files under dir/etcd, listening on ip (in netns if not
 * NULL); returns once it answers. Asserts. */
void te_start(struct te *e, const char *dir, const char *ip, const char *netns);
/* SIGKILL it, reap it, remove its files. */
void te_stop(struct te *e);
/* A key's value, or NULL if absent (the caller frees). */
char *te_get(const struct te *e, const char *key);

#endif
