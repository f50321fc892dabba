/* SPDX-License-Identifier: Apache-2.0 */
/*
 * failpoint.h — named points where a test makes a process fail on purpose.
 *
 * $FERRY_FAILPOINTS lists "name=action" pairs separated by commas, read once.
 * Actions: "stop" (the process stops itself with SIGSTOP, so that a test can
 * SIGKILL it at exactly this point, or SIGCONT it to model a hang), "exit"
 * (_exit at once, like a crash), "sleep:MS", "error" (the call returns -EIO).
 * Unset, a failpoint costs one load and a branch.
 */
#ifndef FERRY_FAILPOINT_H
#define FERRY_FAILPOINT_H

int failpoint_hit(const char *name);
extern int failpoints_armed;

static inline int failpoint(const char *name)
{
	return failpoints_armed ? failpoint_hit(name) : 0;
}

/* Read $FERRY_FAILPOINTS; called by main() before any thread starts. */
void failpoints_init(void);

#endif
