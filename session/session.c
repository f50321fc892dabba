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

/* Connections that have not said who they are yet (TLS handshake, HELLO)
 * each hold a thread for up to twice the peer timeout: anyone who reaches
 * the port could otherwise make us start threads without end. */
#define MAX_GREETING 64
#define ASK_CONNECT_MS 2000
#define ASK_ANSWER_MS 5000

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a channel joined or left; a wait ends */
	struct session *list[64]; /* sessions waiting for channels */
	unsigned n;
	unsigned greeting;        /* connections before their HELLO */
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

/* A channel to the session's peer, as configured, within the peer timeout. */
static int open_chan(struct session *s, int timeout_ms, struct chan **c, char *err,
		     size_t errlen)
{
	struct link_conf lc = s->conf->link;

	lc.timeout_ms = timeout_ms;
	return link_connect(&lc, s->peer, WIRE_DEFAULT_PORT, c, err, errlen);
}

/* Say h on c and read the answer within timeout_ms: 0 and *reply (the
 * caller decrefs it), or -errno with err set (a refusal is -EPERM). */
static int hello(struct chan *c, const struct wire_hello *h, int timeout_ms, json_t **reply,
		 char *err, size_t errlen)
{
	json_t *o = wire_hello_json(h);
	const char *why = NULL;
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
		snprintf(err, errlen, "handshake: %s", e);
		return r;
	}
	if (json_unpack(*reply, "{s:b, s?s}", "ok", &ok, "error", &why) || !ok) {
		snprintf(err, errlen, "refused by %s: %s", h->op == WIRE_OP_RESOLVE ? "the peer"
			 : "the destination", why ? why : "no reason given");
		r = -EPERM;
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

/* Open the further channels the peer agreed to, each with its token. */
static int open_more(struct session *s, char *err, size_t errlen)
{
	struct wire_hello h = { .op = WIRE_OP_CHANNEL };

	snprintf(h.job, sizeof h.job, "%s", s->job);
	snprintf(h.from, sizeof h.from, "%s", s->conf->host);
	snprintf(h.token, sizeof h.token, "%s", s->token);
	for (unsigned i = 1; i < s->want; i++) {
		json_t *reply = NULL;
		struct chan *c;
		char e[400];
		int r;

		h.index = i;
		if ((r = open_chan(s, s->timeout_ms, &c, e, sizeof e))) {
			snprintf(err, errlen, "channel %u: %s", i, e);
			return r;
		}
		if ((r = add_chan(s, c))) {
			chan_free(c);
			snprintf(err, errlen, "cancelled");
			return r;
		}
		r = hello(c, &h, s->timeout_ms, &reply, e, sizeof e);
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
	struct chan *c;
	uint32_t caps = 0;
	json_int_t n = 1;
	int r;

	snprintf(h->job, sizeof h->job, "%s", s->job);
	snprintf(h->from, sizeof h->from, "%s", s->conf->host);
	h->caps = s->conf->caps;
	h->channels = channels;
	h->peer_timeout_ms = (unsigned)s->timeout_ms;
	if (answer)
		*answer = NULL;
	if ((r = open_chan(s, s->timeout_ms, &c, err, errlen)))
		return r;
	if ((r = add_chan(s, c))) {
		chan_free(c);
		snprintf(err, errlen, "cancelled");
		return r;
	}
	identity(c, s->peer_id, sizeof s->peer_id);
	if ((r = hello(c, h, s->timeout_ms, &reply, err, errlen)))
		return shut(s) ? -ECANCELED : r;
	/* The codecs both sides agreed to (none if the answer names none). */
	wire_caps_parse(json_object_get(reply, "caps"), &caps);
	s->caps = caps & h->caps;
	json_unpack(reply, "{s?I, s?s}", "channels", &n, "token", &token);
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
static void refuse_chan(struct chan *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse_chan(struct chan *c, const char *fmt, ...)
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
	refuse_chan(s->ch[0], "%s", msg);
}

/* Whether the peer of c may open sessions here (allow-from); if not, why. */
static bool allowed(const struct session_conf *sc, const struct chan *c, char *why, size_t len)
{
	const char *s = sc->allow_from;
	enum certs_role role = chan_tls_peer_role(c);

	/* A manager's or monitor's certificate is for the remote API only. */
	if (role != CERTS_ROLE_HOST) {
		snprintf(why, len, "%s presented a %s certificate, not a host's: it may not "
			 "send guests to %s", c->peer, certs_role_name(role), sc->host);
		return false;
	}
	if (!sc->link.tls || !s || strcmp(s, "*") == 0)
		return true;
	while (*s) {
		size_t n = strcspn(s, ", ");
		char name[256];

		if (n && n < sizeof name) {
			memcpy(name, s, n);
			name[n] = '\0';
			if (chan_tls_peer_is(c, name))
				return true;
		}
		s += n;
		s += strspn(s, ", ");
	}
	snprintf(why, len, "%s is not allowed to send guests to %s (allow-from: %s)", c->peer,
		 sc->host, sc->allow_from);
	return false;
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
		refuse_chan(c, "%s", why);
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

bool session_admit(void)
{
	bool ok;

	pthread_mutex_lock(&reg.lock);
	ok = reg.greeting < MAX_GREETING;
	if (ok)
		reg.greeting++;
	pthread_mutex_unlock(&reg.lock);
	if (!ok)
		log_warn("incoming: refused a connection: %d others have not said HELLO yet",
			 MAX_GREETING);
	return ok;
}

/* The connection has said its HELLO (or failed to). */
static void greeted(void)
{
	pthread_mutex_lock(&reg.lock);
	reg.greeting--;
	pthread_mutex_unlock(&reg.lock);
}

void session_admit_undo(void)
{
	greeted();
}

/* A plaintext ferry peer at a TLS-only host: say why in its own terms. */
static void refuse_plaintext(const struct session_conf *sc, int fd, const char *why)
{
	struct chan *c;

	log_warn("incoming: refused: %s", why);
	if (chan_tcp_new(fd, &c)) {
		close(fd);
		return;
	}
	chan_set_timeout(c, 1000);
	refuse_chan(c, "%s accepts only TLS connections; this host connected in plaintext "
		    "(insecure-plaintext is set on one side only)", sc->host);
	chan_close_send(c);
	chan_drain(c, 1000);
	chan_free(c);
}

/* A new session for an opening HELLO h on channel c (taken over). */
static struct session *opened(const struct session_conf *sc, struct chan *c,
			      const struct wire_hello *h)
{
	unsigned char rnd[WIRE_TOKEN_LEN / 2];
	struct session *s = alloc(sc, false);

	if (!s || getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
		refuse_chan(c, "out of resources");
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
	s->caps = h->caps & sc->caps;
	/* The opener gives up after its own timeout: heartbeat for the smaller
	 * of the two. */
	if (h->peer_timeout_ms)
		s->timeout_ms = MIN(sc->peer_timeout_ms, (int)h->peer_timeout_ms);
	return s;
}

void session_serve(const struct session_conf *sc, int fd, const struct session_handlers *hd)
{
	bool greeting = true;
	struct chan *c = NULL;
	struct wire_hello h;
	struct session *s;
	json_t *o = NULL;
	uint32_t version;
	char err[600];
	/* A stranger's connection gets the handshake's deadline, not the one
	 * that protects migrations under way. */
	int hs = sc->handshake_timeout_ms > 0 ? sc->handshake_timeout_ms : sc->peer_timeout_ms;
	struct link_conf lc = sc->link;
	int r;

	lc.timeout_ms = hs;
	if ((r = link_accept(&lc, fd, &c, err, sizeof err))) {
		if (r == -EPROTONOSUPPORT && sc->link.tls) {
			refuse_plaintext(sc, fd, err);
		} else {
			log_warn("incoming: refused: %s", err);
			close(fd);
		}
		goto out;
	}
	r = wire_recv_frame(c, hs, &version, &o, err, sizeof err);
	greeted();
	greeting = false;
	if (r) {
		log_warn("incoming from %s: no HELLO within the handshake's %d ms: %s", c->peer,
			 hs, err);
		goto out;
	}
	chan_set_timeout(c, sc->link.timeout_ms);
	if (version != WIRE_PROTO_VERSION) {
		refuse_chan(c, "migration protocol version %u is not supported: this host speaks "
			    "version %d", version, WIRE_PROTO_VERSION);
		goto out;
	}
	if (!allowed(sc, c, err, sizeof err)) {
		refuse_chan(c, "%s", err);
		goto out;
	}
	if (wire_hello_parse(o, &h, err, sizeof err)) {
		refuse_chan(c, "%s", err);
		goto out;
	}
	switch (h.op) {
	case WIRE_OP_RESOLVE: {
		const char *state = hd->resolve(hd->ctx, h.job);
		json_t *a;

		log_info("job %s: %s asks what became of it: %s", h.job, h.from, state);
		if ((a = json_pack("{s:b, s:s}", "ok", 1, "state", state))) {
			wire_send_frame(c, a);
			json_decref(a);
		}
		break;
	}
	case WIRE_OP_CHANNEL:
		if (join(c, &h))
			c = NULL; /* the session's now */
		break;
	default:
		if ((s = opened(sc, c, &h))) {
			c = NULL; /* the session's now */
			hd->open(hd->ctx, s, &h);
		}
		break;
	}
out:
	if (greeting)
		greeted();
	json_decref(o);
	chan_free(c);
}
