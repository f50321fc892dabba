/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_etcd.c — libFuzzer target for the parsers of etcd's answers
 * (coord/etcd_json.c). The first byte picks the parser, the rest is the
 * body. Whatever the body, a parser returns 0, -EIO or -EBADMSG (or
 * -ENOMEM), sets err on failure, and on success gives values the callers
 * may trust: a granted lease has an id and a positive TTL, a key read has
 * a NUL-terminated value and ordered revisions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coord/etcd.h"
#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *b = (const char *)data + 1;
	size_t n = size ? size - 1 : 0;
	char err[256] = "", *value = NULL;
	int64_t a = 0, c = 0;
	bool ok = false, found = false;
	int r;

	if (!size)
		return 0;
	switch (data[0] % 6) {
	case 0:
		r = etcd_parse_grant(b, n, &a, &c, err, sizeof err);
		CHECK(r || (a != 0 && c > 0));
		break;
	case 1:
		r = etcd_parse_keepalive(b, n, 42, &c, err, sizeof err);
		CHECK(r || c >= 0);
		break;
	case 2:
		r = etcd_parse_txn(b, n, &ok, &a, err, sizeof err);
		CHECK(r || a >= 0);
		break;
	case 3:
		r = etcd_parse_range(b, n, &found, &value, &a, &c, err, sizeof err);
		CHECK(!r || (!found && !value));
		if (!r && found) {
			CHECK(value && a > 0 && c >= a);
			CHECK(strlen(value) < n);
		}
		free(value);
		break;
	case 4: {
		struct etcd_kv *kvs = NULL;
		size_t nkv = 7;

		r = etcd_parse_list(b, n, &kvs, &nkv, err, sizeof err);
		CHECK(!r || (!kvs && nkv == 0));
		CHECK(r || !nkv == !kvs);
		for (size_t i = 0; !r && i < nkv; i++)
			CHECK(kvs[i].key && kvs[i].value && kvs[i].create_rev > 0 &&
			      kvs[i].mod_rev >= kvs[i].create_rev);
		etcd_kvs_free(kvs, nkv);
		break;
	}
	default:
		r = etcd_parse_empty(b, n, err, sizeof err);
		break;
	}
	CHECK(r == 0 || r == -EIO || r == -EBADMSG || r == -ENOMEM);
	CHECK(!r || err[0]);
	return 0;
}
