/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_http.c — libFuzzer target for the remote API's request decoding
 * (api/http.c): a method, a path, a query and a body as a caller sends
 * them. Input: one byte for the method, then path, query and body
 * separated by NUL bytes (the last part may hold anything).
 *
 * Whatever comes in: a refusal is one of the statuses http.h names, with a
 * sentence, and nothing allocated; an accepted call of an op is a request
 * that api_check accepts, whose op is what the route says, and whose path
 * member is the segment the path gave; a GET never writes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/http.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-terminated part of [*p, end) into a fresh string. */
static char *part(const uint8_t **p, const uint8_t *end, bool last, size_t *len)
{
	const uint8_t *z = last ? NULL : memchr(*p, 0, (size_t)(end - *p));
	size_t n = z ? (size_t)(z - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += n + (z ? 1 : 0);
	*len = n;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1, *end = data + size;
	enum http_method m;
	struct http_call call;
	const struct api_op *op;
	char err[512] = "", *path, *query, *body;
	size_t plen, qlen, blen;
	int st;

	if (size < 1)
		return 0;
	m = (enum http_method)(data[0] % 4);
	path = part(&p, end, false, &plen);
	query = part(&p, end, false, &qlen);
	body = part(&p, end, true, &blen);
	st = http_decode(m, path, qlen ? query : NULL, body, blen, &call, err, sizeof err);
	if (st) {
		CHECK(st == 400 || st == 404 || st == 405 || st == 413 || st == 500);
		CHECK(err[0]);
		CHECK(!call.req);
		CHECK(st != 405 || call.allow[0]);
	} else {
		CHECK(call.ok_status == 200 || call.ok_status == 201 || call.ok_status == 202);
		CHECK(m != HTTP_GET || !call.write);
		CHECK(m == HTTP_GET || call.write);
		if (call.action == HTTP_OP) {
			CHECK(call.req);
			CHECK(!api_check(call.req, &op, err, sizeof err));
			CHECK(strncmp(path, "/v1/", 4) == 0);
			/* The path's segment, never the body's. */
			const char *name = json_string_value(json_object_get(call.req, "name"));
			const char *job = json_string_value(json_object_get(call.req, "job"));

			if (strncmp(path, "/v1/vms/", 8) == 0)
				CHECK(name && strncmp(path + 8, name, strlen(name)) == 0);
			if (strncmp(path, "/v1/jobs/", 9) == 0)
				CHECK(job && strncmp(path + 9, job, strlen(job)) == 0);
			CHECK(!json_object_get(call.req, "idempotency"));
			json_decref(call.req);
		} else {
			CHECK(!call.req && m == HTTP_GET && blen == 0);
		}
	}
	free(path);
	free(query);
	free(body);
	return 0;
}
