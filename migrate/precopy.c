/* SPDX-License-Identifier: Apache-2.0 */
/* precopy.c — what both sides of a pre-copy migration share; see precopy.h. */
#include "migrate/precopy.h"

#include <errno.h>
#include <string.h>

#include "common/mtime.h"

const char *mig_phase_name(enum mig_phase p)
{
	static const char *const n[] = { "setup", "iterating", "stop-and-copy", "commit", "done",
					 "postcopy", "postcopy-paused" };

	return (unsigned)p < sizeof n / sizeof n[0] ? n[p] : "?";
}

void migrate_opts_default(struct migrate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->downtime_ns = 300 * NSEC_PER_MSEC;
	o->max_iters = 30;
	o->on_no_converge = NOCONV_STOP;
	codec_opts_default(&o->codec);
	o->peer_timeout_ms = 15000;
}

static const char *const policy_names[NOCONV_MAX] = { "stop", "throttle", "abort", "postcopy" };

const char *mig_policy_name(enum noconv_policy p)
{
	return (unsigned)p < NOCONV_MAX ? policy_names[p] : "?";
}

int mig_policy_parse(const char *s, enum noconv_policy *p)
{
	for (unsigned i = 0; i < NOCONV_MAX; i++)
		if (strcmp(s, policy_names[i]) == 0) {
			*p = (enum noconv_policy)i;
			return 0;
		}
	return -EINVAL;
}
