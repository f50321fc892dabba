/* SPDX-License-Identifier: Apache-2.0 */
/*
 * session.c — opening a peer session: connecting and saying HELLO, serving
 * an accepted connection, joining further channels to the session that
 * waits for them, and asking a peer what became of a job; see session.h.
 *
 * The sessions that wait for further channels are listed in a registry
 * (reg), keyed by job id. reg.lock guards the list and, for a listed
 * session, accepting, joining and joiners; a channel is added under both
 * reg.lock and the session's own lock (taken in that order). A joiner holds
 * the session by counting itself in joiners: the owner unlists it only once
 * no joiner is left.
 */
#include "session/session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "transport/tcp.h"
#include "transport/tls.h"

#define ASK_CONNECT_MS 2000
#define ASK_ANSWER_MS 5000

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a channel joined or left; a wait ends */
	struct session *list[64]; /* sessions waiting for channels */
	unsigned n;
	bool stopping;            /* session_stop_waits */
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* ---- both sides ---- */

static struct session *alloc(const struct session_conf *sc, bool out)
{
	struct session *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	s->conf = sc;
	s->out = out;
	s->timeout_ms = sc ? sc->peer_timeout_ms : 15000;
	s->last_rx = mono_ns();
	s->role = "the peer";
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->wlock, NULL);
	return s;
}

static bool shut(const struct session *s)
{
	return __atomic_load_n(&s->shut, __ATOMIC_RELAXED);
}

/* Add c as the next channel; -ECANCELED (c not taken) once shut. */
static int add_chan(struct session *s, struct chan *c)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (s->shut || s->n >= WIRE_CHANNELS_MAX)
		r = -ECANCELED;
	else
		s->ch[s->n++] = c;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return r;
}

const char *session_kind(const struct session *s)
{
	return s->n ? chan_kind(s->ch[0]) : "none";
}

void session_shutdown(struct session *s)
{
	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&s->shut, true, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < s->n; i++)
		chan_shutdown(s->ch[i]);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	/* A wait for further channels ends too. */
	pthread_mutex_lock(&reg.lock);
	pthread_cond_broadcast(&reg.cond);
	pthread_mutex_unlock(&reg.lock);
}

void session_free(struct session *s)
{
	if (!s)
		return;
	session_monitor_stop(s);
	session_heartbeat_stop(s);
	for (unsigned i = 0; i < s->n; i++)
		chan_free(s->ch[i]);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->wlock);
	free(s);
}

int session_wrap(struct chan *const *ch, unsigned n, int timeout_ms, struct session **out)
{
	struct session *s;

	if (n < 1 || n > WIRE_CHANNELS_MAX || !(s = alloc(NULL, true)))
		return -ENOMEM;
	s->timeout_ms = timeout_ms;
	for (unsigned i = 0; i < n; i++)
		s->ch[i] = ch[i];
	s->n = s->want = n;
	s->caps = WIRE_CAPS_ALL;
	snprintf(s->job, sizeof s->job, "local");
	*out = s;
	return 0;
}

/* Who is at the other end of c: its certificate's names, else its address
 * without the port. */
static void identity(const struct chan *c, char *buf, size_t len)
{
	const char *colon;

	chan_tls_peer_names(c, buf, len);
	if (buf[0])
		return;
	colon = strrchr(c->peer, ':');
	snprintf(buf, len, "%.*s", colon ? (int)(colon - c->peer) : (int)strlen(c->peer), c->peer);
}

/* ---- the connecting side ---- */

int session_new(const struct session_conf *sc, const char *peer, const char *job,
		struct session **out)
{
	struct session *s = alloc(sc, true);

	if (!s)
		return -ENOMEM;
	snprintf(s->peer, sizeof s->peer, "%s", peer);
	snprintf(s->job, sizeof s->job, "%s", job);
	*out = s;
	return 0;
}

/* A refusal frame's reason into err ("refused by the destination: ...");
 * -EBUSY if it says to retry (load), else -EPERM. */
static int refusal(const json_t *o, const char *who, char *err, size_t errlen)
{
	const char *why = NULL;
	int retry = 0;

	json_unpack((json_t *)o, "{s?s, s?b}", "error", &why, "retry", &retry);
	snprintf(err, errlen, "refused by %s: %s", who, why ? why : "no reason given");
	return retry ? -EBUSY : -EPERM;
}

