/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protect.c — the primary's job: a session to the backup host, the
 * replication engine's primary side; degraded when the backup is lost;
 * unprotect (or shutdown) ends it cleanly. See protection.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/fence.h"
#include "daemon/migration.h"
#include "daemon/net.h"
#include "daemon/protection.h"

void protection_stats(void *ctx, const struct repl_stats *st)
{
	struct job *j = ctx;
	enum job_state want = JOB_NEW;

	pthread_mutex_lock(&D.lock);
	if (j->rst)
		memcpy(j->rst, st, sizeof *st);
	j->st = st->sync;
	if (st->state == REPL_PROTECTED && j->state == JOB_SYNCING)
		want = JOB_PROTECTED;
	else if (st->state == REPL_STANDBY && j->state == JOB_SYNCING)
		want = JOB_STANDBY;
	pthread_mutex_unlock(&D.lock);
	if (want != JOB_NEW)
		job_set_state(j, want, NULL);
}

void protection_json(const struct job *j, json_t *o)
{
	const struct repl_stats *s = j->rst;
	uint64_t now = mono_ns();
	json_t *r;

	migration_json(j, o);
	json_object_set_new(o, "fencing", json_boolean(j->fencing));
	if (j->kind == JOB_PRIMARY) {
		json_object_set_new(o, "resync_attempts", json_integer(j->resyncs));
		json_object_set_new(o, "standby_job", json_string(j->peer_job[0] ? j->peer_job
										 : j->id));
	}
	json_object_set_new(o, "protect_options",
			    json_pack("{s:i, s:i}", "epoch_ms", (int)j->ropts.epoch_ms, "heartbeat_ms",
				      (int)j->ropts.heartbeat_ms));
	if (j->fence)
		json_object_set_new(o, "fence", json_pack("{s:I, s:I, s:b, s:b}", "lease",
							(json_int_t)fence_lease(j->fence), "token",
							(json_int_t)fence_token(j->fence),
							"lease_valid", fence_valid(j->fence), "in_sync",
							j->state == JOB_PROTECTED));
	if (!s)
		return;
	r = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, "
		      "s:b, s:I}",
		      "state", repl_state_name(s->state), "epoch", (json_int_t)s->epoch, "acked",
		      (json_int_t)s->acked, "epochs", (json_int_t)s->epochs, "epochs_per_s",
		      s->t_start_ns && now > s->t_start_ns
			      ? (double)s->epochs / ns_to_sec(now - s->t_start_ns) : 0.0,
		      "pause_p50_ms", ns_to_ms(repl_pause_pct(s, 50)), "pause_p99_ms",
		      ns_to_ms(repl_pause_pct(s, 99)), "pause_max_ms", ns_to_ms(s->pause_max_ns),
		      "bytes_per_epoch", (json_int_t)(s->epochs ? s->bytes / s->epochs : 0),
		      "dirty_pages_per_epoch",
		      (json_int_t)(s->epochs ? s->dirty_pages / s->epochs : 0), "last_dirty_pages",
		      (json_int_t)s->last_dirty, "staging_bytes", (json_int_t)s->staging_bytes,
		      "staging_max", (json_int_t)s->staging_max, "passthrough_epochs",
		      (json_int_t)s->passthrough, "fencing", j->fencing, "token",
		      (json_int_t)s->token);
	if (!r)
		return;
	json_object_set_new(r, "output_delay_ms",
			    json_real(s->delays ? ns_to_ms(s->delay_sum_ns / s->delays) : 0.0));
	json_object_set_new(r, "since_commit_ms",
			    json_real(s->last_commit_ns && now > s->last_commit_ns
					      ? ns_to_ms(now - s->last_commit_ns) : 0.0));
	json_object_set_new(r, "epoch_ms", json_integer(j->ropts.epoch_ms));
	json_object_set_new(r, "heartbeat_ms", json_integer(j->ropts.heartbeat_ms));
	json_object_set_new(o, "replication", r);
}

