/* SPDX-License-Identifier: Apache-2.0 */
/*
 * migrate_out.c — the outgoing migration job: its thread connects a
 * session to the destination and runs the pre-copy engine; after GO
 * without RUNNING (or a restart after the commit) it finds out which copy
 * runs (asking the destination by job id, or the operator's `ferry
 * resolve`); at start-up it brings back a job that was in flight (DESIGN.md
 * §6 step 6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/migration.h"
#include "daemon/net.h"

/* The guest runs here again as before the migration. */
static int resume_here(struct vm *v)
{
	int r;

	hv_throttle(v->d, 0);
	hv_logdirty_disable(v->d);
	if (!v->net_up)
		net_up(v, v->d); /* GO had taken its address away */
	r = hv_unpause(v->d);
	pthread_mutex_lock(&D.lock);
	v->paused = r != 0;
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* Wait on the job's wake-up: soon at first (a restarting peer is back in a
 * moment), then once a second. */
static void resolve_pause(struct job *j, unsigned tries)
{
	struct timespec ts = ns_to_ts(real_ns() + (tries < 10 ? 200 : 1000) * NSEC_PER_MSEC);

	pthread_mutex_lock(&D.lock);
	if (j->force == FORCE_NONE && !D.stopping)
		pthread_cond_timedwait(&j->wake, &D.lock, &ts);
	pthread_mutex_unlock(&D.lock);
}

/* After GO without RUNNING: find out which copy runs, or wait for the
 * operator. The guest stays paused here meanwhile. */
static void resolve_loop(struct job *j, struct vm *v)
{
	char ans[32], why[300];

	for (unsigned tries = 0;; tries++) {
		enum job_force force;
		bool stopping, asked = false;

		pthread_mutex_lock(&D.lock);
		force = j->force;
		stopping = D.stopping;
		pthread_mutex_unlock(&D.lock);
		if (force == FORCE_NONE && !stopping)
			asked = !session_ask(&D.peers, j->peer, j->id, ans, sizeof ans);
		if (force == FORCE_DESTINATION || (asked && strcmp(ans, "running") == 0)) {
			int r = hv_destroy(v->d);

			if (r)
				log_error("job %s: destroying the source copy: %s", j->id, strerror(-r));
			vm_unlist(v);
			job_set_state(j, JOB_COMPLETED, force ? "resolved by the operator: the guest "
				      "runs on the destination" : "");
			return;
		}
		if (force == FORCE_NONE && asked && strcmp(ans, "lost") == 0) {
			/* It ran there in post-copy and died: this copy is stale. */
			job_set_state(j, JOB_LOST, "the guest ran at the destination in post-copy and "
				      "was lost there; this copy is stale and stays paused");
			return;
		}
		if (force == FORCE_SOURCE || (asked && strcmp(ans, "discarded") == 0)) {
			int r = resume_here(v);

			snprintf(why, sizeof why, "%s; the guest %s here",
				 force ? "resolved by the operator"
				       : "the destination discarded its copy",
				 r ? "could not be resumed" : "runs on");
			job_set_state(j, JOB_FAILED, why);
			return;
		}
		if (stopping)
			return; /* the journal keeps it unresolved for the next ferryd */
		if (asked && strcmp(ans, "unknown") == 0 && tries % 30 == 0)
			log_warn("job %s: the destination has no record of it; `ferry resolve %s "
				 "--force source|destination` decides", j->id, j->id);
		resolve_pause(j, tries);
	}
}

/* migrate_hooks.journal: the commit, before the stop-and-copy's pause, is
 * the last moment a cancel wins; from then on none does. Before GO goes
 * out, this host lets go of the guest's address. */
static int on_journal(void *ctx, enum mig_point pt)
{
	struct job *j = ctx;
	int r;

	if (pt == MIG_PT_POSTCOPY)
		return job_set_state(j, JOB_POSTCOPY, NULL);
	if (pt == MIG_PT_PC_PAUSED) /* (after a restart it may be so already) */
		return j->state == JOB_PC_PAUSED ? 0 : job_set_state(j, JOB_PC_PAUSED, NULL);
	if (pt == MIG_PT_GO) {
		/* The destination listens on the guest's address once it
		 * resumes: this host lets go of it first. */
		net_down(j->v, true);
		return 0;
	}
	if (pt != MIG_PT_COMMIT)
		return 0;
	pthread_mutex_lock(&D.lock);
	if (j->cancel) {
		pthread_mutex_unlock(&D.lock);
		return -ECANCELED;
	}
	j->go = true; /* a cancel is refused from here */
	pthread_mutex_unlock(&D.lock);
	if ((r = job_set_state(j, JOB_COMMITTED, NULL))) {
		pthread_mutex_lock(&D.lock);
		j->go = false;
		pthread_mutex_unlock(&D.lock);
		return r;
	}
	return 0;
}

