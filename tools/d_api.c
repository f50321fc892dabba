/*
 * d_api.c — ferryd's control API: one JSON request in, one JSON reply out
 * (docs/ferryd.md). api_check validates a request's shape on the loop
 * thread; api_handle does the work (on a task thread for slow ops).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/mvm.h"
#include "session/wire.h"
#include "mvm/config.h"
#include "tools/api.h"
#include "tools/daemon.h"

struct handler {
	const char *name;
	json_t *(*fn)(json_t *req);
};

static json_t *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *fail(const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
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
	return json_pack("{s:b, s:s, s:i, s:s}", "ok", 1, "version", PACKAGE_VERSION, "proto",
			 WIRE_PROTO_VERSION, "host", D.hostname);
}

static json_t *op_create(json_t *req)
{
	const char *name = str(req, "name", ""), *wl = str(req, "workload", "idle");
	json_t *m = json_object_get(req, "mem"), *reply;
	int64_t vcpus = num(req, "vcpus", 1);
	bool paused = json_is_true(json_object_get(req, "paused"));
	struct mvm_config c;
	char config[HV_CONFIG_MAX], err[256], uri[128];
	uint64_t mem = 256ull << 20;
	struct vm *v;
	pid_t pid;
	int r;

	if (!mvm_name_ok(name))
		return fail("\"%s\" is not a valid name: 1-63 of A-Z a-z 0-9 . _ -, not starting "
			    "with . or -", name);
	if (m && json_is_string(m) && parse_size(json_string_value(m), MVM_MEM_MAX, &mem))
		return fail("mem: \"%s\" is not a size such as 256M or 1G", json_string_value(m));
	if (m && json_is_integer(m))
		mem = (uint64_t)json_integer_value(m);
	if (vcpus < 1 || vcpus > 64)
		return fail("vcpus: %" PRId64 " is not in 1..64", vcpus);
	snprintf(config, sizeof config, "mem=%" PRIu64 " vcpus=%d workload=%s", mem, (int)vcpus, wl);
	if (mvm_config_parse(config, &c, err, sizeof err))
		return fail("%s", err);
	if (!(v = vm_new(name)))
		return fail("out of memory");
	snprintf(v->config, sizeof v->config, "%s", config);
	v->busy = "creating";
	v->paused = paused;
	if (vm_add(v)) {
		vm_put(v);
		return fail("a microVM named %s already exists on this host", name);
	}
	r = hv_mvm_launch(name, config, paused, &pid);
	if (!r) {
		v->pid = pid;
		v->child = true;
		snprintf(uri, sizeof uri, "mvm:%s", name);
		if ((r = hv_open(uri, &v->d))) {
			log_error("%s: started, but cannot be opened: %s; ending it", name,
				  strerror(-r));
			kill(pid, SIGKILL);
		}
	}
	if (r) {
		pthread_mutex_lock(&D.lock);
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		vm_unbusy(v);
		vm_put(v);
		return fail("cannot start %s: %s", name,
			    r == -EEXIST ? "a runtime of that name is already running (not owned "
					   "by this ferryd)" : strerror(-r));
	}
	vm_record_write(v);
	log_info("%s: created (%s), pid %d", name, config, (int)pid);
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
	struct hv_mvm_stats ms;
	struct hv_info info;
	bool busy, got = false;
	json_t *o;

	if (!v)
		return fail("no microVM named %s on this host", name);
	pthread_mutex_lock(&D.lock);
	busy = v->busy != NULL;
	pthread_mutex_unlock(&D.lock);
	if (!busy && v->d && pthread_mutex_trylock(&v->hlock) == 0) {
		got = !hv_info(v->d, &info) && !hv_mvm_stats(v->d, &ms);
		pthread_mutex_unlock(&v->hlock);
	}
	pthread_mutex_lock(&D.lock);
	o = vm_json(v);
	pthread_mutex_unlock(&D.lock);
	if (got) {
		json_object_set_new(o, "paused", json_boolean(info.paused));
		json_object_set_new(o, "logdirty", json_boolean(info.logdirty));
		json_object_set_new(o, "steps", json_integer((json_int_t)ms.steps));
		json_object_set_new(o, "halted", json_integer(ms.halted));
		json_object_set_new(o, "max_gap_ms", json_real(ns_to_ms(ms.max_gap_ns)));
		json_object_set_new(o, "resume_gap_ms", json_real(ns_to_ms(ms.resume_gap_ns)));
	}
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
		return fail("no microVM named %s on this host", name);
	if ((r = vm_busy(v, "destroying", NULL, err, sizeof err))) {
		vm_put(v);
		return fail("%s", err);
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
	return r ? fail("destroying %s: %s", name, strerror(-r)) : okay();
}

static json_t *op_verify(json_t *req)
{
	const char *name = str(req, "name", "");
	struct vm *v = vm_get(name);
	struct mvm_verify res;
	char err[256];
	int r;

	if (!v)
		return fail("no microVM named %s on this host", name);
	if ((r = vm_busy(v, "verifying", NULL, err, sizeof err))) {
		vm_put(v);
		return fail("%s", err);
	}
	pthread_mutex_lock(&v->hlock);
	r = hv_mvm_verify(v->d, &res);
	pthread_mutex_unlock(&v->hlock);
	vm_unbusy(v);
	vm_put(v);
	if (r)
		return fail("verifying %s: %s", name, strerror(-r));
	res.msg[sizeof res.msg - 1] = '\0';
	return json_pack("{s:b, s:b, s:s, s:I, s:I}", "ok", 1, "verified",
			 res.why == MVM_VERIFY_OK, "result",
			 res.why == MVM_VERIFY_OK ? "ok" : res.msg, "pages_checked",
			 (json_int_t)res.pages_checked, "pages_written",
			 (json_int_t)res.pages_written);
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
	if (pol) {
		if (strcmp(pol, "stop") == 0)
			o.on_no_converge = NOCONV_STOP;
		else if (strcmp(pol, "throttle") == 0)
			o.on_no_converge = NOCONV_THROTTLE;
		else if (strcmp(pol, "abort") == 0)
			o.on_no_converge = NOCONV_ABORT;
		else
			return fail("on_no_converge: \"%s\" is not stop, throttle or abort", pol);
	}
	if (job_start_out(str(req, "name", ""), str(req, "dest", ""), &o, (unsigned)nch, id, err,
			  sizeof err))
		return fail("%s", err);
	return json_pack("{s:b, s:s}", "ok", 1, "job", id);
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

static json_t *op_status(json_t *req)
{
	const char *id = str(req, "job", "");
	struct job *j;
	json_t *o = NULL;

	pthread_mutex_lock(&D.lock);
	if ((j = job_find(id)))
		o = job_json(j);
	pthread_mutex_unlock(&D.lock);
	return o ? json_pack("{s:b, s:o}", "ok", 1, "job", o) : fail("no job %s", id);
}

static json_t *op_cancel(json_t *req)
{
	char err[300];

	return job_cancel(str(req, "job", ""), err, sizeof err) ? fail("%s", err) : okay();
}

static json_t *op_resolve(json_t *req)
{
	const char *f = str(req, "force", NULL);
	enum job_force force = FORCE_NONE;
	char err[300];

	if (f && strcmp(f, "source") == 0)
		force = FORCE_SOURCE;
	else if (f && strcmp(f, "destination") == 0)
		force = FORCE_DESTINATION;
	else if (f)
		return fail("force: \"%s\" is not source or destination", f);
	if (job_resolve(str(req, "job", ""), force, err, sizeof err))
		return fail("%s", err);
	return op_status(req);
}

static const struct handler handlers[] = {
	{ "version", op_version }, { "create", op_create }, { "list", op_list },
	{ "info", op_info },	   { "destroy", op_destroy }, { "verify", op_verify },
	{ "migrate", op_migrate }, { "jobs", op_jobs },	    { "status", op_status },
	{ "cancel", op_cancel },   { "resolve", op_resolve },
};

json_t *api_handle(json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));

	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
		if (strcmp(handlers[i].name, op) == 0) {
			json_t *r = handlers[i].fn(req);

			return r ? r : fail("out of memory");
		}
	return fail("op \"%s\" is not implemented", op);
}
