/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api.c — ferryd's control API: one handler per op, over the VMs (vm.h) and
 * the jobs (job.h). api_check (api/api.h) has validated the request's shape
 * on the loop thread; a handler runs there too, or on a task thread for an
 * op marked slow.
 */
#include "config.h"

#include "daemon/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/events.h"
#include "daemon/job.h"
#include "daemon/migration.h"
#include "daemon/net.h"
#include "daemon/fence.h"
#include "daemon/protection.h"
#include "daemon/gate.h"
#include "daemon/registry.h"
#include "daemon/vm.h"

struct handler {
	const char *name;
	json_t *(*fn)(json_t *req);
};

/* A failed reply of kind (api.h API_ERR_*). */
static json_t *fail_as(const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static json_t *fail_as(const char *kind, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "kind", kind);
}

#define fail(...) fail_as(API_ERR_INVALID, __VA_ARGS__)

/* The kind of a failure a callee returned as -errno. */
static const char *kind_of(int r)
{
	switch (-r) {
	case ENOENT: case ESRCH:
		return API_ERR_NOT_FOUND;
	case EBUSY: case EEXIST: case EALREADY: case EINPROGRESS:
		return API_ERR_CONFLICT;
	case EINVAL: case ERANGE: case ENAMETOOLONG:
		return API_ERR_INVALID;
	case EAGAIN: case ECONNREFUSED: case EHOSTUNREACH: case ETIMEDOUT: case ESHUTDOWN:
		return API_ERR_UNAVAILABLE;
	default:
		return API_ERR_FAILED;
	}
}

static json_t *okay(void) { return json_pack("{s:b}", "ok", 1); }

static const char *str(json_t *req, const char *key, const char *def)
{
	json_t *v = json_object_get(req, key);

	return v ? json_string_value(v) : def;
}

static int64_t num(json_t *req, const char *key, int64_t def)
{
	json_t *v = json_object_get(req, key);

	return v ? (int64_t)json_integer_value(v) : def;
}

/* ---- ops ---- */

static json_t *op_version(json_t *req)
{
	(void)req;
	return json_pack("{s:b, s:s, s:i, s:s, s:s}", "ok", 1, "version", PACKAGE_VERSION, "proto",
			 WIRE_PROTO_VERSION, "host", D.hostname, "backend", hv_default_backend());
}

/* The host's capacity as a pool manager plans with it (vm.h
 * vms_capacity), its state and its jobs. */
static json_t *op_host(json_t *req)
{
	json_t *h = vms_capacity();
	json_int_t jobs = 0, incoming;
	bool stopping;

	(void)req;
	if (!h)
		return NULL;
	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j; j = j->next)
		jobs += !job_state_final(j->state);
	incoming = D.incoming;
	stopping = D.stopping;
	pthread_mutex_unlock(&D.lock);
	json_object_set_new(h, "name", json_string(D.hostname));
	json_object_set_new(h, "state", json_string(stopping ? "stopping" : "running"));
	json_object_set_new(h, "backend", json_string(hv_default_backend()));
	json_object_set_new(h, "jobs_active", json_integer(jobs));
	json_object_set_new(h, "incoming", json_integer(incoming));
	json_object_set_new(h, "pool", registry_json());
	json_object_set_new(h, "listener", gate_json());
	return json_pack("{s:b, s:o}", "ok", 1, "host", h);
}

