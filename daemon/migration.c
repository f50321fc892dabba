/* SPDX-License-Identifier: Apache-2.0 */
/* migration.c — what both migration kinds share; see migration.h. */
#include "daemon/migration.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/mtime.h"
#include "common/util.h"
#include "daemon/vm.h"

static json_t *passes_json(const struct migrate_stats *s)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < MIN(s->npasses, (unsigned)MIGRATE_PASSES_MAX); i++) {
		const struct migrate_pass *p = &s->passes[i];

		json_array_append_new(a, json_pack("{s:i, s:b, s:I, s:I, s:f, s:I, s:f}", "pass",
						   (int)p->pass, "final", p->final, "pages",
						   (json_int_t)p->pages, "bytes", (json_int_t)p->bytes,
						   "ms", ns_to_ms(p->ns), "dirty_rate",
						   (json_int_t)p->dirty_rate, "expected_downtime_ms",
						   ns_to_ms(p->expected_downtime_ns)));
	}
	return a;
}

static json_t *stats_json(const struct migrate_stats *s)
{
	json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:i, s:i, "
			 "s:I, s:I, s:I, s:i, s:I, s:I, s:b}",
			 "phase", mig_phase_name(s->phase), "setup_ms", ns_to_ms(s->setup_ns),
			 "total_ms", ns_to_ms(s->total_ns), "downtime_ms", ns_to_ms(s->downtime_ns),
			 "expected_downtime_ms", ns_to_ms(s->expected_downtime_ns), "ram_bytes",
			 (json_int_t)s->ram_bytes, "bytes", (json_int_t)s->bytes, "pages", "raw",
			 (json_int_t)s->pages[STREAM_ENC_RAW], "lz4",
			 (json_int_t)s->pages[STREAM_ENC_LZ4], "delta",
			 (json_int_t)s->pages[STREAM_ENC_DELTA], "zero_pages",
			 (json_int_t)s->zero_frames, "iterations", (int)s->iterations, "pass", (int)s->pass,
			 "dirty_pages", (json_int_t)s->dirty_pages, "dirty_rate",
			 (json_int_t)s->dirty_rate, "throughput", (json_int_t)s->throughput,
			 "throttle", (int)s->throttle, "iter_pos", (json_int_t)s->iter_pos,
			 "iter_frames", (json_int_t)s->iter_frames, "committed", s->committed);

	if (o && s->npasses)
		json_object_set_new(o, "passes", passes_json(s));
	if (o && s->expected_downtime_ns)
		json_object_set_new(o, "expected_downtime_steps",
				    json_pack("{s:f, s:f, s:f, s:f, s:f}", "last_pages_ms",
					      ns_to_ms(s->expected_pages_ns), "fixed_ms",
					      ns_to_ms(s->expected_fixed_ns), "round_trips_ms",
					      ns_to_ms(s->expected_rtt_ns), "rtt_ms",
					      ns_to_ms(s->rtt_ns), "margin_ms",
					      ns_to_ms(s->margin_ns)));
	if (o && s->steps.ready)
		json_object_set_new(o, "downtime_steps",
				    json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "pause_ms",
					      ns_to_ms(s->steps.pause), "final_harvest_ms",
					      ns_to_ms(s->steps.harvest), "last_pages_ms",
					      ns_to_ms(s->steps.pages), "context_ms",
					      ns_to_ms(s->steps.context), "ready_ms",
					      ns_to_ms(s->steps.ready), "release_ms",
					      ns_to_ms(s->steps.release), "go_to_running_ms",
					      ns_to_ms(s->steps.go_running), "destination_resume_ms",
					      ns_to_ms(s->steps.resume)));
	if (o && s->postcopy)
		json_object_set_new(o, "postcopy",
				    json_pack("{s:I, s:I, s:I, s:f, s:{s:f, s:f, s:f}}",
					      "missing_pages", (json_int_t)s->pc_missing,
					      "demand_pages", (json_int_t)s->pc_demand,
					      "background_pages", (json_int_t)s->pc_background,
					      "ms", ns_to_ms(s->pc_ns), "fault_latency_ms", "p50",
					      s->pc_fault_p50_us / 1000.0, "p99",
					      s->pc_fault_p99_us / 1000.0, "max",
					      s->pc_fault_max_us / 1000.0));
	return o;
}

bool migration_missed(uint64_t downtime_ns, uint64_t target_ns)
{
	return downtime_ns > target_ns + target_ns / 10;
}

/* What the destination calls its step, as the API has always said it. */
static const char *in_state(enum job_state s)
{
	switch (s) {
	case JOB_READY: return "ready";
	case JOB_RESUMING: return "resuming";
	case JOB_RUNNING:
	case JOB_COMPLETED: return "running";
	case JOB_FAILED: return "discarded";
	case JOB_RESUME_FAILED: return "resume-failed";
	case JOB_POSTCOPY: return "postcopy";
	case JOB_LOST: return "lost";
	default: return "receiving";
	}
}

