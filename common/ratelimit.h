/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ratelimit.h — one job's byte budget, shared by all its sender threads:
 * rate bytes per second on average, smooth, and at most rate + rate/32 bytes
 * in any 1-second window (sliding, not only aligned ones; the first second
 * too). rate 0 is unlimited and costs one atomic load per take.
 *
 * A take of n bytes is counted at its release instant, when ratelimit_take
 * returns (the caller sends right after). Two rules decide that instant, under the lock,
 * in the order the takes arrive; the caller then sleeps until it outside the
 * lock, so the other senders can reserve their own instants meanwhile.
 *
 *  1. Pacing: a token bucket in "debt" form (GCRA). A take may go once the
 *     debt of the takes before it is at most 1/RATELIMIT_BURST_DIV of a
 *     second's worth (~1.6 %); it then adds n / rate seconds of debt. A take
 *     of any size is never refused (a 2.1 MiB record at 20 MiB/s is 10 % of
 *     a second): it goes once the debt is small and the takes after it wait
 *     it off. So any interval of length L holds at most rate * L + burst +
 *     one take: no spikes, and the first 100 ms are no exception.
 *
 *  2. The window guard. Pacing alone cannot hold a 1-second window within
 *     5 % once takes are large: the window can hold a second's worth of
 *     paced bytes plus the burst plus one whole take (+ 12 % at 20 MiB/s
 *     with 2.1 MiB takes). Where in its paid interval a take is released
 *     does not help: released at the start, a window catches the last take
 *     whole; at the end, the first one; in the middle, half of each. So the
 *     limiter also logs the last second's releases and holds a take back
 *     until (t - 1 s, t] holds at most cap - n bytes, cap = rate + rate /
 *     RATELIMIT_CAP_DIV. Every window that ends on a release then holds at
 *     most cap, and any other window holds no more than the one ending on
 *     its last release. The cap sits above the rate so that the guard only
 *     trims the peaks of the paced stream: at cap = rate it would bind all
 *     the time, and each take it holds back would also hold back all the
 *     takes queued behind it, losing ~7 % of the rate at 20 MiB/s. The
 *     guard's window is RATELIMIT_SLACK_NS longer than a second, so that a
 *     sender that wakes up to 10 ms late cannot put two releases just over a
 *     second apart into one second of actual sending.
 *     Entries coalesce releases less than RATELIMIT_SLOT_NS apart, stamped
 *     with the last of them: bytes may count up to 4 ms too long, never too
 *     short, and the log is a fixed ring (no allocation).
 *
 *  Release instants never decrease (arrival order), so the log only grows
 *  at its end and expires from its start. A take larger than the cap (only
 *  below ~2 MiB/s for 2 MiB takes) goes alone in an empty window.
 *
 * The lower side: with the senders always waiting on the limiter, a window
 * holds about rate bytes less the takes that straddle its edges. No limiter
 * that counts a take at one instant can promise better than one take: the
 * windows (x - 1, x] and (x - 1 - d, x - d] differ by the take at x. A large
 * take the guard holds back can cost one more (the window just before its
 * release lost the entry whose expiry let it go).
 *
 * Threads: ratelimit_take and ratelimit_set_rate may be called from any
 * number of threads at once; init and destroy from one, with no take running.
 */
#ifndef FERRY_RATELIMIT_H
#define FERRY_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

#define RATELIMIT_BURST_DIV 64u                /* burst: 1/64 s of the rate */
#define RATELIMIT_CAP_DIV 32u                  /* 1-s cap: rate + rate/32 */
#define RATELIMIT_SLACK_NS (10 * 1000 * 1000ULL) /* guard window: 1 s + 10 ms */
#define RATELIMIT_SLOT_NS (4 * 1000 * 1000ULL)  /* log entries: 4 ms apart at least */
#define RATELIMIT_LOG 320u                     /* > (1 s + slack + slot) / slot + 1 */

/* One entry of the window log: bytes released at or before stamp (ns). */
struct ratelimit_ent {
	uint64_t stamp;
	uint64_t bytes;
};

struct ratelimit {
	uint64_t rate; /* bytes/s, 0 = off; atomic (read without the lock) */

	/* under lock */
	pthread_mutex_t lock;
	uint64_t tat;        /* ns: when the debt of all takes so far is paid */
	uint64_t last;       /* ns: the latest release instant handed out */
	uint64_t grp_first;  /* ns: first release coalesced into the newest entry */
	uint64_t win_bytes;  /* sum of the log's bytes */
	unsigned head, len;  /* the log: ring of len entries from head */
	struct ratelimit_ent log[RATELIMIT_LOG];
};

/* Start a limiter at rate bytes per second (0: unlimited). */
void ratelimit_init(struct ratelimit *rl, uint64_t rate);
/* Release what init set up; no take may be running. */
void ratelimit_destroy(struct ratelimit *rl);
/* Change the rate (0: unlimited) for the takes that follow; thread-safe. */
void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate);
/* Account n bytes about to be sent; sleeps (outside any lock) until they may
 * go, and returns that release instant (mono ns; 0 when unlimited): the
 * window bound holds for release instants. A sender starved of CPU past
 * RATELIMIT_SLACK_NS after its instant can bunch its bytes with later ones;
 * nothing in user space can prevent that. Thread-safe. */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t n);

#endif