static json_t *op_create(json_t *req)
{
	const char *name = str(req, "name", "");
	json_t *m = json_object_get(req, "mem"), *reply;
	int64_t vcpus = num(req, "vcpus", 1);
	struct hv_spec spec = { 0, 0, str(req, "workload", NULL), str(req, "net", NULL) };
	unsigned flags = json_is_true(json_object_get(req, "paused")) ? HV_LAUNCH_PAUSED : 0;
	struct hv_domain *d;
	char err[256];
	struct vm *v;
	int r;

	if (!name_ok(name, NAME_LEN))
		return fail("\"%s\" is not a valid name: 1-63 of A-Z a-z 0-9 . _ -, not starting "
			    "with . or -", name);
	if (m && json_is_string(m) && parse_size(json_string_value(m), UINT64_MAX, &spec.mem))
		return fail("mem: \"%s\" is not a size such as 256M or 1G", json_string_value(m));
	if (m && json_is_integer(m))
		spec.mem = (uint64_t)json_integer_value(m);
	if (vcpus < 1 || vcpus > 64)
		return fail("vcpus: %" PRId64 " is not in 1..64", vcpus);
	spec.vcpus = (unsigned)vcpus;
	if (!(v = vm_new(name)))
		return fail_as(API_ERR_FAILED, "out of memory");
	v->busy = "creating";
	v->paused = flags & HV_LAUNCH_PAUSED;
	if (vm_add(v)) {
		vm_put(v);
		return fail_as(API_ERR_CONFLICT, "a VM named %s already exists on this host", name);
	}
	if ((r = hv_launch(v->uri, &spec, flags, &d, err, sizeof err))) {
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		vm_unbusy(v);
		vm_put(v);
		return r == -EINVAL ? fail("%s", err)
				    : fail_as(API_ERR_FAILED, "cannot start %s: %s", name, err);
	}
	vm_attach(v, d);
	vm_record_write(v);
	log_info("%s: created (%s), pid %d", name, v->config, (int)v->pid);
	events_publish("vm", json_pack("{s:s, s:s}", "name", name, "event", "created"));
	registry_kick();
	net_up(v, v->d);
	vm_unbusy(v);
	pthread_mutex_lock(&D.lock);
	reply = json_pack("{s:b, s:o}", "ok", 1, "vm", vm_json(v));
	v->refs++;
	pthread_mutex_unlock(&D.lock);
	loop_call(vm_watch_start, v);
	vm_put(v);
	return reply;
}

/* adopt: bring a domain that runs here, started without ferryd (a Xen
 * domain from `xl create`), under this ferryd: listed, watched, movable. */
static json_t *op_adopt(json_t *req)
{
	const char *uri = str(req, "uri", ""), *name = NULL;
	struct hv_domain *d = NULL;
	struct hv_info info;
	json_t *reply;
	struct vm *v;
	int r;

	if (!hv_backend(uri, &name) || !name_ok(name, NAME_LEN))
		return fail("\"%s\" is not a domain such as xen:web1", uri);
	if (!(v = vm_new(name)))
		return fail_as(API_ERR_FAILED, "out of memory");
	v->busy = "adopting";
	if (vm_add(v)) {
		vm_put(v);
		return fail_as(API_ERR_CONFLICT, "a VM named %s already exists on this host", name);
	}
	r = hv_open(uri, &d);
	if (!r && (r = hv_info(d, &info)))
		hv_close(d);
	if (r) {
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		vm_unbusy(v);
		vm_put(v);
		return fail_as(r == -ENOENT ? API_ERR_NOT_FOUND
					    : r == -EBUSY ? API_ERR_CONFLICT : API_ERR_FAILED,
			       "cannot adopt %s: %s", uri,
			       r == -ENOENT  ? "no such domain runs here"
			       : r == -EBUSY ? "another process holds it"
					     : strerror(-r));
	}
	vm_attach(v, d);
	v->paused = info.paused;
	vm_record_write(v);
	log_info("%s: adopted (%s)", uri, v->config);
	events_publish("vm", json_pack("{s:s, s:s}", "name", name, "event", "adopted"));
	registry_kick();
	vm_unbusy(v);
	pthread_mutex_lock(&D.lock);
	reply = json_pack("{s:b, s:o}", "ok", 1, "vm", vm_json(v));
	v->refs++;
	pthread_mutex_unlock(&D.lock);
	loop_call(vm_watch_start, v);
	vm_put(v);
	return reply;
}

static json_t *op_list(json_t *req)
{
	json_t *a = json_array();

	(void)req;
	pthread_mutex_lock(&D.lock);
	for (struct vm *v = D.vms; v; v = v->next)
		json_array_append_new(a, vm_json(v));
	pthread_mutex_unlock(&D.lock);
	return json_pack("{s:b, s:o}", "ok", 1, "vms", a);
}

