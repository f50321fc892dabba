/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_ratelimit.c — common/ratelimit: 1, 2 and 4 threads share one limiter
 * and take chunks of 4 KiB ... 2.1 MiB at 20 and 200 MiB/s for 2.5 s; the
 * completion instant of every take is logged and every sliding window is
 * checked: each 1-s window holds at most rate + 5 % (strictly); each 1-s
 * window inside the busy period at least rate - 5 % - two chunks (a take is
 * counted at one instant, so two windows a hair apart differ by a whole
 * chunk, and one held back by the window guard can cost another; see
 * ratelimit.h: at 200 MiB/s that is 93 %, at 20 MiB/s 74 %); each 100-ms window at most a tenth of the rate
 * plus the burst, one chunk and 10 ms of slack (no spikes, the first 100 ms
 * included). A bucket with a burst of a second's worth fails the last check;
 * one without the window guard fails the first at 20 MiB/s.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>

#include "common/mtime.h"
#include "common/ratelimit.h"

#define MIB (1024 * 1024ULL)
#define RUN_NS (2500 * NSEC_PER_MSEC)
#define MAX_RECS (1u << 16)

/* One take: the release instant the limiter granted, and how many bytes. */
struct rec {
	uint64_t t, n;
};

/* One limiter under test and the takes its threads logged. */
struct run {
	struct ratelimit rl;
	uint64_t rate, t0, deadline;
	unsigned nthreads;
	struct rec *recs;
	unsigned nrec; /* atomic */
	unsigned early; /* atomic: takes that returned before their instant */
	uint64_t max_chunk;
};

