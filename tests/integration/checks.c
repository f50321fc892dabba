/* SPDX-License-Identifier: Apache-2.0 */
/* checks.c — what the daemon tests check again and again; see checks.h. */
#include "tests/integration/checks.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/mtime.h"
#include "common/util.h"

char *dumps(const json_t *o)
{
	return json_dumps(o, JSON_COMPACT); /* leaked on failure paths only */
}

/* Does the file at path contain text? */
bool file_has(const char *path, const char *text)
{
	char *buf = NULL;
	size_t cap = 0, len;
	FILE *f = fopen(path, "re");
	bool has;

	if (!f)
		return false;
	len = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	has = len != (size_t)-1 && strstr(buf, text);
	free(buf);
	return has;
}

bool contains_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcasestr(s, *words))
			return true;
	return false;
}

/*
 * Soft failures: a wrong but passing state (e.g. a race in what the API
 * shows) is counted and the first one kept; the test carries on, so that
 * one such bug does not hide the others, and fails at its end.
 */
static unsigned soft_count;
static char soft_first[512];

void soft_fail(const char *fmt, ...)
{
	va_list ap;

	if (!soft_count++) {
		va_start(ap, fmt);
		vsnprintf(soft_first, sizeof soft_first, fmt, ap);
		va_end(ap);
		print_message("soft failure (the test goes on, fails at its end): %s\n", soft_first);
	}
}

/* End of a test: pass only if nothing soft failed. */
void passed(void)
{
	unsigned n = soft_count;

	soft_count = 0;
	if (n)
		fail_msg("%u soft failure(s), the first: %s", n, soft_first);
	td_test_passed();
}

