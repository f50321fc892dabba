/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stats.h — median, minimum and maximum of repeated measurements, for the
 * benchmarks (which report medians, DESIGN.md §12).
 */
#ifndef FERRY_BENCH_STATS_H
#define FERRY_BENCH_STATS_H

#include <stdlib.h>
#include <string.h>

#define MAX_REPS 1000

struct stats {
	double med, min, max;
};

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Of v[0..n), n <= MAX_REPS (sorts a copy; no libm). All zero for n == 0. */
static inline struct stats stats_of(const double *v, unsigned n)
{
	double s[MAX_REPS];
	struct stats st = { 0, 0, 0 };

	if (n == 0 || n > MAX_REPS)
		return st;
	memcpy(s, v, n * sizeof *v);
	qsort(s, n, sizeof *s, cmp_double);
	st.min = s[0];
	st.max = s[n - 1];
	st.med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	return st;
}

#endif
