/* SPDX-License-Identifier: Apache-2.0 */
/*
 * etcd.h — a small client of etcd's v3 API (coord/README.md: why the JSON
 * gateway over HTTP with libcurl rather than gRPC): leases, transactions,
 * reads. It is the project's one door to the coordination service:
 * replication's fencing uses it, and the pool's state will.
 *
 * Every call is one HTTP request with a deadline (the client's timeout),
 * tried on each endpoint in turn until one answers. A call that gets no
 * answer returns -ETIMEDOUT, -ECONNREFUSED or -EHOSTUNREACH (etcd cannot be
 * reached: the caller must not assume anything about the state); an answer
 * etcd gives as an error is -EIO with its message; an answer that is not
 * what the API promises is -EBADMSG. err always says which, in words.
 *
 * Keys and values are byte strings (NUL-free here: names and small JSON).
 * Thread-safe: calls may come from several threads (one libcurl handle per
 * call).
 */
#ifndef FERRY_COORD_ETCD_H
#define FERRY_COORD_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct etcd;

/* endpoints: "http://HOST:PORT[,http://HOST:PORT...]"; timeout_ms per
 * call. 0 or -EINVAL / -ENOMEM with err set. */
int etcd_new(const char *endpoints, int timeout_ms, struct etcd **out, char *err, size_t errlen);
void etcd_free(struct etcd *e);
const char *etcd_endpoints(const struct etcd *e);

/* A lease of ttl_s seconds: its id. */
int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, char *err, size_t errlen);
/* Renew it: *ttl_s the seconds it has now, 0 if it is gone (expired). */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s, char *err, size_t errlen);
int etcd_lease_revoke(struct etcd *e, int64_t id, char *err, size_t errlen);

/* A transaction's conditions (all must hold) and its writes (done only if
 * they do). */
enum etcd_cmp_kind {
	ETCD_ABSENT,      /* the key does not exist */
	ETCD_CREATED_AT,  /* the key exists and was created at revision rev */
	ETCD_VALUE_IS,    /* the key exists and its value is value */
};
struct etcd_cmp {
	enum etcd_cmp_kind kind;
	const char *key;
	int64_t rev;
	const char *value;
};
struct etcd_op {
	bool del;          /* delete key, else put key = value */
	const char *key;
	const char *value;
	int64_t lease;     /* put: bound to this lease (0: none) */
};
/* *ok whether the conditions held (and the writes were done); *rev the
 * store's revision after it (the writes' revision when *ok). */
int etcd_txn(struct etcd *e, const struct etcd_cmp *cmp, unsigned ncmp, const struct etcd_op *op,
	     unsigned nop, bool *ok, int64_t *rev, char *err, size_t errlen);
/* Read key: 0 and its value (malloc'd, NUL-terminated; the caller frees),
 * creation and last-modification revisions; -ENOENT if absent. */
int etcd_get(struct etcd *e, const char *key, char **value, int64_t *create_rev,
	     int64_t *mod_rev, char *err, size_t errlen);

/* A key and its value, as a listing gives them. */
struct etcd_kv {
	char *key, *value;         /* malloc'd, NUL-terminated */
	int64_t create_rev, mod_rev;
};
#define ETCD_LIST_MAX 100000
/* Every key that begins with prefix, in key order: 0 and *kvs (*n of them;
 * the caller frees with etcd_kvs_free; NULL when none). */
int etcd_list(struct etcd *e, const char *prefix, struct etcd_kv **kvs, size_t *n, char *err,
	      size_t errlen);
void etcd_kvs_free(struct etcd_kv *kvs, size_t n);

/* ---- the answers' parsers (etcd_json.c; pure, fuzzed) ---- */

/* Each takes one answer body; 0, -EIO (etcd's error, message in err) or
 * -EBADMSG. */
int etcd_parse_grant(const char *body, size_t len, int64_t *id, int64_t *ttl, char *err,
		     size_t errlen);
int etcd_parse_keepalive(const char *body, size_t len, int64_t id, int64_t *ttl, char *err,
			 size_t errlen);
int etcd_parse_txn(const char *body, size_t len, bool *ok, int64_t *rev, char *err,
		   size_t errlen);
/* *found false if the key is absent (then nothing else is set). */
int etcd_parse_range(const char *body, size_t len, bool *found, char **value, int64_t *create_rev,
		     int64_t *mod_rev, char *err, size_t errlen);
/* An answer of a request with no result to read (revoke): only errors. */
int etcd_parse_empty(const char *body, size_t len, char *err, size_t errlen);
/* A range of any number of keys (at most ETCD_LIST_MAX): *kvs, *n. */
int etcd_parse_list(const char *body, size_t len, struct etcd_kv **kvs, size_t *n, char *err,
		    size_t errlen);

/* Base64 as etcd's JSON carries bytes; out must hold 4 * ((len + 2) / 3) + 1. */
void etcd_b64(const char *in, size_t len, char *out);

#endif