struct worker {
	struct run *run;
	uint64_t seed;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* 4 KiB << k for k in 0..9; the 2 MiB ones up to 64 KiB larger (a record
 * with its headers). */
static uint64_t chunk(uint64_t *s)
{
	unsigned k = (unsigned)(xorshift(s) % 10);
	uint64_t n = 4096ULL << k;

	if (k == 9)
		n += xorshift(s) % (64 * 1024);
	return n;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;

	while (mono_ns() < r->deadline) {
		uint64_t n = chunk(&w->seed);
		unsigned i;

		/* The instant the limiter granted: what it promises about. When
		 * this thread actually ran again (later, on a loaded machine) is
		 * the scheduler's business. */
		uint64_t at = ratelimit_take(&r->rl, n);

		if (!at || mono_ns() < at)
			__atomic_add_fetch(&r->early, 1, __ATOMIC_RELAXED);
		i = __atomic_fetch_add(&r->nrec, 1, __ATOMIC_RELAXED);
		if (i >= MAX_RECS)
			break; /* the main thread fails the run */
		r->recs[i] = (struct rec){ .t = at, .n = n };
	}
	return NULL;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

/* Index of the first record with t >= v (strict: t > v). */
static size_t lower(const struct rec *r, size_t n, uint64_t v, int strict)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (strict ? r[mid].t <= v : r[mid].t < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Bytes of records with t in [a, b) (open_lo: (a, b]). pre: prefix sums. */
static uint64_t bytes_in(const struct rec *r, const uint64_t *pre, size_t n, uint64_t a,
			 uint64_t b, int open_lo)
{
	size_t i = lower(r, n, a, open_lo), j = lower(r, n, b, open_lo);

	return pre[j] - pre[i];
}

/* Check every sliding window of the run (see the top of the file). */
static void check_windows(struct run *r)
{
	size_t n = r->nrec;
	struct rec *v = r->recs;
	uint64_t *pre;
	uint64_t hi = 0, lo = UINT64_MAX, spike = 0, total;
	uint64_t up = r->rate + r->rate / 20;
	uint64_t down = r->rate - r->rate / 20 - 2 * r->max_chunk;
	uint64_t spike_max = r->rate / 10 + r->rate / RATELIMIT_BURST_DIV + r->max_chunk +
			     r->rate / 100;

	assert_true(n < MAX_RECS);
	pre = calloc(n + 1, sizeof *pre);
	assert_non_null(pre);
	qsort(v, n, sizeof *v, rec_cmp);
	for (size_t i = 0; i < n; i++)
		pre[i + 1] = pre[i] + v[i].n;
	total = pre[n];
	/* the largest windows start at a take; the smallest start just after one
	 * (or at the start) */
	for (size_t i = 0; i < n; i++) {
		uint64_t b = bytes_in(v, pre, n, v[i].t, v[i].t + NSEC_PER_SEC, 0);
		uint64_t s = bytes_in(v, pre, n, v[i].t, v[i].t + 100 * NSEC_PER_MSEC, 0);

		hi = b > hi ? b : hi;
		spike = s > spike ? s : spike;
		if (v[i].t + NSEC_PER_SEC <= r->deadline) {
			b = bytes_in(v, pre, n, v[i].t, v[i].t + NSEC_PER_SEC, 1);
			lo = b < lo ? b : lo;
		}
	}
	{
		uint64_t b = bytes_in(v, pre, n, r->t0, r->t0 + NSEC_PER_SEC, 0);

		lo = b < lo ? b : lo;
		b = bytes_in(v, pre, n, r->deadline - NSEC_PER_SEC, r->deadline, 0);
		lo = b < lo ? b : lo;
	}
	print_message("  %u thread(s) at %3lu MiB/s: %5zu takes, %.1f MiB; 1-s windows "
		      "%.3f .. %.3f of the rate, 100-ms peak %.3f of a tenth\n",
		      r->nthreads, (unsigned long)(r->rate / MIB), n, (double)total / MIB,
		      (double)lo / (double)r->rate, (double)hi / (double)r->rate,
		      (double)spike / (double)(r->rate / 10));
	free(pre);
	assert_true(hi <= up);
	assert_true(lo >= down);
	assert_true(spike <= spike_max);
}

static void run_start(struct run *r, uint64_t rate, unsigned nthreads, pthread_t *tid,
		      struct worker *w)
{
	r->rate = rate;
	r->nthreads = nthreads;
	r->nrec = 0;
	r->max_chunk = 2 * MIB + 64 * 1024;
	r->recs = calloc(MAX_RECS, sizeof *r->recs);
	assert_non_null(r->recs);
	ratelimit_init(&r->rl, rate);
	r->t0 = mono_ns();
	r->deadline = r->t0 + RUN_NS;
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ .run = r, .seed = 0x9e3779b97f4a7c15ULL * (i + 1) + rate };
		assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
	}
}

static void run_finish(struct run *r, pthread_t *tid)
{
	for (unsigned i = 0; i < r->nthreads; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	assert_int_equal(r->early, 0);
	check_windows(r);
	ratelimit_destroy(&r->rl);
	free(r->recs);
}

/* Two limiters (20 and 200 MiB/s) side by side, nthreads senders each. */
static void run_both(unsigned nthreads)
{
	static struct run slow, fast;
	pthread_t ts[4], tf[4];
	struct worker ws[4], wf[4];

	run_start(&slow, 20 * MIB, nthreads, ts, ws);
	run_start(&fast, 200 * MIB, nthreads, tf, wf);
	run_finish(&slow, ts);
	run_finish(&fast, tf);
}

static void test_one_thread(void **state)
{
	run_both(1);
}

static void test_two_threads(void **state)
{
	run_both(2);
}

static void test_four_threads(void **state)
{
	run_both(4);
}

/* rate 0: no waiting, whatever is taken. */
static void test_unlimited(void **state)
{
	struct ratelimit rl;
	uint64_t t0;

	ratelimit_init(&rl, 0);
	t0 = mono_ns();
	for (int i = 0; i < 1000000; i++)
		ratelimit_take(&rl, 1ULL << 30);
	assert_true(mono_ns() - t0 < 100 * NSEC_PER_MSEC);
	ratelimit_destroy(&rl);
}

/* A take larger than the burst goes at once; the next one waits its debt
 * off (less the burst); set_rate 0 lifts the limit at once. */
static void test_debt_and_set_rate(void **state)
{
	struct ratelimit rl;
	uint64_t t0, dt;

	ratelimit_init(&rl, 0);
	ratelimit_set_rate(&rl, 10 * MIB);
	t0 = mono_ns();
	ratelimit_take(&rl, MIB);
	assert_true(mono_ns() - t0 < 5 * NSEC_PER_MSEC);
	ratelimit_take(&rl, MIB);
	dt = mono_ns() - t0;
	/* 100 ms of debt, less 1/64 s of burst */
	assert_true(dt >= 80 * NSEC_PER_MSEC && dt < 150 * NSEC_PER_MSEC);
	ratelimit_set_rate(&rl, 0);
	t0 = mono_ns();
	ratelimit_take(&rl, 100 * MIB);
	ratelimit_take(&rl, 100 * MIB);
	assert_true(mono_ns() - t0 < 5 * NSEC_PER_MSEC);
	ratelimit_destroy(&rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_debt_and_set_rate),
		cmocka_unit_test(test_one_thread),
		cmocka_unit_test(test_two_threads),
		cmocka_unit_test(test_four_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
