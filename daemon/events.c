/* SPDX-License-Identifier: Apache-2.0 */
/* events.c — the host's events; see events.h. */
#include "daemon/events.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core.h"
#include "daemon/job.h"

struct event_msg {
	char type[16];
	char *json;
	uint64_t id;
};

static void (*follower)(void *ctx, uint64_t id, const char *type, const char *json);
static void *follower_ctx;
static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seq;

static void deliver(void *p)
{
	struct event_msg *m = p;

	if (follower)
		follower(follower_ctx, m->id, m->type, m->json);
	free(m->json);
	free(m);
}

void events_publish(const char *type, json_t *data)
{
	struct event_msg *m;

	if (!data)
		return;
	if (!follower || !(m = calloc(1, sizeof *m))) {
		json_decref(data);
		return;
	}
	snprintf(m->type, sizeof m->type, "%s", type);
	m->json = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	if (!m->json) {
		free(m);
		return;
	}
	/* Numbered and queued under one lock: the loop hears them in order. */
	pthread_mutex_lock(&seq_lock);
	m->id = ++seq;
	loop_call(deliver, m);
	pthread_mutex_unlock(&seq_lock);
}

static void job_changed(void *ctx, struct job *j, enum job_state from)
{
	json_t *o;

	(void)ctx;
	if (!follower)
		return;
	pthread_mutex_lock(&D.lock);
	o = job_json(j);
	pthread_mutex_unlock(&D.lock);
	if (o)
		json_object_set_new(o, "from", json_string(job_state_name(from)));
	events_publish("job", o);
}

void events_init(void)
{
	job_listen(job_changed, NULL);
}

void events_follow(void (*fn)(void *ctx, uint64_t id, const char *type, const char *json),
		   void *ctx)
{
	follower = fn;
	follower_ctx = ctx;
}