/* Say h on c and read the answer within timeout_ms: 0 and *reply (the
 * caller decrefs it), or -errno with err set (a refusal is -EPERM, or
 * -EBUSY when the peer says to try again). */
static int hello(struct chan *c, const struct wire_hello *h, int timeout_ms, json_t **reply,
		 char *err, size_t errlen)
{
	const char *who = h->op == WIRE_OP_RESOLVE ? "the peer" : "the destination";
	json_t *o = wire_hello_json(h);
	uint32_t version;
	int ok = 0, r;
	char e[300];

	if (!o)
		return -ENOMEM;
	r = wire_send_frame(c, o);
	json_decref(o);
	if (r) {
		snprintf(err, errlen, "sending HELLO: %s", chan_error(c, r));
		return r;
	}
	if ((r = wire_recv_frame(c, timeout_ms, &version, reply, e, sizeof e))) {
		if (r == -ECONNRESET)
			snprintf(err, errlen, "%s closed the connection before answering HELLO", who);
		else
			snprintf(err, errlen, "handshake: %s", e);
		return r;
	}
	if (json_unpack(*reply, "{s:b}", "ok", &ok) || !ok) {
		r = refusal(*reply, who, err, errlen);
	} else if (version != WIRE_PROTO_VERSION) {
		snprintf(err, errlen, "the destination speaks migration protocol %u, this host %d",
			 version, WIRE_PROTO_VERSION);
		r = -EPROTO;
	}
	if (r) {
		json_decref(*reply);
		*reply = NULL;
	}
	return r;
}

/* A channel to the session's peer, as configured, within timeout_ms. A
 * peer that refuses in plaintext before TLS (a listener that is full, a
 * host that runs plaintext) is read: its refusal (-EBUSY or -EPERM). */
static int open_chan(struct session *s, int timeout_ms, struct chan **c, char *err,
		     size_t errlen)
{
	struct link_conf lc = s->conf->link;
	uint32_t version;
	json_t *o;
	char e[300];
	int r;

	lc.timeout_ms = timeout_ms;
	r = link_connect(&lc, s->peer, WIRE_DEFAULT_PORT, c, err, errlen);
	if (r != -EPROTONOSUPPORT)
		return r;
	r = wire_recv_frame(*c, MIN(timeout_ms, ASK_ANSWER_MS), &version, &o, e, sizeof e);
	chan_free(*c);
	*c = NULL;
	if (r) {
		snprintf(err, errlen, "%s answered the TLS handshake in plaintext, not in the ferry "
			 "protocol", s->peer);
		return -EPROTO;
	}
	r = refusal(o, "the destination", err, errlen);
	json_decref(o);
	return r;
}

/* Wait ms, or less if s is shut meanwhile. */
static void pause_unless_shut(struct session *s, unsigned ms)
{
	struct timespec ts = ns_to_ts(real_ns() + (uint64_t)ms * NSEC_PER_MSEC);

	pthread_mutex_lock(&s->lock);
	while (!s->shut && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&s->lock);
}

/* Take the last channel back off s (it failed before its HELLO's answer). */
static void drop_last(struct session *s, struct chan *c)
{
	pthread_mutex_lock(&s->lock);
	if (s->n && s->ch[s->n - 1] == c)
		s->n--;
	else
		c = NULL; /* shut meanwhile: freed with s */
	pthread_mutex_unlock(&s->lock);
	chan_free(c);
}

/*
 * Open a channel and say h on it. A destination that refuses for load
 * (-EBUSY), drops the connection before it answers, or does not finish the
 * handshake in time is tried again, with a backoff from 50 ms to 1 s, until
 * the peer timeout has passed since the first try; any other failure is
 * final. 0 and the channel added to s, or -errno with err set.
 */
