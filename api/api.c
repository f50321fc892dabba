/* SPDX-License-Identifier: Apache-2.0 */
/* api.c — control request validation and the API's names; see api.h. */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

#define STR_MAX 1024

static const struct api_op ops[] = {
	{ "version", false, NULL, { { 0 } } },
	{ "host", false, NULL, { { 0 } } },
	{ "create", true, NULL,
	  { { "name", API_STR, true }, { "mem", API_SIZE, false }, { "vcpus", API_INT, false },
	    { "workload", API_STR, false }, { "paused", API_BOOL, false },
	    { "net", API_STR, false } } },
	{ "adopt", true, NULL, { { "uri", API_STR, true } } },
	{ "list", false, NULL, { { 0 } } },
	{ "info", true, NULL, { { "name", API_STR, true } } },
	{ "destroy", true, NULL, { { "name", API_STR, true } } },
	{ "verify", true, NULL, { { "name", API_STR, true } } },
	{ "migrate", true, NULL,
	  { { "name", API_STR, true }, { "dest", API_STR, true }, { "downtime_ms", API_INT, false },
	    { "max_iters", API_INT, false }, { "bandwidth", API_INT, false },
	    { "on_no_converge", API_STR, false }, { "peer_timeout_ms", API_INT, false },
	    { "channels", API_INT, false }, { "postcopy", API_BOOL, false },
	    { "idempotency", API_STR, false } } },
	{ "jobs", false, NULL, { { 0 } } },
	{ "status", false, "wait_ms", { { "job", API_STR, true }, { "wait_ms", API_INT, false } } },
	{ "cancel", false, NULL, { { "job", API_STR, true } } },
	{ "resume", false, NULL, { { "job", API_STR, true }, { "dest", API_STR, false } } },
	{ "resolve", false, NULL, { { "job", API_STR, true }, { "force", API_STR, false } } },
	{ "protect", true, NULL,
	  { { "name", API_STR, true }, { "peer", API_STR, true }, { "epoch_ms", API_INT, false },
	    { "heartbeat_ms", API_INT, false }, { "channels", API_INT, false },
	    { "unsafe_no_fencing", API_BOOL, false }, { "idempotency", API_STR, false } } },
	{ "unprotect", true, NULL, { { "name", API_STR, true } } },
	{ "takeover", false, NULL, { { "name", API_STR, true }, { "force", API_BOOL, true } } },
};

static bool plain_string(const json_t *v)
{
	return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool type_ok(const json_t *v, enum api_type t)
{
	switch (t) {
	case API_STR: return plain_string(v);
	case API_INT: return json_is_integer(v);
	case API_BOOL: return json_is_boolean(v);
	case API_SIZE: return plain_string(v) || (json_is_integer(v) && json_integer_value(v) > 0);
	}
	return false;
}

static const char *const type_names[] = { "a string (without NUL bytes)", "an integer",
					  "true or false", "a size (\"1G\" or bytes)" };

int api_check(const json_t *req, const struct api_op **out, char *err, size_t errlen)
{
	const struct api_op *op = NULL;
	const json_t *opv, *v;
	const char *key;

	if (!json_is_object(req)) {
		snprintf(err, errlen, "a request is a JSON object, e.g. {\"op\":\"list\"}");
		return -EINVAL;
	}
	opv = json_object_get(req, "op");
	if (!opv || !plain_string(opv)) {
		snprintf(err, errlen, "the request has no \"op\" string");
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (strcmp(ops[i].name, json_string_value(opv)) == 0)
			op = &ops[i];
	if (!op) {
		snprintf(err, errlen, "unknown op \"%.64s\"", json_string_value(opv));
		return -EINVAL;
	}
	for (const struct api_member *m = op->m; m->key; m++) {
		v = json_object_get(req, m->key);
		if (!v && m->required) {
			snprintf(err, errlen, "%s: \"%s\" is required", op->name, m->key);
			return -EINVAL;
		}
		if (v && !type_ok(v, m->type)) {
			snprintf(err, errlen, "%s: \"%s\" must be %s", op->name, m->key,
				 type_names[m->type]);
			return -EINVAL;
		}
		if (v && json_is_string(v) && json_string_length(v) > STR_MAX) {
			snprintf(err, errlen, "%s: \"%s\" is longer than %d bytes", op->name, m->key,
				 STR_MAX);
			return -EINVAL;
		}
	}
	json_object_foreach((json_t *)req, key, v) {
		const struct api_member *m = op->m;

		if (strcmp(key, "op") == 0)
			continue;
		while (m->key && strcmp(m->key, key) != 0)
			m++;
		if (!m->key) {
			snprintf(err, errlen, "%s: unknown member \"%.64s\"", op->name, key);
			return -EINVAL;
		}
	}
	*out = op;
	return 0;
}

bool api_takes(const struct api_op *op, const char *key)
{
	for (const struct api_member *m = op->m; m->key; m++)
		if (strcmp(m->key, key) == 0)
			return true;
	return false;
}

bool api_slow(const struct api_op *op, const json_t *req)
{
	return op->slow || (op->slow_with && json_object_get(req, op->slow_with));
}

static const char *const job_states[API_JOB_STATE_MAX] = { "active", "completed", "failed",
							   "cancelled", "unresolved" };

const char *api_job_state_name(enum api_job_state s)
{
	return (unsigned)s < API_JOB_STATE_MAX ? job_states[s] : "?";
}

enum api_job_state api_job_state_parse(const char *name)
{
	unsigned i;

	for (i = 0; i < API_JOB_STATE_MAX && strcmp(name, job_states[i]) != 0; i++)
		;
	return (enum api_job_state)i;
}