void migration_json(const struct job *j, json_t *o)
{
	json_object_set_new(o, "phase", json_string(mig_phase_name(j->st.phase)));
	json_object_set_new(o, "stats", stats_json(&j->st));
	json_object_set_new(o, "codecs", wire_caps_json(j->caps & WIRE_CAPS_ALL));
	if (j->caps & WIRE_CAP_POSTCOPY)
		json_object_set_new(o, "postcopy_channel", json_true());
	if (j->channels)
		json_object_set_new(o, "channels", json_integer(j->channels));
	if (j->transport[0])
		json_object_set_new(o, "transport", json_string(j->transport));
	if (j->kind == JOB_MIGRATE_IN) {
		json_t *s = json_object_get(o, "stats");

		/* One meaning of downtime: the source's, from its pause to the
		 * resume here. This host measures only its own share. */
		json_object_set_new(s, "downtime_ms", json_null());
		if (j->st.steps.resume)
			json_object_set_new(s, "destination_resume_ms",
					    json_real(ns_to_ms(j->st.steps.resume)));
		json_object_set_new(o, "in_state", json_string(in_state(j->state)));
		return;
	}
	if (j->st.downtime_ns) {
		bool missed = migration_missed(j->st.downtime_ns, j->opts.downtime_ns);
		char w[200];

		json_object_set_new(json_object_get(o, "stats"), "downtime_target_missed",
				    json_boolean(missed));
		snprintf(w, sizeof w, "the downtime, %.1f ms, missed its target of %.0f ms by "
			 "more than 10 %% (expected %.1f ms)", ns_to_ms(j->st.downtime_ns),
			 ns_to_ms(j->opts.downtime_ns), ns_to_ms(j->st.expected_downtime_ns));
		if (missed)
			json_object_set_new(o, "warning", json_string(w));
	}
	json_object_set_new(o, "options",
			    json_pack("{s:f, s:i, s:s, s:I, s:i, s:b}", "downtime_ms",
				      ns_to_ms(j->opts.downtime_ns), "max_iters",
				      (int)j->opts.max_iters, "on_no_converge",
				      mig_policy_name(j->opts.on_no_converge), "bandwidth",
				      (json_int_t)j->opts.bandwidth, "peer_timeout_ms",
				      j->opts.peer_timeout_ms, "postcopy", j->opts.postcopy));
}

void migration_load(struct job *j, json_t *o)
{
	const char *pol = "stop";
	json_int_t bw = 0;
	int iters = 30, pto = 15000, pc = 0, ch = 0;
	double dt = 300;

	/* An incoming migration's options are its source's: its record has
	 * none (migration_json), and any there are ignored. */
	if (j->kind == JOB_MIGRATE_IN)
		return;
	json_unpack(o, "{s?{s?f, s?i, s?s, s?I, s?i, s?b}}", "options", "downtime_ms", &dt,
		    "max_iters", &iters, "on_no_converge", &pol, "bandwidth", &bw,
		    "peer_timeout_ms", &pto, "postcopy", &pc);
	j->opts.postcopy = pc;
	/* What it was agreed (a post-copy connecting again after a restart
	 * asks for as many). */
	json_unpack(o, "{s?i}", "channels", &ch);
	if (ch >= 1 && ch <= WIRE_CHANNELS_MAX)
		j->channels = (unsigned)ch;
	/* A record is checked like a request: out of range keeps the default. */
	if (dt >= 1 && dt <= 3600000)
		j->opts.downtime_ns = (uint64_t)(dt * 1e6);
	if (iters >= 1 && iters <= 1000)
		j->opts.max_iters = (unsigned)iters;
	if (mig_policy_parse(pol, &j->opts.on_no_converge))
		j->opts.on_no_converge = NOCONV_STOP;
	if (bw >= 0)
		j->opts.bandwidth = (uint64_t)bw;
	if (pto >= 100 && pto <= 3600000)
		j->opts.peer_timeout_ms = pto;
}

void migration_stats(void *ctx, const struct migrate_stats *st)
{
	struct job *j = ctx;

	pthread_mutex_lock(&D.lock);
	j->st = *st;
	pthread_mutex_unlock(&D.lock);
}

void migration_session(struct job *j, const struct session *s)
{
	pthread_mutex_lock(&D.lock);
	j->channels = s->want;
	j->caps = s->caps;
	snprintf(j->transport, sizeof j->transport, "%s", session_kind(s));
	pthread_mutex_unlock(&D.lock);
}

int migration_claim(const struct wire_hello *h, enum job_kind kind, struct job **jp,
		    struct vm **vp, char *why, size_t len)
{
	struct job *j = job_new(kind, h->job);
	struct vm *v = vm_new(h->name);
	int r = 0;