/* A journal record: the options, and the claim in etcd it held. */
static void protection_load(struct job *j, json_t *o)
{
	json_int_t lease = 0, token = 0;
	int fencing = 0, em = 0, hb = 0, ch = 0;
	const char *pj = NULL;

	migration_load(j, o);
	json_unpack(o, "{s?b, s?{s:I, s:I}, s?{s?i, s?i}, s?i, s?s}", "fencing", &fencing, "fence",
		    "lease", &lease, "token", &token, "protect_options", "epoch_ms", &em,
		    "heartbeat_ms", &hb, "channels", &ch, "standby_job", &pj);
	j->fencing = fencing;
	/* The pairing the standby knows (and etcd may name in sync). */
	if (pj && strcmp(pj, j->id) != 0 && name_ok(pj, sizeof j->peer_job))
		snprintf(j->peer_job, sizeof j->peer_job, "%s", pj);
	/* What a re-protection after a restart runs with. */
	repl_opts_default(&j->ropts);
	j->ropts.sync.downtime_ns = D.downtime_ms * NSEC_PER_MSEC;
	j->ropts.sync.max_iters = D.max_iters;
	j->ropts.sync.on_no_converge = D.on_no_converge;
	j->ropts.sync.peer_timeout_ms = D.peer_timeout_ms;
	if (em >= 1 && em <= 60000)
		j->ropts.epoch_ms = (unsigned)em;
	if (hb >= 20 && hb <= 600000 && hb >= 2 * (int)j->ropts.epoch_ms)
		j->ropts.heartbeat_ms = (unsigned)hb;
	j->channels = ch >= 1 && ch <= WIRE_CHANNELS_MAX ? (unsigned)ch : D.channels;
	if (lease > 0 && token > 0) {
		j->fence_lease = (int64_t)lease;
		j->fence_token = (uint64_t)token;
	}
}

/* The engine's hold on the guest, after a ferryd that died in the middle
 * of an epoch: its pause and its dirty log. */
static void engine_gone(struct vm *v)
{
	hv_logdirty_disable(v->d);
	hv_unpause(v->d);
	pthread_mutex_lock(&D.lock);
	v->paused = false;
	pthread_mutex_unlock(&D.lock);
}

/* The guest's output leaves without a backup's acknowledgement from now on:
 * allowed here only because the pair is unfenced (protect refuses a fenced
 * pair until etcd fencing exists). */
static void open_output(struct job *j, struct vm *v)
{
	int r = hv_output(v->d, HV_OUTPUT_OPEN, 0);

	if (r && r != -EOPNOTSUPP)
		log_error("job %s: %s: releasing held output: %s", j->id, v->name, strerror(-r));
}

/* The job's claim changes hands under D.lock: its JSON reads it there. */
static struct fence *swap_fence(struct job *j, struct fence *f)
{
	struct fence *old;

	pthread_mutex_lock(&D.lock);
	old = j->fence;
	j->fence = f;
	pthread_mutex_unlock(&D.lock);
	return old;
}

/* replicate hooks.synced: the backup holds the sync; name it in sync before
 * any output is released on its word. */
static int on_synced(void *ctx, char *err, size_t errlen)
{
	struct job *j = ctx;

	return j->fence ? fence_set_insync(j->fence, j->peer_job[0] ? j->peer_job : j->id, err,
					   errlen) : 0;
}

/*
 * The backup's in-sync name goes (fenced: in etcd, while the key is ours;
 * until etcd confirms, output stays held). A primary that cannot — someone
 * else owns the key, or etcd stays out of reach until the lease has run out
 * by this host's clock — must step down: false.
 */
