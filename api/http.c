/* SPDX-License-Identifier: Apache-2.0 */
/* http.c — the remote API's routes and statuses; see http.h. */
#include "api/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/util.h"

#define SEG_MAX 255

struct route {
	enum http_method method;
	const char *pattern;  /* "{}" is one path segment: the param */
	const char *op;       /* HTTP_OP's control op */
	const char *param;    /* the member {} fills */
	enum http_action action;
	int ok_status;
	bool body;            /* takes a JSON object (an empty body is {}) */
	bool wait;            /* takes ?wait_ms=N */
};

static const struct route routes[] = {
	{ HTTP_GET, "/v1/version", "version", NULL, HTTP_OP, 200, false, false },
	{ HTTP_GET, "/v1/host", "host", NULL, HTTP_OP, 200, false, false },
	{ HTTP_GET, "/v1/vms", "list", NULL, HTTP_OP, 200, false, false },
	{ HTTP_POST, "/v1/vms", "create", NULL, HTTP_OP, 201, true, false },
	{ HTTP_GET, "/v1/vms/{}", "info", "name", HTTP_OP, 200, false, false },
	{ HTTP_DELETE, "/v1/vms/{}", "destroy", "name", HTTP_OP, 200, false, false },
	{ HTTP_POST, "/v1/vms/{}/verify", "verify", "name", HTTP_OP, 200, false, false },
	{ HTTP_POST, "/v1/vms/{}/migrate", "migrate", "name", HTTP_OP, 202, true, false },
	{ HTTP_POST, "/v1/vms/{}/protect", "protect", "name", HTTP_OP, 202, true, false },
	{ HTTP_POST, "/v1/vms/{}/unprotect", "unprotect", "name", HTTP_OP, 200, false, false },
	{ HTTP_GET, "/v1/jobs", "jobs", NULL, HTTP_OP, 200, false, false },
	{ HTTP_GET, "/v1/jobs/{}", "status", "job", HTTP_OP, 200, false, true },
	{ HTTP_POST, "/v1/jobs/{}/cancel", "cancel", "job", HTTP_OP, 200, false, false },
	{ HTTP_POST, "/v1/jobs/{}/resume", "resume", "job", HTTP_OP, 200, true, false },
	{ HTTP_POST, "/v1/jobs/{}/resolve", "resolve", "job", HTTP_OP, 200, true, false },
	{ HTTP_GET, "/v1/events", NULL, NULL, HTTP_EVENTS, 200, false, false },
	{ HTTP_GET, "/metrics", NULL, NULL, HTTP_METRICS, 200, false, false },
};

static const char *const method_names[] = { "GET", "POST", "DELETE" };

static bool seg_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Whether path matches pattern; the segment {} stands for into arg. */
static bool match(const char *pattern, const char *path, char *arg, size_t arglen)
{
	while (*pattern && *path) {
		if (strncmp(pattern, "{}", 2) == 0) {
			size_t n = 0;

			while (path[n] && path[n] != '/') {
				if (!seg_char(path[n]))
					return false;
				n++;
			}
			if (n == 0 || n >= arglen)
				return false;
			memcpy(arg, path, n);
			arg[n] = '\0';
			pattern += 2;
			path += n;
		} else if (*pattern++ != *path++) {
			return false;
		}
	}
	return !*pattern && !*path;
}

/* ?wait_ms=N into req; 0 or 400 with err. */
static int add_wait(json_t *req, const char *query, char *err, size_t errlen)
{
	uint64_t ms;

	if (strncmp(query, "wait_ms=", 8) != 0 || parse_u64(query + 8, 0, 60000, &ms)) {
		snprintf(err, errlen, "the only query is wait_ms=N (0..60000 milliseconds)");
		return 400;
	}
	json_object_set_new(req, "wait_ms", json_integer((json_int_t)ms));
	return 0;
}

