/* SPDX-License-Identifier: Apache-2.0 */
/* exec.c — a plan carried out on a live pool; see exec.h. */
#include "pool/exec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 15000
#define START_TRIES 4
#define RECORD_WAIT_MS 10000

struct move_run {
	const struct plan_move *m;
	const struct pool_vm *vm;
	const struct pool_host *from, *to;
	char job[64];
	bool started, ended, ok;
	char error[512];
};

static void say(const struct pool_exec *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(const struct pool_exec *x, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	if (!x->say)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	x->say(x->ctx, line);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *errstr(json_t *j)
{
	const char *s = json_string_value(json_object_get(j, "error"));

	return s ? s : "no reason given";
}

/* Start move r: 0, or -EIO (refused) / -EHOSTUNREACH (no answer, tries
 * exhausted) with r->error. */
static int start(const struct pool_exec *x, struct move_run *r, unsigned wave)
{
	char path[200], body[800], key[200], err[300] = "";
	json_t *j = NULL;
	long st = 0;
	int e = 0;

	if (!r->from->api[0]) {
		snprintf(r->error, sizeof r->error, "%s has no remote API (api-listen)",
			 r->from->name);
		return -EIO;
	}
	snprintf(path, sizeof path, "/v1/vms/%s/migrate", r->vm->name);
	snprintf(body, sizeof body, "{\"dest\":\"%s\"%s%s}", r->to->migrate,
		 x->options && x->options[0] ? "," : "", x->options ? x->options : "");
	snprintf(key, sizeof key, "ferry-pool-%s-%s-w%u", x->run_id, r->vm->name, wave);
	for (unsigned t = 0; t < START_TRIES; t++) {
		if (t)
			usleep(250000u << t);
		json_decref(j);
		j = NULL;
		e = hostapi_call(x->tls, r->from->api, "POST", path, body, key, CALL_TIMEOUT_MS, &st,
				 &j, err, sizeof err);
		/* No answer, or one a retry may change (busy, still answering the
		 * first try): the same key again, so that nothing starts twice. */
		if (!e && st != 409 && st != 503)
			break;
	}
	if (e) {
		snprintf(r->error, sizeof r->error, "%s", err);
		json_decref(j);
		return -EHOSTUNREACH;
	}
	if (st != 202 || !json_is_string(json_object_get(j, "job"))) {
		snprintf(r->error, sizeof r->error, "%s refused: %ld %s", r->from->name, st,
			 errstr(j));
		json_decref(j);
		return -EIO;
	}
	snprintf(r->job, sizeof r->job, "%s", json_string_value(json_object_get(j, "job")));
	json_decref(j);
	r->started = true;
	return 0;
}

/* Follow r's job to its end (or the deadline): 0, or -EHOSTUNREACH /
 * -ETIMEDOUT with r->error. r->ok says how it ended. */
static int follow(const struct pool_exec *x, struct move_run *r, uint64_t deadline)
{
	char path[200], err[300];
	unsigned misses = 0;

	snprintf(path, sizeof path, "/v1/jobs/%s?wait_ms=2000", r->job);
	while (now_ms() < deadline) {
		json_t *j = NULL, *job;
		const char *state;
		long st;

		if (hostapi_call(x->tls, r->from->api, "GET", path, NULL, NULL, CALL_TIMEOUT_MS, &st,
				 &j, err, sizeof err)) {
			if (++misses > 5) {
				snprintf(r->error, sizeof r->error, "%s stopped answering while the "
					 "move ran (%.200s)", r->from->name, err);
				return -EHOSTUNREACH;
			}
			sleep(1);
			continue;
		}
		misses = 0;
		job = json_object_get(j, "job");
		state = json_string_value(json_object_get(job, "state"));
		if (st != 200 || !state) {
			snprintf(r->error, sizeof r->error, "%s: job %s: %ld %s", r->from->name,
				 r->job, st, errstr(j));
			json_decref(j);
			return -EIO;
		}
		if (strcmp(state, "active") != 0) {
			r->ended = true;
			r->ok = !strcmp(state, "completed");
			if (!r->ok)
				snprintf(r->error, sizeof r->error, "%s", errstr(job));
			json_decref(j);
			return 0;
		}
		json_decref(j);
	}
	snprintf(r->error, sizeof r->error, "job %s on %s still runs after %d s", r->job,
		 r->from->name, x->job_timeout_ms / 1000);
	return -ETIMEDOUT;
}

/* etcd's record shows the wave's VMs where they went: 0, -EHOSTUNREACH
 * (etcd cannot be read) or -ETIMEDOUT (with why). */
static int recorded(const struct pool_exec *x, struct move_run *runs, size_t n, char *why,
		    size_t len)
{
	uint64_t until = now_ms() + RECORD_WAIT_MS;
	char err[300];

	for (;;) {
		struct pool_inv now;
		size_t bad = n;
		int r = pool_inv_read(x->e, &now, err, sizeof err);

		if (r) {
			snprintf(why, len, "etcd: %s", err);
			return -EHOSTUNREACH;
		}
		for (size_t i = 0; i < n; i++) {
			size_t k;

			if (!runs[i].ok) {
				bad--;
				continue;
			}
			for (k = 0; k < now.nvms; k++)
				if (!strcmp(now.vms[k].name, runs[i].vm->name))
					break;
			if (k < now.nvms && !strcmp(now.vms[k].host, runs[i].to->name))
				bad--;
			else if (now_ms() >= until)
				snprintf(why, len, "etcd does not record %s on %s %d s after its move",
					 runs[i].vm->name, runs[i].to->name, RECORD_WAIT_MS / 1000);
		}
		pool_inv_free(&now);
		if (bad == 0)
			return 0;
		if (now_ms() >= until)
			return -ETIMEDOUT;
		usleep(200 * 1000);
	}
}

int pool_exec_run(const struct pool_exec *x, struct pool_exec_result *res)
{
	const struct plan *pl = x->plan;
	struct move_run *runs = calloc(pl->nmoves ? pl->nmoves : 1, sizeof *runs);
	size_t i = 0;
	int ret = 0;

	memset(res, 0, sizeof *res);
	if (!runs) {
		snprintf(res->why, sizeof res->why, "out of memory");
		return -ENOMEM;
	}
	for (unsigned w = 0; w < pl->waves && !ret; w++) {
		size_t first = i, n;
		uint64_t deadline = now_ms() + (uint64_t)x->job_timeout_ms;

		if (x->stop && *x->stop) {
			snprintf(res->why, sizeof res->why, "stopped before wave %u of %u", w + 1,
				 pl->waves);
			ret = -EINTR;
			break;
		}
		/* Start the wave. */
		for (; i < pl->nmoves && pl->moves[i].wave == w; i++) {
			struct move_run *r = &runs[i];
			int e;

			r->m = &pl->moves[i];
			r->vm = &x->inv->vms[x->vm_of[r->m->vm]];
			r->from = &x->inv->hosts[r->m->from];
			r->to = &x->inv->hosts[r->m->to];
			if ((e = start(x, r, w))) {
				say(x, "wave %u/%u: %s %s -> %s: not started: %s", w + 1, pl->waves,
				    r->vm->name, r->from->name, r->to->name, r->error);
				res->failed++;
				snprintf(res->why, sizeof res->why, "%s could not start: %s",
					 r->vm->name, r->error);
				ret = e;
				i++;
				break; /* start no more; follow those under way */
			}
			say(x, "wave %u/%u: %s %s -> %s: started (job %s)", w + 1, pl->waves,
			    r->vm->name, r->from->name, r->to->name, r->job);
		}
		n = i - first;
		/* Follow every move started to its end. */
		for (size_t k = first; k < first + n; k++) {
			struct move_run *r = &runs[k];
			int e;

			if (!r->started)
				continue;
			if ((e = follow(x, r, deadline))) {
				say(x, "wave %u/%u: %s: %s", w + 1, pl->waves, r->vm->name, r->error);
				res->failed++;
				if (!ret) {
					snprintf(res->why, sizeof res->why, "%s: %s", r->vm->name,
						 r->error);
					ret = e;
				}
				continue;
			}
			say(x, "wave %u/%u: %s %s -> %s: %s%s%s", w + 1, pl->waves, r->vm->name,
			    r->from->name, r->to->name, r->ok ? "done" : "failed",
			    r->ok ? "" : ": ", r->ok ? "" : r->error);
			if (r->ok) {
				res->moved++;
			} else {
				res->failed++;
				if (!ret) {
					snprintf(res->why, sizeof res->why, "the move of %s from %s to "
						 "%s failed: %s", r->vm->name, r->from->name,
						 r->to->name, r->error);
					ret = -EIO;
				}
			}
		}
		if (ret)
			break;
		/* The next wave counts on this one's moves: see them in the record. */
		if ((ret = recorded(x, runs + first, n, res->why, sizeof res->why)))
			break;
		res->waves_done++;
	}
	free(runs);
	return ret;
}
