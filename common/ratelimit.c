/* ratelimit.c — token bucket; see ratelimit.h. */
#include "common/ratelimit.h"

#include <errno.h>
#include <time.h>

#include "common/mtime.h"

void ratelimit_init(struct ratelimit *rl, uint64_t rate)
{
	rl->rate = rate;
	rl->t_last = mono_ns();
	rl->tokens = (double)rate / 10;
}

void ratelimit_take(struct ratelimit *rl, uint64_t n)
{
	double burst = (double)rl->rate / 10;
	uint64_t now;

	if (!rl->rate)
		return;
	now = mono_ns();
	rl->tokens += (double)(now - rl->t_last) * (double)rl->rate / 1e9;
	if (rl->tokens > burst)
		rl->tokens = burst;
	rl->t_last = now;
	rl->tokens -= (double)n;
	if (rl->tokens < 0) {
		/* Sleep until the debt is paid. */
		double s = -rl->tokens / (double)rl->rate;
		struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}
