/* SPDX-License-Identifier: Apache-2.0 */
/* check.h — the fuzz targets' assertion: report the failed condition and
 * abort, so that libFuzzer keeps the input. */
#ifndef FERRY_TESTS_FUZZ_CHECK_H
#define FERRY_TESTS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

#endif