static bool take_insync(struct job *j, struct vm *v, char *why, size_t len)
{
	for (unsigned tries = 0; j->fence; tries++) {
		int r = fence_set_insync(j->fence, "", why, len);

		if (!r)
			return true;
		if (r == -ESTALE || !fence_valid(j->fence) || core_stopping())
			return false;
		if (tries % 10 == 0)
			log_warn("job %s: %s: output held until etcd confirms: %s", j->id, v->name, why);
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
	return true;
}

/* The backup is lost: take its in-sync name away, then release the held
 * output and run on (false: step down instead). */
static bool go_alone(struct job *j, struct vm *v, char *why, size_t len)
{
	if (!take_insync(j, v, why, len))
		return false;
	open_output(j, v);
	return true;
}

/* Step down: the guest stops here (paused), lets its address go and cuts
 * its clients; once another host owns the VM this copy is destroyed. */
static void step_down(struct job *j, struct vm *v, const char *why)
{
	char owner[256], w[300];

	hv_pause(v->d);
	pthread_mutex_lock(&D.lock);
	v->paused = true;
	pthread_mutex_unlock(&D.lock);
	net_down(v, true);
	fence_drop(swap_fence(j, NULL));
	log_error("job %s: %s: fenced: %s; the guest is paused here", j->id, v->name, why);
	job_set_state(j, JOB_FENCED, why);
	for (unsigned tries = 0; !core_stopping(); tries++) {
		int r = fence_host(v->name, owner, sizeof owner, w, sizeof w);

		if (!r && strcmp(owner, D.hostname) != 0) {
			log_warn("job %s: %s runs on %s now: destroying the copy here", j->id, v->name,
				 owner);
			hv_destroy(v->d);
			vm_unlist(v);
			return;
		}
		mono_sleep_ns((tries < 20 ? 100 : 1000) * NSEC_PER_MSEC);
	}
}

static void resync_later(void *p);

static void *protect_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	struct repl_stats *st = calloc(1, sizeof *st);
	struct wire_hello h = { .op = WIRE_OP_PROTECT, .heartbeat_ms = j->ropts.heartbeat_ms,
				.epoch_ms = j->ropts.epoch_ms, .fencing = j->fencing,
				.resync = j->staged_resync };
	struct session *s;
	char err[600] = "", why[300];
	int r = 0;

	j->ropts.hooks = (struct repl_hooks){ .ctx = j, .stats = protection_stats,
					      .synced = on_synced };
	j->ropts.stop = &j->cancel;
	j->ropts.sync.cancel = &j->cancel;
	if (!st) {
		r = -ENOMEM;
		snprintf(err, sizeof err, "out of memory");
	} else if (j->fencing && !j->fence) {
		/* The claim is journaled before anything depends on it: a
		 * restarted ferryd must find it (recover). */
		struct fence *f = NULL;

		if (!(r = fence_acquire(v->name, &f, err, sizeof err)) &&
		    (swap_fence(j, f), r = job_journal(j)))
			snprintf(err, sizeof err, "journaling the claim in etcd: %s", strerror(-r));
	}
	if (!r) {
		j->ropts.token = j->fence ? fence_token(j->fence) : 0;
		if (!(r = migration_connect(j, v, &h, j->ropts.sync.peer_timeout_ms,
					    &j->ropts.sync.codec, err, sizeof err))) {
			log_info("job %s: protecting %s with a standby on %s (epochs of %u ms, %u %s "
				 "channel%s, %s)", j->id, v->name, j->peer, j->ropts.epoch_ms,
				 j->channels, j->transport, j->channels > 1 ? "s" : "",
				 j->fencing ? "fenced by etcd"
					    : "UNFENCED: a network split may give two primaries");
			r = replicate_primary(v->d, j->s, &j->ropts, st, err, sizeof err);
		}
	}
	pthread_mutex_lock(&D.lock);
	s = j->s;
	j->s = NULL;
	j->staged_resync = false;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (r && j->resyncs && !j->cancel && st && !st->t_start_ns) {
		/* Pairing again did not get as far as the first epoch: degraded
		 * as before (the backup may have been named in sync: the name
		 * goes first), and again later. */
		if (go_alone(j, v, why, sizeof why)) {
			log_warn("job %s: %s: pairing again with %s (attempt %u): %s", j->id,
				 v->name, j->peer, j->resyncs, err);
			job_set_state(j, JOB_DEGRADED, err);
		} else {
			snprintf(err + strlen(err), sizeof err - strlen(err), "; and %s", why);
			step_down(j, v, err);
		}
	} else if ((!r || !st || !st->t_start_ns) && !take_insync(j, v, why, sizeof why)) {
		if (r)
			snprintf(err + strlen(err), sizeof err - strlen(err), "; and %s", why);
		else
			snprintf(err, sizeof err, "unprotected, but %s", why);
		step_down(j, v, err);
	} else if (!r || !st || !st->t_start_ns) {
		/* Unprotected, or never protected: nothing depends on a backup
		 * any more (a standby named in sync — a staged resync's — was
		 * just named no more). */
		open_output(j, v);
		fence_release(swap_fence(j, NULL));
		if (!r)
			job_set_state(j, JOB_COMPLETED, "unprotected: the standby discarded its copy");
		else
			job_set_state(j, j->cancel ? JOB_COMPLETED : JOB_FAILED,
				      j->cancel ? "unprotected during the initial sync" : err);
	} else if (go_alone(j, v, why, sizeof why)) {
		log_warn("job %s: %s runs unprotected (degraded): %s", j->id, v->name, err);
		j->resyncs = 0;
		job_set_state(j, JOB_DEGRADED, err);
	} else {
		snprintf(err + strlen(err), sizeof err - strlen(err), "; and %s", why);
		step_down(j, v, err);
	}
	free(st);
	if (j->state != JOB_DEGRADED)
		return migration_thread_end(j);
	return migration_thread_end_call(j, resync_later, strdup(j->id));
}