static json_t *op_info(json_t *req)
{
	const char *name = str(req, "name", "");
	struct vm *v = vm_get(name);
	struct hv_info info;
	json_t *o, *extra = NULL;
	bool busy, got = false;

	if (!v)
		return fail_as(API_ERR_NOT_FOUND, "no VM named %s on this host", name);
	pthread_mutex_lock(&D.lock);
	busy = v->busy != NULL;
	pthread_mutex_unlock(&D.lock);
	if (!busy && v->d && pthread_mutex_trylock(&v->hlock) == 0) {
		got = !hv_info(v->d, &info);
		/* The backend's own figures, if it has any (mvm: steps, gaps). */
		if (got)
			hv_extra(v->d, HV_EXTRA_STATS, &extra);
		pthread_mutex_unlock(&v->hlock);
	}
	pthread_mutex_lock(&D.lock);
	o = vm_json(v);
	pthread_mutex_unlock(&D.lock);
	if (got) {
		json_object_set_new(o, "paused", json_boolean(info.paused));
		json_object_set_new(o, "logdirty", json_boolean(info.logdirty));
		if (extra)
			json_object_update(o, extra);
	}
	json_decref(extra);
	vm_put(v);
	return json_pack("{s:b, s:o}", "ok", 1, "vm", o);
}

static json_t *op_destroy(json_t *req)
{
	const char *name = str(req, "name", "");
	struct vm *v = vm_get(name);
	char err[256];
	int r;

	if (!v)
		return fail_as(API_ERR_NOT_FOUND, "no VM named %s on this host", name);
	if ((r = vm_busy(v, "destroying", NULL, err, sizeof err))) {
		vm_put(v);
		return fail_as(kind_of(r), "%s", err);
	}
	pthread_mutex_lock(&v->hlock);
	r = hv_destroy(v->d);
	pthread_mutex_unlock(&v->hlock);
	if (!r) {
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		log_info("%s: destroyed", name);
	}
	vm_unbusy(v);
	vm_put(v);
	return r ? fail_as(API_ERR_FAILED, "destroying %s: %s", name, strerror(-r)) : okay();
}

static json_t *op_verify(json_t *req)
{
	const char *name = str(req, "name", "");
	struct vm *v = vm_get(name);
	json_t *res = NULL, *reply;
	char err[256];
	int r;

	if (!v)
		return fail_as(API_ERR_NOT_FOUND, "no VM named %s on this host", name);
	if ((r = vm_busy(v, "verifying", NULL, err, sizeof err))) {
		vm_put(v);
		return fail_as(kind_of(r), "%s", err);
	}
	pthread_mutex_lock(&v->hlock);
	r = hv_extra(v->d, HV_EXTRA_VERIFY, &res);
	pthread_mutex_unlock(&v->hlock);
	vm_unbusy(v);
	vm_put(v);
	if (r)
		return fail_as(r == -EOPNOTSUPP ? API_ERR_INVALID : API_ERR_FAILED,
			       "verifying %s: %s", name, r == -EOPNOTSUPP ? "its backend has no "
			       "verifier" : strerror(-r));
	reply = okay();
	json_object_update(reply, res);
	json_decref(res);
	return reply;
}

static json_t *op_migrate(json_t *req)
{
	struct migrate_opts o;
	const char *pol = str(req, "on_no_converge", NULL);
	int64_t dt = num(req, "downtime_ms", (int64_t)D.downtime_ms);
	int64_t mi = num(req, "max_iters", D.max_iters);
	int64_t bw = num(req, "bandwidth", 0), pto = num(req, "peer_timeout_ms", D.peer_timeout_ms);
	int64_t nch = num(req, "channels", D.channels);
	char id[JOB_ID_LEN], err[600];
	int r;

	migrate_opts_default(&o);
	if (dt < 1 || dt > 3600000)
		return fail("downtime_ms: %" PRId64 " is not in 1..3600000", dt);
	if (mi < 1 || mi > 1000)
		return fail("max_iters: %" PRId64 " is not in 1..1000", mi);
	/* A record (up to 2 MiB) waits for its share of the bucket without
	 * looking at cancel: at 1 MiB/s and more that wait stays short. */
	if (bw < 0 || (bw > 0 && bw < (1 << 20)))
		return fail("bandwidth: %" PRId64 " bytes/s; at least 1 MiB/s (or 0: none)", bw);
	if (pto < 100 || pto > 3600000)
		return fail("peer_timeout_ms: %" PRId64 " is not in 100..3600000", pto);
	if (nch < 1 || nch > WIRE_CHANNELS_MAX)
		return fail("channels: %" PRId64 " is not in 1..%d", nch, WIRE_CHANNELS_MAX);
	o.downtime_ns = (uint64_t)dt * NSEC_PER_MSEC;
	o.max_iters = (unsigned)mi;
	o.bandwidth = (uint64_t)bw;
	o.peer_timeout_ms = (int)pto;
	o.on_no_converge = D.on_no_converge;
	if (pol && mig_policy_parse(pol, &o.on_no_converge))
		return fail("on_no_converge: \"%s\" is not " MIG_POLICY_NAMES, pol);
	if (json_object_get(req, "postcopy") && !json_is_boolean(json_object_get(req, "postcopy")))
		return fail("postcopy: not a boolean");
	o.postcopy = json_is_true(json_object_get(req, "postcopy"));
	if ((r = migrate_out_start(str(req, "name", ""), str(req, "dest", ""), &o, (unsigned)nch,
				   str(req, "idempotency", NULL), id, err, sizeof err)))
		return fail_as(kind_of(r), "%s", err);
	return json_pack("{s:b, s:s}", "ok", 1, "job", id);
}

