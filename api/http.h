/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h — the remote API's shape (docs/ferryd-api.json, the OpenAPI
 * description): which method and path is which control op (api.h), what
 * role a caller needs for it, and how a control reply becomes an HTTP status
 * and body. Pure functions over text, so that a fuzzer can drive the whole
 * decoding of a request; the server (daemon/remote.c) does the I/O.
 *
 *   GET    /v1/version                 version
 *   GET    /v1/host                    host          capacity and state
 *   GET    /v1/vms                     list
 *   POST   /v1/vms                     create        201
 *   GET    /v1/vms/{name}              info
 *   DELETE /v1/vms/{name}              destroy
 *   POST   /v1/vms/{name}/verify       verify
 *   POST   /v1/vms/{name}/migrate      migrate       202, a job
 *   POST   /v1/vms/{name}/protect      protect       202, a job
 *   POST   /v1/vms/{name}/unprotect    unprotect
 *   GET    /v1/jobs                    jobs
 *   GET    /v1/jobs/{id}[?wait_ms=N]   status
 *   POST   /v1/jobs/{id}/cancel        cancel
 *   GET    /v1/events                  server-sent events
 *   GET    /metrics                    Prometheus text
 *
 * Every GET needs a monitor's or a manager's certificate, everything else a
 * manager's (transport/certs.h roles).
 */
#ifndef FERRY_API_HTTP_H
#define FERRY_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define HTTP_BODY_MAX (64 * 1024) /* a request body; more is 413 */

enum http_method { HTTP_GET, HTTP_POST, HTTP_DELETE, HTTP_OTHER };

enum http_action {
	HTTP_OP,      /* run req, a control request */
	HTTP_EVENTS,  /* the event stream */
	HTTP_METRICS, /* the metrics */
};

/* A decoded request. */
struct http_call {
	enum http_action action;
	json_t *req;        /* HTTP_OP: the control request (the caller's) */
	int ok_status;      /* what a successful reply is: 200, 201, 202 */
	bool write;         /* needs a manager: it changes something */
	char allow[32];     /* on 405: the methods the path has, "GET, POST" */
};

/*
 * Decode method, path (no query), query (NULL or without '?') and body into
 * *out. 0, or the HTTP status of the refusal (400 malformed JSON, a field
 * unknown, missing or of the wrong type; 404 no such path; 405 a path
 * without this method, with out->allow; 413 a body over HTTP_BODY_MAX)
 * with a sentence in err. Nothing is allocated on refusal.
 */
int http_decode(enum http_method method, const char *path, const char *query, const char *body,
		size_t len, struct http_call *out, char *err, size_t errlen);

/* The HTTP status of a control reply to a call whose success is ok_status:
 * ok_status, or from the failure's "kind" (invalid 400, not_found 404,
 * conflict 409, unavailable 503, anything else 500). */
int http_status_of(const json_t *reply, int ok_status);

#endif
