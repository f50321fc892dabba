/* SPDX-License-Identifier: Apache-2.0 */
/*
 * live.c — a session's liveness: the monitor that reads the peer's control
 * messages on channel 0, the heartbeat thread, ordered sends, ABORT as the
 * last word, and the note of when any channel last received; see
 * session.h.
 *
 * A stopped peer's kernel still acknowledges TCP, so nothing below trusts
 * the transport to notice a dead peer: silence for the peer timeout is one.
 */
#include "session/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"

#define MSG_TYPES 32

struct session_mon {
	struct session *s;
	int wake;              /* eventfd: stop */
	pthread_t thread;
	/* Under m. */
	pthread_mutex_t m;
	pthread_cond_t c;
	uint32_t got;          /* bit per message type received */
	uint64_t arg[MSG_TYPES], max[MSG_TYPES]; /* last and largest argument */
	int err;               /* the session failed: why */
	char why[WIRE_ABORT_TEXT_MAX + 64];
};

static void mon_fail(struct session_mon *m, int err, const char *why)
{
	pthread_mutex_lock(&m->m);
	if (!m->err) {
		m->err = err;
		snprintf(m->why, sizeof m->why, "%s", why);
	}
	pthread_cond_broadcast(&m->c);
	pthread_mutex_unlock(&m->m);
	/* Unblock the senders: nothing more will get through. */
	session_shutdown(m->s);
}

/* ABORT's text follows it: read it and fail with it. */
static void mon_abort(struct session_mon *m, uint64_t a)
{
	char text[WIRE_ABORT_TEXT_MAX + 1] = "", why[WIRE_ABORT_TEXT_MAX + 64];
	size_t len = (size_t)(a & 0xffffffffu);
	int e = (int)(a >> 32);

	if (len <= WIRE_ABORT_TEXT_MAX && !chan_recv(m->s->ch[0], text, len, CHAN_WAIT_DEFAULT))
		text[len] = '\0';
	else
		text[0] = '\0';
	snprintf(why, sizeof why, "%s gave up: %s", m->s->role, text[0] ? text : strerror(e));
	mon_fail(m, e > 0 && e < 4096 ? -e : -ECONNABORTED, why);
}

static void *mon_main(void *arg)
{
	struct session_mon *m = arg;
	struct chan *c = m->s->ch[0];
	int timeout_ms = m->s->timeout_ms;
	uint64_t last = mono_ns(), timeout = (uint64_t)timeout_ms * NSEC_PER_MSEC, a;
	char why[WIRE_ABORT_TEXT_MAX + 64];
	uint32_t type;
	int r;

	for (;;) {
		uint64_t now = mono_ns();

		if (now - last >= timeout) {
			snprintf(why, sizeof why, "%s was silent for %d ms", m->s->role, timeout_ms);
			mon_fail(m, -ETIMEDOUT, why);
			return NULL;
		}
		r = chan_wait_in(c, m->wake, (int)((timeout - (now - last)) / NSEC_PER_MSEC) + 1);
		if (r < 0) {
			mon_fail(m, r, strerror(-r));
			return NULL;
		}
		if (r == 0)
			continue;
		if (r == 2)
			return NULL; /* stopped */
		if ((r = wire_read_msg(c, &type, &a))) {
			snprintf(why, sizeof why, "%s %s", m->s->role,
				 r == -ECONNRESET ? "closed the connection"
				 : r == -EPROTO && !c->err[0] ? "sent a malformed message"
							      : chan_error(c, r));
			mon_fail(m, r == -EAGAIN ? -ETIMEDOUT : r, why);
			return NULL;
		}
		last = mono_ns();
		if (type == WIRE_ABORT) {
			mon_abort(m, a);
			return NULL;
		}
		pthread_mutex_lock(&m->m);
		if (type < MSG_TYPES) {
			m->got |= 1u << type;
			m->arg[type] = a;
			m->max[type] = MAX(m->max[type], a);
		}
		pthread_cond_broadcast(&m->c);
		pthread_mutex_unlock(&m->m);
		if (m->s->on_msg)
			m->s->on_msg(m->s->on_msg_ctx, type, a);
	}
}

int session_monitor_start(struct session *s)
{
	struct session_mon *m = calloc(1, sizeof *m);
	int r;

	if (!m)
		return -ENOMEM;
	m->s = s;
	if ((m->wake = eventfd(0, EFD_CLOEXEC)) < 0) {
		r = -errno;
		free(m);
		return r;
	}
	pthread_mutex_init(&m->m, NULL);
	pthread_cond_init(&m->c, NULL);
	if ((r = -pthread_create(&m->thread, NULL, mon_main, m))) {
		close(m->wake);
		pthread_mutex_destroy(&m->m);
		pthread_cond_destroy(&m->c);
		free(m);
		return r;
	}
	s->mon = m;
	return 0;
}

void session_monitor_stop(struct session *s)
{
	struct session_mon *m = s->mon;
	uint64_t one = 1;

	if (!m)
		return;
	if (write(m->wake, &one, sizeof one) < 0)
		log_warn("session: waking the monitor: %s", strerror(errno));
	pthread_join(m->thread, NULL);
	close(m->wake);
	pthread_mutex_destroy(&m->m);
	pthread_cond_destroy(&m->c);
	free(m);
	s->mon = NULL;
}

int session_wait_msg(struct session *s, uint32_t type, uint64_t *arg)
{
	struct session_mon *m = s->mon;
	int r;

	if (!m || type >= MSG_TYPES)
		return -EINVAL;
	pthread_mutex_lock(&m->m);
	while (!(m->got & (1u << type)) && !m->err)
		pthread_cond_wait(&m->c, &m->m);
	r = m->got & (1u << type) ? 0 : m->err;
	if (!r && arg)
		*arg = m->arg[type];
	pthread_mutex_unlock(&m->m);
	return r;
}

