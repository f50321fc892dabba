/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api.h — the control API's types, shared by ferryd (daemon/) and its
 * client (cli/): the shape of every request (docs/ferryd.md) — which ops
 * exist, their members and types, checked before any work is done, on the
 * loop thread, and kept apart from the handlers so that a fuzzer can drive
 * it — and the names the replies use for a job's state.
 */
#ifndef FERRY_API_API_H
#define FERRY_API_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum api_type { API_STR, API_INT, API_BOOL, API_SIZE /* "1G" or a positive integer */ };

struct api_member {
	const char *key;
	enum api_type type;
	bool required;
};

struct api_op {
	const char *name;
	bool slow;             /* talks to a guest or the disk: runs on a task thread */
	const char *slow_with; /* ... and so does a request with this member (a wait) */
	struct api_member m[12];
};

/* A failed reply's "kind" (beside "error"): what went wrong, for callers
 * that act on it (the remote API's HTTP status: api/http.h). */
#define API_ERR_INVALID "invalid"         /* the request: a value, a name */
#define API_ERR_NOT_FOUND "not_found"     /* no such VM or job here */
#define API_ERR_CONFLICT "conflict"       /* not now: busy, exists, its state */
#define API_ERR_UNAVAILABLE "unavailable" /* stopping, a service unreachable */
#define API_ERR_FAILED "failed"           /* it was tried and failed */

/* Whether op has the member key. */
bool api_takes(const struct api_op *op, const char *key);

/* Whether req (checked, of op) must run on a task thread. */
bool api_slow(const struct api_op *op, const json_t *req);

/* A job's state as replies say it ("state"); daemon/job.c maps its state
 * machine onto these. */
enum api_job_state {
	API_JOB_ACTIVE,
	API_JOB_COMPLETED,
	API_JOB_FAILED,
	API_JOB_CANCELLED,
	API_JOB_UNRESOLVED,
	API_JOB_STATE_MAX
};
const char *api_job_state_name(enum api_job_state s);
/* The state a reply names; API_JOB_STATE_MAX if none. */
enum api_job_state api_job_state_parse(const char *name);

/* 0 and *op if req is a well-formed request; -EINVAL with a sentence in err
 * otherwise (not an object, no op, unknown op, a member missing, unknown or
 * of the wrong type, a string over 1 KiB). */
int api_check(const json_t *req, const struct api_op **op, char *err, size_t errlen);

#endif