/* Protection: refused without a fencing authority unless the operator
 * accepts a pair that a network split can turn into two primaries. */
static json_t *op_protect(json_t *req)
{
	struct repl_opts o;
	int64_t em = num(req, "epoch_ms", REPL_EPOCH_MS_DEFAULT);
	int64_t hb = num(req, "heartbeat_ms", REPL_HEARTBEAT_MS_DEFAULT);
	int64_t nch = num(req, "channels", D.channels);
	json_t *unsafe = json_object_get(req, "unsafe_no_fencing");
	char id[JOB_ID_LEN], err[600];
	int r;

	repl_opts_default(&o);
	if (em < 1 || em > 60000)
		return fail("epoch_ms: %" PRId64 " is not in 1..60000", em);
	if (hb < 20 || hb > 600000)
		return fail("heartbeat_ms: %" PRId64 " is not in 20..600000", hb);
	if (hb < 2 * em)
		return fail("heartbeat_ms: %" PRId64 " is under two epochs (%" PRId64 " ms): the "
			    "epochs are the primary's heartbeat", hb, 2 * em);
	if (nch < 1 || nch > WIRE_CHANNELS_MAX)
		return fail("channels: %" PRId64 " is not in 1..%d", nch, WIRE_CHANNELS_MAX);
	if (unsafe && !json_is_boolean(unsafe))
		return fail("unsafe_no_fencing: not a boolean");
	if (!json_is_true(unsafe) && !fence_configured())
		return fail_as(API_ERR_CONFLICT, "no coordination service is configured on %s (coord = "
			    "http://ETCD:2379): without one a network split can run the guest on "
			    "both hosts; say unsafe_no_fencing (--unsafe-no-fencing) to protect with "
			    "heartbeats alone", D.hostname);
	o.epoch_ms = (unsigned)em;
	o.heartbeat_ms = (unsigned)hb;
	o.sync.downtime_ns = D.downtime_ms * NSEC_PER_MSEC;
	o.sync.max_iters = D.max_iters;
	/* A standby's sync never switches over: post-copy is not for it. */
	o.sync.on_no_converge = D.on_no_converge == NOCONV_POSTCOPY ? NOCONV_STOP : D.on_no_converge;
	o.sync.peer_timeout_ms = D.peer_timeout_ms;
	if ((r = protect_start(str(req, "name", ""), str(req, "peer", ""), &o,
			       !json_is_true(unsafe), (unsigned)nch, str(req, "idempotency", NULL), id,
			       err, sizeof err)))
		return fail_as(kind_of(r), "%s", err);
	return json_pack("{s:b, s:s}", "ok", 1, "job", id);
}

static json_t *op_unprotect(json_t *req)
{
	char err[300];
	int r;

	if ((r = protect_stop(str(req, "name", ""), err, sizeof err)))
		return fail_as(kind_of(r), "%s", err);
	return json_pack("{s:b}", "ok", 1);
}

/* A held standby copy runs anyway: what it lacks is lost, and the reply
 * says so. */
static json_t *op_takeover(json_t *req)
{
	const char *name = str(req, "name", "");
	char err[300];
	int r;

	if (!json_is_true(json_object_get(req, "force")))
		return fail("takeover: only with force: the copy here is not known to be in sync");
	if ((r = standby_force(name, err, sizeof err)))
		return fail_as(kind_of(r), "%s", err);
	return json_pack("{s:b, s:s}", "ok", 1, "warning", "the held copy resumes at the last epoch "
			 "it applied: every write acknowledged to clients after it fell out of "
			 "sync is lost");
}

