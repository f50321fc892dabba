/* SPDX-License-Identifier: Apache-2.0 */
/* etcd.c — etcd's v3 JSON gateway over HTTP (libcurl); see etcd.h. */
#include "coord/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#define ENDPOINTS_MAX 8
#define ANSWER_MAX (2u << 20)

struct etcd {
	char *list;                    /* as given */
	char *ep[ENDPOINTS_MAX];
	unsigned n;
	unsigned good;                 /* the endpoint that answered last (atomic) */
	int timeout_ms;
};

struct buf {
	char *p;
	size_t len;
	bool over;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int etcd_new(const char *endpoints, int timeout_ms, struct etcd **out, char *err, size_t errlen)
{
	struct etcd *e = calloc(1, sizeof *e);
	char *save = NULL, *t;

	if (!e || !(e->list = strdup(endpoints)) || !(t = strdup(endpoints))) {
		if (e)
			free(e->list);
		free(e);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (char *s = strtok_r(t, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (e->n == ENDPOINTS_MAX || (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) ||
		    !(e->ep[e->n] = strdup(s))) {
			snprintf(err, errlen, "etcd endpoints: \"%s\" is not a list of up to %d "
				 "http://HOST:PORT", endpoints, ENDPOINTS_MAX);
			free(t);
			etcd_free(e);
			return -EINVAL;
		}
		e->n++;
	}
	free(t);
	if (!e->n) {
		snprintf(err, errlen, "etcd endpoints: none given");
		etcd_free(e);
		return -EINVAL;
	}
	e->timeout_ms = timeout_ms;
	pthread_once(&curl_once, curl_init);
	*out = e;
	return 0;
}

void etcd_free(struct etcd *e)
{
	if (!e)
		return;
	for (unsigned i = 0; i < e->n; i++)
		free(e->ep[i]);
	free(e->list);
	free(e);
}

const char *etcd_endpoints(const struct etcd *e)
{
	return e->list;
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct buf *b = ctx;
	size_t k = size * n;
	char *q;

	if (b->len + k > ANSWER_MAX) {
		b->over = true;
		return 0;
	}
	if (!(q = realloc(b->p, b->len + k + 1)))
		return 0;
	memcpy(q + b->len, p, k);
	b->p = q;
	b->len += k;
	b->p[b->len] = '\0';
	return k;
}

/* One endpoint: 0 and the answer (an HTTP answer of any status: etcd's
 * errors come as JSON), or -errno for no answer at all. */
static int post1(struct etcd *e, const char *ep, const char *path, const char *body,
		 struct buf *b, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char url[512];
	CURLcode cc;
	int r = 0;

	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof url, "%s%s", ep, path);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, ""); /* straight to etcd: no *_proxy from the environment */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "etcd at %s: %s", ep,
			 b->over ? "an answer over 2 MiB" : curl_easy_strerror(cc));
		r = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
		    : cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED
		    : b->over ? -EBADMSG : -EHOSTUNREACH;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return r;
}

/* POST req (stolen) to path on the first endpoint that answers; the
 * answer's body into *b (the caller frees b->p). */
static int post(struct etcd *e, const char *path, json_t *req, struct buf *b, char *err,
		size_t errlen)
{
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	unsigned first = __atomic_load_n(&e->good, __ATOMIC_RELAXED);
	int r = -ENOMEM;

	json_decref(req);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	for (unsigned k = 0; k < e->n; k++) {
		unsigned i = (first + k) % e->n;

		*b = (struct buf){ 0 };
		if (!(r = post1(e, e->ep[i], path, body, b, err, errlen))) {
			__atomic_store_n(&e->good, i, __ATOMIC_RELAXED);
			if (!b->p && !(b->p = strdup("")))
				r = -ENOMEM;
			break;
		}
		free(b->p);
		b->p = NULL;
		if (r == -EBADMSG)
			break;
	}
	free(body);
	return r;
}

static json_t *i64s(int64_t v)
{
	char s[24];

	snprintf(s, sizeof s, "%" PRId64, v);
	return json_string(s);
}

