/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mtime.h — monotonic time helpers. All durations are nanoseconds in u64.
 */
#ifndef FERRY_MTIME_H
#define FERRY_MTIME_H

#include <stdint.h>
#include <time.h>

#define NSEC_PER_USEC 1000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC 1000000000ULL

static inline uint64_t ts_to_ns(const struct timespec *t)
{
	return (uint64_t)t->tv_sec * NSEC_PER_SEC + (uint64_t)t->tv_nsec;
}

static inline struct timespec ns_to_ts(uint64_t ns)
{
	struct timespec t = { .tv_sec = (time_t)(ns / NSEC_PER_SEC),
			      .tv_nsec = (long)(ns % NSEC_PER_SEC) };
	return t;
}

/* CLOCK_MONOTONIC now, in ns. */
static inline uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return ts_to_ns(&t);
}

/* CLOCK_REALTIME now, in ns: only for carrying guest time across hosts. */
static inline uint64_t real_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return ts_to_ns(&t);
}

static inline double ns_to_sec(uint64_t ns) { return (double)ns / 1e9; }
static inline double ns_to_ms(uint64_t ns) { return (double)ns / 1e6; }
static inline double ns_to_us(uint64_t ns) { return (double)ns / 1e3; }

/* Sleep for ns on CLOCK_MONOTONIC, restarting after signals. */
void mono_sleep_ns(uint64_t ns);

#endif