int session_wait_arg(struct session *s, uint32_t type, uint64_t min)
{
	struct session_mon *m = s->mon;
	int r;

	if (!m || type >= MSG_TYPES)
		return -EINVAL;
	pthread_mutex_lock(&m->m);
	while (m->max[type] < min && !m->err)
		pthread_cond_wait(&m->c, &m->m);
	r = m->max[type] >= min ? 0 : m->err;
	pthread_mutex_unlock(&m->m);
	return r;
}

int session_failed(struct session *s, char *why, size_t len)
{
	struct session_mon *m = s->mon;
	int r;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->m);
	if ((r = m->err))
		snprintf(why, len, "%s", m->why);
	pthread_mutex_unlock(&m->m);
	return r;
}

int session_failure(struct session *s, int grace_ms, char *why, size_t len)
{
	struct session_mon *m = s->mon;
	struct timespec ts = ns_to_ts(real_ns() + (uint64_t)grace_ms * NSEC_PER_MSEC);
	int r;

	if (!m)
		return 0;
	/* It may be reading the peer's last words: give it a moment. */
	pthread_mutex_lock(&m->m);
	while (!m->err && pthread_cond_timedwait(&m->c, &m->m, &ts) == 0)
		;
	r = m->err;
	if (r)
		snprintf(why, len, "%s", m->why);
	pthread_mutex_unlock(&m->m);
	return r;
}

/* ---- the other side: heartbeats, ordered sends, ABORT ---- */

int session_send_msg(struct session *s, uint32_t type, uint64_t arg)
{
	int r;

	pthread_mutex_lock(&s->wlock);
	/* After ABORT (perhaps cut short) nothing more: it must be the last word. */
	r = s->aborted ? -ECONNABORTED : wire_send_msg(s->ch[0], type, arg);
	pthread_mutex_unlock(&s->wlock);
	return r;
}

static void *hb_main(void *arg)
{
	struct session *s = arg;
	uint64_t every = (uint64_t)MAX(s->timeout_ms / 4, 10) * NSEC_PER_MSEC;
	uint64_t next = mono_ns();
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!s->hb_stop) {
		next += every;
		ts = ns_to_ts(real_ns() + (next > mono_ns() ? next - mono_ns() : 0));
		/* Woken early (others share the condition): wait on. */
		while (!s->hb_stop && mono_ns() < next)
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->hb_stop)
			break;
		pthread_mutex_unlock(&s->lock);
		if (session_send_msg(s, WIRE_HEARTBEAT, 0))
			return NULL; /* the link is gone; the reader will notice */
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int session_heartbeat_start(struct session *s)
{
	int r;

	s->hb_stop = false;
	if ((r = -pthread_create(&s->hb, NULL, hb_main, s)))
		return r;
	s->hb_on = true;
	return 0;
}

void session_heartbeat_stop(struct session *s)
{
	if (!s->hb_on)
		return;
	pthread_mutex_lock(&s->lock);
	s->hb_stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->hb, NULL);
	s->hb_on = false;
}

int session_read_msg(struct session *s, int timeout_ms, uint32_t *type, uint64_t *arg)
{
	int r = chan_wait_in(s->ch[0], -1, timeout_ms);

	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return r;
	return wire_read_msg(s->ch[0], type, arg);
}

void session_send_abort(struct session *s, int e, const char *why)
{
	pthread_mutex_lock(&s->wlock);
	if (!s->aborted)
		wire_send_abort(s->ch[0], e, why);
	s->aborted = true;
	pthread_mutex_unlock(&s->wlock);
}

void session_abort(struct session *s, int e, const char *why)
{
	session_send_abort(s, e, why);
	for (unsigned i = 1; i < s->n; i++)
		chan_shutdown(s->ch[i]);
	pthread_mutex_lock(&s->wlock);
	chan_close_send(s->ch[0]);
	pthread_mutex_unlock(&s->wlock);
	chan_drain(s->ch[0], 1000);
}

#define RECV_CHUNK 65536u
#define RECV_SLICE_MS 50

int session_recv(struct session *s, struct chan *c, void *buf, size_t len, int timeout_ms,
		 bool (*stop)(void *ctx), void *ctx, bool *silent)
{
	uint64_t timeout = (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char *p = buf;

	while (len) {
		size_t k = MIN(len, RECV_CHUNK);
		int r;

		while ((r = chan_wait_in(c, -1, RECV_SLICE_MS)) == 0) {
			if (session_quiet_ns(s) > timeout) {
				__atomic_store_n(silent, true, __ATOMIC_RELAXED);
				return -ETIMEDOUT;
			}
			if (stop && stop(ctx))
				return -ECANCELED;
		}
		if (r < 0)
			return r;
		if ((r = chan_recv(c, p, k, CHAN_WAIT_DEFAULT))) {
			if (r == -ETIMEDOUT)
				__atomic_store_n(silent, true, __ATOMIC_RELAXED);
			return r == -ENODATA && p != (char *)buf ? -ECONNRESET : r;
		}
		session_note_rx(s);
		p += k;
		len -= k;
	}
	return 0;
}

void session_note_rx(struct session *s)
{
	__atomic_store_n(&s->last_rx, mono_ns(), __ATOMIC_RELAXED);
}

uint64_t session_quiet_ns(const struct session *s)
{
	uint64_t now = mono_ns(), last = __atomic_load_n(&s->last_rx, __ATOMIC_RELAXED);

	return now > last ? now - last : 0;
}