	if (!j || !v) {
		snprintf(why, len, "out of resources");
		job_free(j);
		vm_put(v);
		return -ENOMEM;
	}
	pthread_mutex_lock(&D.lock);
	if (D.stopping)
		snprintf(why, len, "ferryd on %s is shutting down", D.hostname);
	else if (vm_name_taken(h->name))
		snprintf(why, len, "a VM named %s already exists on %s", h->name, D.hostname);
	else if (job_find(h->job))
		snprintf(why, len, "job %s is already known on %s", h->job, D.hostname);
	else if (D.incoming >= D.max_incoming)
		snprintf(why, len, "%s already receives %u migrations (max-incoming)", D.hostname,
			 D.incoming);
	if (!why[0]) {
		snprintf(v->config, sizeof v->config, "%s", h->config);
		vm_describe_net(v);
		v->busy = "incoming";
		snprintf(v->job, sizeof v->job, "%s", j->id);
		v->paused = true;
		vm_add_locked(v);
		D.incoming++;
		job_link(j);
	}
	pthread_mutex_unlock(&D.lock);
	if (why[0]) {
		job_free(j);
		vm_put(v);
		return -EBUSY;
	}
	*jp = j;
	*vp = v;
	return r;
}

int migration_new_out(enum job_kind k, const char *name, const char *peer, const char *what,
		      const char *idem, struct job **out, char *err, size_t errlen)
{
	char host[256], port[16];
	struct vm *v;
	struct job *j;
	int r;

	if (parse_host_port(peer, WIRE_DEFAULT_PORT, host, sizeof host, port, sizeof port)) {
		snprintf(err, errlen, "\"%s\" is not HOST[:PORT]", peer);
		return -EINVAL;
	}
	if (!(v = vm_get(name))) {
		snprintf(err, errlen, "no VM named %s on this host", name);
		return -ENOENT;
	}
	if (!(j = job_new(k, NULL))) {
		vm_put(v);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = vm_busy(v, what, j->id, err, errlen))) {
		vm_put(v);
		job_free(j);
		return r;
	}
	j->v = v;
	snprintf(j->vm, sizeof j->vm, "%s", name);
	snprintf(j->peer, sizeof j->peer, "%s", peer);
	snprintf(j->idem, sizeof j->idem, "%s", idem ? idem : "");
	*out = j;
	return 0;
}

int migration_launch(struct job *j, enum job_state first, void *(*fn)(void *), char *id,
		     char *err, size_t errlen)
{
	int r;

	j->running = true;
	pthread_mutex_lock(&D.lock);
	job_link(j);
	pthread_mutex_unlock(&D.lock);
	/* Journaled before anything moves: a restarted ferryd settles it. */
	if ((r = job_set_state(j, first, NULL)) || (r = spawn_thread(fn, j))) {
		snprintf(err, errlen, "cannot start the job: %s", strerror(-r));
		migration_free_vm(j);
		job_set_state(j, JOB_FAILED, err);
		migration_release(j);
		return r;
	}
	snprintf(id, JOB_ID_LEN, "%s", j->id);
	return 0;
}

int migration_connect(struct job *j, struct vm *v, struct wire_hello *h, int timeout_ms,
		      struct codec_opts *codec, char *err, size_t errlen)
{
	struct session *s;
	int r;

	snprintf(h->name, sizeof h->name, "%s", v->name);
	snprintf(h->config, sizeof h->config, "%s", v->config);
	if ((r = session_new(&D.peers, j->peer, j->peer_job[0] ? j->peer_job : j->id, &s))) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	s->timeout_ms = timeout_ms;
	pthread_mutex_lock(&D.lock);
	j->s = s;
	if (j->cancel)
		session_shutdown(s);
	pthread_mutex_unlock(&D.lock);
	/* Post-copy asked for: one channel more, its own. */
	if ((r = session_connect(s, h, j->channels + !!(h->caps & WIRE_CAP_POSTCOPY), NULL, err,
				 errlen)))
		return r;
	migration_session(j, s);
	codec->lz4 = s->caps & WIRE_CAP_LZ4;
	codec->delta = s->caps & WIRE_CAP_DELTA;
	return 0;
}

void migration_free_vm(struct job *j)
{
	struct vm *v;

	pthread_mutex_lock(&D.lock);
	v = j->v;
	j->v = NULL;
	pthread_mutex_unlock(&D.lock);
	if (v) {
		vm_unbusy(v);
		vm_put(v);
	}
}

void migration_release(struct job *j)
{
	migration_free_vm(j);
	pthread_mutex_lock(&D.lock);
	j->running = false;
	pthread_mutex_unlock(&D.lock);
}

void *migration_thread_end_call(struct job *j, void (*fn)(void *), void *arg)
{
	migration_release(j);
	if (fn)
		loop_call(fn, arg);
	thread_done();
	return NULL;
}

void *migration_thread_end(struct job *j)
{
	return migration_thread_end_call(j, NULL, NULL);
}
