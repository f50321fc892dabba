/* SPDX-License-Identifier: Apache-2.0 */
/* ratelimit.c — a paced token bucket plus a 1-second window guard; see ratelimit.h. */
#include "common/ratelimit.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/mtime.h"

/* the guard's window: a second and the senders' wake-up jitter */
#define WINDOW_NS (NSEC_PER_SEC + RATELIMIT_SLACK_NS)

/* n bytes at rate bytes/s, in ns (saturating). */
static uint64_t bytes_ns(uint64_t n, uint64_t rate)
{
	unsigned __int128 ns = (unsigned __int128)n * NSEC_PER_SEC / rate;

	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

void ratelimit_init(struct ratelimit *rl, uint64_t rate)
{
	memset(rl, 0, sizeof *rl);
	pthread_mutex_init(&rl->lock, NULL);
	__atomic_store_n(&rl->rate, rate, __ATOMIC_RELAXED);
	rl->tat = mono_ns();
}

void ratelimit_destroy(struct ratelimit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

/* Takes already accounted keep their debt and stay in the window log, so a
 * lower rate applies to the bytes of the last second too. */
void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate)
{
	pthread_mutex_lock(&rl->lock);
	__atomic_store_n(&rl->rate, rate, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&rl->lock);
}

/* Drop the oldest log entry. Under lock. */
static void log_pop(struct ratelimit *rl)
{
	rl->win_bytes -= rl->log[rl->head].bytes;
	rl->head = (rl->head + 1) % RATELIMIT_LOG;
	rl->len--;
}

/* Record n bytes released at r (no earlier than any release before it).
 * Under lock. Coalescing stamps the entry with its latest release, so its
 * bytes leave the window late rather than early; a full log (not reachable
 * given the slot width, see RATELIMIT_LOG) coalesces too. */
static void log_add(struct ratelimit *rl, uint64_t r, uint64_t n)
{
	struct ratelimit_ent *e;

	if (rl->len && (r - rl->grp_first < RATELIMIT_SLOT_NS || rl->len == RATELIMIT_LOG)) {
		e = &rl->log[(rl->head + rl->len - 1) % RATELIMIT_LOG];
		e->bytes += n;
		e->stamp = r;
	} else {
		e = &rl->log[(rl->head + rl->len) % RATELIMIT_LOG];
		e->stamp = r;
		e->bytes = n;
		rl->len++;
		rl->grp_first = r;
	}
	rl->win_bytes += n;
}

/*
 * The window guard: the earliest instant t >= r at which (t - W, t] holds
 * at most cap - n bytes of earlier releases, where W = 1 s + slack: an
 * entry stamped s counts in (t - W, t] while s + W > t. Entries dropped here
 * never count again, since later releases come no earlier than t. Under lock.
 */
static uint64_t guard(struct ratelimit *rl, uint64_t cap, uint64_t r, uint64_t n)
{
	while (rl->len && rl->log[rl->head].stamp + WINDOW_NS <= r)
		log_pop(rl);
	while (rl->len && rl->win_bytes + n > cap) {
		r = max_u64(r, rl->log[rl->head].stamp + WINDOW_NS);
		log_pop(rl);
	}
	return r;
}

/*
 * Reserve the release instant of a take of n bytes asked for at now: no
 * earlier than the previous release (arrival order), than the pacing allows
 * (debt at most the burst), and than the window guard allows. Then charge its
 * debt from that instant and log it. Under lock; returns the instant (ns).
 */
static uint64_t reserve(struct ratelimit *rl, uint64_t rate, uint64_t now, uint64_t n)
{
	uint64_t tau = NSEC_PER_SEC / RATELIMIT_BURST_DIV;
	uint64_t r = max_u64(now, rl->last);

	if (rl->tat > tau)
		r = max_u64(r, rl->tat - tau);
	r = guard(rl, rate + rate / RATELIMIT_CAP_DIV, r, n);
	rl->tat = max_u64(rl->tat, r) + bytes_ns(n, rate);
	log_add(rl, r, n);
	rl->last = r;
	return r;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = ns_to_ts(t);

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Unlimited: one relaxed load. Else reserve an instant under the lock and
 * sleep until it without the lock, so other senders can reserve theirs. */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t n)
{
	uint64_t rate, now, at;

	if (!__atomic_load_n(&rl->rate, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&rl->lock);
	rate = rl->rate;
	if (!rate) {
		pthread_mutex_unlock(&rl->lock);
		return 0;
	}
	now = mono_ns();
	at = reserve(rl, rate, now, n);
	pthread_mutex_unlock(&rl->lock);
	if (at > now)
		sleep_until(at);
	return at;
}
