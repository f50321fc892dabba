/* SPDX-License-Identifier: Apache-2.0 */
/* core.c — the loop, the threads; see core.h. */
#include "daemon/core.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/log.h"

struct daemon D = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
	.changed = PTHREAD_COND_INITIALIZER,
	.job_history = JOB_HISTORY_DEFAULT, /* also where no settings are read (tests) */
};

/* ---- running things on the loop thread ---- */

struct call {
	struct call *next;
	void (*fn)(void *);
	void *arg;
};

static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct call *calls, **calls_tail = &calls;
static struct event *calls_ev;

void loop_call(void (*fn)(void *), void *arg)
{
	struct call *c = malloc(sizeof *c);

	if (!c)
		fatal("out of memory");
	*c = (struct call){ NULL, fn, arg };
	pthread_mutex_lock(&calls_lock);
	*calls_tail = c;
	calls_tail = &c->next;
	pthread_mutex_unlock(&calls_lock);
	event_active(calls_ev, EV_READ, 0);
}

static void run_calls(evutil_socket_t fd, short what, void *arg)
{
	struct call *c;

	(void)fd, (void)what, (void)arg;
	pthread_mutex_lock(&calls_lock);
	c = calls;
	calls = NULL;
	calls_tail = &calls;
	pthread_mutex_unlock(&calls_lock);
	while (c) {
		struct call *next = c->next;

		c->fn(c->arg);
		free(c);
		c = next;
	}
}

void core_init(void)
{
	if (evthread_use_pthreads())
		fatal("libevent has no thread support");
	if (!(D.base = event_base_new()))
		fatal("cannot create the event loop");
	calls_ev = event_new(D.base, -1, 0, run_calls, NULL);
}

/* ---- threads ---- */

struct thread_arg {
	void *(*fn)(void *);
	void *arg;
};

static void *thread_main(void *p)
{
	struct thread_arg a = *(struct thread_arg *)p;

	free(p);
	return a.fn(a.arg);
}

int spawn_thread(void *(*fn)(void *), void *arg)
{
	struct thread_arg *a = malloc(sizeof *a);
	pthread_attr_t at;
	pthread_t t;
	int r;

	if (!a)
		return -ENOMEM;
	a->fn = fn;
	a->arg = arg;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&D.lock);
	D.threads++;
	pthread_mutex_unlock(&D.lock);
	r = pthread_create(&t, &at, thread_main, a);
	pthread_attr_destroy(&at);
	if (r) {
		free(a);
		thread_done();
		return -r;
	}
	return 0;
}

void thread_done(void)
{
	pthread_mutex_lock(&D.lock);
	if (--D.threads == 0)
		pthread_cond_broadcast(&D.idle);
	pthread_mutex_unlock(&D.lock);
}

void core_wait_threads(void)
{
	/* Threads may need the loop (loop_call) to finish: keep it turning. */
	pthread_mutex_lock(&D.lock);
	while (D.threads) {
		pthread_mutex_unlock(&D.lock);
		event_base_loop(D.base, EVLOOP_NONBLOCK);
		usleep(10000);
		pthread_mutex_lock(&D.lock);
	}
	pthread_mutex_unlock(&D.lock);
	event_base_loop(D.base, EVLOOP_NONBLOCK);
}

bool core_stopping(void)
{
	bool s;

	pthread_mutex_lock(&D.lock);
	s = D.stopping;
	pthread_mutex_unlock(&D.lock);
	return s;
}
