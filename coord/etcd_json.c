/* SPDX-License-Identifier: Apache-2.0 */
/* etcd_json.c — what etcd's JSON gateway answers, checked; see etcd.h. */
#include "coord/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#define VALUE_MAX (1u << 20)

void etcd_b64(const char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
}

/* The body as a JSON object, or an error: etcd's own ({"error" or
 * "message", "code"}) as -EIO, anything else as -EBADMSG. */
static int load(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *m;

	*out = NULL;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "etcd's answer is not a JSON object (%s)",
			 o ? "another JSON value" : je.text);
		json_decref(o);
		return -EBADMSG;
	}
	if ((m = json_object_get(o, "error")) || json_object_get(o, "code")) {
		const json_t *msg = json_object_get(o, "message");

		if (!json_is_string(msg))
			msg = m;
		snprintf(err, errlen, "etcd says: %.200s",
			 json_is_string(msg) ? json_string_value(msg) : "an error without a message");
		json_decref(o);
		return -EIO;
	}
	*out = o;
	return 0;
}

/* An int64 member (the gateway writes them as strings; proto3 leaves out
 * zeros): 0 and *v, or -EBADMSG. */
static int i64(const json_t *o, const char *key, int64_t *v, char *err, size_t errlen)
{
	const json_t *m = json_object_get(o, key);
	const char *s;
	char *end;

	*v = 0;
	if (!m)
		return 0;
	if (json_is_integer(m)) {
		*v = (int64_t)json_integer_value(m);
		return 0;
	}
	if (!json_is_string(m))
		goto bad;
	s = json_string_value(m);
	errno = 0;
	*v = (int64_t)strtoll(s, &end, 10);
	if (!*s || *end || errno)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "etcd's answer: \"%s\" is not an integer", key);
	return -EBADMSG;
}

/* The store's revision in the answer's header (required). */
static int header_rev(const json_t *o, int64_t *rev, char *err, size_t errlen)
{
	const json_t *h = json_object_get(o, "header");
	int r;

	if (!json_is_object(h)) {
		snprintf(err, errlen, "etcd's answer has no header");
		return -EBADMSG;
	}
	if ((r = i64(h, "revision", rev, err, errlen)))
		return r;
	if (*rev < 0) {
		snprintf(err, errlen, "etcd's answer: a negative revision");
		return -EBADMSG;
	}
	return 0;
}

int etcd_parse_grant(const char *body, size_t len, int64_t *id, int64_t *ttl, char *err,
		     size_t errlen)
{
	int64_t rev;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	if (r)
		return r;
	if (!(r = header_rev(o, &rev, err, errlen)) && !(r = i64(o, "ID", id, err, errlen)) &&
	    !(r = i64(o, "TTL", ttl, err, errlen)) && (*id == 0 || *ttl <= 0)) {
		snprintf(err, errlen, "etcd granted no lease");
		r = -EBADMSG;
	}
	json_decref(o);
	return r;
}

int etcd_parse_keepalive(const char *body, size_t len, int64_t id, int64_t *ttl, char *err,
			 size_t errlen)
{
	const json_t *res;
	int64_t got, rev;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	if (r)
		return r;
	/* One message of the stream: {"result": {...}}. */
	res = json_object_get(o, "result");
	if (!json_is_object(res)) {
		snprintf(err, errlen, "etcd's keep-alive answer has no result");
		r = -EBADMSG;
	} else if (!(r = header_rev(res, &rev, err, errlen)) &&
		   !(r = i64(res, "ID", &got, err, errlen)) && !(r = i64(res, "TTL", ttl, err, errlen))) {
		if (got != id || *ttl < 0) {
			snprintf(err, errlen, "etcd's keep-alive answer is for lease %" PRId64 ", not %"
				 PRId64, got, id);
			r = -EBADMSG;
		}
	}
	json_decref(o);
	return r;
}

int etcd_parse_txn(const char *body, size_t len, bool *ok, int64_t *rev, char *err,
		   size_t errlen)
{
	const json_t *s;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	if (r)
		return r;
	s = json_object_get(o, "succeeded");
	if (s && !json_is_boolean(s)) {
		snprintf(err, errlen, "etcd's answer: \"succeeded\" is not a boolean");
		r = -EBADMSG;
	} else {
		*ok = json_is_true(s);
		r = header_rev(o, rev, err, errlen);
	}
	json_decref(o);
	return r;
}

