/* SPDX-License-Identifier: Apache-2.0 */
/*
 * job.c — the job list, the journal (STATE/jobs/ID.rec, slot files: see
 * journal.h; ID.json from older versions is still read) and the one state
 * machine; see job.h.
 */
#include "daemon/job.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/journal.h"

#define LISTENERS_MAX 8

/* How a state is journaled when a job enters it. */
enum journal { J_NONE, J_WRITE, J_SYNC };

#define S(x) (1u << (x))

/*
 * The table: per state its name, what the API calls it, how entering it is
 * journaled, whether a shutdown may still cut it short, and where a job may go
 * from it. J_SYNC marks exactly the points DESIGN.md §6 names (the source's
 * commit, resuming; a job's first record is durable anyway, as its file is
 * created); the other starts and the ends are written without fsync (a crash
 * of ferryd keeps them; a crash of the host takes the guests with it), READY
 * without one, and RUNNING not at all: they are inside the guest's downtime,
 * and COMPLETED follows once RUNNING is out. COMMITTED may still fail: it is
 * journaled before the stop-and-copy's pause, and GO handed to the transport
 * is the point of no return.
 */
static const struct {
	const char *name;
	enum api_job_state api;
	enum journal journal;
	bool interruptible;
	uint32_t next;
} states[JOB_STATE_MAX] = {
	[JOB_NEW] = { "new", API_JOB_ACTIVE, J_NONE, true,
		      S(JOB_SENDING) | S(JOB_RECEIVING) | S(JOB_SYNCING) | S(JOB_FAILED) },
	[JOB_SENDING] = { "sending", API_JOB_ACTIVE, J_WRITE, true,
			  S(JOB_COMMITTED) | S(JOB_FAILED) | S(JOB_CANCELLED) },
	[JOB_COMMITTED] = { "committed", API_JOB_ACTIVE, J_SYNC, false,
			    S(JOB_UNRESOLVED) | S(JOB_COMPLETED) | S(JOB_FAILED) | S(JOB_POSTCOPY) |
				    S(JOB_LOST) },
	[JOB_UNRESOLVED] = { "unresolved", API_JOB_UNRESOLVED, J_WRITE, false,
			     S(JOB_COMPLETED) | S(JOB_FAILED) },
	/* An incoming job's record is durable from its start (a slot file is
	 * created whole and fsync'd: daemon/journal.h), so that a destination
	 * that restarts, even after a power loss, knows the job and answers
	 * the source "discarded" (its guest never ran here): READY needs no
	 * durable write of its own in the downtime. */
	[JOB_RECEIVING] = { "receiving", API_JOB_ACTIVE, J_WRITE, true,
			    S(JOB_READY) | S(JOB_FAILED) | S(JOB_COMPLETED) },
	[JOB_READY] = { "ready", API_JOB_ACTIVE, J_WRITE, true,
			S(JOB_RESUMING) | S(JOB_FAILED) | S(JOB_COMPLETED) },
	[JOB_RESUMING] = { "resuming", API_JOB_ACTIVE, J_SYNC, false,
			   S(JOB_RUNNING) | S(JOB_FAILED) | S(JOB_RESUME_FAILED) |
				   S(JOB_COMPLETED) | S(JOB_POSTCOPY) | S(JOB_LOST) },
	[JOB_POSTCOPY] = { "postcopy", API_JOB_ACTIVE, J_SYNC, false,
			   S(JOB_RUNNING) | S(JOB_COMPLETED) | S(JOB_LOST) | S(JOB_PC_PAUSED) },
	[JOB_PC_PAUSED] = { "postcopy-paused", API_JOB_ACTIVE, J_WRITE, false,
			    S(JOB_POSTCOPY) | S(JOB_RUNNING) | S(JOB_COMPLETED) | S(JOB_LOST) },
	[JOB_RUNNING] = { "running", API_JOB_COMPLETED, J_NONE, false,
			  S(JOB_COMPLETED) | S(JOB_FAILED) },
	/* Protection: its steps are written (a restarted ferryd finds what it
	 * protected); epochs never are. Taking over is durable: from it on,
	 * the copy here may run. */
	[JOB_SYNCING] = { "syncing", API_JOB_ACTIVE, J_WRITE, false,
			  S(JOB_PROTECTED) | S(JOB_STANDBY) | S(JOB_DEGRADED) | S(JOB_FENCED) |
				  S(JOB_TAKING_OVER) | S(JOB_HELD) | S(JOB_FAILED) |
				  S(JOB_COMPLETED) },
	[JOB_PROTECTED] = { "protected", API_JOB_ACTIVE, J_WRITE, false,
			    S(JOB_SYNCING) | S(JOB_DEGRADED) | S(JOB_FENCED) | S(JOB_COMPLETED) |
				    S(JOB_FAILED) },
	[JOB_DEGRADED] = { "degraded", API_JOB_ACTIVE, J_WRITE, false,
			   S(JOB_SYNCING) | S(JOB_FENCED) | S(JOB_COMPLETED) | S(JOB_FAILED) },
	[JOB_STANDBY] = { "standby", API_JOB_ACTIVE, J_WRITE, false,
			  S(JOB_SYNCING) | S(JOB_TAKING_OVER) | S(JOB_HELD) | S(JOB_COMPLETED) |
				  S(JOB_FAILED) },
	[JOB_HELD] = { "held", API_JOB_ACTIVE, J_WRITE, false,
		       S(JOB_TAKING_OVER) | S(JOB_COMPLETED) | S(JOB_FAILED) },
	[JOB_TAKING_OVER] = { "taking-over", API_JOB_ACTIVE, J_SYNC, false,
			      S(JOB_FAILED_OVER) | S(JOB_FAILED) },
	[JOB_FAILED_OVER] = { "failed-over", API_JOB_COMPLETED, J_WRITE, false, 0 },
	[JOB_FENCED] = { "fenced", API_JOB_FAILED, J_WRITE, false, 0 },
	[JOB_COMPLETED] = { "completed", API_JOB_COMPLETED, J_WRITE, false, 0 },
	[JOB_FAILED] = { "failed", API_JOB_FAILED, J_WRITE, false, 0 },
	[JOB_CANCELLED] = { "cancelled", API_JOB_CANCELLED, J_WRITE, false, 0 },
	[JOB_RESUME_FAILED] = { "resume-failed", API_JOB_FAILED, J_WRITE, false, 0 },
	[JOB_LOST] = { "lost", API_JOB_FAILED, J_WRITE, false, 0 },
};

