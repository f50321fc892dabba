/* SPDX-License-Identifier: Apache-2.0 */
/*
 * standby.c — the backup's job: a peer's "protect" HELLO claims the VM's
 * name here; the replication engine's backup side keeps a paused copy at
 * the last epoch applied whole; when the primary is lost, the copy takes
 * over: its address is claimed here and it resumes. See protection.h.
 *
 * A primary whose ferryd restarted inside its lease resyncs the same
 * pairing (HELLO resync): the thread keeping the copy, waiting for etcd,
 * hands the copy and the job to the resync's thread (resync_claim,
 * hand_over), which receives the sync staged apart from it
 * (replicate/shadow.h). Until the sync is whole, the copy is the one a
 * takeover runs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/fence.h"
#include "daemon/migration.h"
#include "daemon/net.h"
#include "daemon/protection.h"

/*
 * The primary is lost, the copy is whole at st->epoch and may run (fenced:
 * etcd said so; unfenced: heartbeats alone said so): run it here. In
 * order: the durable TAKING_OVER (from here the copy may run), the address,
 * resume, the guest is ours.
 */
static int take_over(struct job *j, struct vm *v, struct hv_domain *d, const char *lost,
		     const struct repl_stats *st)
{
	uint64_t t0 = mono_ns();
	char why[800];
	int r;

	snprintf(why, sizeof why, "the primary is lost (%s); taking over at epoch %" PRIu64, lost,
		 st->epoch);
	log_warn("job %s: %s: %s", j->id, v->name, why);
	if ((r = job_set_state(j, JOB_TAKING_OVER, why)))
		return r;
	vm_record_write(v);
	net_up(v, d);
	if ((r = hv_unpause(d))) {
		log_error("job %s: %s: resuming the copy: %s", j->id, v->name, strerror(-r));
		return r;
	}
	vm_attach(v, d);
	pthread_mutex_lock(&D.lock);
	v->paused = false;
	pthread_mutex_unlock(&D.lock);
	snprintf(why, sizeof why, "took over at epoch %" PRIu64 " in %.1f ms after the primary was "
		 "lost (%s)", st->epoch, ns_to_ms(mono_ns() - t0), lost);
	job_set_state(j, JOB_FAILED_OVER, why);
	log_info("job %s: %s runs here now: %s", j->id, v->name, why);
	return 0;
}

/* Held: wait, paused, for an operator: FORCE_DESTINATION runs the copy
 * anyway, a cancel (unprotect) discards it, and so does ferryd stopping. */
static bool held(struct job *j, const char *why)
{
	bool force;

	job_set_state(j, JOB_HELD, why);
	log_error("job %s: %s: not resuming the copy: %s. `ferry takeover %s --force` runs it "
		  "anyway, losing what it lacks; `ferry unprotect %s` discards it", j->id, j->vm,
		  why, j->vm, j->vm);
	pthread_mutex_lock(&D.lock);
	while (j->force == FORCE_NONE && !j->cancel && !D.stopping)
		pthread_cond_wait(&j->wake, &D.lock);
	force = j->force == FORCE_DESTINATION && !j->cancel && !D.stopping;
	pthread_mutex_unlock(&D.lock);
	return force;
}

/* What becomes of a copy whose primary is lost. */
enum fate { DISCARD, RUN, HANDED };

/* Wait up to ms for a restarted primary's resync (resync_claim): true if
 * one was offered; the caller then hands the copy over. */
