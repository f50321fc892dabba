/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_conf.c — libFuzzer target for the "key = value" configuration parser
 * (common/conf.c) that reads /etc/ferry/ferryd.conf.
 *
 * Every key handed to the callback is [a-z0-9-]+, no value carries a NUL, a
 * newline or surrounding blanks, and a failed parse says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_setting(void *ctx, const char *k, const char *v, char *err, size_t errlen)
{
	size_t vl = strlen(v);

	(*(unsigned *)ctx)++;
	CHECK(k[0]);
	for (const char *c = k; *c; c++)
		CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-');
	CHECK(!strchr(v, '\n'));
	CHECK(vl == 0 || (v[0] != ' ' && v[0] != '\t' && v[vl - 1] != ' ' && v[vl - 1] != '\t'));
	/* Refuse one key, as ferryd refuses unknown ones. */
	if (strcmp(k, "bad") == 0) {
		snprintf(err, errlen, "refused");
		return -1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[600] = "";
	unsigned n = 0;
	int r = conf_parse((const char *)data, size, on_setting, &n, err, sizeof err);

	CHECK(r == 0 || err[0]);
	CHECK(n <= size);
	return 0;
}