/* $FERRY_TEST_TRACE: time-stamped progress lines, to see where time goes. */
void trace(const char *fmt, ...)
{
	static uint64_t t0;
	static int on = -1;
	va_list ap;

	if (on < 0)
		on = getenv("FERRY_TEST_TRACE") != NULL;
	if (!on)
		return;
	if (!t0)
		t0 = mono_ns();
	fprintf(stderr, "# %9.3f ", ns_to_sec(mono_ns() - t0));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The guest runs on d as it should after a rollback: listed as running, its
 * runtime neither paused, nor logging, nor throttled, nor incoming, making
 * progress (if its workload steps), and intact. */
void assert_intact(struct td *d, const char *vm, bool steps)
{
	uint64_t until = mono_ns() + NSEC_PER_SEC;
	struct td_rt_info ri;
	char st[32] = "";
	int r;

	for (;;) {
		if (!td_listed(d, vm, st))
			fail_msg("%s should run on ferryd %s, which does not list it", vm, d->name);
		if (strcmp(st, "running") == 0)
			break;
		if (mono_ns() > until)
			fail_msg("%s on ferryd %s is \"%s\", not running", vm, d->name, st);
		h_sleep_ms(20);
	}
	if ((r = td_rt_info(d->run_dir, vm, &ri)))
		fail_msg("%s: its runtime on %s does not answer INFO: %s", vm, d->name, strerror(-r));
	if (ri.paused || ri.logdirty || ri.throttle || ri.incoming)
		fail_msg("%s on %s: runtime says paused=%d logdirty=%d throttle=%u incoming=%d; "
			 "should be 0 0 0 0", vm, d->name, ri.paused, ri.logdirty, ri.throttle,
			 ri.incoming);
	if (steps)
		td_wait_running(d, vm, 5000);
	td_verify_ok(d, vm);
}

/* vm is not on d: not listed (d may take until timeout_ms to drop a
 * half-made copy) and no runtime for it in d's run dir. */
void assert_absent(struct td *d, const char *vm, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char st[32];

	while (td_listed(d, vm, st)) {
		if (mono_ns() > until)
			fail_msg("ferryd %s still lists %s (state %s) %d ms after the migration failed",
				 d->name, vm, st, timeout_ms);
		h_sleep_ms(20);
	}
	td_wait_no_runtime(d->run_dir, vm, timeout_ms);
}

/* The other side's record of job id (the HELLO carries the source's id), or
 * if it knows no such id, its jobs for vm: none may stay active, and unless
 * completed_ok, none of them may claim completion. */
void peer_jobs_settled(struct td *d, const char *id, const char *vm, bool completed_ok)
{
	uint64_t until = mono_ns() + 10 * NSEC_PER_SEC;

	for (;;) {
		json_t *r = td_ok(d, "{s:s}", "op", "jobs"), *j;
		bool active = false, by_id = false;
		size_t i;

		json_array_foreach(json_object_get(r, "jobs"), i, j)
			if (strcmp(td_jstr(j, "id"), id) == 0)
				by_id = true;
		json_array_foreach(json_object_get(r, "jobs"), i, j) {
			const char *s = td_jstr(j, "state");

			if (by_id ? strcmp(td_jstr(j, "id"), id) != 0 : strcmp(td_jstr(j, "vm"), vm) != 0)
				continue;
			if (strcmp(s, "active") == 0 || strcmp(s, "unresolved") == 0)
				active = true;
			else if (by_id && !completed_ok && strcmp(s, "completed") == 0)
				fail_msg("ferryd %s says job %s completed, but it failed: %s", d->name, id,
					 dumps(j));
		}
		json_decref(r);
		if (!active)
			return;
		if (mono_ns() > until)
			fail_msg("ferryd %s: its side of job %s (%s) is still active 10 s after the "
				 "other side ended it", d->name, id, vm);
		h_sleep_ms(50);
	}
}

/* After the source's job completed, the destination must list vm as
 * running; a late state there is a (soft) failure, none after 2 s a hard one. */
void wait_dest_running(struct td *s, struct td *d, const char *vm, const json_t *job)
{
	uint64_t t0 = mono_ns();
	char st[32] = "", first[32];
	bool listed = td_listed(d, vm, st);

	if (listed && strcmp(st, "running") == 0)
		return;
	snprintf(first, sizeof first, "%s", listed ? st : "not listed");
	do {
		h_sleep_ms(5);
		listed = td_listed(d, vm, st);
	} while (!(listed && strcmp(st, "running") == 0) && mono_ns() - t0 < 2 * NSEC_PER_SEC);
	if (!listed || strcmp(st, "running") != 0)
		fail_msg("%s moved %s->%s (job completed), but 2 s later the destination lists it "
			 "as %s", vm, s->name, d->name, listed ? st : "nothing");
	soft_fail("job %s completed on %s while %s still showed %s as %s for another %.1f ms",
		  job ? td_jstr(job, "id") : "(ferry migrate)", s->name, d->name, vm, first,
		  ns_to_ms(mono_ns() - t0));
}

/* Move vm from s to d and check both sides; returns the source's job. */
json_t *move_ok(struct td *s, struct td *d, const char *vm)
{
	char *id = td_migrate(s, vm, d->port, NULL), st[32];
	json_t *job = td_wait_job(s, id, NULL, 60000);

	if (strcmp(td_jstr(job, "state"), "completed") != 0)
		fail_msg("%s %s->%s: job ended %s: %s", vm, s->name, d->name, td_jstr(job, "state"),
			 dumps(job));
	if (td_listed(s, vm, st)) {
		uint64_t t0 = mono_ns();

		while (td_listed(s, vm, st) && mono_ns() - t0 < 2 * NSEC_PER_SEC)
			h_sleep_ms(5);
		if (td_listed(s, vm, st))
			fail_msg("%s moved %s->%s but the source still lists it (%s) 2 s later", vm,
				 s->name, d->name, st);
		soft_fail("job %s completed while %s still listed %s (state \"migrating\") for "
			  "another %.1f ms", td_jstr(job, "id"), s->name, vm, ns_to_ms(mono_ns() - t0));
	}
	td_wait_no_runtime(s->run_dir, vm, 5000);
	wait_dest_running(s, d, vm, job);
	if (td_runtimes(d->run_dir, vm, NULL, 0) != 1)
		fail_msg("%s on %s: %d runtimes", vm, d->name, td_runtimes(d->run_dir, vm, NULL, 0));
	td_verify_ok(d, vm);
	peer_jobs_settled(d, id, vm, true);
	free(id);
	return job;
}

/* fill:ws=W with one vCPU has written everything after W/4K steps. */
void wait_filled(struct td *d, const char *vm, double steps)
{
	uint64_t until = mono_ns() + 20 * NSEC_PER_SEC;

	for (;;) {
		json_t *v = td_info(d, vm);
		double s = v ? td_jnum(v, "steps") : NAN;

		json_decref(v);
		if (s >= steps)
			return;
		if (mono_ns() > until)
			fail_msg("%s on %s: fill made %.0f of %.0f steps in 20 s", vm, d->name, s, steps);
		h_sleep_ms(10);
	}
}

int fds_of(const struct td *d)
{
	return td_fd_count(d->pid, NULL);
}

void soft_reset(void)
{
	soft_count = 0;
}

char *protect_ok(struct td *p, const char *peer, const char *vm, bool unsafe)
{
	json_t *r, *job;
	char *id;

	r = td_ok(p, "{s:s, s:s, s:s, s:i, s:i, s:b}", "op", "protect", "name", vm, "peer", peer,
		  "epoch_ms", 25, "heartbeat_ms", 300, "unsafe_no_fencing", unsafe);
	id = strdup(td_jstr(r, "job"));
	json_decref(r);
	for (uint64_t until = mono_ns() + 60 * NSEC_PER_SEC;; h_sleep_ms(20)) {
		job = td_job(p, id);
		if (!strcmp(td_jstr(job, "stage"), "protected"))
			break;
		if (strcmp(td_jstr(job, "stage"), "syncing") || mono_ns() > until)
			fail_msg("protect %s on %s to %s: %s", vm, p->name, peer, dumps(job));
		json_decref(job);
	}
	if (json_is_true(json_object_get(json_object_get(job, "replication"), "fencing")) == unsafe)
		fail_msg("protect %s: fencing is %s", vm, unsafe ? "on" : "off");
	json_decref(job);
	return id;
}

void kill_host(struct td *d)
{
	pid_t pids[16];
	int n = td_runtimes(d->run_dir, NULL, pids, 16);

	for (int i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	td_kill(d);
}

json_t *wait_stage(struct td *d, const char *id, const char *want, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;; h_sleep_ms(20)) {
		json_t *job = td_job(d, id);

		if (!strcmp(td_jstr(job, "stage"), want))
			return job;
		if (mono_ns() > until)
			fail_msg("job %s on %s: stage %s, not %s: %s", id, d->name,
				 td_jstr(job, "stage"), want, dumps(job));
		json_decref(job);
	}
}