static int dial(struct session *s, const struct wire_hello *h, json_t **reply, char *err,
		size_t errlen)
{
	uint64_t start = mono_ns(), end = start + (uint64_t)s->timeout_ms * NSEC_PER_MSEC;
	unsigned tries = 0, backoff = 50;
	int r;

	for (;;) {
		uint64_t now = mono_ns();
		int left = now < end ? (int)((end - now) / NSEC_PER_MSEC) + 1 : 1;
		struct chan *c = NULL;

		tries++;
		if (!(r = open_chan(s, left, &c, err, errlen))) {
			if ((r = add_chan(s, c))) {
				chan_free(c);
				snprintf(err, errlen, "cancelled");
				return r;
			}
			if (!(r = hello(c, h, left, reply, err, errlen)))
				return 0;
			drop_last(s, c);
		}
		if ((r != -EBUSY && r != -ECONNRESET && r != -ETIMEDOUT) || shut(s))
			break;
		now = mono_ns();
		if (now + (uint64_t)backoff * NSEC_PER_MSEC >= end)
			break;
		/* Up to a half more, so that sources refused together do not
		 * come back together. */
		pause_unless_shut(s, backoff + (unsigned)(now % (backoff / 2 + 1)));
		backoff = MIN(backoff * 2, 1000u);
	}
	if (tries > 1) {
		size_t n = strlen(err);

		snprintf(err + n, errlen - n, " (%u tries in %.1f s)", tries,
			 (double)(mono_ns() - start) / 1e9);
	}
	return shut(s) ? -ECANCELED : r;
}

/* Open the further channels the peer agreed to, each with its token. */
static int open_more(struct session *s, char *err, size_t errlen)
{
	struct wire_hello h = { .op = WIRE_OP_CHANNEL };

	snprintf(h.job, sizeof h.job, "%s", s->job);
	snprintf(h.from, sizeof h.from, "%s", s->conf->host);
	snprintf(h.token, sizeof h.token, "%s", s->token);
	for (unsigned i = 1; i < s->want; i++) {
		json_t *reply = NULL;
		char e[400];
		int r;

		h.index = i;
		r = dial(s, &h, &reply, e, sizeof e);
		json_decref(reply);
		if (r) {
			snprintf(err, errlen, "channel %u: %s", i, e);
			return r;
		}
	}
	return 0;
}

int session_connect(struct session *s, struct wire_hello *h, unsigned channels,
		    json_t **answer, char *err, size_t errlen)
{
	const char *token = "";
	json_t *reply = NULL;
	uint32_t caps = 0;
	json_int_t n = 1;
	int r;

	snprintf(h->job, sizeof h->job, "%s", s->job);
	snprintf(h->from, sizeof h->from, "%s", s->conf->host);
	/* The configured codecs, and post-copy if the caller asked for it. */
	h->caps = s->conf->caps | (h->caps & WIRE_CAP_POSTCOPY);
	h->channels = channels;
	h->peer_timeout_ms = (unsigned)s->timeout_ms;
	if (answer)
		*answer = NULL;
	if ((r = dial(s, h, &reply, err, errlen)))
		return r;
	identity(s->ch[0], s->peer_id, sizeof s->peer_id);
	/* The codecs both sides agreed to (none if the answer names none). */
	wire_caps_parse(json_object_get(reply, "caps"), &caps);
	s->caps = caps & h->caps;
	json_unpack(reply, "{s?I, s?s}", "channels", &n, "token", &token);
	if (n < 2)
		s->caps &= ~WIRE_CAP_POSTCOPY;
	if (n < 1 || n > (json_int_t)h->channels || (n > 1 && !wire_valid_token(token))) {
		snprintf(err, errlen, "the destination answered with %lld channels%s",
			 (long long)n, n > 1 ? " and no valid token" : "");
		r = -EPROTO;
	} else {
		s->want = (unsigned)n;
		snprintf(s->token, sizeof s->token, "%s", n > 1 ? token : "");
		r = open_more(s, err, errlen);
	}
	if (r && shut(s))
		r = -ECANCELED;
	if (answer && !r)
		*answer = reply;
	else
		json_decref(reply);
	return r;
}

int session_ask(const struct session_conf *sc, const char *peer, const char *job,
		char *state, size_t len)
{
	struct wire_hello h = { .op = WIRE_OP_RESOLVE };
	struct session *s;
	json_t *reply = NULL;
	const char *v;
	char err[300];
	int r;

	if ((r = session_new(sc, peer, job, &s)))
		return r;
	snprintf(h.job, sizeof h.job, "%s", job);
	snprintf(h.from, sizeof h.from, "%s", sc->host);
	if (!(r = open_chan(s, ASK_CONNECT_MS, &s->ch[0], err, sizeof err))) {
		s->n = 1;
		r = hello(s->ch[0], &h, ASK_ANSWER_MS, &reply, err, sizeof err);
	}
	if (!r && (json_unpack(reply, "{s:s}", "state", &v) || strlen(v) >= len))
		r = -EPROTO;
	if (!r)
		snprintf(state, len, "%s", v);
	json_decref(reply);
	session_free(s);
	return r;
}