static const struct job_kind_ops *kinds[JOB_KIND_MAX];

static struct {
	void (*fn)(void *ctx, struct job *j, enum job_state from);
	void *ctx;
} listeners[LISTENERS_MAX];
static unsigned nlisteners;

void job_kind_register(enum job_kind k, const struct job_kind_ops *ops)
{
	kinds[k] = ops;
}

const char *job_kind_name(enum job_kind k)
{
	return (unsigned)k < JOB_KIND_MAX && kinds[k] ? kinds[k]->name : "?";
}

const char *job_state_name(enum job_state s)
{
	return (unsigned)s < JOB_STATE_MAX ? states[s].name : "?";
}

const char *job_state_api(enum job_state s)
{
	return api_job_state_name((unsigned)s < JOB_STATE_MAX ? states[s].api : API_JOB_STATE_MAX);
}

bool job_transition_ok(enum job_state from, enum job_state to)
{
	return (unsigned)from < JOB_STATE_MAX && (unsigned)to < JOB_STATE_MAX &&
	       (states[from].next & S(to));
}

bool job_state_journaled(enum job_state s, bool *durable)
{
	*durable = states[s].journal == J_SYNC;
	return states[s].journal != J_NONE;
}

void job_listen(void (*fn)(void *ctx, struct job *j, enum job_state from), void *ctx)
{
	if (nlisteners < LISTENERS_MAX)
		listeners[nlisteners++] = (typeof(listeners[0])){ fn, ctx };
}

/* ---- the list ---- */

struct job *job_find(const char *id)
{
	for (struct job *j = D.jobs; j; j = j->next)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

struct job *job_find_vm(const char *vm)
{
	struct job *newest = NULL;

