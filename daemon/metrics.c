/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c — ferryd's Prometheus metrics; see metrics.h. */
#include "daemon/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/gate.h"
#include "daemon/job.h"
#include "daemon/vm.h"

/* A histogram over fixed bounds (seconds). */
#define HIST_MAX 12
struct hist {
	const double *le;  /* upper bounds, ascending; +Inf implied */
	unsigned nle;
	uint64_t count[HIST_MAX]; /* per bucket, not cumulative */
	uint64_t n;
	double sum;
};

static const double duration_le[] = { 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600 };
static const double downtime_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				      0.5, 1, 5 };

/* Guarded by lock: what the job listener counts. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t migrations[2][API_JOB_STATE_MAX]; /* [out, in][result] */
static struct hist duration = { duration_le, ARRAY_SIZE(duration_le), { 0 }, 0, 0 };
static struct hist downtime = { downtime_le, ARRAY_SIZE(downtime_le), { 0 }, 0, 0 };
static uint64_t sent_bytes, failovers, fenced;
static uint64_t api_requests[6]; /* by status class: 1xx..5xx */

static void hist_add(struct hist *h, double v)
{
	unsigned i = 0;

	while (i < h->nle && v > h->le[i])
		i++;
	h->count[i]++;
	h->n++;
	h->sum += v;
}

static void job_changed(void *ctx, struct job *j, enum job_state from)
{
	enum job_state s;
	struct migrate_stats st;
	enum job_kind kind;

	(void)ctx, (void)from;
	pthread_mutex_lock(&D.lock);
	s = j->state;
	kind = j->kind;
	st = j->st;
	pthread_mutex_unlock(&D.lock);
	pthread_mutex_lock(&lock);
	if ((kind == JOB_MIGRATE_OUT || kind == JOB_MIGRATE_IN) && job_state_final(s)) {
		enum api_job_state a = api_job_state_parse(job_state_api(s));

		if (a < API_JOB_STATE_MAX)
			migrations[kind == JOB_MIGRATE_IN][a]++;
		if (kind == JOB_MIGRATE_OUT) {
			sent_bytes += st.bytes;
			if (s == JOB_COMPLETED) {
				hist_add(&duration, (double)st.total_ns / 1e9);
				hist_add(&downtime, (double)st.downtime_ns / 1e9);
			}
		}
	}
	/* An unresolved job ends unresolved once, and may resolve later: count
	 * each final state it enters. */
	failovers += s == JOB_FAILED_OVER;
	fenced += s == JOB_FENCED;
	pthread_mutex_unlock(&lock);
}

void metrics_init(void)
{
	job_listen(job_changed, NULL);
}

void metrics_api_request(int status)
{
	pthread_mutex_lock(&lock);
	api_requests[(unsigned)MIN(MAX(status / 100, 0), 5)]++;
	pthread_mutex_unlock(&lock);
}

/* ---- the text ---- */

struct out {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0 || o->oom)
			return;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		char *b = realloc(o->buf, o->cap * 2 + (size_t)n);

		if (!b) {
			o->oom = true;
			return;
		}
		o->buf = b;
		o->cap = o->cap * 2 + (size_t)n;
	}
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_put(struct out *o, const char *name, const char *labels, const struct hist *h)
{
	uint64_t cum = 0;

	for (unsigned i = 0; i < h->nle; i++) {
		cum += h->count[i];
		put(o, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, h->le[i],
		    (unsigned long long)cum);
	}
	put(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)h->n);
	put(o, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
	    (unsigned long long)h->n);
}