/* ---- the accepting side ---- */

/* Answer a HELLO on a bare channel with {"ok": false, "error": ...}. */
void session_refuse_chan(struct chan *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_warn("incoming from %s: refused: %s", c->peer, msg);
	if ((o = json_pack("{s:b, s:s}", "ok", 0, "error", msg))) {
		wire_send_frame(c, o);
		json_decref(o);
	}
}

void session_refuse(struct session *s, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	session_refuse_chan(s->ch[0], "%s", msg);
}

/* Equal strings, in time that does not depend on where they differ. */
static bool same_secret(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	unsigned char d = n != m;

	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ (i < m ? b[i] : 0));
	return !d;
}

/* (reg.lock) The listed session of job, or NULL. */
static struct session *listed(const char *job)
{
	for (unsigned i = 0; i < reg.n; i++)
		if (strcmp(reg.list[i]->job, job) == 0)
			return reg.list[i];
	return NULL;
}

/*
 * A further channel: hand c to the session of h->job if it waits for this
 * one, the token is its own, and c comes from the same peer as channel 0.
 * Returns true if the session took c.
 */
static bool join(struct chan *c, const struct wire_hello *h)
{
	struct timespec ts;
	struct session *s;
	char who[300], why[700] = "";
	bool taken = false;
	json_t *o;
	int r;

	identity(c, who, sizeof who);
	pthread_mutex_lock(&reg.lock);
	if ((s = listed(h->job))) {
		s->joiners++;
		ts = ns_to_ts(real_ns() + (uint64_t)s->timeout_ms * NSEC_PER_MSEC);
		/* The channel before this one may still be being answered (the
		 * source opens the next as soon as it has the answer): let it
		 * join first. */
		while (s->joining && s->accepting && !reg.stopping &&
		       pthread_cond_timedwait(&reg.cond, &reg.lock, &ts) != ETIMEDOUT)
			;
	}
	if (!s || !s->accepting)
		snprintf(why, sizeof why, "job %s does not wait for channels here", h->job);
	else if (strcmp(who, s->peer_id) != 0)
		snprintf(why, sizeof why, "channel 0 of job %s came from %s, this one from %s",
			 h->job, s->peer_id, who);
	else if (!same_secret(h->token, s->token))
		snprintf(why, sizeof why, "wrong token for job %s", h->job);
	else if (s->joining || h->index != s->n || h->index >= s->want)
		snprintf(why, sizeof why, "job %s expects channel %u, not %u", h->job, s->n,
			 h->index);
	else
		s->joining = true; /* this index is ours while we answer */
	pthread_mutex_unlock(&reg.lock);
	if (why[0]) {
		session_refuse_chan(c, "%s", why);
		goto out;
	}
	/* Answer first, outside the lock (the peer may be slow to read): once
	 * the session has c, its owner does. */
	o = json_pack("{s:b}", "ok", 1);
	r = o ? wire_send_frame(c, o) : -ENOMEM;
	json_decref(o);
	pthread_mutex_lock(&reg.lock);
	s->joining = false;
	if (!r && s->accepting && add_chan(s, c) == 0)
		taken = true;
	pthread_mutex_unlock(&reg.lock);
out:
	if (s) {
		pthread_mutex_lock(&reg.lock);
		s->joiners--;
		pthread_cond_broadcast(&reg.cond);
		pthread_mutex_unlock(&reg.lock);
	}
	return taken;
}

/* Wait for the further channels, each for up to the peer timeout (the
 * source opens them one after another); then take s off the list. */
static int gather(struct session *s, char *err, size_t errlen)
{
	struct timespec ts = ns_to_ts(real_ns() + (uint64_t)s->timeout_ms * NSEC_PER_MSEC);
	unsigned had = s->n;
	bool stopping;
	int r = 0;

	pthread_mutex_lock(&reg.lock);
	while ((s->n < s->want || s->joining) && !reg.stopping && !shut(s) && r != ETIMEDOUT) {
		r = pthread_cond_timedwait(&reg.cond, &reg.lock, &ts);
		if (s->n > had) {
			had = s->n;
			r = 0;
			ts = ns_to_ts(real_ns() + (uint64_t)s->timeout_ms * NSEC_PER_MSEC);
		}
	}
	s->accepting = false;
	for (unsigned i = 0; i < reg.n; i++)
		if (reg.list[i] == s) {
			reg.list[i] = reg.list[--reg.n];
			break;
		}
	while (s->joiners)
		pthread_cond_wait(&reg.cond, &reg.lock);
	stopping = reg.stopping;
	pthread_mutex_unlock(&reg.lock);
	if (s->n < s->want) {
		snprintf(err, errlen, "%s: %u of %u channels came", stopping ? "shutting down"
			 : shut(s) ? "cancelled" : "the source did not open all its channels in time",
			 s->n, s->want);
		return shut(s) ? -ECANCELED : -ETIMEDOUT;
	}
	return 0;
}

