/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_api.c — libFuzzer target for ferryd's control request check
 * (api/api.c): one line of input as the daemon reads it.
 *
 * A refused request always gets a sentence; an accepted one has an op whose
 * required members are all present with the right types.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	const struct api_op *op = NULL;
	char err[256] = "";

	if (!req)
		return 0;
	if (api_check(req, &op, err, sizeof err)) {
		CHECK(err[0]);
	} else {
		CHECK(op && !strcmp(op->name, json_string_value(json_object_get(req, "op"))));
		for (const struct api_member *m = op->m; m->key; m++)
			CHECK(!m->required || json_object_get(req, m->key));
	}
	json_decref(req);
	return 0;
}
