/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pagegen.h — page contents for codec tests and benchmarks: random
 * (incompressible) and text-like (log lines, which LZ4 makes ~45 % of).
 * Deterministic: one xorshift64 generator per program.
 */
#ifndef FERRY_TESTS_PAGEGEN_H
#define FERRY_TESTS_PAGEGEN_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t pagegen_rng = 0x2545f4914f6cdd1dULL;

static inline uint64_t rnd(void)
{
	pagegen_rng ^= pagegen_rng << 13;
	pagegen_rng ^= pagegen_rng >> 7;
	pagegen_rng ^= pagegen_rng << 17;
	return pagegen_rng;
}

static inline void fill_random(uint8_t *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static inline void fill_text(uint8_t *p, size_t n)
{
	static const char *lv[] = { "INFO", "WARN", "DEBUG", "ERROR" };
	static const char *path[] = { "/api/v1/items", "/api/v1/users", "/static/app.js",
				      "/healthz", "/api/v2/orders" };
	char line[256];
	size_t i = 0;

	while (i < n) {
		int l = snprintf(line, sizeof line,
				 "2024-05-%02u %02u:%02u:%02u.%03u %s worker-%u request id=%u "
				 "path=%s status=%u bytes=%u\n",
				 (unsigned)(1 + rnd() % 28), (unsigned)(rnd() % 24),
				 (unsigned)(rnd() % 60), (unsigned)(rnd() % 60),
				 (unsigned)(rnd() % 1000), lv[rnd() % 4], (unsigned)(rnd() % 8),
				 (unsigned)(rnd() % 1000000), path[rnd() % 5],
				 rnd() % 5 ? 200u : 404u, (unsigned)(rnd() % 65536));

		for (int k = 0; k < l && i < n; k++)
			p[i++] = (uint8_t)line[k];
	}
}

#endif
