/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec.h — carry out a plan (plan.h) on a live pool: each wave's moves
 * started at once through the source hosts' remote APIs (hostapi.h), each
 * followed to its end, the next wave only once the whole wave has ended and
 * etcd's record (inventory.h) shows every VM of it where it went.
 *
 * Stopping is always clean: after a failed move, when etcd or a host cannot
 * be reached, or when asked (*stop), no new move starts, the moves under way
 * are followed to their ends, and the result says where it stopped. Every
 * VM then runs on exactly one host (the migration engine's rules), so
 * planning again from the record resumes the work. Each start carries an
 * Idempotency-Key, and a start that got no answer is retried with the same
 * key: a move is never started twice.
 */
#ifndef FERRY_POOL_EXEC_H
#define FERRY_POOL_EXEC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "coord/etcd.h"
#include "pool/hostapi.h"
#include "pool/inventory.h"
#include "pool/plan.h"

struct pool_exec {
	const struct hostapi_tls *tls;
	struct etcd *e;
	const struct pool_inv *inv;  /* the pool the plan was made from */
	const struct plan *plan;
	const int *vm_of;            /* plan VM index -> inv->vms index */
	const char *run_id;          /* in every Idempotency-Key: "drain-3fa2..." */
	const char *options;         /* more members of each migrate body ("" or
				      * "\"downtime_ms\":300"), or NULL */
	int job_timeout_ms;          /* a move that takes longer is given up on */
	volatile sig_atomic_t *stop; /* set: stop cleanly after the moves under way */
	/* One line per step ("wave 1/3: web1 host-a -> host-c: started"). */
	void (*say)(void *ctx, const char *line);
	void *ctx;
};

struct pool_exec_result {
	unsigned moved, failed;
	unsigned waves_done;
	char why[1024];              /* why it stopped early, "" if it did not */
};

/* 0 when every move is done; -EIO (a move failed), -EHOSTUNREACH (etcd or a
 * host did not answer), -EINTR (stopped) or -ETIMEDOUT, with res->why. */
int pool_exec_run(const struct pool_exec *x, struct pool_exec_result *res);

#endif
