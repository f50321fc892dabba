/* SPDX-License-Identifier: Apache-2.0 */
/* mtime.c — see mtime.h. */
#include "common/mtime.h"

#include <errno.h>

void mono_sleep_ns(uint64_t ns)
{
	struct timespec until = ns_to_ts(mono_ns() + ns);

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
}
