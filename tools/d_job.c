/*
 * d_job.c — migration jobs: the list, the durable journal
 * (STATE/jobs/ID.json), the outgoing thread and its channels, cancel,
 * resolving a job that failed after GO, and recovery at start-up (DESIGN.md
 * §6 step 6). Incoming connections are d_incoming.c's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/mvm.h"
#include "session/wire.h"
#include "tools/daemon.h"

#define JOBS_KEPT 200 /* finished jobs remembered across restarts */

static const char *const state_names[] = { "active", "completed", "failed", "cancelled",
					   "unresolved" };

/* ---- the list and the journal ---- */

struct job *job_find(const char *id)
{
	for (struct job *j = D.jobs; j; j = j->next)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

struct job *job_new(bool out, const char *id)
{
	struct job *j = calloc(1, sizeof *j);
	unsigned char rnd[6];

	if (!j)
		return NULL;
	j->out = out;
	j->started = time(NULL);
	pthread_cond_init(&j->wake, NULL);
	if (id) {
		snprintf(j->id, sizeof j->id, "%s", id);
	} else {
		if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
			for (size_t i = 0; i < sizeof rnd; i++)
				rnd[i] = (unsigned char)(mono_ns() >> (i * 3));
		for (size_t i = 0; i < sizeof rnd; i++)
			snprintf(j->id + 2 * i, 3, "%02x", rnd[i]);
	}
	migrate_opts_default(&j->opts);
	return j;
}

/* Caller holds D.lock. */
void job_link(struct job *j)
{
	j->next = D.jobs;
	D.jobs = j;
}

static json_t *stats_json(const struct migrate_stats *s)
{
	return json_pack("{s:s, s:f, s:f, s:f, s:f, s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:i, s:i, "
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
}

json_t *job_json(const struct job *j)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:b}", "id", j->id,
			      "direction", j->out ? "out" : "in", "vm", j->vm, "peer", j->peer,
			      "state", state_names[j->state], "phase", mig_phase_name(j->st.phase),
			      "started", (json_int_t)j->started, "ended", (json_int_t)j->ended,
			      "stats", stats_json(&j->st), "go", j->go);

	if (o && j->error[0])
		json_object_set_new(o, "error", json_string(j->error));
	if (o && !j->out)
		json_object_set_new(o, "in_state", json_string(j->in_state));
	if (o)
		json_object_set_new(o, "codecs", wire_caps_json(j->caps));
	if (o && j->channels)
		json_object_set_new(o, "channels", json_integer(j->channels));
	if (o && j->transport[0])
		json_object_set_new(o, "transport", json_string(j->transport));
	if (o && j->out)
		json_object_set_new(o, "options",
				    json_pack("{s:f, s:i, s:s, s:I, s:i}", "downtime_ms",
					      ns_to_ms(j->opts.downtime_ns), "max_iters",
					      (int)j->opts.max_iters, "on_no_converge",
					      j->opts.on_no_converge == NOCONV_STOP ? "stop"
					      : j->opts.on_no_converge == NOCONV_THROTTLE
						      ? "throttle" : "abort",
					      "bandwidth", (json_int_t)j->opts.bandwidth,
					      "peer_timeout_ms", j->opts.peer_timeout_ms));
	return o;
}

/* Journal the job's current state durably. */
int job_save(struct job *j)
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
	snprintf(file, sizeof file, "%s.json", j->id);
	r = write_json_file(dir, file, o);
	json_decref(o);
	return r;
}

void job_finish(struct job *j, enum job_state s, const char *why)
{
	pthread_mutex_lock(&D.lock);
	j->state = s;
	j->ended = time(NULL);
	snprintf(j->error, sizeof j->error, "%s", why ? why : "");
	j->running = false;
	pthread_mutex_unlock(&D.lock);
	job_save(j);
	if (s == JOB_COMPLETED)
		log_info("job %s: %s %s %s: completed", j->id, j->vm, j->out ? "to" : "from", j->peer);
	else
		log_warn("job %s: %s %s %s: %s: %s", j->id, j->vm, j->out ? "to" : "from", j->peer,
			 state_names[s], why);
}