	/* The list is newest first. */
	for (struct job *j = D.jobs; j; j = j->next) {
		if (strcmp(j->vm, vm) != 0)
			continue;
		if (!job_state_final(j->state))
			return j;
		if (!newest)
			newest = j;
	}
	return newest;
}

void job_make_id(char id[JOB_ID_LEN])
{
	unsigned char rnd[6];

	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		for (size_t i = 0; i < sizeof rnd; i++)
			rnd[i] = (unsigned char)(mono_ns() >> (i * 3));
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
}

struct job *job_new(enum job_kind k, const char *id)
{
	struct job *j = calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->kind = k;
	j->started = time(NULL);
	pthread_cond_init(&j->wake, NULL);
	pthread_mutex_init(&j->jlock, NULL);
	if (id)
		snprintf(j->id, sizeof j->id, "%s", id);
	else
		job_make_id(j->id);
	migrate_opts_default(&j->opts);
	return j;
}

void job_free(struct job *j)
{
	if (!j)
		return;
	pthread_cond_destroy(&j->wake);
	pthread_mutex_destroy(&j->jlock);
	free(j->rst);
	free(j);
}

void job_link(struct job *j)
{
	j->next = D.jobs;
	D.jobs = j;
}

json_t *job_json(const struct job *j)
{
	json_t *o, *h = json_array();

	for (unsigned i = 0; h && i < j->nhist; i++)
		json_array_append_new(h, json_pack("{s:s, s:I}", "stage",
						   job_state_name(j->history[i].state), "at_ms",
						   (json_int_t)j->history[i].at_ms));
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:o}", "id", j->id,
		      "kind", job_kind_name(j->kind), "direction",
		      kinds[j->kind] ? kinds[j->kind]->direction : "?", "vm", j->vm, "peer",
		      j->peer, "state", job_state_api(j->state), "stage", job_state_name(j->state),
		      "started", (json_int_t)j->started, "ended", (json_int_t)j->ended, "go", j->go,
		      "history", h ? h : json_array());
	if (o && j->error[0])
		json_object_set_new(o, "error", json_string(j->error));
	if (o && j->idem[0])
		json_object_set_new(o, "idempotency", json_string(j->idem));
	if (o && kinds[j->kind] && kinds[j->kind]->json)
		kinds[j->kind]->json(j, o);
	return o;
}

/* ---- the machine ---- */

/* Write what the record of j says: durable as asked. */
static int journal(const struct job *j, bool durable)
{
	char dir[300], file[JOB_ID_LEN + 8];
	json_t *o;
	int r;

	pthread_mutex_lock(&D.lock);
	o = job_json(j);
	pthread_mutex_unlock(&D.lock);
	if (!o)
		return -ENOMEM;
	snprintf(dir, sizeof dir, "%s/jobs", D.state_dir);
	snprintf(file, sizeof file, "%s.rec", j->id);
	r = journal_slots_write(dir, file, o, durable);
	json_decref(o);
	return r;
}

int job_journal(struct job *j)
{
	int r;

	pthread_mutex_lock(&j->jlock);
	r = journal(j, true);
	pthread_mutex_unlock(&j->jlock);
	return r;
}

/* (L) Enter `to` at time now. */
static void enter(struct job *j, enum job_state to, const char *why, const struct timespec *now)
{
	if (j->nhist == JOB_HISTORY_MAX) {
		memmove(j->history, j->history + 1, sizeof j->history[0] * (JOB_HISTORY_MAX - 1));
		j->nhist--;
	}
	j->history[j->nhist++] = (struct job_step){ to, (int64_t)now->tv_sec * 1000 +
							   now->tv_nsec / 1000000 };
	j->state = to;
	j->seq++;
	if (to == JOB_COMMITTED)
		j->go = true;
	if (job_state_final(to)) {
		j->ended = now->tv_sec;
		snprintf(j->error, sizeof j->error, "%s", to == JOB_COMPLETED || !why ? "" : why);
	} else if (why && why[0]) {
		snprintf(j->error, sizeof j->error, "%s", why);
	}
}

static void notify(struct job *j, enum job_state from, const char *why)
{
	const char *dir = j->kind == JOB_MIGRATE_OUT ? "to" : "from";

	if (job_state_final(j->state) && j->state != JOB_COMPLETED)
		log_warn("job %s: %s %s %s: %s: %s", j->id, j->vm, dir, j->peer,
			 job_state_name(j->state), why && why[0] ? why : "no reason given");
	else if (j->state == JOB_COMPLETED)
		log_info("job %s: %s %s %s: completed", j->id, j->vm, dir, j->peer);
	else
		log_debug("job %s: %s -> %s", j->id, job_state_name(from), job_state_name(j->state));
	for (unsigned i = 0; i < nlisteners; i++)
		listeners[i].fn(listeners[i].ctx, j, from);
}

