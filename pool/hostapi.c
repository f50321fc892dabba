/* SPDX-License-Identifier: Apache-2.0 */
/* hostapi.c — calls to a host's remote API; see hostapi.h. */
#include "pool/hostapi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define ANSWER_MAX (16 << 20)

struct answer {
	char *p;
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	char *b;

	if (a->len + size * n > ANSWER_MAX || !(b = realloc(a->p, a->len + size * n + 1)))
		return 0;
	memcpy(b + a->len, p, size * n);
	a->len += size * n;
	b[a->len] = '\0';
	a->p = b;
	return size * n;
}

int hostapi_call(const struct hostapi_tls *t, const char *addr, const char *method,
		 const char *path, const char *body, const char *idem_key, int timeout_ms,
		 long *status, json_t **json, char *err, size_t errlen)
{
	char url[600], kh[300], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *h = NULL;
	struct answer a = { NULL, 0 };
	CURL *c = curl_easy_init();
	CURLcode e;

	*status = 0;
	*json = NULL;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(url, sizeof url, "https://%s%s", addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, t->ca);
	curl_easy_setopt(c, CURLOPT_SSLCERT, t->cert);
	curl_easy_setopt(c, CURLOPT_SSLKEY, t->key);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		h = curl_slist_append(h, "Content-Type: application/json");
	}
	if (idem_key) {
		snprintf(kh, sizeof kh, "Idempotency-Key: %s", idem_key);
		h = curl_slist_append(h, kh);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	e = curl_easy_perform(c);
	if (e == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		*json = a.p ? json_loads(a.p, 0, NULL) : NULL;
	} else {
		snprintf(err, errlen, "%s %s on %s: %s", method, path, addr,
			 cerr[0] ? cerr : curl_easy_strerror(e));
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(a.p);
	if (e == CURLE_OK)
		return 0;
	return e == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
	       : e == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EHOSTUNREACH;
}
