/* SPDX-License-Identifier: Apache-2.0 */
/* registry.c — this host in the pool's record in etcd; see registry.h. */
#include "daemon/registry.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "coord/etcd.h"
#include "daemon/core.h"
#include "daemon/fence.h"
#include "daemon/job.h"
#include "daemon/vm.h"
#include "session/wire.h"

#define RETRY_MS 1000

/* A VM record this host wrote (or tried to). */
struct pub {
	struct pub *next;
	char name[NAME_LEN];
	char *value;     /* what is in etcd by our hand; NULL if not written */
	bool refused;    /* the last write's condition failed (said once) */
	bool seen;       /* still wanted, this round */
};

/* A VM as it should be recorded. */
struct want {
	char name[NAME_LEN];
	char *value;
	uint64_t token;  /* this host's fencing token for it, 0 if none */
};

static struct {
	pthread_mutex_t lock;  /* guards kick, stop, registered, error, lease_pub */
	pthread_cond_t cond;
	pthread_t thread;
	bool running, kick, stop;
	bool registered;
	char error[300];
	int64_t lease_pub;     /* the lease, as registry_json says it */
	/* The thread's own. */
	struct etcd *e;
	int64_t lease;
	uint64_t next_ka;      /* mono ns */
	bool ka_ok;            /* the last keep-alive was answered */
	char *host_value;
	struct pub *pubs;
} R = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* Say what went wrong, once per new word; registered = false. */
static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&R.lock);
	if (strcmp(msg, R.error) != 0)
		log_warn("pool: %s; this host is not in the pool's record in etcd (local commands "
			 "and migrations work); trying again", msg);
	snprintf(R.error, sizeof R.error, "%s", msg);
	R.registered = false;
	pthread_mutex_unlock(&R.lock);
}

static void set_registered(void)
{
	pthread_mutex_lock(&R.lock);
	if (!R.registered)
		log_info("pool: %s is in the pool's record (%s, lease %" PRId64 ", %d s)",
			 D.hostname, etcd_endpoints(R.e), R.lease, D.pool_ttl_s);
	R.registered = true;
	R.error[0] = '\0';
	R.lease_pub = R.lease;
	pthread_mutex_unlock(&R.lock);
}

/* ADDR:PORT as others reach it: a wildcard address is this host's name. */
static void reachable(const char *listen, unsigned defport, char *out, size_t len)
{
	char host[256], port[16];

	out[0] = '\0';
	if (!listen[0] || parse_host_port(listen, defport, host, sizeof host, port, sizeof port))
		return;
	if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !host[0])
		snprintf(out, len, "%s:%s", D.hostname, port);
	else if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%s", host, port);
	else
		snprintf(out, len, "%s:%s", host, port);
}

static char *host_record(void)
{
	json_t *h = vms_capacity();
	char mig[300], api[300], *text = NULL;
	bool stopping;

	if (!h)
		return NULL;
	stopping = core_stopping();
	reachable(D.listen, WIRE_DEFAULT_PORT, mig, sizeof mig);
	reachable(D.api_listen, 7490, api, sizeof api);
	json_object_set_new(h, "name", json_string(D.hostname));
	json_object_set_new(h, "migrate", json_string(mig));
	json_object_set_new(h, "api", json_string(api));
	json_object_set_new(h, "state", json_string(stopping ? "stopping" : "running"));
	json_object_del(h, "mem_available");
	text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(h);
	return text;
}

/* The VMs that run here, as they should be recorded (D.lock taken). */
static size_t wanted(struct want **out)
{
	size_t n = 0, cap = 0;
	struct want *w = NULL;

	pthread_mutex_lock(&D.lock);
	for (struct vm *v = D.vms; v; v = v->next) {
		struct job *j = job_find_vm(v->name);
		uint64_t token = 0;
		json_t *o, *rec;

		/* Not a copy that does not run here. */
		if (v->dead || (v->busy && (!strcmp(v->busy, "incoming") ||
					    !strcmp(v->busy, "standby"))))
			continue;
		if (j && (j->state == JOB_FENCED || j->state == JOB_HELD ||
			  j->state == JOB_STANDBY || j->state == JOB_TAKING_OVER))
			continue;
		if (j && j->kind == JOB_PRIMARY && !job_state_final(j->state) && j->fence)
			token = fence_token(j->fence);
		if (n == cap) {
			struct want *g = realloc(w, (cap = cap ? 2 * cap : 16) * sizeof *w);

			if (!g)
				break;
			w = g;
		}
		o = vm_json(v);
		rec = json_pack("{s:s, s:O, s:O, s:O}", "host", D.hostname, "mem",
				json_object_get(o, "mem"), "vcpus", json_object_get(o, "vcpus"),
				"state", json_object_get(o, "state"));
		w[n].value = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		json_decref(rec);
		json_decref(o);
		if (!w[n].value)
			continue;
		snprintf(w[n].name, sizeof w[n].name, "%s", v->name);
		w[n].token = token;
		n++;
	}
	pthread_mutex_unlock(&D.lock);
	*out = w;
	return n;
}