/* The replication figures of the protected VMs (D.lock held). */
static void replication_put(struct out *o)
{
	static const char *const names[] = { "ferry_replication_epochs_total",
					     "ferry_replication_epoch_pause_seconds",
					     "ferry_replication_output_delay_seconds",
					     "ferry_replication_lag_seconds" };
	static const char *const types[] = { "counter", "summary", "summary", "gauge" };
	static const char *const helps[] = {
		"Epochs committed on the backup since the protection's initial sync.",
		"How long the guest was paused to take an epoch.",
		("How long the guest's network output was held: from its epoch to the backup's "
		 "acknowledgement."),
		"Time since the backup last acknowledged an epoch.",
	};
	uint64_t now = mono_ns();

	for (unsigned m = 0; m < ARRAY_SIZE(names); m++) {
		head(o, names[m], types[m], helps[m]);
		for (struct job *j = D.jobs; j; j = j->next) {
			const struct repl_stats *s = j->rst;

			if (j->kind != JOB_PRIMARY || !s || job_state_final(j->state))
				continue;
			if (m == 0) {
				put(o, "%s{vm=\"%s\"} %llu\n", names[m], j->vm,
				    (unsigned long long)s->epochs);
			} else if (m == 1) {
				put(o, "%s{vm=\"%s\",quantile=\"0.5\"} %.9g\n", names[m], j->vm,
				    (double)repl_pause_pct(s, 50) / 1e9);
				put(o, "%s{vm=\"%s\",quantile=\"0.99\"} %.9g\n", names[m], j->vm,
				    (double)repl_pause_pct(s, 99) / 1e9);
				put(o, "%s_sum{vm=\"%s\"} %.9g\n%s_count{vm=\"%s\"} %llu\n",
				    names[m], j->vm, (double)s->pause_sum_ns / 1e9, names[m], j->vm,
				    (unsigned long long)s->npause);
			} else if (m == 2) {
				put(o, "%s_sum{vm=\"%s\"} %.9g\n%s_count{vm=\"%s\"} %llu\n",
				    names[m], j->vm, (double)s->delay_sum_ns / 1e9, names[m], j->vm,
				    (unsigned long long)s->delays);
			} else if (s->last_commit_ns) {
				put(o, "%s{vm=\"%s\"} %.9g\n", names[m], j->vm,
				    (double)(now - MIN(now, s->last_commit_ns)) / 1e9);
			}
		}
	}
}

/* The migration port's gate (gate.h): connections by outcome, pending and
 * penalised sources now, penalties given. */
static void listener_put(struct out *o)
{
	json_t *g = gate_json();
	const char *k;
	json_t *v;

	if (!g) {
		o->oom = true;
		return;
	}
	head(o, "ferry_listener_connections_total", "counter",
	     "Connections to the migration port, by outcome: served (a checked HELLO), "
	     "refused before the handshake, or failed in it.");
	put(o, "ferry_listener_connections_total{outcome=\"served\"} %lld\n",
	    (long long)json_integer_value(json_object_get(g, "served")));
	json_object_foreach(json_object_get(g, "refused"), k, v)
		put(o, "ferry_listener_connections_total{outcome=\"refused_%s\"} %lld\n", k,
		    (long long)json_integer_value(v));
	json_object_foreach(json_object_get(g, "failed"), k, v)
		put(o, "ferry_listener_connections_total{outcome=\"failed_%s\"} %lld\n", k,
		    (long long)json_integer_value(v));
	head(o, "ferry_listener_pending", "gauge",
	     "Connections to the migration port that have not said HELLO yet.");
	put(o, "ferry_listener_pending %lld\n",
	    (long long)json_integer_value(json_object_get(g, "pending")));
	head(o, "ferry_listener_penalised_sources", "gauge",
	     "Source addresses whose connections are refused for a while for failing.");
	put(o, "ferry_listener_penalised_sources %lld\n",
	    (long long)json_integer_value(json_object_get(g, "penalised")));
	head(o, "ferry_listener_penalties_total", "counter",
	     "Penalties given to source addresses.");
	put(o, "ferry_listener_penalties_total %lld\n",
	    (long long)json_integer_value(json_object_get(g, "penalties")));
	json_decref(g);
}