/* Base64 text to bytes (NUL-terminated; *out malloc'd). */
static int unb64(const char *in, char **out, char *err, size_t errlen)
{
	size_t n = strlen(in), pad = 0;
	unsigned char *b;
	int k;

	*out = NULL;
	if (n % 4 || n / 4 * 3 > VALUE_MAX) {
		snprintf(err, errlen, "etcd's answer: a value that is not base64");
		return -EBADMSG;
	}
	if (!(b = malloc(n / 4 * 3 + 1)))
		return -ENOMEM;
	k = n ? EVP_DecodeBlock(b, (const unsigned char *)in, (int)n) : 0;
	if (k < 0) {
		free(b);
		snprintf(err, errlen, "etcd's answer: a value that is not base64");
		return -EBADMSG;
	}
	while (pad < 2 && n > pad && in[n - 1 - pad] == '=')
		pad++;
	k -= (int)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
	b[k] = '\0';
	if (memchr(b, '\0', (size_t)k)) {
		free(b);
		snprintf(err, errlen, "etcd's answer: a value with a NUL byte");
		return -EBADMSG;
	}
	*out = (char *)b;
	return 0;
}

int etcd_parse_range(const char *body, size_t len, bool *found, char **value, int64_t *create_rev,
		     int64_t *mod_rev, char *err, size_t errlen)
{
	const json_t *kvs, *kv, *v;
	int64_t rev;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	*found = false;
	if (r)
		return r;
	if ((r = header_rev(o, &rev, err, errlen)))
		goto out;
	kvs = json_object_get(o, "kvs");
	if (!kvs)
		goto out; /* absent */
	if (!json_is_array(kvs) || json_array_size(kvs) != 1 ||
	    !json_is_object(kv = json_array_get(kvs, 0))) {
		snprintf(err, errlen, "etcd's answer: \"kvs\" is not one key");
		r = -EBADMSG;
		goto out;
	}
	v = json_object_get(kv, "value");
	if ((v && !json_is_string(v)) || (r = i64(kv, "create_revision", create_rev, err, errlen)) ||
	    (r = i64(kv, "mod_revision", mod_rev, err, errlen))) {
		if (!r)
			snprintf(err, errlen, "etcd's answer: the value is not a string");
		r = r ? r : -EBADMSG;
		goto out;
	}
	if (*create_rev <= 0 || *mod_rev < *create_rev) {
		snprintf(err, errlen, "etcd's answer: revisions out of order");
		r = -EBADMSG;
		goto out;
	}
	if (!(r = unb64(v ? json_string_value(v) : "", value, err, errlen)))
		*found = true;
out:
	json_decref(o);
	return r;
}

/* One key of a listing into kv; 0 or -EBADMSG / -ENOMEM. */
static int list_kv(const json_t *o, struct etcd_kv *kv, char *err, size_t errlen)
{
	const json_t *k = json_object_get(o, "key"), *v = json_object_get(o, "value");
	int r;

	if (!json_is_object(o) || !json_is_string(k) || (v && !json_is_string(v))) {
		snprintf(err, errlen, "etcd's answer: a listed key is not a key and a value");
		return -EBADMSG;
	}
	if ((r = i64(o, "create_revision", &kv->create_rev, err, errlen)) ||
	    (r = i64(o, "mod_revision", &kv->mod_rev, err, errlen)))
		return r;
	if (kv->create_rev <= 0 || kv->mod_rev < kv->create_rev) {
		snprintf(err, errlen, "etcd's answer: revisions out of order");
		return -EBADMSG;
	}
	if ((r = unb64(json_string_value(k), &kv->key, err, errlen)) ||
	    (r = unb64(v ? json_string_value(v) : "", &kv->value, err, errlen)))
		return r;
	return 0;
}

void etcd_kvs_free(struct etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; kvs && i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

int etcd_parse_list(const char *body, size_t len, struct etcd_kv **kvs, size_t *n, char *err,
		    size_t errlen)
{
	const json_t *a;
	int64_t rev;
	size_t cnt;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	*kvs = NULL;
	*n = 0;
	if (r)
		return r;
	if ((r = header_rev(o, &rev, err, errlen)))
		goto out;
	a = json_object_get(o, "kvs");
	if (!a)
		goto out; /* none */
	cnt = json_array_size(a);
	if (!json_is_array(a) || cnt > ETCD_LIST_MAX) {
		snprintf(err, errlen, "etcd's answer: \"kvs\" is not a list of keys");
		r = -EBADMSG;
		goto out;
	}
	if (cnt && !(*kvs = calloc(cnt, sizeof **kvs))) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		if ((r = list_kv(json_array_get(a, i), &(*kvs)[i], err, errlen))) {
			etcd_kvs_free(*kvs, i + 1);
			*kvs = NULL;
			goto out;
		}
	}
	*n = cnt;
out:
	json_decref(o);
	return r;
}

int etcd_parse_empty(const char *body, size_t len, char *err, size_t errlen)
{
	int64_t rev;
	json_t *o;
	int r = load(body, len, &o, err, errlen);

	if (r)
		return r;
	r = header_rev(o, &rev, err, errlen);
	json_decref(o);
	return r;
}