/* ---- hooks the engine calls ---- */

void on_progress(void *ctx, const struct migrate_stats *st)
{
	struct job *j = ctx;

	pthread_mutex_lock(&D.lock);
	j->st = *st;
	pthread_mutex_unlock(&D.lock);
}

int on_journal(void *ctx, enum mig_point pt)
{
	struct job *j = ctx;
	const char *in = NULL;

	pthread_mutex_lock(&D.lock);
	if (pt == MIG_PT_GO) {
		/* The last moment a cancel wins; from here none does. */
		if (j->cancel) {
			pthread_mutex_unlock(&D.lock);
			return -ECANCELED;
		}
		j->go = true;
	} else {
		in = pt == MIG_PT_READY ? "ready" : pt == MIG_PT_RESUME ? "resuming" : "running";
		snprintf(j->in_state, sizeof j->in_state, "%s", in);
	}
	pthread_mutex_unlock(&D.lock);
	if (pt == MIG_PT_RESUME) {
		/* The guest is ours from now on, also if ferryd dies next. */
		struct vm *v = vm_get(j->vm);

		if (v) {
			vm_record_write(v);
			vm_put(v);
		}
	}
	return job_save(j);
}

/* Destination: the guest runs here now; say so before RUNNING goes out, so
 * that nobody sees the source done and this host still receiving. */
void on_resumed(void *ctx, struct hv_domain *d)
{
	struct job *j = ctx;
	struct vm *v = vm_get(j->vm);
	struct hv_info info;

	if (!v)
		return;
	if (!hv_info(d, &info)) {
		v->pid = info.pid;
		/* The stream's config made the guest; the HELLO's was only said. */
		snprintf(v->config, sizeof v->config, "%s", info.config);
	}
	v->d = d;
	pthread_mutex_lock(&D.lock);
	v->paused = false;
	snprintf(j->in_state, sizeof j->in_state, "running");
	j->state = JOB_COMPLETED;
	j->ended = time(NULL);
	pthread_mutex_unlock(&D.lock);
	vm_unbusy(v);
	loop_call(vm_watch_start, v); /* takes our reference */
}

/* ---- talking to the peer ---- */

/* Caller holds D.lock: unblock whatever the job's thread does on its
 * channels (cancel, shutdown). */
static void job_shutdown_chans(struct job *j)
{
	for (unsigned i = 0; i < j->nch; i++)
		chan_shutdown(j->ch[i]);
}

/* Let go of the job's channels (its thread, when done with them). */
void job_free_chans(struct job *j)
{
	struct chan *ch[WIRE_CHANNELS_MAX];
	unsigned n;

	pthread_mutex_lock(&D.lock);
	n = j->nch;
	memcpy(ch, j->ch, sizeof ch);
	j->nch = 0;
	pthread_mutex_unlock(&D.lock);
	for (unsigned i = 0; i < n; i++)
		chan_free(ch[i]);
}