/* Its record's files: the slot file and an older version's. */
static void unlink_record(const struct job *j)
{
	char path[600];

	snprintf(path, sizeof path, "%s/jobs/%s.rec", D.state_dir, j->id);
	unlink(path);
	snprintf(path, sizeof path, "%s/jobs/%s.json", D.state_dir, j->id);
	unlink(path);
}

/*
 * (L) Forget the oldest finished jobs beyond the job-history setting, their
 * records too; not keep (it has just finished, and its listeners may still
 * be looking at it) nor a job a thread still works on. The newest jobs are
 * listed first.
 */
static void prune(const struct job *keep)
{
	struct job **pp = &D.jobs;
	unsigned finished = 0;

	while (*pp) {
		struct job *j = *pp;

		if (job_state_final(j->state) && ++finished > D.job_history && j != keep &&
		    !j->running) {
			*pp = j->next;
			unlink_record(j);
			job_free(j);
			continue;
		}
		pp = &j->next;
	}
}

int job_set_state(struct job *j, enum job_state to, const char *why)
{
	struct timespec now;
	enum job_state from;
	bool durable;
	int r = 0;

	/* One transition of a job at a time, its journal write included. */
	pthread_mutex_lock(&j->jlock);
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&D.lock);
	from = j->state;
	if (!job_transition_ok(from, to)) {
		pthread_mutex_unlock(&D.lock);
		pthread_mutex_unlock(&j->jlock);
		log_error("job %s: %s -> %s is not a transition a %s job makes; refused", j->id,
			  job_state_name(from), job_state_name(to), job_kind_name(j->kind));
		return -EPERM;
	}
	if (job_state_journaled(to, &durable)) {
		/* The record says the new state before anyone sees it; if it
		 * cannot be written, nothing changes. */
		struct job *rec = malloc(sizeof *rec);

		if (!rec) {
			r = -ENOMEM;
		} else {
			memcpy(rec, j, sizeof *rec);
			enter(rec, to, why, &now);
			pthread_mutex_unlock(&D.lock);
			r = journal(rec, durable);
			free(rec);
			pthread_mutex_lock(&D.lock);
		}
	}
	if (!r) {
		enter(j, to, why, &now);
		pthread_cond_broadcast(&D.changed);
	}
	pthread_mutex_unlock(&D.lock);
	if (!r)
		notify(j, from, why);
	pthread_mutex_unlock(&j->jlock);
	if (!r && job_state_final(to)) {
		pthread_mutex_lock(&D.lock);
		prune(j);
		pthread_mutex_unlock(&D.lock);
	}
	return r;
}

void job_wait_change(struct job *j, unsigned seq, int timeout_ms)
{
	struct timespec ts = ns_to_ts(real_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC);

	while (j->seq == seq && !D.stopping &&
	       pthread_cond_timedwait(&D.changed, &D.lock, &ts) != ETIMEDOUT)
		;
}

/* ---- what the API and peers ask ---- */

void job_shutdown_session(struct job *j)
{
	if (j->s)
		session_shutdown(j->s);
}