/*
 * What a switch-over to a peer costs besides its last pages and its round
 * trips as the engine models them (migrate_opts.switch_ns): pause, final
 * harvest, context, journal, the destination's apply and resume, and what
 * the link adds that the model does not see (a final burst's losses, a
 * window that had shrunk). Learned per destination from the moves that
 * completed there: the downtime less the modelled last pages and round
 * trips, the median of the last SWITCH_SAMPLES (one move that lost its GO
 * to a retransmission timer does not make the next ones pessimistic). A
 * few peers are remembered; a new one starts at MIGRATE_SWITCH_DEFAULT_NS.
 */
#define SWITCH_PEERS 32
#define SWITCH_SAMPLES 5

static struct {
	pthread_mutex_t lock;
	struct {
		char peer[PEER_LEN];
		uint64_t sample[SWITCH_SAMPLES];
		unsigned n, next;
		uint64_t used;
	} e[SWITCH_PEERS];
	uint64_t clock;
} sw = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* (sw.lock) The index of peer's entry (made if make, in place of the
 * least recently used), or SWITCH_PEERS. */
static unsigned switch_slot(const char *peer, bool make)
{
	unsigned lru = 0;

	for (unsigned i = 0; i < SWITCH_PEERS; i++) {
		if (sw.e[i].n && strcmp(sw.e[i].peer, peer) == 0)
			return i;
		if (sw.e[i].used < sw.e[lru].used)
			lru = i;
	}
	if (!make)
		return SWITCH_PEERS;
	memset(&sw.e[lru], 0, sizeof sw.e[lru]);
	snprintf(sw.e[lru].peer, sizeof sw.e[lru].peer, "%s", peer);
	return lru;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t switch_cost(const char *peer)
{
	uint64_t v = MIGRATE_SWITCH_DEFAULT_NS, s[SWITCH_SAMPLES];
	unsigned i, n;

	pthread_mutex_lock(&sw.lock);
	if ((i = switch_slot(peer, false)) < SWITCH_PEERS) {
		n = sw.e[i].n;
		memcpy(s, sw.e[i].sample, sizeof s);
		qsort(s, n, sizeof *s, cmp_u64);
		v = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	}
	pthread_mutex_unlock(&sw.lock);
	return v;
}

static void switch_learn(const char *peer, const struct migrate_stats *st)
{
	uint64_t modelled = st->expected_pages_ns + st->expected_rtt_ns;
	unsigned i;

	if (!st->downtime_ns || !st->expected_downtime_ns)
		return;
	pthread_mutex_lock(&sw.lock);
	i = switch_slot(peer, true);
	sw.e[i].sample[sw.e[i].next] = st->downtime_ns > modelled ? st->downtime_ns - modelled : 0;
	sw.e[i].next = (sw.e[i].next + 1) % SWITCH_SAMPLES;
	sw.e[i].n = MIN(sw.e[i].n + 1, (unsigned)SWITCH_SAMPLES);
	sw.e[i].used = ++sw.clock;
	pthread_mutex_unlock(&sw.lock);
}

/*
 * migrate_hooks.reconnect: a post-copy's session failed. Connect again
 * with a resume HELLO — once a second, at once when `ferry migrate
 * --resume` says so (and perhaps where) — until it works; -EALREADY if the
 * destination turns out to have finished alone; -ECANCELED when the
 * operator gives up (ferry cancel) or ferryd stops.
 */
static int on_reconnect(void *ctx, struct session **s)
{
	struct job *j = ctx;
	struct session *failed = *s;
	char err[600], ans[32];

	/* The failed session stays the engine's until there is a new one. */
	pthread_mutex_lock(&D.lock);
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	for (unsigned tries = 0;; tries++) {
		struct wire_hello h = { .op = WIRE_OP_MIGRATE, .caps = WIRE_CAP_POSTCOPY,
					.resume = true };
		struct codec_opts codec;
		struct session *old;
		bool cancel, stopping;
		int r;

		pthread_mutex_lock(&D.lock);
		cancel = j->cancel;
		stopping = D.stopping;
		pthread_mutex_unlock(&D.lock);
		if (cancel)
			return -ECANCELED;
		if (stopping)
			return -ESHUTDOWN; /* the journal keeps it for the next ferryd */
		if (!(r = migration_connect(j, j->v, &h, j->opts.peer_timeout_ms, &codec, err,
					    sizeof err))) {
			log_info("job %s: post-copy of %s reconnected to %s", j->id, j->vm, j->peer);
			session_free(failed);
			*s = j->s;
			return 0;
		}
		pthread_mutex_lock(&D.lock);
		old = j->s;
		j->s = NULL;
		pthread_mutex_unlock(&D.lock);
		session_free(old);
		if (!session_ask(&D.peers, j->peer, j->id, ans, sizeof ans) &&
		    strcmp(ans, "running") == 0)
			return -EALREADY; /* it had every frame, and finished */
		if (tries % 10 == 0)
			log_warn("job %s: post-copy of %s paused: %s; trying again (ferry migrate "
				 "--resume %s [HOST] to say where)", j->id, j->vm, err, j->id);
		resolve_pause(j, 10);
	}
}

static void *out_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	struct migrate_stats st = { 0 };
	struct wire_hello h = { .op = WIRE_OP_MIGRATE };
	struct session *s;
	char err[600] = "";
	int r;

	j->opts.hooks = (struct migrate_hooks){ .ctx = j, .stats = migration_stats,
						.journal = on_journal, .reconnect = on_reconnect };
	j->opts.cancel = &j->cancel;
	j->opts.switch_ns = switch_cost(j->peer);
	if (j->opts.postcopy || j->opts.on_no_converge == NOCONV_POSTCOPY)
		h.caps = WIRE_CAP_POSTCOPY;
	if (!(r = migration_connect(j, v, &h, j->opts.peer_timeout_ms, &j->opts.codec, err,
				    sizeof err))) {
		log_info("job %s: migrating %s to %s over %u %s channel%s", j->id, v->name, j->peer,
			 j->channels, j->transport, j->channels > 1 ? "s" : "");
		r = migrate_send(v->d, j->s, &j->opts, &st, err, sizeof err);
		migration_stats(j, &st);
	} else if (j->cancel || r == -ECANCELED) {
		r = -ECANCELED;
		snprintf(err, sizeof err, "cancelled");
	}
	pthread_mutex_lock(&D.lock);
	s = j->s;
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (!r) {
		vm_unlist(v);
		switch_learn(j->peer, &st);
		if (migration_missed(st.downtime_ns, j->opts.downtime_ns))
			log_warn("job %s: %s: downtime %.1f ms missed its target of %.0f ms by more "
				 "than 10 %% (expected %.1f ms)", j->id, j->vm, ns_to_ms(st.downtime_ns),
				 ns_to_ms(j->opts.downtime_ns), ns_to_ms(st.expected_downtime_ns));
		job_set_state(j, JOB_COMPLETED, NULL);
	} else if (!st.committed) {
		/* Rolled back: the guest runs here as before (with its address,
		 * if the GO hook had already taken it). */
		if (!v->net_up)
			net_up(v, v->d);
		pthread_mutex_lock(&D.lock);
		v->paused = false;
		pthread_mutex_unlock(&D.lock);
		/* Free before the job says so: a retry may follow at once. */
		migration_free_vm(j);
		job_set_state(j, r == -ECANCELED ? JOB_CANCELLED : JOB_FAILED, err);
	} else if (r == -ESHUTDOWN) {
		/* ferryd stops in a post-copy: the next one goes on with it. */
		log_warn("job %s: ferryd stops in the middle of a post-copy of %s; the next ferryd "
			 "goes on with it", j->id, j->vm);
		migration_free_vm(j);
	} else if (st.phase == MIG_PH_POSTCOPY || st.phase == MIG_PH_PC_PAUSED) {
		/* The guest ran at the destination with frames still here: this
		 * copy is stale and must never run again (an operator may destroy
		 * it); there is nothing to resolve. */
		pthread_mutex_lock(&D.lock);
		v->paused = true;
		pthread_mutex_unlock(&D.lock);
		log_error("job %s: %s", j->id, err);
		migration_free_vm(j);
		job_set_state(j, JOB_LOST, err);
	} else {
		pthread_mutex_lock(&D.lock);
		v->paused = true;
		pthread_mutex_unlock(&D.lock);
		log_error("job %s: %s", j->id, err);
		job_set_state(j, JOB_UNRESOLVED, err);
		resolve_loop(j, v);
	}
	failpoint("mig-src-ended"); /* the job ended; its thread has not */
	return migration_thread_end(j);
}

