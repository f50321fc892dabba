/*
 * ratelimit.h — a token bucket for one job's bytes: rate bytes per second,
 * bursts of at most rate/10 bytes (100 ms), so any 1-second window holds
 * within about a tenth of the rate. rate 0 is unlimited.
 */
#ifndef FERRY_RATELIMIT_H
#define FERRY_RATELIMIT_H

#include <stdint.h>

struct ratelimit {
	uint64_t rate;   /* bytes/s; 0 = off */
	uint64_t t_last; /* ns */
	double tokens;
};

void ratelimit_init(struct ratelimit *rl, uint64_t rate);
/* Account n bytes about to be sent; sleeps while the bucket is empty. */
void ratelimit_take(struct ratelimit *rl, uint64_t n);

#endif
