/* SPDX-License-Identifier: Apache-2.0 */
/*
 * checks.h — checks the daemon tests (test_ferryd, test_transport) share:
 * soft failures, and the outcome of a migration as the guest, both daemons
 * and their runtimes see it.
 */
#ifndef FERRY_TESTS_CHECKS_H
#define FERRY_TESTS_CHECKS_H

#include <stdbool.h>

#include <jansson.h>

#include "tests/integration/daemon.h"

#define MEM "256M"
#define PTO 3000 /* default peer timeout of the test daemons, ms */

/* JSON text of o (leaked on failure paths only). */
char *dumps(const json_t *o);
/* Does the file at path contain text? */
bool file_has(const char *path, const char *text);
/* Does s contain any of words (NULL-terminated), ignoring case? */
bool contains_any(const char *s, const char *const *words);

/*
 * Soft failures: a wrong but passing state (e.g. a race in what the API
 * shows) is counted and the first one kept; the test carries on, so that
 * one such bug does not hide the others, and fails at its end (passed()).
 */
void soft_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* End of a test: pass only if nothing soft failed. */
void passed(void);
/* Forget soft failures (a test's teardown). */
void soft_reset(void);
/* $FERRY_TEST_TRACE: time-stamped progress lines. */
void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The guest runs on d as it should after a rollback: listed as running, its
 * runtime neither paused, nor logging, nor throttled, nor incoming, making
 * progress (if steps), and intact. */
void assert_intact(struct td *d, const char *vm, bool steps);
/* vm is not on d (after up to timeout_ms): not listed, no runtime. */
void assert_absent(struct td *d, const char *vm, int timeout_ms);
/* d's side of job id (or its jobs for vm) is settled, and unless
 * completed_ok none claims completion. */
void peer_jobs_settled(struct td *d, const char *id, const char *vm, bool completed_ok);
/* After the source's job completed, d must list vm as running. */
void wait_dest_running(struct td *s, struct td *d, const char *vm, const json_t *job);
/* Move vm from s to d and check both sides; returns the source's job. */
json_t *move_ok(struct td *s, struct td *d, const char *vm);
/* fill:ws=W with one vCPU has written everything after W/4K steps. */
void wait_filled(struct td *d, const char *vm, double steps);
/* Open fds of d's process. */
int fds_of(const struct td *d);

/* Protection: ask p to protect vm with a standby at peer ("ADDR:PORT"),
 * epochs of 25 ms, heartbeat 300 ms, fenced unless unsafe; returns the job
 * id (the caller frees) once p says it is protected. */
char *protect_ok(struct td *p, const char *peer, const char *vm, bool unsafe);
/* A host is lost: its ferryd and every runtime it started, SIGKILLed. */
void kill_host(struct td *d);
/* Wait until job id on d is in stage want; returns the job (caller decrefs). */
json_t *wait_stage(struct td *d, const char *id, const char *want, int timeout_ms);

#endif