static bool offered(struct job *j, unsigned ms)
{
	struct timespec ts = ns_to_ts(real_ns() + (uint64_t)ms * NSEC_PER_MSEC);
	bool r;

	pthread_mutex_lock(&D.lock);
	j->waiting = true;
	if (j->offer != 1 && !j->cancel && !D.stopping)
		pthread_cond_timedwait(&j->wake, &D.lock, &ts);
	r = j->offer == 1 && !j->cancel && !D.stopping;
	j->waiting = !r;
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* No longer waiting: an offer that came meanwhile is refused. */
static void stop_waiting(struct job *j)
{
	pthread_mutex_lock(&D.lock);
	j->waiting = false;
	if (j->offer == 1) {
		j->offer = -1;
		pthread_cond_broadcast(&j->wake);
	}
	pthread_mutex_unlock(&D.lock);
}

/*
 * Fenced: the copy runs only with etcd's word (fence.h): the primary's lease
 * gone and this pairing named in sync, in one transaction. While the
 * primary's lease lives, or etcd cannot be asked, it waits and tries again
 * (nothing is decided without etcd) — and the primary, restarted inside
 * its lease, may offer a resync of this very pairing: HANDED. If another
 * pairing — or none — is named, the copy is held for an operator. err: why
 * the primary is lost on entry, what was decided on return.
 */
static enum fate may_run(struct job *j, struct vm *v, char *err, size_t errlen)
{
	char why[400], lost[300];
	struct fence *f = NULL;
	int r;

	snprintf(lost, sizeof lost, "%s", err);
	for (unsigned tries = 0;; tries++) {
		r = fence_takeover(v->name, j->id, &f, why, sizeof why);
		if (!r || r == -EPERM || j->cancel || core_stopping())
			break;
		if (tries % 20 == 0)
			log_warn("job %s: %s: the primary is lost (%s); waiting for etcd: %s", j->id,
				 v->name, lost, why);
		if (offered(j, 100))
			return HANDED;
	}
	stop_waiting(j);
	if (!r) {
		/* The key was ours for the takeover; the guest runs unprotected
		 * here, and `ferry protect` claims it again. */
		fence_release(f);
		snprintf(err, errlen, "%s; etcd gave this host the VM", lost);
		return RUN;
	}
	if (r != -EPERM) {
		snprintf(err, errlen, "%s", j->cancel ? "discarded by the operator"
						      : "ferryd stopped: the copy is discarded");
		return DISCARD;
	}
	snprintf(err, errlen, "the primary is lost (%.200s), but %.350s", lost, why);
	if (held(j, err)) {
		log_warn("job %s: %s: the operator forces the takeover: writes acknowledged since "
			 "this copy fell out of sync are lost", j->id, v->name);
		snprintf(err, errlen, "forced by the operator (%.350s)", why);
		return RUN;
	}
	snprintf(err, errlen, "%s", j->cancel ? "discarded by the operator" : "ferryd stopped: the "
		 "held copy is discarded");
	return DISCARD;
}

/*
 * A restarted primary resyncs the pairing h->job: the thread that keeps its
 * copy (waiting for etcd in may_run) hands it over, with the job's vm, and
 * this thread carries the job on. Waits up to 5 s for that thread to get
 * there (it may not have noticed the loss yet); once offered, until it
 * answers (it always does: it takes the offer or refuses it on leaving its
 * wait). 0, or -errno with why.
 */
static int resync_claim(const struct wire_hello *h, const struct session *s, struct job **jp,
			struct vm **vp, struct hv_domain **copy, uint64_t *epoch, char *why,
			size_t len)
{
	uint64_t until = mono_ns() + 5 * NSEC_PER_SEC;
	bool mine = false; /* the offer in j is ours */
	struct job *j;
	int r = 0;

	pthread_mutex_lock(&D.lock);
	for (;;) {
		struct timespec ts = ns_to_ts(real_ns() + 100 * NSEC_PER_MSEC);

		j = job_find(h->job);
		if (!mine && (!j || j->kind != JOB_BACKUP || job_state_final(j->state) ||
			      strcmp(j->vm, h->name) != 0 || strcmp(j->peer, s->peer) != 0)) {
			snprintf(why, len, "%.64s keeps no copy of %.64s from %.100s (pairing %.40s)",
				 D.hostname, h->name, s->peer, h->job);
			r = -ENOENT;
			break;
		}
		if (mine && j && j->offer == 2)
			break;
		if (mine && (!j || j->offer == -1)) {
			if (j)
				j->offer = 0;
			snprintf(why, len, "the copy of %.64s on %.64s was taken over or discarded "
				 "meanwhile", h->name, D.hostname);
			r = -EBUSY;
			break;
		}
		if (!mine && (j->state == JOB_HELD || j->state == JOB_TAKING_OVER || D.stopping ||
			      mono_ns() > until)) {
			snprintf(why, len, "the copy of %.64s on %.64s is not waiting for its primary "
				 "(%s)", h->name, D.hostname, job_state_name(j->state));
			r = -EBUSY;
			break;
		}
		if (!mine && j->waiting && j->offer == 0) {
			j->offer = 1;
			mine = true;
			pthread_cond_broadcast(&j->wake);
		}
		pthread_cond_timedwait(&j->wake, &D.lock, &ts);
	}
	if (!r) {
		j->offer = 0;
		*jp = j;
		*vp = j->v;
		*copy = j->handed;
		*epoch = j->handed_epoch;
		j->v = NULL;
		j->handed = NULL;
		D.incoming++;
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

/*
 * A primary protects vm again (after a restart, or a lost pairing): a copy
 * this host still keeps for it, from the same primary, is stale — its
 * pairing ended, it was not in sync, or it waits for a takeover that etcd
 * will not give — so it is discarded first. Waits up to 3 s for the name.
 */
static void discard_stale(const char *vm, const char *peer)
{
	bool found = false;

	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j; j = j->next)
		if (j->kind == JOB_BACKUP && !job_state_final(j->state) &&
		    j->state != JOB_TAKING_OVER && strcmp(j->vm, vm) == 0 &&
		    strcmp(j->peer, peer) == 0) {
			j->cancel = 1;
			pthread_cond_broadcast(&j->wake);
			found = true;
		}
	pthread_mutex_unlock(&D.lock);
	if (!found)
		return;
	log_info("%s: protected again by %s: discarding the copy kept from before", vm, peer);
	for (uint64_t until = mono_ns() + 3 * NSEC_PER_SEC; mono_ns() < until;) {
		bool taken;

		pthread_mutex_lock(&D.lock);
		taken = vm_name_taken(vm);
		pthread_mutex_unlock(&D.lock);
		if (!taken)
			return;
		mono_sleep_ns(20 * NSEC_PER_MSEC);
	}
}

/* The copy goes to the thread that carries the job on (resync_claim). */
static void hand_over(struct job *j, struct vm *v, struct hv_domain *d, uint64_t epoch)
{
	log_info("job %s: %s: its primary restarted and resyncs it: the copy at epoch %" PRIu64
		 " stays the one a takeover runs until the resync is whole", j->id, v->name, epoch);
	pthread_mutex_lock(&D.lock);
	j->handed = d;
	j->handed_epoch = epoch;
	j->v = v;
	j->offer = 2;
	pthread_cond_broadcast(&j->wake);
	pthread_mutex_unlock(&D.lock);
}

/*
 * The job's work from its HELLO on: keep the copy and, once the primary is
 * lost, decide what becomes of it. copy: the copy this pairing kept before
 * its primary restarted, whole at epoch (h->resync), or NULL.
 */
static void serve(struct job *j, struct vm *v, struct session *s, const struct wire_hello *h,
		  struct hv_domain *copy, uint64_t epoch)
{
	struct repl_stats *st = calloc(1, sizeof *st);
	struct hv_domain *d = copy; /* until the engine says otherwise */
	enum fate fate = DISCARD;
	char err[600] = "";
	int r;

	pthread_mutex_lock(&D.lock);
	v->busy = "standby";
	if (!j->rst)
		j->rst = calloc(1, sizeof *j->rst); /* the job's copy of st */
	pthread_mutex_unlock(&D.lock);
	snprintf(j->vm, sizeof j->vm, "%s", h->name);
	snprintf(j->peer, sizeof j->peer, "%s", s->peer);
	j->fencing = h->fencing;
	j->running = true;
	repl_opts_default(&j->ropts);
	j->ropts.heartbeat_ms = h->heartbeat_ms;
	j->ropts.epoch_ms = h->epoch_ms;
	j->ropts.sync.peer_timeout_ms = s->timeout_ms;
	j->ropts.stop = &j->cancel;
	j->ropts.copy = copy;
	j->ropts.hooks = (struct repl_hooks){ .ctx = j, .stats = protection_stats };
	pthread_mutex_lock(&D.lock);
	j->s = s;
	pthread_mutex_unlock(&D.lock);
	migration_session(j, s);
	if (!st || !j->rst) {
		snprintf(err, sizeof err, "out of memory");
		session_refuse(s, "%s", err);
		r = -ENOMEM;
	} else if (h->fencing && !fence_configured()) {
		snprintf(err, sizeof err, "%s cannot keep a fenced standby: it has no coordination "
			 "service configured (coord)", D.hostname);
		session_refuse(s, "%s", err);
		r = -EOPNOTSUPP;
	} else if ((r = job_set_state(j, JOB_SYNCING, NULL))) {
		snprintf(err, sizeof err, "cannot journal the job: %s", strerror(-r));
		session_refuse(s, "%s", err);
	} else if (!(r = session_answer(s, err, sizeof err))) {
		migration_session(j, s);
		log_info("job %s: keeping a standby of %s for %s over %u %s channel%s (heartbeat "
			 "%u ms%s)", j->id, h->name, j->peer, j->channels, j->transport,
			 j->channels > 1 ? "s" : "", h->heartbeat_ms, copy ? "; a staged resync" : "");
		r = replicate_backup(s, h->name, &j->ropts, &d, st, err, sizeof err);
	}
	if (r && copy && d == copy && st && !st->t_start_ns)
		st->epoch = epoch; /* the resync never became the copy */
	pthread_mutex_lock(&D.lock);
	D.incoming--;
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (d && j->cancel) {
		/* Unprotected or shutting down here: the copy must not run. */
		snprintf(err, sizeof err, "%s", core_stopping() ? "ferryd stopped: the standby copy is "
			 "discarded" : "unprotected here: the standby copy is discarded");
	} else if (d) {
		fate = j->fencing ? may_run(j, v, err, sizeof err) : RUN;
	}
	if (fate == HANDED) {
		hand_over(j, v, d, st ? st->epoch : 0);
		free(st);
		return; /* the job, its vm and the copy go on in the resync's thread */
	}
	if (fate == RUN && take_over(j, v, d, err, st) != 0)
		fate = DISCARD;
	if (fate == DISCARD && d) {
		hv_destroy(d);
		hv_close(d);
	}
	if (fate == DISCARD) {
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		if (!job_state_final(j->state))
			job_set_state(j, r == 0 ? JOB_COMPLETED : j->cancel ? JOB_COMPLETED : JOB_FAILED,
				      r == 0 ? "protection ended by the primary: the standby copy is "
					       "discarded" : err);
		vm_unbusy(v);
		vm_put(v);
	} else {
		vm_unbusy(v);
		loop_call(vm_watch_start, v); /* takes our reference */
	}
	pthread_mutex_lock(&D.lock);
	j->running = false;
	pthread_mutex_unlock(&D.lock);
	free(st);
}

void standby_open(void *ctx, struct session *s, const struct wire_hello *h)
{
	struct hv_domain *copy = NULL;
	uint64_t epoch = 0;
	struct job *j;
	struct vm *v;
	char err[600] = "";
	int r = -ENOENT;

	(void)ctx;
	if (h->resync && (r = resync_claim(h, s, &j, &v, &copy, &epoch, err, sizeof err)) &&
	    r != -ENOENT) {
		log_warn("%s: refusing the resync from %s: %s", h->name, s->peer, err);
		session_refuse(s, "%s", err);
		session_free(s);
		return;
	}
	if (r) {
		/* A first pairing, or a resync of a copy this host no longer
		 * keeps: a full sync into a new copy. */
		discard_stale(h->name, s->peer);
		if (migration_claim(h, JOB_BACKUP, &j, &v, err, sizeof err)) {
			session_refuse(s, "%s", err);
			session_free(s);
			return;
		}
	}
	serve(j, v, s, h, copy, epoch);
}

int standby_force(const char *name, char *err, size_t errlen)
{
	struct job *hit = NULL;

	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j && !hit; j = j->next)
		if (j->kind == JOB_BACKUP && j->state == JOB_HELD && strcmp(j->vm, name) == 0)
			hit = j;
	if (hit) {
		hit->force = FORCE_DESTINATION;
		pthread_cond_broadcast(&hit->wake);
	}
	pthread_mutex_unlock(&D.lock);
	if (!hit) {
		snprintf(err, errlen, "no held standby copy of %s here", name);
		return -ENOENT;
	}
	return 0;
}

static void stop(struct job *j)
{
	j->cancel = 1;
	pthread_cond_broadcast(&j->wake);
}

/* Start-up: a standby's copy ended with our handle to it; a takeover that
 * was under way resumed it or not. */
static void recover(struct job *j)
{
	struct vm *v = vm_get(j->vm);
	struct hv_info info;
	bool runs = j->state == JOB_TAKING_OVER && v && v->d && !hv_info(v->d, &info) &&
		    !info.incoming;

	if (v && v->d && !runs) {
		hv_destroy(v->d);
		vm_record_remove(v->name);
	}
	job_set_state(j, runs ? JOB_FAILED_OVER : JOB_FAILED,
		      runs ? "ferryd restarted after the takeover; the guest runs here"
			   : "ferryd restarted: the standby copy is gone");
	vm_put(v);
}

const struct job_kind_ops standby_kind = {
	.name = "standby",
	.direction = "in",
	.json = protection_json,
	.load = migration_load,
	.recover = recover,
	.stop = stop,
};