static json_t *op_jobs(json_t *req)
{
	json_t *a = json_array();

	(void)req;
	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j; j = j->next)
		json_array_append_new(a, job_json(j));
	pthread_mutex_unlock(&D.lock);
	return json_pack("{s:b, s:o}", "ok", 1, "jobs", a);
}

/* "job": a job's id, or a VM's name (its job that matters now:
 * job_find_vm). With "wait_ms": once the job has changed state, or after
 * that long, or at once if it has ended. */
static json_t *op_status(json_t *req)
{
	const char *id = str(req, "job", "");
	int64_t wait = num(req, "wait_ms", 0);
	struct job *j;
	json_t *o = NULL;

	if (wait < 0 || wait > 60000)
		return fail("wait_ms: %" PRId64 " is not in 0..60000", wait);
	pthread_mutex_lock(&D.lock);
	if ((j = job_find(id)) || (j = job_find_vm(id))) {
		if (wait && !job_state_final(j->state))
			job_wait_change(j, j->seq, (int)wait);
		o = job_json(j);
	}
	pthread_mutex_unlock(&D.lock);
	return o ? json_pack("{s:b, s:o}", "ok", 1, "job", o)
		 : fail_as(API_ERR_NOT_FOUND, "no job %s (neither a job's id nor a VM with a "
			   "job here)", id);
}

static json_t *op_cancel(json_t *req)
{
	char err[300];
	int r = job_cancel(str(req, "job", ""), err, sizeof err);

	return r ? fail_as(kind_of(r), "%s", err) : okay();
}

static json_t *op_resume(json_t *req)
{
	char err[300];
	int r = job_resume(str(req, "job", ""), str(req, "dest", NULL), err, sizeof err);

	return r ? fail_as(kind_of(r), "%s", err) : okay();
}

static json_t *op_resolve(json_t *req)
{
	const char *f = str(req, "force", NULL);
	enum job_force force = FORCE_NONE;
	char err[300];
	int r;

	if (f && strcmp(f, "source") == 0)
		force = FORCE_SOURCE;
	else if (f && strcmp(f, "destination") == 0)
		force = FORCE_DESTINATION;
	else if (f)
		return fail("force: \"%s\" is not source or destination", f);
	if ((r = job_resolve(str(req, "job", ""), force, err, sizeof err)))
		return fail_as(kind_of(r), "%s", err);
	return op_status(req);
}

static const struct handler handlers[] = {
	{ "version", op_version }, { "host", op_host }, { "create", op_create }, { "adopt", op_adopt }, { "list", op_list },
	{ "info", op_info },	   { "destroy", op_destroy }, { "verify", op_verify },
	{ "migrate", op_migrate }, { "jobs", op_jobs },	    { "status", op_status },
	{ "cancel", op_cancel },   { "resolve", op_resolve }, { "protect", op_protect },
	{ "resume", op_resume },
	{ "unprotect", op_unprotect }, { "takeover", op_takeover },
};

struct task {
	json_t *req, *reply;
	void (*done)(json_t *reply, void *arg);
	void *arg;
};

static void task_done(void *p)
{
	struct task *t = p;

	t->done(t->reply, t->arg);
	json_decref(t->req);
	free(t);
}

static void *task_main(void *p)
{
	struct task *t = p;

	failpoint("api-task"); /* tests: a request still being answered */
	t->reply = api_handle(t->req);
	loop_call(task_done, t);
	thread_done();
	return NULL;
}

int api_run_async(json_t *req, void (*done)(json_t *reply, void *arg), void *arg)
{
	struct task *t = calloc(1, sizeof *t);
	int r;

	if (!t)
		return -ENOMEM;
	*t = (struct task){ req, NULL, done, arg };
	if ((r = spawn_thread(task_main, t)))
		free(t);
	return r;
}

json_t *api_handle(json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));

	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
		if (strcmp(handlers[i].name, op) == 0) {
			json_t *r = handlers[i].fn(req);

			return r ? r : fail_as(API_ERR_FAILED, "out of memory");
		}
	return fail_as(API_ERR_FAILED, "op \"%s\" is not implemented", op);
}