/* Add c as the job's next channel; -ECANCELED (c not taken) if cancelled. */
static int job_add_chan(struct job *j, struct chan *c)
{
	int r = 0;

	pthread_mutex_lock(&D.lock);
	if (j->cancel)
		r = -ECANCELED;
	else
		j->ch[j->nch++] = c;
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* Ask the destination what became of job j: "running", "discarded",
 * "pending", "unknown"; NULL if it cannot be reached. */
static const char *ask_peer(struct job *j, char *buf, size_t len)
{
	struct wire_hello h = { .op = WIRE_OP_RESOLVE };
	json_t *reply = NULL;
	const char *s = NULL;
	struct chan *c;
	char err[300];

	snprintf(h.job, sizeof h.job, "%s", j->id);
	snprintf(h.from, sizeof h.from, "%s", D.hostname);
	if (peer_open(j->peer, 2000, &c, err, sizeof err))
		return NULL;
	if (!peer_hello(c, &h, 5000, &reply, err, sizeof err) &&
	    !json_unpack(reply, "{s:s}", "state", &s) && strlen(s) < len) {
		snprintf(buf, len, "%s", s);
		s = buf;
	} else {
		s = NULL;
	}
	json_decref(reply);
	chan_free(c);
	return s;
}

/* ---- outgoing ---- */

/* The guest runs here again as before the migration. */
static int resume_here(struct vm *v)
{
	int r;

	hv_throttle(v->d, 0);
	hv_logdirty_disable(v->d);
	r = hv_unpause(v->d);
	pthread_mutex_lock(&D.lock);
	v->paused = r != 0;
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* After GO without RUNNING: find out which copy runs, or wait for the
 * operator. The guest stays paused here meanwhile. */
static void resolve_loop(struct job *j, struct vm *v)
{
	char buf[32], why[300];
	unsigned tries = 0;

	for (;;) {
		enum job_force force;
		const char *ans = NULL;
		bool stopping;
		struct timespec ts;

		pthread_mutex_lock(&D.lock);
		force = j->force;
		stopping = D.stopping;
		pthread_mutex_unlock(&D.lock);
		if (force == FORCE_NONE && !stopping)
			ans = ask_peer(j, buf, sizeof buf);
		if (force == FORCE_DESTINATION || (ans && strcmp(ans, "running") == 0)) {
			int r = hv_destroy(v->d);

			snprintf(why, sizeof why, "%s", force ? "resolved by the operator: the guest "
				 "runs on the destination" : "");
			if (r)
				log_error("job %s: destroying the source copy: %s", j->id, strerror(-r));
			vm_unlist(v);
			job_finish(j, JOB_COMPLETED, why);
			return;
		}
		if (force == FORCE_SOURCE || (ans && strcmp(ans, "discarded") == 0)) {
			int r = resume_here(v);

			snprintf(why, sizeof why, "%s; the guest %s here",
				 force ? "resolved by the operator" : "the destination discarded its copy after GO",
				 r ? "could not be resumed" : "runs on");
			job_finish(j, JOB_FAILED, why);
			return;
		}
		if (stopping)
			return; /* the journal keeps it unresolved for the next ferryd */
		if (ans && strcmp(ans, "unknown") == 0 && tries % 30 == 0)
			log_warn("job %s: the destination has no record of it; `ferry resolve %s "
				 "--force source|destination` decides", j->id, j->id);
		tries++;
		clock_gettime(CLOCK_REALTIME, &ts);
		/* Soon at first (a restarting peer is back in a moment), then
		 * once a second. */
		ts.tv_nsec += (tries < 10 ? 200 : 1000) * 1000000L;
		while (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&D.lock);
		if (j->force == FORCE_NONE && !D.stopping)
			pthread_cond_timedwait(&j->wake, &D.lock, &ts);
		pthread_mutex_unlock(&D.lock);
	}
}

/* An outgoing job's thread lets go of its guest and ends. */
static void *job_thread_end(struct job *j)
{
	struct vm *v = j->v;

	vm_unbusy(v);
	vm_put(v);
	pthread_mutex_lock(&D.lock);
	j->running = false;
	j->v = NULL;
	pthread_mutex_unlock(&D.lock);
	thread_done();
	return NULL;
}

/* Open the further channels the destination agreed to, each with the
 * token from its answer. */
static int open_more(struct job *j, const char *token, char *err, size_t errlen)
{
	struct wire_hello h = { .op = WIRE_OP_CHANNEL };

	snprintf(h.job, sizeof h.job, "%s", j->id);
	snprintf(h.from, sizeof h.from, "%s", D.hostname);
	snprintf(h.token, sizeof h.token, "%s", token);
	for (unsigned i = 1; i < j->channels; i++) {
		json_t *reply = NULL;
		struct chan *c;
		char e[400];
		int r;

		h.index = i;
		if ((r = peer_open(j->peer, j->opts.peer_timeout_ms, &c, e, sizeof e))) {
			snprintf(err, errlen, "channel %u: %s", i, e);
			return r;
		}
		if ((r = job_add_chan(j, c))) {
			chan_free(c);
			snprintf(err, errlen, "cancelled");
			return r;
		}
		r = peer_hello(c, &h, j->opts.peer_timeout_ms, &reply, e, sizeof e);
		json_decref(reply);
		if (r) {
			snprintf(err, errlen, "channel %u: %s", i, e);
			return r;
		}
	}
	return 0;
}

/* Channel 0 and the handshake: agree on codecs and channels, then open the
 * rest. 0 or -errno with err set. */
static int connect_out(struct job *j, struct vm *v, char *err, size_t errlen)
{
	struct wire_hello h = { .op = WIRE_OP_MIGRATE };
	const char *token = "";
	json_t *reply = NULL;
	struct chan *c;
	uint32_t caps = 0;
	json_int_t n = 1;
	int r;

	snprintf(h.job, sizeof h.job, "%s", j->id);
	snprintf(h.name, sizeof h.name, "%s", v->name);
	snprintf(h.config, sizeof h.config, "%s", v->config);
	snprintf(h.from, sizeof h.from, "%s", D.hostname);
	h.caps = D.caps;
	h.channels = j->channels;
	h.peer_timeout_ms = (unsigned)j->opts.peer_timeout_ms;
	if ((r = peer_open(j->peer, j->opts.peer_timeout_ms, &c, err, errlen)))
		return r;
	if ((r = job_add_chan(j, c))) {
		chan_free(c);
		snprintf(err, errlen, "cancelled");
		return r;
	}
	if ((r = peer_hello(c, &h, j->opts.peer_timeout_ms, &reply, err, errlen)))
		return r;
	/* The codecs both sides agreed to (none if the answer names none). */
	wire_caps_parse(json_object_get(reply, "caps"), &caps);
	j->caps = caps & h.caps;
	j->opts.codec.lz4 = j->caps & WIRE_CAP_LZ4;
	j->opts.codec.delta = j->caps & WIRE_CAP_DELTA;
	json_unpack(reply, "{s?I, s?s}", "channels", &n, "token", &token);
	if (n < 1 || n > (json_int_t)h.channels || (n > 1 && !wire_valid_token(token))) {
		snprintf(err, errlen, "the destination answered with %lld channels%s",
			 (long long)n, n > 1 ? " and no valid token" : "");
		r = -EPROTO;
	} else {
		j->channels = (unsigned)n;
		r = open_more(j, token, err, errlen);
	}
	json_decref(reply);
	return r;
}

static void *out_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;
	struct migrate_stats st = { 0 };
	char err[600] = "";
	int r;

	j->opts.hooks = (struct migrate_hooks){ j, on_progress, on_journal, NULL };
	j->opts.cancel = &j->cancel;
	r = connect_out(j, v, err, sizeof err);
	if (!r) {
		snprintf(j->transport, sizeof j->transport, "%s", chan_kind(j->ch[0]));
		log_info("job %s: migrating %s to %s over %u %s channel%s", j->id, v->name, j->peer,
			 j->channels, chan_kind(j->ch[0]), j->channels > 1 ? "s" : "");
		r = migrate_send(v->d, j->ch, j->channels, &j->opts, &st, err, sizeof err);
		on_progress(j, &st);
	} else if (j->cancel) {
		r = -ECANCELED;
		snprintf(err, sizeof err, "cancelled");
	}
	job_free_chans(j);
	if (!r) {
		vm_unlist(v);
		job_finish(j, JOB_COMPLETED, "");
	} else if (!st.committed) {
		/* Rolled back: the guest runs here as before. */
		pthread_mutex_lock(&D.lock);
		v->paused = false;
		pthread_mutex_unlock(&D.lock);
		job_finish(j, r == -ECANCELED ? JOB_CANCELLED : JOB_FAILED, err);
	} else {
		pthread_mutex_lock(&D.lock);
		j->state = JOB_UNRESOLVED;
		snprintf(j->error, sizeof j->error, "%s", err);
		v->paused = true;
		pthread_mutex_unlock(&D.lock);
		job_save(j);
		log_error("job %s: %s", j->id, err);
		resolve_loop(j, v);
	}
	return job_thread_end(j);
}

int job_start_out(const char *name, const char *dest, const struct migrate_opts *o,
		  unsigned channels, char *id, char *err, size_t errlen)
{
	char host[256], port[16];
	struct vm *v;
	struct job *j;
	int r;

	if (parse_host_port(dest, WIRE_DEFAULT_PORT, host, sizeof host, port, sizeof port)) {
		snprintf(err, errlen, "\"%s\" is not HOST[:PORT]", dest);
		return -EINVAL;
	}
	if (!(v = vm_get(name))) {
		snprintf(err, errlen, "no microVM named %s on this host", name);
		return -ENOENT;
	}
	if (!(j = job_new(true, NULL))) {
		vm_put(v);
		return -ENOMEM;
	}
	if ((r = vm_busy(v, "migrating", j->id, err, errlen))) {
		vm_put(v);
		free(j);
		return r;
	}
	j->opts = *o;
	j->channels = channels;
	j->v = v;
	snprintf(j->vm, sizeof j->vm, "%s", name);
	snprintf(j->peer, sizeof j->peer, "%s", dest);
	j->st.phase = MIG_PH_SETUP;
	j->running = true;
	pthread_mutex_lock(&D.lock);
	job_link(j);
	pthread_mutex_unlock(&D.lock);
	job_save(j);
	if ((r = spawn_thread(out_main, j))) {
		job_finish(j, JOB_FAILED, "cannot start a thread");
		vm_unbusy(v);
		vm_put(v);
		snprintf(err, errlen, "cannot start a thread: %s", strerror(-r));
		return r;
	}
	snprintf(id, JOB_ID_LEN, "%s", j->id);
	return 0;
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
	} else if (!j->out) {
		snprintf(err, errlen, "job %s is an incoming migration; cancel it on the source host",
			 id);
		r = -EINVAL;
	} else if (j->state != JOB_ACTIVE) {
		snprintf(err, errlen, "job %s is not active (%s)", id, state_names[j->state]);
		r = -EINVAL;
	} else if (j->go) {
		snprintf(err, errlen, "job %s is past its point of no return (GO was sent)", id);
		r = -EBUSY;
	} else {
		j->cancel = 1;
		job_shutdown_chans(j);
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
	} else if (j->state != JOB_UNRESOLVED || !j->out) {
		snprintf(err, errlen, "job %s is %s; only an unresolved outgoing job needs resolving",
			 id, state_names[j->state]);
		r = -EINVAL;
	} else {
		if (force)
			j->force = force;
		pthread_cond_broadcast(&j->wake);
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* ---- start-up and shutdown ---- */

static int parse_policy_name(const char *s)
{
	return strcmp(s, "throttle") == 0 ? NOCONV_THROTTLE : strcmp(s, "abort") == 0 ? NOCONV_ABORT
										    : NOCONV_STOP;
}

/* A job from its journal file; NULL if malformed. */
static struct job *job_load(const char *path)
{
	json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	const char *id, *dir, *vm, *peer, *state, *in_state = "", *error = "", *pol = "stop";
	json_int_t started = 0, ended = 0, bw = 0;
	int go = 0, iters = 30, pto = 15000;
	double dt = 300;
	struct job *j = NULL;

	if (!o)
		return NULL;
	if (json_unpack(o, "{s:s, s:s, s:s, s:s, s:s, s?s, s?s, s?I, s?I, s?b, s?{s?f, s?i, s?s, "
			"s?I, s?i}}",
			"id", &id, "direction", &dir, "vm", &vm, "peer", &peer, "state", &state,
			"in_state", &in_state, "error", &error, "started", &started, "ended",
			&ended, "go", &go, "options", "downtime_ms", &dt, "max_iters", &iters,
			"on_no_converge", &pol, "bandwidth", &bw, "peer_timeout_ms", &pto) ||
	    !name_ok(id, JOB_ID_LEN) ||
	    !(j = job_new(strcmp(dir, "out") == 0, id))) {
		json_decref(o);
		return NULL;
	}
	snprintf(j->vm, sizeof j->vm, "%s", vm);
	snprintf(j->peer, sizeof j->peer, "%s", peer);
	snprintf(j->in_state, sizeof j->in_state, "%s", in_state);
	snprintf(j->error, sizeof j->error, "%s", error);
	j->started = started;
	j->ended = ended;
	j->go = go;
	j->opts.downtime_ns = (uint64_t)(dt * 1e6);
	j->opts.max_iters = (unsigned)iters;
	j->opts.on_no_converge = parse_policy_name(pol);
	j->opts.bandwidth = (uint64_t)bw;
	j->opts.peer_timeout_ms = pto;
	j->state = JOB_FAILED;
	for (unsigned i = 0; i < ARRAY_SIZE(state_names); i++)
		if (strcmp(state, state_names[i]) == 0)
			j->state = (enum job_state)i;
	json_decref(o);
	return j;
}

static void *resolve_main(void *p)
{
	struct job *j = p;
	struct vm *v = j->v;

	resolve_loop(j, v);
	return job_thread_end(j);
}

/* Bring a job that was in flight when ferryd stopped to a safe state. */
static void recover(struct job *j)
{
	struct vm *v = vm_get(j->vm);
	char err[256];

	if (!j->out) {
		/* Incoming: the guest is ours if it resumed (its runtime then
		 * outlives us and was adopted); otherwise its runtime exited
		 * when our link to it closed. */
		struct hv_mvm_stats ms;
		bool runs = v && v->d && !hv_mvm_stats(v->d, &ms) && !ms.incoming;

		if (v && !runs) {
			hv_destroy(v->d);
			vm_record_remove(v->name);
		}
		snprintf(j->in_state, sizeof j->in_state, "%s", runs ? "running" : "discarded");
		job_finish(j, runs ? JOB_COMPLETED : JOB_FAILED,
			   runs ? "" : "ferryd restarted before the guest was resumed here");
	} else if (!j->go) {
		/* Before GO: roll back. */
		if (v)
			resume_here(v);
		job_finish(j, JOB_FAILED, v ? "ferryd restarted during the migration; rolled back, "
			   "the guest runs here" : "ferryd restarted during the migration; the guest "
			   "is gone");
	} else if (!v) {
		/* GO was sent and the source copy is gone: it was destroyed
		 * after RUNNING. */
		job_finish(j, JOB_COMPLETED, "");
	} else if (vm_busy(v, "migrating", j->id, err, sizeof err) == 0) {
		j->state = JOB_UNRESOLVED;
		j->running = true;
		j->v = v;
		v->paused = true;
		v = NULL; /* the thread's reference */
		job_save(j);
		log_warn("job %s: unresolved after a restart; asking %s", j->id, j->peer);
		if (spawn_thread(resolve_main, j)) {
			v = j->v;
			vm_unbusy(v);
		}
	}
	vm_put(v);
}

void jobs_recover(void)
{
	char dir[300], path[600];
	DIR *dp;
	struct dirent *e;
	struct job *list = NULL, *j;
	size_t n = 0;

	snprintf(dir, sizeof dir, "%s/jobs", D.state_dir);
	if (!(dp = opendir(dir)))
		return;
	while ((e = readdir(dp))) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
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
	/* Oldest first, so that the list ends newest first. */
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
	while ((j = list)) {
		list = j->next;
		if (n-- > JOBS_KEPT && j->state != JOB_ACTIVE && j->state != JOB_UNRESOLVED) {
			snprintf(path, sizeof path, "%s/%s.json", dir, j->id);
			unlink(path);
			free(j);
			continue;
		}
		pthread_mutex_lock(&D.lock);
		job_link(j);
		pthread_mutex_unlock(&D.lock);
		if (j->state == JOB_ACTIVE || j->state == JOB_UNRESOLVED)
			recover(j);
	}
}

void jobs_stop(void)
{
	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j; j = j->next) {
		if (j->state == JOB_ACTIVE && !j->go) {
			if (j->out)
				j->cancel = 1;
			if (j->out || strcmp(j->in_state, "receiving") == 0 ||
			    strcmp(j->in_state, "ready") == 0)
				job_shutdown_chans(j);
		}
		pthread_cond_broadcast(&j->wake);
	}
	pthread_mutex_unlock(&D.lock);
}
