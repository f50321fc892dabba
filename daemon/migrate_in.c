/* SPDX-License-Identifier: Apache-2.0 */
/*
 * migrate_in.c — the incoming migration job: a peer's session asks to send
 * a guest (session_handlers.open); we claim its name and the job id,
 * answer, gather its channels and run the pre-copy engine's receiving
 * side. At start-up a job in flight is settled by whether its guest runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/migration.h"
#include "daemon/net.h"

/* migrate_hooks.journal: READY and resuming durably, RUNNING once it is
 * out (not in the downtime). */
static int on_journal(void *ctx, enum mig_point pt)
{
	struct job *j = ctx;

	switch (pt) {
	case MIG_PT_READY:
		return job_set_state(j, JOB_READY, NULL);
	case MIG_PT_RESUME: {
		/* The guest is ours from now on, also if ferryd dies next. */
		struct vm *v = vm_get(j->vm);

		if (v) {
			vm_record_write(v);
			vm_put(v);
		}
		return job_set_state(j, JOB_RESUMING, NULL);
	}
	case MIG_PT_RUNNING:
		return job_set_state(j, JOB_COMPLETED, NULL);
	case MIG_PT_POSTCOPY:
		return job_set_state(j, JOB_POSTCOPY, NULL);
	case MIG_PT_PC_PAUSED: /* (after a restart it may be so already) */
		return j->state == JOB_PC_PAUSED ? 0 : job_set_state(j, JOB_PC_PAUSED, NULL);
	default:
		return 0;
	}
}

/* migrate_hooks.resuming: GO came; the guest's address is ours from now on:
 * listen on it before the guest runs. */
static void on_resuming(void *ctx, struct hv_domain *d)
{
	struct job *j = ctx;
	struct vm *v = vm_get(j->vm);

	if (v) {
		net_up(v, d);
		vm_put(v);
	}
}

/* The guest runs here now; say so before RUNNING goes out, so that nobody
 * sees the source done and this host still receiving. */
static void on_resumed(void *ctx, struct hv_domain *d)
{
	struct job *j = ctx;
	struct vm *v = vm_get(j->vm);

	if (!v)
		return;
	vm_attach(v, d);
	pthread_mutex_lock(&D.lock);
	v->paused = false;
	pthread_mutex_unlock(&D.lock);
	job_set_state(j, JOB_RUNNING, NULL);
	vm_unbusy(v);
	loop_call(vm_watch_start, v); /* takes our reference */
}

/*
 * migrate_hooks.reconnect: a post-copy's session failed. Wait for the
 * source's resume HELLO (migrate_in_open hands its session over), answer
 * it, and go on with it; -ECANCELED when the operator gives up (ferry
 * cancel) or ferryd stops.
 */
static int on_reconnect(void *ctx, struct session **s)
{
	struct job *j = ctx;
	struct session *failed = *s;
	char err[300];

	/* The failed session stays the engine's until there is a new one. */
	pthread_mutex_lock(&D.lock);
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	for (;;) {
		struct session *ns;
		int r;

		pthread_mutex_lock(&D.lock);
		while (!j->resume_s && !j->cancel && !D.stopping) {
			struct timespec ts = ns_to_ts(real_ns() + NSEC_PER_SEC);

			pthread_cond_timedwait(&j->wake, &D.lock, &ts);
		}
		ns = j->resume_s;
		j->resume_s = NULL;
		j->s = ns;
		r = j->cancel ? -ECANCELED : -ESHUTDOWN; /* (the journal keeps it) */
		pthread_mutex_unlock(&D.lock);
		if (!ns)
			return r;
		if (!(r = session_answer(ns, err, sizeof err))) {
			migration_session(j, ns);
			log_info("job %s: post-copy of %s: %s reconnected", j->id, j->vm, j->peer);
			session_free(failed);
			*s = ns;
			return 0;
		}
		log_warn("job %s: post-copy of %s: a reconnect failed: %s", j->id, j->vm, err);
		pthread_mutex_lock(&D.lock);
		j->s = NULL;
		pthread_mutex_unlock(&D.lock);
		session_free(ns);
	}
}

/* A resume HELLO: hand the session to the paused post-copy of its job (one
 * whose session has not failed yet here is told to drop it first). */
static void resume_open(struct session *s, const struct wire_hello *h)
{
	struct job *j;
	bool ok;

	pthread_mutex_lock(&D.lock);
	j = job_find(h->job);
	ok = j && j->kind == JOB_MIGRATE_IN && !j->resume_s && strcmp(j->vm, h->name) == 0 &&
	     strcmp(j->peer, s->peer) == 0 &&
	     (j->state == JOB_PC_PAUSED || j->state == JOB_POSTCOPY);
	if (ok) {
		if (j->s)
			session_shutdown(j->s); /* it has not noticed the failure yet */
		j->resume_s = s;
		pthread_cond_broadcast(&j->wake);
	}
	pthread_mutex_unlock(&D.lock);
	if (!ok) {
		session_refuse(s, "no post-copy of %s for job %s here to resume", h->name, h->job);
		session_free(s);
	}
}