static struct pub *pub_get(const char *name)
{
	struct pub *p;

	for (p = R.pubs; p; p = p->next)
		if (!strcmp(p->name, name))
			return p;
	if ((p = calloc(1, sizeof *p))) {
		snprintf(p->name, sizeof p->name, "%s", name);
		p->next = R.pubs;
		R.pubs = p;
	}
	return p;
}

static void pubs_clear(void)
{
	while (R.pubs) {
		struct pub *p = R.pubs;

		R.pubs = p->next;
		free(p->value);
		free(p);
	}
	free(R.host_value);
	R.host_value = NULL;
}

/* Record w: conditioned on its fencing key (registry.h). 0, -EPERM if the
 * condition failed, or etcd's error. */
static int put_vm(const struct want *w, char *err, size_t errlen)
{
	char key[300], owner[300];
	struct etcd_cmp cmp;
	struct etcd_op op;
	int64_t rev;
	bool ok;
	int r;

	snprintf(key, sizeof key, REGISTRY_PREFIX "vms/%s", w->name);
	snprintf(owner, sizeof owner, "/ferry/vm/%s/owner", w->name);
	cmp = w->token ? (struct etcd_cmp){ ETCD_CREATED_AT, owner, (int64_t)w->token, NULL }
		       : (struct etcd_cmp){ ETCD_ABSENT, owner, 0, NULL };
	op = (struct etcd_op){ false, key, w->value, R.lease };
	if ((r = etcd_txn(R.e, &cmp, 1, &op, 1, &ok, &rev, err, errlen)))
		return r;
	if (!ok)
		snprintf(err, errlen, w->token ? "this host's fencing key for it is gone (token "
			 "%" PRIu64 "): another host runs it" : "another host owns its fencing key",
			 w->token);
	return ok ? 0 : -EPERM;
}

/* Delete p's record if it is still what this host wrote. */
static int del_vm(const struct pub *p, char *err, size_t errlen)
{
	char key[300];
	struct etcd_cmp cmp;
	struct etcd_op op;
	int64_t rev;
	bool ok;

	snprintf(key, sizeof key, REGISTRY_PREFIX "vms/%s", p->name);
	cmp = (struct etcd_cmp){ ETCD_VALUE_IS, key, 0, p->value };
	op = (struct etcd_op){ true, key, NULL, 0 };
	return etcd_txn(R.e, &cmp, 1, &op, 1, &ok, &rev, err, errlen);
}

/* Make etcd's record match this host: its own record, then its VMs. 0, or
 * etcd's error (the rest is tried again next round). */
