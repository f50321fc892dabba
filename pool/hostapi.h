/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hostapi.h — a pool manager's calls to a host's remote API (ferryd(8),
 * Remote API; docs/ferryd-api.json): HTTPS with libcurl, presenting the
 * manager's client certificate and checking the host's against the pool's
 * CA. One call, one connection; any thread.
 */
#ifndef FERRY_POOL_HOSTAPI_H
#define FERRY_POOL_HOSTAPI_H

#include <stddef.h>

#include <jansson.h>

struct hostapi_tls {
	const char *ca;   /* the pool's CA certificate */
	const char *cert; /* the manager's certificate (ferry certs client) */
	const char *key;  /* its key */
};

/*
 * method path on the API at addr ("HOST:PORT"), with body (JSON text or
 * NULL) and an Idempotency-Key (or NULL). 0 and the HTTP status and the
 * answer's JSON (*json, the caller's; NULL if the body was not JSON), or
 * -errno if no answer came (err says why: the host unreachable, TLS refused,
 * the deadline).
 */
int hostapi_call(const struct hostapi_tls *t, const char *addr, const char *method,
		 const char *path, const char *body, const char *idem_key, int timeout_ms,
		 long *status, json_t **json, char *err, size_t errlen);

#endif