void migrate_in_open(void *ctx, struct session *s, const struct wire_hello *h)
{
	struct hv_domain *d = NULL;
	struct job *j;
	struct vm *v;
	char err[600] = "";
	int r;

	(void)ctx;
	if (h->resume) {
		resume_open(s, h);
		return;
	}
	if (migration_claim(h, JOB_MIGRATE_IN, &j, &v, err, sizeof err)) {
		session_refuse(s, "%s", err);
		session_free(s);
		return;
	}
	snprintf(j->vm, sizeof j->vm, "%s", h->name);
	snprintf(j->peer, sizeof j->peer, "%s", s->peer);
	j->st.phase = MIG_PH_SETUP;
	j->running = true;
	j->opts.peer_timeout_ms = s->timeout_ms;
	j->opts.hooks = (struct migrate_hooks){ .ctx = j, .stats = migration_stats,
						.journal = on_journal, .resumed = on_resumed,
						.resuming = on_resuming, .reconnect = on_reconnect };
	pthread_mutex_lock(&D.lock);
	j->s = s;
	pthread_mutex_unlock(&D.lock);
	migration_session(j, s);
	/* Journaled before the answer: a restarted ferryd settles it. */
	if ((r = job_set_state(j, JOB_RECEIVING, NULL))) {
		snprintf(err, sizeof err, "cannot journal the job: %s", strerror(-r));
		session_refuse(s, "%s", err);
	} else if (!(r = session_answer(s, err, sizeof err))) {
		migration_session(j, s);
		log_info("job %s: receiving %s from %s over %u %s channel%s", j->id, h->name,
			 j->peer, j->channels, j->transport, j->channels > 1 ? "s" : "");
		r = migrate_recv(s, h->name, &j->opts, &d, err, sizeof err);
	}
	pthread_mutex_lock(&D.lock);
	D.incoming--;
	s = j->s; /* a resumed post-copy's, perhaps, not the first */
	j->s = NULL;
	j->running = false;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (r == -ESHUTDOWN) {
		/* ferryd stops in a post-copy: the guest runs on, waiting; the
		 * next ferryd goes on with it (its record and journal say so). */
		log_warn("job %s: ferryd stops in the middle of a post-copy of %s; the next ferryd "
			 "goes on with it", j->id, j->vm);
		vm_unbusy(v);
	} else if (r) {
		enum job_state end = r == -EINPROGRESS ? JOB_RESUME_FAILED : JOB_FAILED;

		/* Nothing runs here: the engine destroyed the half-made guest,
		 * or (a failed resume) closed it, and an uncommitted runtime
		 * ends when its handle closes. "Discarded" tells the source it
		 * may resume: only when no copy can run here. */
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		/* A post-copy that failed after RUNNING: it ran here, and is
		 * lost ("discarded" would let the source resume a stale copy). */
		if (j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED ||
		    j->st.phase == MIG_PH_POSTCOPY || j->st.phase == MIG_PH_PC_PAUSED)
			end = JOB_LOST;
		job_set_state(j, end, err);
		vm_unbusy(v); /* dead: removed on the loop */
	}
	/* On success on_resumed handed the guest over and RUNNING completed
	 * the job. */
	vm_put(v);
}

/* Start-up: the post-copy a restart interrupted goes on. */
static void *pc_rejoin_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	struct session *s;
	char err[600];
	int r;

	if (!j->opts.peer_timeout_ms)
		j->opts.peer_timeout_ms = (int)D.peer_timeout_ms;
	j->opts.hooks = (struct migrate_hooks){ .ctx = j, .stats = migration_stats,
						.journal = on_journal, .reconnect = on_reconnect };
	r = migrate_postcopy_rejoin(v->d, &j->opts, err, sizeof err);
	pthread_mutex_lock(&D.lock);
	s = j->s;
	j->s = NULL;
	j->v = NULL;
	j->running = false;
	if (r && r != -ESHUTDOWN)
		v->dead = true;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (r == -ESHUTDOWN) {
		log_warn("job %s: ferryd stops in the middle of a post-copy of %s; the next ferryd "
			 "goes on with it", j->id, j->vm);
	} else if (r) {
		log_error("job %s: %s", j->id, err);
		vm_record_remove(v->name);
		job_set_state(j, JOB_LOST, err);
	}
	vm_unbusy(v);
	vm_put(v);
	thread_done();
	return NULL;
}

/* Start-up: the guest is ours if it resumed (its runtime then outlives us
 * and was adopted); otherwise it ended when our link to it closed. */
static void recover(struct job *j)
{
	struct vm *v = vm_get(j->vm);
	struct hv_info info;
	bool runs = v && v->d && !hv_info(v->d, &info) && !info.incoming;
	char err[256];

	if ((j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED) &&
	    (!runs || vm_busy(v, "migrating", j->id, err, sizeof err))) {
		if (v && v->d) {
			hv_destroy(v->d);
			vm_record_remove(v->name);
		}
		job_set_state(j, JOB_LOST, "ferryd restarted during post-copy, and the guest is not "
			      "here to go on with: it is lost");
		vm_put(v);
		return;
	}
	if (j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED) {
		/* It runs here over memory still at the source: take its faults
		 * up again and wait for the source to reconnect. */
		pthread_mutex_lock(&D.lock);
		j->running = true;
		j->v = v; /* the thread's reference */
		pthread_mutex_unlock(&D.lock);
		log_warn("job %s: a post-copy after a restart; waiting for %s", j->id, j->peer);
		if (spawn_thread(pc_rejoin_main, j)) {
			vm_unbusy(v);
			vm_put(v);
		}
		return;
	}

	if (v && v->d && !runs) {
		hv_destroy(v->d);
		vm_record_remove(v->name);
	}
	job_set_state(j, runs ? JOB_COMPLETED : JOB_FAILED,
		      runs ? NULL : "ferryd restarted before the guest was resumed here");
	vm_put(v);
}

const struct job_kind_ops migrate_in_kind = {
	.name = "migrate-in",
	.direction = "in",
	.json = migration_json,
	.load = migration_load,
	.recover = recover,
};