int migrate_out_start(const char *name, const char *dest, const struct migrate_opts *o,
		      unsigned channels, const char *idem, char *id, char *err, size_t errlen)
{
	struct job *j;
	int r;

	if ((r = migration_new_out(JOB_MIGRATE_OUT, name, dest, "migrating", idem, &j, err,
				   errlen)))
		return r;
	j->opts = *o;
	j->channels = channels;
	j->st.phase = MIG_PH_SETUP;
	return migration_launch(j, JOB_SENDING, out_main, id, err, errlen);
}

/* Start-up: the post-copy a restart interrupted goes on. */
static void *pc_resume_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	struct migrate_stats st;
	struct session *s;
	char err[600] = "";
	int r;

	j->opts.hooks = (struct migrate_hooks){ .ctx = j, .stats = migration_stats,
						.journal = on_journal, .reconnect = on_reconnect };
	j->opts.cancel = &j->cancel;
	r = migrate_postcopy_resume(v->d, &j->opts, &st, err, sizeof err);
	pthread_mutex_lock(&D.lock);
	s = j->s;
	j->s = NULL;
	pthread_mutex_unlock(&D.lock);
	session_free(s);
	if (!r) {
		vm_unlist(v);
		job_set_state(j, JOB_COMPLETED, NULL);
	} else if (r == -ESHUTDOWN) {
		log_warn("job %s: ferryd stops in the middle of a post-copy of %s; the next ferryd "
			 "goes on with it", j->id, j->vm);
	} else {
		log_error("job %s: %s", j->id, err);
		job_set_state(j, JOB_LOST, err);
	}
	return migration_thread_end(j);
}

