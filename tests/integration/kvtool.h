/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvtool.h — ferry-kv from the integration tests: load runs in the
 * background, stopped on request, and checks, each a real process ($FERRY_KV,
 * else the build tree's) remembered for clean-up.
 */
#ifndef FERRY_TESTS_KVTOOL_H
#define FERRY_TESTS_KVTOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kt_load {
	pid_t pid;
	char out[300]; /* its stdout: the JSON summary */
	/* Its summary, once stopped. */
	uint64_t requests, acked, failed, unknown, reconnects;
	double max_wait_ms, per_s, p50_ms, p99_ms;
};

/* The kvstore guests' workload in these tests: room for 64 connections and
 * 256 clients. */
#define KT_KVCONF "kvstore:conns=64,ring=32K,clients=256"

struct td;
/* Create a kvstore guest vm (128 MiB, one vCPU) on daemon d, serving at
 * 127.0.0.1:port; asserts. */
void kt_create(struct td *d, const char *vm, uint16_t port);

const char *kt_path(void);
/* Run ferry-kv in this network namespace (NULL: here). */
extern const char *kt_netns;
/* Start `ferry-kv load ADDRS --history HIST` plus extra (space-separated
 * arguments, or NULL) in the background; its output goes to dir/TAG.out. */
void kt_load_start(struct kt_load *l, const char *dir, const char *tag, const char *addrs,
		   const char *hist, const char *extra);
/* SIGTERM it, wait for it to drain and exit (asserts it exits 0 within
 * 60 s), and read its summary. */
void kt_load_stop(struct kt_load *l);
/* Run `ferry-kv check ADDR --history H...` (n histories); its exit status,
 * its output in out. */
int kt_check(const char *dir, const char *addr, const char *const *hists, unsigned n, char *out,
	     size_t outlen);

#endif