/* A key or value as etcd's JSON carries it. */
static json_t *b64(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	json_t *j;

	if (!out)
		return NULL;
	etcd_b64(s, n, out);
	j = json_string(out);
	free(out);
	return j;
}

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, char *err, size_t errlen)
{
	struct buf b;
	int64_t ttl;
	int r = post(e, "/v3/lease/grant", json_pack("{s:o}", "TTL", i64s(ttl_s)), &b, err, errlen);

	if (!r)
		r = etcd_parse_grant(b.p, b.len, id, &ttl, err, errlen);
	free(b.p);
	return r;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s, char *err, size_t errlen)
{
	struct buf b;
	int r = post(e, "/v3/lease/keepalive", json_pack("{s:o}", "ID", i64s(id)), &b, err, errlen);

	if (!r)
		r = etcd_parse_keepalive(b.p, b.len, id, ttl_s, err, errlen);
	free(b.p);
	return r;
}

int etcd_lease_revoke(struct etcd *e, int64_t id, char *err, size_t errlen)
{
	struct buf b;
	int r = post(e, "/v3/lease/revoke", json_pack("{s:o}", "ID", i64s(id)), &b, err, errlen);

	if (!r)
		r = etcd_parse_empty(b.p, b.len, err, errlen);
	free(b.p);
	return r;
}

static json_t *cmp_json(const struct etcd_cmp *c)
{
	switch (c->kind) {
	case ETCD_ABSENT:
		return json_pack("{s:o, s:s, s:s, s:s}", "key", b64(c->key), "target", "VERSION",
				 "result", "EQUAL", "version", "0");
	case ETCD_CREATED_AT:
		return json_pack("{s:o, s:s, s:s, s:o}", "key", b64(c->key), "target", "CREATE",
				 "result", "EQUAL", "create_revision", i64s(c->rev));
	case ETCD_VALUE_IS:
		return json_pack("{s:o, s:s, s:s, s:o}", "key", b64(c->key), "target", "VALUE",
				 "result", "EQUAL", "value", b64(c->value));
	}
	return NULL;
}

static json_t *op_json(const struct etcd_op *o)
{
	json_t *put;

	if (o->del)
		return json_pack("{s:{s:o}}", "request_delete_range", "key", b64(o->key));
	put = json_pack("{s:o, s:o}", "key", b64(o->key), "value", b64(o->value));
	if (put && o->lease)
		json_object_set_new(put, "lease", i64s(o->lease));
	return put ? json_pack("{s:o}", "request_put", put) : NULL;
}

int etcd_txn(struct etcd *e, const struct etcd_cmp *cmp, unsigned ncmp, const struct etcd_op *op,
	     unsigned nop, bool *ok, int64_t *rev, char *err, size_t errlen)
{
	json_t *c = json_array(), *s = json_array();
	struct buf b;
	int r;

	for (unsigned i = 0; i < ncmp; i++)
		json_array_append_new(c, cmp_json(&cmp[i]));
	for (unsigned i = 0; i < nop; i++)
		json_array_append_new(s, op_json(&op[i]));
	r = post(e, "/v3/kv/txn", json_pack("{s:o, s:o}", "compare", c, "success", s), &b, err,
		 errlen);
	if (!r)
		r = etcd_parse_txn(b.p, b.len, ok, rev, err, errlen);
	free(b.p);
	return r;
}

int etcd_list(struct etcd *e, const char *prefix, struct etcd_kv **kvs, size_t *n, char *err,
	      size_t errlen)
{
	size_t len = strlen(prefix);
	char *end = strdup(prefix);
	struct buf b;
	int r;

	*kvs = NULL;
	*n = 0;
	if (!end || !len) {
		free(end);
		snprintf(err, errlen, len ? "out of memory" : "an empty prefix");
		return len ? -ENOMEM : -EINVAL;
	}
	/* The range [prefix, prefix with its last byte one more). */
	end[len - 1]++;
	r = post(e, "/v3/kv/range", json_pack("{s:o, s:o}", "key", b64(prefix), "range_end",
					       b64(end)), &b, err, errlen);
	free(end);
	if (!r)
		r = etcd_parse_list(b.p, b.len, kvs, n, err, errlen);
	free(b.p);
	return r;
}

int etcd_get(struct etcd *e, const char *key, char **value, int64_t *create_rev,
	     int64_t *mod_rev, char *err, size_t errlen)
{
	struct buf b;
	bool found = false;
	int r = post(e, "/v3/kv/range", json_pack("{s:o}", "key", b64(key)), &b, err, errlen);

	*value = NULL;
	if (!r)
		r = etcd_parse_range(b.p, b.len, &found, value, create_rev, mod_rev, err, errlen);
	free(b.p);
	if (!r && !found) {
		snprintf(err, errlen, "%s: no such key", key);
		r = -ENOENT;
	}
	return r;
}