/*
 * A degraded primary pairs again with its backup host by itself: the
 * backup's ferryd may only have restarted, or the link come back. The first
 * try a second after the loss, then at twice the interval each time, at
 * most every RESYNC_MAX_S; each is a full resync in the same job
 * (degraded -> syncing -> protected, or degraded again). `ferry unprotect`
 * ends it; `ferry protect --peer OTHER` pairs it elsewhere instead.
 */
#define RESYNC_MAX_S 30

static void resync_fire(evutil_socket_t fd, short what, void *arg);

/* On the loop thread: arm the next try of the job whose id arg is. */
static void resync_later(void *p)
{
	char *id = p;
	struct timeval tv = { 1, 0 };
	struct job *j;

	if (!id)
		return;
	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	if (j)
		tv.tv_sec = MIN((time_t)1 << MIN(j->resyncs, 5u), (time_t)RESYNC_MAX_S);
	pthread_mutex_unlock(&D.lock);
	if (!j || event_base_once(D.base, -1, EV_TIMEOUT, resync_fire, id, &tv))
		free(id);
}

/* On the loop thread: try now, if the job still waits for it. */
static void resync_fire(evutil_socket_t fd, short what, void *arg)
{
	char *id = arg, err[300];
	struct job *j;
	struct vm *v;
	bool go;

	(void)fd, (void)what;
	pthread_mutex_lock(&D.lock);
	j = job_find(id);
	go = j && j->kind == JOB_PRIMARY && j->state == JOB_DEGRADED && !j->running &&
	     !j->cancel && !D.stopping;
	pthread_mutex_unlock(&D.lock);
	if (!go) {
		free(id);
		return;
	}
	if (!(v = vm_get(j->vm))) {
		struct fence *f = swap_fence(j, NULL);

		fence_release(f);
		job_set_state(j, JOB_FAILED, "the VM is no longer on this host");
		free(id);
		return;
	}
	if (vm_busy(v, "protected", j->id, err, sizeof err)) {
		/* Another job has it now (a migration, say): later. */
		vm_put(v);
		resync_later(id);
		return;
	}
	free(id);
	pthread_mutex_lock(&D.lock);
	j->v = v;
	j->running = true;
	j->resyncs++;
	/* A pairing of its own: the backup host may still know the last one. */
	job_make_id(j->peer_job);
	pthread_mutex_unlock(&D.lock);
	log_info("job %s: %s: pairing again with %s (attempt %u)", j->id, v->name, j->peer,
		 j->resyncs);
	if (job_set_state(j, JOB_SYNCING, NULL) || spawn_thread(protect_main, j)) {
		if (j->state == JOB_SYNCING)
			job_set_state(j, JOB_DEGRADED, "cannot start pairing again");
		migration_release(j);
	}
}

int protect_start(const char *name, const char *peer, const struct repl_opts *o, bool fencing,
		  unsigned channels, const char *idem, char *id, char *err, size_t errlen)
{
	struct hv_info info;
	struct job *j;
	char why[400];
	int r;

	if ((r = migration_new_out(JOB_PRIMARY, name, peer, "protected", idem, &j, err,
				   errlen)))
		return r;
	if (!(j->rst = calloc(1, sizeof *j->rst)))
		r = -ENOMEM, snprintf(err, errlen, "out of memory");
	else if ((r = hv_info(j->v->d, &info)))
		snprintf(err, errlen, "%s: %s", name, strerror(-r));
	else if ((r = repl_can_protect(&info, why, sizeof why)))
		snprintf(err, errlen, "%s cannot be protected: %s", name, why);
	if (r) {
		vm_unbusy(j->v);
		vm_put(j->v);
		job_free(j);
		return r;
	}
	/* A degraded pair's job ends when protection starts again. */
	pthread_mutex_lock(&D.lock);
	for (struct job *o2 = D.jobs; o2; o2 = o2->next)
		if (o2->kind == JOB_PRIMARY && o2->state == JOB_DEGRADED && !o2->running &&
		    strcmp(o2->vm, name) == 0) {
			/* Its claim in etcd carries on with the new job. */
			j->fence = o2->fence;
			o2->fence = NULL;
			pthread_mutex_unlock(&D.lock);
			job_set_state(o2, JOB_COMPLETED, "protected again by a new job");
			pthread_mutex_lock(&D.lock);
			break;
		}
	pthread_mutex_unlock(&D.lock);
	j->ropts = *o;
	j->fencing = fencing;
	j->channels = channels;
	return migration_launch(j, JOB_SYNCING, protect_main, id, err, errlen);
}