/* The control request of route r for the caller's body; 0 or a status. */
static int build(const struct route *r, const char *arg, const char *query, const char *body,
		 size_t len, json_t **out, char *err, size_t errlen)
{
	const struct api_op *op;
	json_error_t je;
	json_t *req;
	int st;

	if (query && *query && !r->wait) {
		snprintf(err, errlen, "%s %s takes no query", method_names[r->method], r->pattern);
		return 400;
	}
	if (!r->body && len) {
		snprintf(err, errlen, "%s %s takes no body", method_names[r->method], r->pattern);
		return 400;
	}
	if (!len) {
		req = json_object();
	} else if (!(req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je))) {
		snprintf(err, errlen, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
			 je.column);
		return 400;
	} else if (!json_is_object(req)) {
		json_decref(req);
		snprintf(err, errlen, "the body is a JSON object");
		return 400;
	}
	if (!req)
		goto oom;
	/* What the path says is not the body's to say. */
	for (size_t i = 0; i < 3; i++) {
		/* "idempotency" is the Idempotency-Key header's, set by the server. */
		const char *k = i == 2 ? r->param : i ? "idempotency" : "op";

		if (k && json_object_get(req, k)) {
			snprintf(err, errlen, "%s: unknown field \"%s\"%s", r->op, k,
				 i == 2 ? " (it is in the path)" : "");
			json_decref(req);
			return 400;
		}
	}
	if (json_object_set_new(req, "op", json_string(r->op)) ||
	    (r->param && json_object_set_new(req, r->param, json_string(arg))))
		goto oom_req;
	if (query && *query && (st = add_wait(req, query, err, errlen))) {
		json_decref(req);
		return st;
	}
	if (api_check(req, &op, err, errlen)) {
		json_decref(req);
		return 400;
	}
	*out = req;
	return 0;
oom_req:
	json_decref(req);
oom:
	snprintf(err, errlen, "out of memory");
	return 500;
}

int http_decode(enum http_method method, const char *path, const char *query, const char *body,
		size_t len, struct http_call *out, char *err, size_t errlen)
{
	char arg[SEG_MAX + 1];
	bool found = false;
	size_t off = 0;

	memset(out, 0, sizeof *out);
	if (len > HTTP_BODY_MAX) {
		snprintf(err, errlen, "the body is over %d KiB", HTTP_BODY_MAX / 1024);
		return 413;
	}
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		const struct route *r = &routes[i];

		if (!match(r->pattern, path, arg, sizeof arg))
			continue;
		found = true;
		if (r->method != method) {
			if (off < sizeof out->allow)
				off += (size_t)snprintf(out->allow + off, sizeof out->allow - off,
							"%s%s", off ? ", " : "",
							method_names[r->method]);
			continue;
		}
		out->action = r->action;
		out->ok_status = r->ok_status;
		out->write = r->method != HTTP_GET;
		if (r->action != HTTP_OP) {
			if ((query && *query) || len) {
				snprintf(err, errlen, "%s takes no query or body", r->pattern);
				return 400;
			}
			return 0;
		}
		return build(r, arg, query, body, len, &out->req, err, errlen);
	}
	if (found) {
		snprintf(err, errlen, "%s is %s only", path, out->allow);
		return 405;
	}
	snprintf(err, errlen, "no such resource: %.200s (the API's paths begin with /v1/)", path);
	return 404;
}

int http_status_of(const json_t *reply, int ok_status)
{
	static const struct {
		const char *kind;
		int status;
	} kinds[] = { { API_ERR_INVALID, 400 }, { API_ERR_NOT_FOUND, 404 },
		      { API_ERR_CONFLICT, 409 }, { API_ERR_UNAVAILABLE, 503 } };
	const char *k;

	if (json_is_true(json_object_get(reply, "ok")))
		return ok_status;
	k = json_string_value(json_object_get(reply, "kind"));
	for (size_t i = 0; k && i < ARRAY_SIZE(kinds); i++)
		if (strcmp(kinds[i].kind, k) == 0)
			return kinds[i].status;
	return 500;
}