int job_cancel(const char *id, char *err, size_t errlen)
{
	struct job *j;
	int r = 0;

	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	if (!j) {
		snprintf(err, errlen, "no job %s", id);
		r = -ENOENT;
	} else if (j->state == JOB_PC_PAUSED) {
		/* Either side may give a paused post-copy up: the guest is lost. */
		j->cancel = 1;
		pthread_cond_broadcast(&j->wake);
	} else if (j->kind != JOB_MIGRATE_OUT) {
		snprintf(err, errlen, "job %s is an incoming migration; cancel it on the source host",
			 id);
		r = -EINVAL;
	} else if (states[j->state].api != API_JOB_ACTIVE) {
		snprintf(err, errlen, "job %s is not active (%s)", id, job_state_api(j->state));
		r = -EALREADY;
	} else if (j->go) {
		snprintf(err, errlen, "job %s is past its point of no return (committed: the "
			 "stop-and-copy has begun)", id);
		r = -EBUSY;
	} else {
		j->cancel = 1;
		job_shutdown_session(j);
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

int job_resume(const char *id, const char *dest, char *err, size_t errlen)
{
	struct job *j;
	int r = 0;

	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	if (!j) {
		snprintf(err, errlen, "no job %s", id);
		r = -ENOENT;
	} else if (j->kind != JOB_MIGRATE_OUT) {
		snprintf(err, errlen, "job %s is an incoming migration; resume it on the source host",
			 id);
		r = -EINVAL;
	} else if (j->state != JOB_PC_PAUSED && j->state != JOB_POSTCOPY) {
		snprintf(err, errlen, "job %s is not a post-copy (%s)", id, job_state_name(j->state));
		r = -EALREADY; /* its state, not the request: a conflict */
	} else {
		if (dest && *dest)
			snprintf(j->peer, sizeof j->peer, "%s", dest);
		pthread_cond_broadcast(&j->wake); /* try now */
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

int job_resolve(const char *id, enum job_force force, char *err, size_t errlen)
{
	struct job *j;
	int r = 0;

	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	if (!j) {
		snprintf(err, errlen, "no job %s", id);
		r = -ENOENT;
	} else if (j->state != JOB_UNRESOLVED || j->kind != JOB_MIGRATE_OUT) {
		snprintf(err, errlen, "job %s is %s; only an unresolved outgoing job needs resolving",
			 id, job_state_api(j->state));
		r = -EALREADY;
	} else {
		if (force)
			j->force = force;
		pthread_cond_broadcast(&j->wake);
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

const char *job_peer_state(const char *id)
{
	const char *s = "unknown";
	struct job *j;

	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	if (j && j->kind == JOB_MIGRATE_IN)
		s = j->state == JOB_RUNNING || j->state == JOB_COMPLETED ? "running"
		    : j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED ? "postcopy"
		    : j->state == JOB_FAILED				      ? "discarded"
		    : j->state == JOB_LOST				      ? "lost"
									      : "pending";
	pthread_mutex_unlock(&D.lock);
	return s;
}

/* ---- start-up and shutdown ---- */

static bool state_named(const char *name, enum job_state *s)
{
	for (unsigned i = 0; i < JOB_STATE_MAX; i++)
		if (strcmp(name, states[i].name) == 0) {
			*s = (enum job_state)i;
			return true;
		}
	return false;
}

/* The state of a record written before "stage" existed: its API state and
 * what the destination called its step. */
static enum job_state old_state(bool out, const char *state, const char *in_state, bool go)
{
	enum job_state st;

	switch (api_job_state_parse(state)) {
	case API_JOB_COMPLETED: return JOB_COMPLETED;
	case API_JOB_CANCELLED: return JOB_CANCELLED;
	case API_JOB_UNRESOLVED: return JOB_UNRESOLVED;
	case API_JOB_ACTIVE: break;
	default: return JOB_FAILED;
	}
	if (out)
		return go ? JOB_COMMITTED : JOB_SENDING;
	/* The destination's steps had the names its states have now. */
	if (state_named(in_state, &st) && (st == JOB_READY || st == JOB_RESUMING ||
					   st == JOB_RUNNING))
		return st;
	return JOB_RECEIVING;
}

struct job *job_from_json(json_t *o)
{
	json_t *h = NULL, *e;
	const char *id, *dir = "out", *kind = NULL, *vm, *peer, *state, *stage = NULL;
	const char *in_state = "", *error = "", *idem = "";
	json_int_t started = 0, ended = 0;
	enum job_kind k = JOB_MIGRATE_OUT;
	struct job *j = NULL;
	int go = 0;
	size_t i;

	if (!json_is_object(o))
		return NULL;
	if (json_unpack(o, "{s:s, s?s, s?s, s:s, s:s, s:s, s?s, s?s, s?s, s?I, s?I, s?b, s?o, s?s}",
			"id", &id, "direction", &dir, "kind", &kind, "vm", &vm, "peer", &peer,
			"state", &state, "stage", &stage, "in_state", &in_state, "error", &error,
			"started", &started, "ended", &ended, "go", &go, "history", &h,
			"idempotency", &idem) ||
	    !name_ok(id, JOB_ID_LEN))
		goto out;
	if (kind) {
		for (k = 0; k < JOB_KIND_MAX && strcmp(job_kind_name(k), kind) != 0; k++)
			;
		if (k == JOB_KIND_MAX)
			goto out;
	} else {
		k = strcmp(dir, "in") == 0 ? JOB_MIGRATE_IN : JOB_MIGRATE_OUT;
	}
	if (!(j = job_new(k, id)))
		goto out;
	snprintf(j->vm, sizeof j->vm, "%s", vm);
	snprintf(j->peer, sizeof j->peer, "%s", peer);
	snprintf(j->error, sizeof j->error, "%s", error);
	snprintf(j->idem, sizeof j->idem, "%s", idem);
	j->started = started;
	j->ended = ended;
	j->go = go;
	if (!stage || !state_named(stage, &j->state))
		j->state = old_state(k == JOB_MIGRATE_OUT, state, in_state, go);
	json_array_foreach(h, i, e) {
		const char *s = NULL;
		json_int_t at = 0;
		enum job_state st;

		if (j->nhist < JOB_HISTORY_MAX && !json_unpack(e, "{s:s, s:I}", "stage", &s, "at_ms", &at) &&
		    state_named(s, &st))
			j->history[j->nhist++] = (struct job_step){ st, at };
	}
	j->seq = j->nhist;
	if (kinds[k] && kinds[k]->load)
		kinds[k]->load(j, o);
out:
	return j;
}

/* A job from its journal file; NULL if malformed. */
static struct job *job_load(const char *path)
{
	json_t *o = journal_load(path);
	struct job *j = job_from_json(o);

	json_decref(o);
	return j;
}

/* Sort the list oldest first, so that linking each in turn ends newest first. */
static struct job *oldest_first(struct job *list)
{
	for (bool sorted = false; !sorted;) {
		sorted = true;
		for (struct job **pp = &list; *pp && (*pp)->next; pp = &(*pp)->next)
			if ((*pp)->started > (*pp)->next->started) {
				struct job *a = *pp, *b = a->next;

				a->next = b->next;
				b->next = a;
				*pp = b;
				sorted = false;
			}
	}
	return list;
}

void jobs_recover(void)
{
	char dir[300], path[600], rec[600];
	DIR *dp;
	struct dirent *e;
	struct job *list = NULL, *j;
	size_t n = 0;

	snprintf(dir, sizeof dir, "%s/jobs", D.state_dir);
	if (!(dp = opendir(dir)))
		return;
	while ((e = readdir(dp))) {
		size_t len = strlen(e->d_name);

		bool legacy = len > 5 && strcmp(e->d_name + len - 5, ".json") == 0;

		if (e->d_name[0] == '.' || len < 5 || (!legacy && strcmp(e->d_name + len - 4, ".rec")))
			continue;
		snprintf(path, sizeof path, "%s/%.*s.rec", dir, (int)(len - 5), e->d_name);
		if (legacy && access(path, F_OK) == 0)
			continue; /* rewritten since: the .rec is the record (removed below) */
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (!(j = job_load(path))) {
			log_warn("%s: not a job record; ignored", path);
			continue;
		}
		j->next = list;
		list = j;
		n++;
	}
	closedir(dp);
	list = oldest_first(list);
	while ((j = list)) {
		list = j->next;
		bool drop = n-- > D.job_history && job_state_final(j->state);

		/* An older version's record goes with its job, or once a .rec
		 * has taken its place. */
		snprintf(rec, sizeof rec, "%s/%s.rec", dir, j->id);
		snprintf(path, sizeof path, "%s/%s.json", dir, j->id);
		if (drop || access(rec, F_OK) == 0)
			unlink(path);
		if (drop) {
			unlink(rec);
			job_free(j);
			continue;
		}
		pthread_mutex_lock(&D.lock);
		job_link(j);
		pthread_mutex_unlock(&D.lock);
		if (!job_state_final(j->state) && kinds[j->kind] && kinds[j->kind]->recover)
			kinds[j->kind]->recover(j);
	}
}

void jobs_stop(void)
{
	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j; j = j->next) {
		/* What can still be undone is cut short; the rest finishes. */
		if (kinds[j->kind] && kinds[j->kind]->stop && !job_state_final(j->state)) {
			kinds[j->kind]->stop(j);
		} else if (states[j->state].interruptible && j->state != JOB_NEW) {
			j->cancel = 1;
			job_shutdown_session(j);
		}
		pthread_cond_broadcast(&j->wake);
	}
	pthread_cond_broadcast(&D.changed);
	pthread_mutex_unlock(&D.lock);
	session_stop_waits();
}