int protect_stop(const char *name, char *err, size_t errlen)
{
	struct job *hit = NULL;
	int r = 0;

	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j && !hit; j = j->next)
		if ((j->kind == JOB_PRIMARY || j->kind == JOB_BACKUP) &&
		    !job_state_final(j->state) && strcmp(j->vm, name) == 0)
			hit = j;
	if (!hit) {
		snprintf(err, errlen, "%s is not protected here", name);
		r = -ENOENT;
	} else if (hit->state == JOB_TAKING_OVER) {
		snprintf(err, errlen, "%s is being taken over here", name);
		r = -EBUSY;
	} else {
		hit->cancel = 1;
		pthread_cond_broadcast(&hit->wake); /* a held standby waits on it */
	}
	pthread_mutex_unlock(&D.lock);
	if (hit && !r && hit->state == JOB_DEGRADED && !hit->running) {
		pthread_mutex_lock(&D.lock);
		struct fence *f = hit->fence;
		hit->fence = NULL;
		pthread_mutex_unlock(&D.lock);
		fence_release(f);
		job_set_state(hit, JOB_COMPLETED, "unprotected");
	}
	return r;
}

/* Shutdown: end protection cleanly (the standby discards its copy); the
 * guest runs on here and the next ferryd adopts it. */
static void stop(struct job *j)
{
	j->cancel = 1;
	if (!j->running && j->fence) {
		/* Degraded, no thread: its claim goes with ferryd. */
		fence_release(j->fence);
		j->fence = NULL;
	}
}

/*
 * Start-up, fenced: the guest runs on here (adopted) with its output held.
 * If the claim journaled before the restart still lives, the same pairing
 * resyncs its standby, staged (HELLO resync): the standby keeps its copy,
 * still named in sync, and runs it if this host is lost before the resync
 * is whole; the output held since the restart goes with the new pairing's
 * first acknowledged epoch. If the claim expired, the standby may run the
 * guest by now: step down.
 */
static void *recover_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	uint64_t until = mono_ns() + (uint64_t)D.coord_ttl_s * NSEC_PER_SEC;
	char why[400], msg[512];
	int r;

	for (;;) {
		struct fence *f = NULL;

		r = fence_resume(v->name, j->fence_lease, j->fence_token, &f, why, sizeof why);
		if (!r)
			swap_fence(j, f);
		if (!r || r == -ESTALE || mono_ns() > until || core_stopping())
			break;
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
	if (!r) {
		engine_gone(v); /* ferryd may have died inside an epoch */
		pthread_mutex_lock(&D.lock);
		if (!j->rst)
			j->rst = calloc(1, sizeof *j->rst);
		j->staged_resync = true;
		j->resyncs = 1; /* failing, it goes on degraded and pairs again later */
		pthread_mutex_unlock(&D.lock);
		log_info("job %s: %s: ferryd restarted inside its lease: the guest runs on here, its "
			 "output held, while the standby is resynced; until that is whole the "
			 "standby's copy is the one that takes over", j->id, v->name);
		if (j->state != JOB_SYNCING)
			job_set_state(j, JOB_SYNCING, NULL);
		return protect_main(j);
	}
	snprintf(msg, sizeof msg, "ferryd restarted and %s", why);
	step_down(j, v, msg);
	return migration_thread_end(j);
}

/* Start-up: protection does not survive ferryd yet. Unfenced, the guest runs
 * on here unprotected (adopted), its held output let go. Fenced, what etcd
 * says decides (recover_main). */
static void recover(struct job *j)
{
	struct vm *v = vm_get(j->vm);
	char err[300];

	if (v && v->d && j->fencing && j->fence_lease && fence_configured() &&
	    !vm_busy(v, "protected", j->id, err, sizeof err)) {
		pthread_mutex_lock(&D.lock);
		j->running = true;
		j->v = v;
		pthread_mutex_unlock(&D.lock);
		if (!spawn_thread(recover_main, j))
			return; /* the thread has our reference */
		pthread_mutex_lock(&D.lock);
		j->running = false;
		j->v = NULL;
		pthread_mutex_unlock(&D.lock);
		vm_unbusy(v);
	}
	if (v && v->d) {
		open_output(j, v);
		engine_gone(v);
	}
	job_set_state(j, JOB_FAILED, "ferryd restarted: protection ended; the guest runs here "
		      "unprotected (`ferry protect` pairs it again)");
	vm_put(v);
}

const struct job_kind_ops protect_kind = {
	.name = "protect",
	.direction = "out",
	.json = protection_json,
	.load = protection_load,
	.recover = recover,
	.stop = stop,
};