static void *resolve_main(void *p)
{
	struct job *j = p;

	resolve_loop(j, j->v);
	return migration_thread_end(j);
}

/* Start-up: a job that was in flight when ferryd stopped. */
static void recover(struct job *j)
{
	struct vm *v = vm_get(j->vm);
	char err[256];

	if (j->state == JOB_SENDING || j->state == JOB_NEW) {
		/* Before GO: roll back. */
		if (v)
			resume_here(v);
		job_set_state(j, JOB_FAILED, v ? "ferryd restarted during the migration; rolled "
			      "back, the guest runs here" : "ferryd restarted during the migration; "
			      "the guest is gone");
	} else if ((j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED) &&
		   (!v || vm_busy(v, "migrating", j->id, err, sizeof err))) {
		/* The guest's half here is gone with its runtime. */
		job_set_state(j, JOB_LOST, "ferryd restarted during post-copy, and the guest's "
			      "memory here is gone: the guest is lost");
	} else if (j->state == JOB_POSTCOPY || j->state == JOB_PC_PAUSED) {
		/* Its half is here, paused: go on with the destination. */
		pthread_mutex_lock(&D.lock);
		j->running = true;
		j->v = v;
		v->paused = true;
		pthread_mutex_unlock(&D.lock);
		v = NULL; /* the thread's reference */
		log_warn("job %s: a post-copy after a restart; reconnecting to %s", j->id, j->peer);
		if (spawn_thread(pc_resume_main, j)) {
			v = j->v;
			vm_unbusy(v);
		}
	} else if (!v) {
		/* GO was sent and the source copy is gone: it was destroyed
		 * after RUNNING. */
		job_set_state(j, JOB_COMPLETED, NULL);
	} else if (vm_busy(v, "migrating", j->id, err, sizeof err) == 0) {
		if (j->state == JOB_COMMITTED)
			job_set_state(j, JOB_UNRESOLVED, "ferryd restarted after the commit");
		pthread_mutex_lock(&D.lock);
		j->running = true;
		j->v = v;
		v->paused = true;
		pthread_mutex_unlock(&D.lock);
		v = NULL; /* the thread's reference */
		log_warn("job %s: unresolved after a restart; asking %s", j->id, j->peer);
		if (spawn_thread(resolve_main, j)) {
			v = j->v;
			vm_unbusy(v);
		}
	}
	vm_put(v);
}

const struct job_kind_ops migrate_out_kind = {
	.name = "migrate-out",
	.direction = "out",
	.json = migration_json,
	.load = migration_load,
	.recover = recover,
};
