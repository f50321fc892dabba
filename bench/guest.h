/* SPDX-License-Identifier: Apache-2.0 */
/*
 * guest.h — what the benchmarks ask of a guest through the hypervisor
 * interface alone: launch one of the default backend, its statistics, its
 * verifier (hv.h's extras). Header-only: each benchmark is one program.
 */
#ifndef FERRY_BENCH_GUEST_H
#define FERRY_BENCH_GUEST_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/hv.h"

/* Launch NAME of the default backend with spec, running: 0 and an open
 * handle (the launched runtime is reaped when the handle closes after it
 * ended), or -errno (logged). */
static inline int guest_launch(const char *name, const struct hv_spec *spec,
			       struct hv_domain **d)
{
	char uri[HV_URI_MAX], err[256];
	int e;

	if ((e = hv_uri(uri, sizeof uri, NULL, name)))
		return e;
	if ((e = hv_launch(uri, spec, 0, d, err, sizeof err)))
		fprintf(stderr, "launching %s: %s\n", uri, err);
	return e;
}

/* One number of the guest's own statistics (HV_EXTRA_STATS): 0 and *v. */
static inline int guest_stat(struct hv_domain *d, const char *key, double *v)
{
	return hv_extra_number(d, HV_EXTRA_STATS, key, v);
}

/* Verify every page (HV_EXTRA_VERIFY): 0 if the check ran, *ok whether it
 * passed, and the result in words in why. */
static inline int guest_verify(struct hv_domain *d, bool *ok, char *why, size_t len)
{
	const char *res = "?";
	json_t *o;
	int e = hv_extra(d, HV_EXTRA_VERIFY, &o), v = 0;

	if (e)
		return e;
	json_unpack(o, "{s:b, s:s}", "verified", &v, "result", &res);
	*ok = v;
	snprintf(why, len, "%s", res);
	json_decref(o);
	return 0;
}

/* The microVM runtime of this build: FERRY_MVM if set, else ../ferry-mvm
 * next to the benchmark (the build tree's layout). */
static inline void guest_default_runtime(void)
{
	char exe[PATH_MAX], path[PATH_MAX + 32], *slash;
	const char *env = getenv("FERRY_MVM");
	ssize_t n;

	if (env && *env)
		return;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	if (!(slash = strrchr(exe, '/')))
		return;
	*slash = '\0';
	snprintf(path, sizeof path, "%s/../ferry-mvm", exe);
	if (access(path, X_OK) == 0)
		setenv("FERRY_MVM", path, 1);
}

#endif