static int sync_all(void)
{
	char key[300], err[300];
	struct want *w = NULL;
	struct etcd_op op;
	char *host = host_record();
	size_t n;
	int64_t rev;
	bool ok;
	int r = 0;

	if (host && (!R.host_value || strcmp(host, R.host_value))) {
		snprintf(key, sizeof key, REGISTRY_PREFIX "hosts/%s", D.hostname);
		op = (struct etcd_op){ false, key, host, R.lease };
		if ((r = etcd_txn(R.e, NULL, 0, &op, 1, &ok, &rev, err, sizeof err))) {
			free(host);
			set_error("writing %s: %s", key, err);
			return r;
		}
		free(R.host_value);
		R.host_value = host;
		host = NULL;
	}
	free(host);
	n = wanted(&w);
	for (struct pub *p = R.pubs; p; p = p->next)
		p->seen = false;
	for (size_t i = 0; i < n && !r; i++) {
		struct pub *p = pub_get(w[i].name);

		if (!p)
			break;
		p->seen = true;
		if (p->value && !strcmp(p->value, w[i].value))
			continue;
		r = put_vm(&w[i], err, sizeof err);
		if (r == -EPERM) {
			if (!p->refused)
				log_warn("pool: %s is not recorded as running here: %s", w[i].name,
					 err);
			p->refused = true;
			free(p->value);
			p->value = NULL;
			r = 0;
		} else if (!r) {
			p->refused = false;
			free(p->value);
			p->value = strdup(w[i].value);
		} else {
			set_error("recording %s: %s", w[i].name, err);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(w[i].value);
	free(w);
	for (struct pub **pp = &R.pubs; *pp && !r;) {
		struct pub *p = *pp;

		if (p->seen) {
			pp = &p->next;
			continue;
		}
		if (p->value && (r = del_vm(p, err, sizeof err))) {
			set_error("removing %s: %s", p->name, err);
			break;
		}
		*pp = p->next;
		free(p->value);
		free(p);
	}
	return r;
}

/* Wait until kicked, stopped, or ms passed; whether to stop. */
static bool nap(unsigned ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&R.lock);
	while (!R.kick && !R.stop && pthread_cond_timedwait(&R.cond, &R.lock, &ts) == 0)
		;
	R.kick = false;
	stop = R.stop;
	pthread_mutex_unlock(&R.lock);
	return stop;
}

static void *registry_main(void *arg)
{
	unsigned period_ms = (unsigned)D.pool_ttl_s * 1000 / 3;
	char err[300];
	int64_t ttl;

	(void)arg;
	for (;;) {
		if (!R.lease) {
			if (etcd_lease_grant(R.e, D.pool_ttl_s, &R.lease, err, sizeof err)) {
				R.lease = 0;
				set_error("%s", err);
				if (nap(RETRY_MS))
					break;
				continue;
			}
			pubs_clear(); /* a new lease: everything again */
			R.ka_ok = true;
			R.next_ka = mono_ns() + (uint64_t)period_ms * NSEC_PER_MSEC;
		}
		if (mono_ns() >= R.next_ka) {
			R.ka_ok = false;
			if (etcd_lease_keepalive(R.e, R.lease, &ttl, err, sizeof err)) {
				set_error("%s", err);
			} else if (ttl <= 0) {
				set_error("the lease %" PRId64 " expired", R.lease);
				R.lease = 0;
				continue;
			} else {
				R.ka_ok = true;
			}
			R.next_ka = mono_ns() + (uint64_t)period_ms * NSEC_PER_MSEC;
		}
		/* Registered only while etcd answers: a round with nothing to
		 * write asks etcd nothing, and proves nothing. */
		if (!sync_all() && R.ka_ok)
			set_registered();
		if (nap(period_ms))
			break;
	}
	if (R.lease && etcd_lease_revoke(R.e, R.lease, err, sizeof err))
		log_warn("pool: revoking the lease: %s (this host leaves the record when it "
			 "expires)", err);
	return NULL;
}

static void job_changed(void *ctx, struct job *j, enum job_state from)
{
	(void)ctx, (void)j, (void)from;
	registry_kick();
}

void registry_start(void)
{
	char err[300];

	if (!D.coord[0])
		return;
	if (etcd_new(D.coord, D.coord_timeout_ms, &R.e, err, sizeof err)) {
		log_error("pool: %s; this host is not in the pool's record", err);
		return;
	}
	snprintf(R.error, sizeof R.error, "not registered yet");
	job_listen(job_changed, NULL);
	if (pthread_create(&R.thread, NULL, registry_main, NULL)) {
		log_error("pool: cannot start a thread; this host is not in the pool's record");
		etcd_free(R.e);
		R.e = NULL;
		return;
	}
	R.running = true;
}

void registry_stop(void)
{
	if (!R.running)
		return;
	pthread_mutex_lock(&R.lock);
	R.stop = true;
	pthread_cond_broadcast(&R.cond);
	pthread_mutex_unlock(&R.lock);
	pthread_join(R.thread, NULL);
	R.running = false;
	pubs_clear();
	etcd_free(R.e);
	R.e = NULL;
}

void registry_kick(void)
{
	pthread_mutex_lock(&R.lock);
	R.kick = true;
	pthread_cond_broadcast(&R.cond);
	pthread_mutex_unlock(&R.lock);
}

json_t *registry_json(void)
{
	json_t *o;

	if (!D.coord[0])
		return json_pack("{s:n, s:b}", "coord", "registered", 0);
	pthread_mutex_lock(&R.lock);
	o = json_pack("{s:s, s:b, s:I}", "coord", D.coord, "registered", R.registered, "lease",
		      (json_int_t)(R.registered ? R.lease_pub : 0));
	if (o && !R.registered)
		json_object_set_new(o, "error", json_string(R.error));
	pthread_mutex_unlock(&R.lock);
	return o;
}