int session_answer(struct session *s, char *err, size_t errlen)
{
	json_t *o;
	int r;

	if (s->want > 1) {
		/* Listed before the answer: the next channel may come at once. */
		pthread_mutex_lock(&reg.lock);
		if (reg.n == ARRAY_SIZE(reg.list) || listed(s->job)) {
			pthread_mutex_unlock(&reg.lock);
			session_refuse(s, "%s waits for too many sessions' channels", s->conf->host);
			snprintf(err, errlen, "too many sessions waiting for channels");
			return -EBUSY;
		}
		s->accepting = true;
		reg.list[reg.n++] = s;
		pthread_mutex_unlock(&reg.lock);
	}
	o = json_pack("{s:b, s:s, s:o, s:i}", "ok", 1, "host", s->conf->host, "caps",
		      wire_caps_json(s->caps), "channels", (int)s->want);
	if (o && s->want > 1)
		json_object_set_new(o, "token", json_string(s->token));
	r = o ? wire_send_frame(s->ch[0], o) : -ENOMEM;
	json_decref(o);
	if (r)
		snprintf(err, errlen, "answering HELLO: %s", chan_error(s->ch[0], r));
	if (s->want > 1) {
		char e[200];
		int g;

		if (r)
			session_shutdown(s);
		g = gather(s, e, sizeof e);
		if (!r && g) {
			snprintf(err, errlen, "%s", e);
			r = g;
		}
	}
	return r;
}

void session_stop_waits(void)
{
	pthread_mutex_lock(&reg.lock);
	reg.stopping = true;
	pthread_cond_broadcast(&reg.cond);
	pthread_mutex_unlock(&reg.lock);
}

/* A new session for an opening HELLO h on channel c (taken over). */
static struct session *opened(const struct session_conf *sc, struct chan *c,
			      const struct wire_hello *h)
{
	unsigned char rnd[WIRE_TOKEN_LEN / 2];
	struct session *s = alloc(sc, false);

	if (!s || getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
		session_refuse_chan(c, "out of resources");
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(s->token + 2 * i, 3, "%02x", rnd[i]);
	snprintf(s->job, sizeof s->job, "%s", h->job);
	snprintf(s->peer, sizeof s->peer, "%s", h->from[0] ? h->from : "?");
	identity(c, s->peer_id, sizeof s->peer_id);
	s->ch[0] = c;
	s->n = 1;
	s->want = MIN(h->channels, sc->channels);
	/* Post-copy is the opener's to ask for, and needs a channel of its
	 * own besides the stream's. */
	s->caps = h->caps & (sc->caps | WIRE_CAP_POSTCOPY);
	if (s->want < 2)
		s->caps &= ~WIRE_CAP_POSTCOPY;
	/* The opener gives up after its own timeout: heartbeat for the smaller
	 * of the two. */
	if (h->peer_timeout_ms)
		s->timeout_ms = MIN(sc->peer_timeout_ms, (int)h->peer_timeout_ms);
	return s;
}

void session_serve_hello(const struct session_conf *sc, struct chan *c,
			 const struct wire_hello *h, const struct session_handlers *hd)
{
	struct session *s;

	switch (h->op) {
	case WIRE_OP_RESOLVE: {
		const char *state = hd->resolve(hd->ctx, h->job);
		json_t *a;

		log_info("job %s: %s asks what became of it: %s", h->job, h->from, state);
		if ((a = json_pack("{s:b, s:s}", "ok", 1, "state", state))) {
			wire_send_frame(c, a);
			json_decref(a);
		}
		break;
	}
	case WIRE_OP_CHANNEL:
		if (join(c, h))
			c = NULL; /* the session's now */
		break;
	default:
		if ((s = opened(sc, c, h))) {
			c = NULL; /* the session's now */
			hd->open(hd->ctx, s, h);
		}
		break;
	}
	chan_free(c);
}
