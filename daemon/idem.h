/* SPDX-License-Identifier: Apache-2.0 */
/*
 * idem.h — the remote API's Idempotency-Key: a manager that retries a POST
 * with the same key gets the first answer, and the work is done once.
 *
 * A key belongs to the caller that sent it (its certificate's SHA-256
 * fingerprint) and is kept 24 hours. It is bound to its request (a digest
 * of the method, path and body): the same key with another request is
 * refused (422); a retry while the first is still being answered is refused
 * (409). Answers are files in STATE/idempotency/ (one per key, written
 * before the answer goes out), so a retry after ferryd restarted gets the
 * same answer. A request that starts a job (migrate, protect) also carries
 * its token into the job's own record, written when the job starts: if
 * ferryd dies between the two writes, the job's record answers the retry,
 * and the work is still done once. Answers of 5xx are not kept: the work
 * did not happen, and a retry may try it again.
 *
 * Loop thread only.
 */
#ifndef FERRY_DAEMON_IDEM_H
#define FERRY_DAEMON_IDEM_H

#include <stdbool.h>
#include <stddef.h>

#define IDEM_KEY_MAX 255
#define IDEM_TTL_S (24 * 3600)
/* A token: hex SHA-256 of (caller, key), ':', hex SHA-256 of the request. */
#define IDEM_TOKEN_LEN 130

/* Whether key is one: 1-255 printable ASCII characters. */
bool idem_key_ok(const char *key);
void idem_token(const char *caller, const char *key, const char *method, const char *path,
		const void *body, size_t len, char token[IDEM_TOKEN_LEN]);

enum idem_verdict {
	IDEM_NEW,      /* first seen: do it, then idem_finish */
	IDEM_REPLAY,   /* answered before: *status and *body (caller frees) */
	IDEM_BUSY,     /* being answered now */
	IDEM_MISMATCH, /* the key was used for another request */
};
enum idem_verdict idem_begin(const char *token, int *status, char **body);
/* The answer to token's request (after IDEM_NEW); kept unless a 5xx. */
void idem_finish(const char *token, int status, const char *body);
/* Start-up: the kept answers from STATE/idempotency/ (expired ones go). */
void idem_load(void);

#endif
