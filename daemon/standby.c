/*
 * standby.c — the backup's job: a peer's "protect" HELLO claims the VM's
 * name here; the replication engine's backup side keeps a paused copy at
 * the last epoch applied whole; when the primary is lost, the copy takes
 * over: its address is claimed here and it resumes. See protection.h.
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

/*
 * Fenced: the copy runs only with etcd's word (fence.h): the primary's lease
 * gone and this pairing named in sync, in one transaction. While the
 * primary's lease lives, or etcd cannot be asked, it waits and tries again
 * (nothing is decided without etcd); if another pairing — or none — is
 * named, the copy is held for an operator. err: why the primary is lost on
 * entry, what was decided on return.
 */
static bool may_run(struct job *j, struct vm *v, char *err, size_t errlen)
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
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
	if (!r) {
		/* The key was ours for the takeover; the guest runs unprotected
		 * here, and `ferry protect` claims it again. */
		fence_release(f);
		snprintf(err, errlen, "%s; etcd gave this host the VM", lost);
		return true;
	}
	if (r != -EPERM) {
		snprintf(err, errlen, "%s", j->cancel ? "discarded by the operator"
						      : "ferryd stopped: the copy is discarded");
		return false;
	}
	snprintf(err, errlen, "the primary is lost (%.200s), but %.350s", lost, why);
	if (held(j, err)) {
		log_warn("job %s: %s: the operator forces the takeover: writes acknowledged since "
			 "this copy fell out of sync are lost", j->id, v->name);
		snprintf(err, errlen, "forced by the operator (%.350s)", why);
		return true;
	}
	snprintf(err, errlen, "%s", j->cancel ? "discarded by the operator" : "ferryd stopped: the "
		 "held copy is discarded");
	return false;
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

void standby_open(void *ctx, struct session *s, const struct wire_hello *h)
{
	struct repl_stats *st = calloc(1, sizeof *st);
	struct hv_domain *d = NULL;
	struct job *j;
	struct vm *v;
	char err[600] = "";
	bool ran = false;
	int r;

	(void)ctx;
	discard_stale(h->name, s->peer);
	if (migration_claim(h, JOB_BACKUP, &j, &v, err, sizeof err)) {
		session_refuse(s, "%s", err);
		session_free(s);
		free(st);
		return;
	}
	pthread_mutex_lock(&D.lock);
	v->busy = "standby";
	j->rst = st;
	pthread_mutex_unlock(&D.lock);
	st = calloc(1, sizeof *st); /* the engine's own; j->rst is the job's copy */
	snprintf(j->vm, sizeof j->vm, "%s", h->name);
	snprintf(j->peer, sizeof j->peer, "%s", s->peer);
	j->fencing = h->fencing;
	j->running = true;
	repl_opts_default(&j->ropts);
	j->ropts.heartbeat_ms = h->heartbeat_ms;
	j->ropts.epoch_ms = h->epoch_ms;
	j->ropts.sync.peer_timeout_ms = s->timeout_ms;
	j->ropts.stop = &j->cancel;
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
			 "%u ms)", j->id, h->name, j->peer, j->channels, j->transport,
			 j->channels > 1 ? "s" : "", h->heartbeat_ms);
		r = replicate_backup(s, h->name, &j->ropts, &d, st, err, sizeof err);
	}
	pthread_mutex_lock(&D.lock);
	D.incoming--;
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (d && j->cancel) {
		/* Unprotected or shutting down here: the copy must not run. */
		hv_destroy(d);
		hv_close(d);
		d = NULL;
		snprintf(err, sizeof err, "%s", core_stopping() ? "ferryd stopped: the standby copy is "
			 "discarded" : "unprotected here: the standby copy is discarded");
	}
	if (d && j->fencing && !may_run(j, v, err, sizeof err)) {
		hv_destroy(d);
		hv_close(d);
		d = NULL;
	}
	if (d) {
		ran = take_over(j, v, d, err, st) == 0;
		if (!ran) {
			hv_destroy(d);
			hv_close(d);
		}
	}
	if (!ran) {
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
