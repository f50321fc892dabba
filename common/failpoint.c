/* SPDX-License-Identifier: Apache-2.0 */
/* failpoint.c — test failure injection; see failpoint.h. */
#include "common/failpoint.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

int failpoints_armed;
static const char *spec;

void failpoints_init(void)
{
	spec = getenv("FERRY_FAILPOINTS");
	failpoints_armed = spec && spec[0];
}

/* The action for name in spec, copied into act; false if none. */
static int lookup(const char *name, char *act, size_t max)
{
	size_t nl = strlen(name);

	for (const char *p = spec; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > nl + 1 && strncmp(p, name, nl) == 0 && p[nl] == '=' &&
		    len - nl - 1 < max) {
			memcpy(act, p + nl + 1, len - nl - 1);
			act[len - nl - 1] = '\0';
			return 1;
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

int failpoint_hit(const char *name)
{
	char act[32];

	if (!lookup(name, act, sizeof act))
		return 0;
	log_warn("failpoint %s: %s", name, act);
	if (strcmp(act, "stop") == 0) {
		raise(SIGSTOP);
	} else if (strcmp(act, "exit") == 0) {
		_exit(86);
	} else if (strncmp(act, "sleep:", 6) == 0) {
		long ms = strtol(act + 6, NULL, 10);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	} else if (strcmp(act, "error") == 0) {
		return -EIO;
	}
	return 0;
}