char *metrics_render(void)
{
	static const char *const dirs[] = { "out", "in" };
	struct out o = { malloc(8192), 0, 8192, false };
	uint64_t vms = 0, vm_mem = 0, active[JOB_KIND_MAX] = { 0 };
	uint64_t prot[JOB_STATE_MAX] = { 0 };

	if (!o.buf)
		return NULL;
	pthread_mutex_lock(&lock);
	head(&o, "ferry_migrations_total", "counter",
	     "Migrations that ended, by direction and result.");
	for (unsigned d = 0; d < 2; d++)
		for (unsigned a = API_JOB_COMPLETED; a < API_JOB_STATE_MAX; a++)
			put(&o, "ferry_migrations_total{direction=\"%s\",result=\"%s\"} %llu\n",
			    dirs[d], api_job_state_name((enum api_job_state)a),
			    (unsigned long long)migrations[d][a]);
	head(&o, "ferry_migration_duration_seconds", "histogram",
	     "How long a completed outgoing migration took, from start to the guest running "
	     "on the destination.");
	hist_put(&o, "ferry_migration_duration_seconds", "direction=\"out\"", &duration);
	head(&o, "ferry_migration_downtime_seconds", "histogram",
	     "How long the guest of a completed outgoing migration was stopped.");
	hist_put(&o, "ferry_migration_downtime_seconds", "direction=\"out\"", &downtime);
	head(&o, "ferry_migration_sent_bytes_total", "counter",
	     "Stream bytes sent by outgoing migrations that ended.");
	put(&o, "ferry_migration_sent_bytes_total %llu\n", (unsigned long long)sent_bytes);
	head(&o, "ferry_failovers_total", "counter",
	     "Standby copies that took over from a lost primary here.");
	put(&o, "ferry_failovers_total %llu\n", (unsigned long long)failovers);
	head(&o, "ferry_fenced_total", "counter",
	     "Primaries here that lost the authority to run their guest.");
	put(&o, "ferry_fenced_total %llu\n", (unsigned long long)fenced);
	head(&o, "ferry_api_requests_total", "counter",
	     "Remote API requests answered, by HTTP status class.");
	for (unsigned c = 1; c <= 5; c++)
		put(&o, "ferry_api_requests_total{code=\"%uxx\"} %llu\n", c,
		    (unsigned long long)api_requests[c]);
	pthread_mutex_unlock(&lock);

	pthread_mutex_lock(&D.lock);
	for (struct vm *v = D.vms; v; v = v->next) {
		json_t *j = vm_json(v);

		vms++;
		vm_mem += (uint64_t)json_integer_value(json_object_get(j, "mem"));
		json_decref(j);
	}
	for (struct job *j = D.jobs; j; j = j->next) {
		if (job_state_final(j->state))
			continue;
		active[j->kind]++;
		if (j->kind == JOB_PRIMARY || j->kind == JOB_BACKUP)
			prot[j->state]++;
	}
	head(&o, "ferry_vms", "gauge", "VMs on this host (running, paused, incoming).");
	put(&o, "ferry_vms %llu\n", (unsigned long long)vms);
	head(&o, "ferry_vm_memory_bytes", "gauge", "Guest RAM the VMs on this host hold.");
	put(&o, "ferry_vm_memory_bytes %llu\n", (unsigned long long)vm_mem);
	head(&o, "ferry_jobs_active", "gauge", "Jobs under way, by kind.");
	for (unsigned k = 0; k < JOB_KIND_MAX; k++)
		put(&o, "ferry_jobs_active{kind=\"%s\"} %llu\n", job_kind_name((enum job_kind)k),
		    (unsigned long long)active[k]);
	head(&o, "ferry_protection_jobs", "gauge",
	     "Protection jobs under way here, by state (primaries and standbys).");
	for (unsigned s = JOB_SYNCING; s <= JOB_HELD; s++)
		put(&o, "ferry_protection_jobs{state=\"%s\"} %llu\n",
		    job_state_name((enum job_state)s), (unsigned long long)prot[s]);
	replication_put(&o);
	pthread_mutex_unlock(&D.lock);
	listener_put(&o);
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}
