/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jline.h — one JSON object per line for the benchmarks (DESIGN.md §12),
 * built up field by field: {"bench":...,"k":v,...}. Values that do not apply
 * or are not finite are null.
 */
#ifndef FERRY_BENCH_JLINE_H
#define FERRY_BENCH_JLINE_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct jline {
	char buf[8192];
	size_t len;
};

static inline void jl_add(struct jline *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void jl_add(struct jline *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->len >= sizeof j->buf)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->len += (size_t)n;
}

/* A string, escaped; null if v is NULL. */
static inline void jl_str(struct jline *j, const char *k, const char *v)
{
	if (!v) {
		jl_add(j, ",\"%s\":null", k);
		return;
	}
	jl_add(j, ",\"%s\":\"", k);
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if (c == '"' || c == '\\')
			jl_add(j, "\\%c", c);
		else if (c < 0x20)
			jl_add(j, "\\u%04x", c);
		else
			jl_add(j, "%c", c);
	}
	jl_add(j, "\"");
}

static inline void jl_u64(struct jline *j, const char *k, uint64_t v)
{
	jl_add(j, ",\"%s\":%" PRIu64, k, v);
}

static inline void jl_bool(struct jline *j, const char *k, bool v)
{
	jl_add(j, ",\"%s\":%s", k, v ? "true" : "false");
}

/* A number, or null where it does not apply (valid false) or is not finite. */
static inline void jl_num(struct jline *j, const char *k, double v, bool valid)
{
	if (valid && v == v && v < 1e300 && v > -1e300)
		jl_add(j, ",\"%s\":%.6g", k, v);
	else
		jl_add(j, ",\"%s\":null", k);
}

#endif
