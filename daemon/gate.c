/* SPDX-License-Identifier: Apache-2.0 */
/* gate.c — admission at the migration port; see gate.h. */
#include "daemon/gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/peers.h"
#include "session/greet.h"

#define SOURCES 1024          /* addresses remembered */
#define STRIKES 5             /* failures within STRIKE_WINDOW that penalise */
#define STRIKE_WINDOW_NS (60 * NSEC_PER_SEC)
#define PENALTY_MAX_SHIFT 4   /* the penalty doubles up to 16 times its base */
#define LOG_EVERY_NS (10 * NSEC_PER_SEC)
#define POOL_FORGET_NS (86400 * NSEC_PER_SEC) /* a learned pool host, unseen */

struct source {
	struct in6_addr addr;     /* IPv4 as ::ffff:a.b.c.d */
	bool used;
	bool pool;                /* said a checked HELLO here */
	unsigned pending;         /* connections before their HELLO now */
	unsigned strikes;         /* failures since window */
	uint64_t window;          /* start of the strike window */
	unsigned level;           /* penalties so far (the next one's shift) */
	uint64_t penalty_until;   /* mono ns; 0: not penalised */
	uint64_t seen;            /* last connection, mono ns */
	uint64_t logged;          /* last line about it, mono ns */
	unsigned quiet[8];        /* failures not logged since, by fault; [0]: refusals */
};

struct conn {
	struct conn *prev, *next;
	struct source *src;
	struct greet *g;
	struct event *ev;
	int fd;
	bool pool;                /* counted in pending_pool */
	uint64_t deadline;
};

/* Refused connections held a while before they are told and closed, so
 * that a source that re-opens each one as soon as it is closed does not
 * make us accept and close thousands a second. Bounded: when it is full,
 * refusals close at once. */
#define TARPIT 1024
#define TARPIT_NS (2 * NSEC_PER_SEC)

struct held {
	int fd;
	bool retry;
	uint64_t until;
	const char *why;          /* a constant */
};

static struct {
	pthread_mutex_t lock;     /* the counters (read by gate_json) */
	struct held pit[TARPIT];  /* a ring, oldest first */
	unsigned pit_head, pit_n;
	struct event *pit_timer;
	struct source src[SOURCES];
	struct conn *conns;       /* waiting for their HELLO */
	unsigned pending;
	unsigned pending_pool;    /* of which from pool hosts */
	uint64_t accepted, served, penalties;
	uint64_t refused_busy, refused_source, refused_early, refused_penalised;
	uint64_t failed[8];       /* by enum greet_fault; [GREET_OK]: deadline passed */
} G = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void addr_text(const struct in6_addr *a, char *buf, size_t len)
{
	if (IN6_IS_ADDR_V4MAPPED(a))
		inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, a, buf, (socklen_t)len);
}

static bool addr_of(const struct sockaddr *sa, int salen, struct in6_addr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in)) {
		out->s6_addr[10] = out->s6_addr[11] = 0xff;
		memcpy(&out->s6_addr[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6)) {
		*out = ((const struct sockaddr_in6 *)sa)->sin6_addr;
		return true;
	}
	return false;
}

/* Whether a is one of the addresses in the pool-addresses setting. */
static bool configured(const struct in6_addr *a)
{
	char text[INET6_ADDRSTRLEN];
	const char *s = D.pool_addresses;

	addr_text(a, text, sizeof text);
	while (*s) {
		size_t n = strcspn(s, ", ");

		if (n == strlen(text) && strncmp(s, text, n) == 0)
			return true;
		s += n;
		s += strspn(s, ", ");
	}
	return false;
}

/* A source worth forgetting to make room: nothing pending, not penalised,
 * not a pool host seen within a day; the one seen longest ago. */
static struct source *evictable(uint64_t now)
{
	struct source *best = NULL;

	for (unsigned i = 0; i < SOURCES; i++) {
		struct source *s = &G.src[i];

		if (!s->used)
			return s;
		if (s->pending || s->penalty_until > now ||
		    (s->pool && now - s->seen < POOL_FORGET_NS))
			continue;
		if (!best || s->seen < best->seen)
			best = s;
	}
	return best;
}

/* The source entry for a, made if need be; NULL when the table is full of
 * sources that may not be forgotten. */
static struct source *source(const struct in6_addr *a, uint64_t now)
{
	struct source *s;

	for (unsigned i = 0; i < SOURCES; i++)
		if (G.src[i].used && memcmp(&G.src[i].addr, a, sizeof *a) == 0)
			return &G.src[i];
	if (!(s = evictable(now)))
		return NULL;
	pthread_mutex_lock(&G.lock); /* gate_json reads used and penalty_until */
	memset(s, 0, sizeof *s);
	s->used = true;
	s->addr = *a;
	pthread_mutex_unlock(&G.lock);
	return s;
}

static bool is_pool(const struct source *s)
{
	return s->pool || configured(&s->addr);
}

/* A line about s, at most one per LOG_EVERY_NS; what is not said is
 * counted in quiet and said with the next line. */
static void say(struct source *s, unsigned kind, uint64_t now, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void say(struct source *s, unsigned kind, uint64_t now, const char *fmt, ...)
{
	static const char *const what[] = { "refused", "closed early", "failed handshakes",
					    "not the protocol", "mismatched", "refused HELLOs",
					    "out of memory", "idle" };
	char line[600], more[300] = "";
	size_t off = 0;
	va_list ap;

	if (s->logged && now - s->logged < LOG_EVERY_NS) {
		s->quiet[kind]++;
		return;
	}
	for (unsigned k = 0; k < ARRAY_SIZE(s->quiet); k++)
		if (s->quiet[k] && off < sizeof more)
			off += (size_t)snprintf(more + off, sizeof more - off, "%s%u %s",
						off ? ", " : "", s->quiet[k], what[k]);
	memset(s->quiet, 0, sizeof s->quiet);
	s->logged = now;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (more[0])
		log_warn("%s (since the last line about it: %s)", line, more);
	else
		log_warn("%s", line);
}

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		G.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_lock(&G.lock);
	G.pending--;
	G.pending_pool -= c->pool;
	c->src->pending--;
	pthread_mutex_unlock(&G.lock);
	if (c->ev)
		event_free(c->ev);
	if (c->g)
		greet_free(c->g);
	else if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Penalise s (a stranger that failed STRIKES times): refuse what it sends
 * from now on, and close what it has waiting. */
static void penalise(struct source *s, uint64_t now)
{
	uint64_t base = (uint64_t)D.source_penalty_s * NSEC_PER_SEC;
	char text[INET6_ADDRSTRLEN];
	unsigned closed = 0;

	pthread_mutex_lock(&G.lock);
	s->penalty_until = now + (base << MIN(s->level, PENALTY_MAX_SHIFT));
	pthread_mutex_unlock(&G.lock);
	addr_text(&s->addr, text, sizeof text);
	for (struct conn *c = G.conns, *next; c; c = next) {
		next = c->next;
		if (c->src == s) {
			conn_free(c);
			closed++;
		}
	}
	log_warn("incoming: %s penalised for %llu s: %u failed connections within a minute "
		 "(penalty %u); %u waiting closed", text,
		 (unsigned long long)((s->penalty_until - now) / NSEC_PER_SEC), s->strikes,
		 s->level + 1, closed);
	s->level++;
	s->strikes = 0;
	s->logged = now;
	pthread_mutex_lock(&G.lock);
	G.penalties++;
	pthread_mutex_unlock(&G.lock);
}

/* What a line about a source counts (say's quiet[]): a refusal at the
 * gate, a greeting's fault (enum greet_fault), or silence. */
#define K_GATE 0
#define K_IDLE 7

/* A connection from s went wrong (kind: K_GATE, a greet fault, K_IDLE).
 * Whether s was penalised for it (which closed its connections). */
static bool strike(struct source *s, unsigned kind, const char *why)
{
	uint64_t now = mono_ns();

	if (kind != GREET_REFUSED) /* session_refuse_chan said it */
		say(s, kind, now, "incoming: %s", why);
	/* A pool host that is told no for a reason (version, allow-from)
	 * is misconfigured, not hostile; pool hosts are never penalised. */
	if (kind == GREET_REFUSED || kind == GREET_NOMEM || is_pool(s) || !D.source_penalty_s)
		return false;
	if (now - s->window > STRIKE_WINDOW_NS) {
		s->window = now;
		s->strikes = 0;
	}
	if (++s->strikes < STRIKES)
		return false;
	penalise(s, now);
	return true;
}

/* A greeting failed with fault f (GREET_OK: its deadline passed). */
static bool failed(struct source *s, enum greet_fault f, const char *why)
{
	pthread_mutex_lock(&G.lock);
	G.failed[f]++;
	pthread_mutex_unlock(&G.lock);
	return strike(s, f == GREET_OK ? K_IDLE : (unsigned)f, why);
}

static void *serve_main(void *p)
{
	peers_serve(p);
	thread_done();
	return NULL;
}

static void step(evutil_socket_t fd, short what, void *arg);

/* Wait for events, or the deadline. */
static void rearm(struct conn *c, short events)
{
	uint64_t now = mono_ns(), left = c->deadline > now ? c->deadline - now : 0;
	struct timeval tv = { (time_t)(left / NSEC_PER_SEC),
			      (suseconds_t)(left % NSEC_PER_SEC / 1000) };

	event_del(c->ev);
	event_assign(c->ev, D.base, c->fd, (events & POLLOUT ? EV_WRITE : 0) |
		     (events & POLLIN ? EV_READ : 0), step, c);
	if (event_add(c->ev, &tv)) {
		log_error("incoming: out of memory for a connection's event");
		conn_free(c);
	}
}

static void step(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct source *s = c->src;
	enum greet_state st;
	short events = 0;

	(void)fd;
	if (what & EV_TIMEOUT) {
		char why[120], text[INET6_ADDRSTRLEN];

		addr_text(&s->addr, text, sizeof text);
		snprintf(why, sizeof why, "%s said no HELLO within the handshake's %d ms", text,
			 D.handshake_timeout_ms);
		if (!failed(s, GREET_OK, why))
			conn_free(c); /* penalise() has freed it otherwise */
		return;
	}
	st = greet_step(c->g, &events);
	if (st == GREET_WAIT) {
		rearm(c, events);
		return;
	}
	if (st == GREET_FAILED) {
		if (!failed(s, greet_fault(c->g), greet_error(c->g)))
			conn_free(c); /* penalise() has freed it otherwise */
		return;
	}
	/* A checked HELLO: from now on this address is a pool host's, and
	 * the connection gets its thread. */
	s->pool = greet_trusted(c->g);
	s->strikes = 0;
	pthread_mutex_lock(&G.lock);
	G.served++;
	pthread_mutex_unlock(&G.lock);
	{
		struct greet *g = c->g;

		c->g = NULL;
		c->fd = -1;
		conn_free(c);
		if (spawn_thread(serve_main, g)) {
			log_error("incoming: cannot start a thread");
			greet_free(g);
		}
	}
}

/* Tell and close the held connections whose time has come. */
static void pit_release(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = mono_ns();

	(void)fd, (void)what, (void)arg;
	while (G.pit_n && (G.pit[G.pit_head].until <= now || arg)) {
		struct held *h = &G.pit[G.pit_head];

		greet_refuse_fd(h->fd, h->why, h->retry);
		close(h->fd);
		G.pit_head = (G.pit_head + 1) % TARPIT;
		G.pit_n--;
	}
	if (G.pit_n && !arg) {
		uint64_t left = G.pit[G.pit_head].until - now;
		struct timeval tv = { (time_t)(left / NSEC_PER_SEC),
				      (suseconds_t)(left % NSEC_PER_SEC / 1000) };

		evtimer_add(G.pit_timer, &tv);
	}
}

/* Hold fd in the tarpit; false if it is full (or cannot time). */
static bool pit_hold(int fd, const char *why, bool retry, uint64_t now)
{
	struct timeval tv = { (time_t)(TARPIT_NS / NSEC_PER_SEC), 0 };

	if (G.pit_n == TARPIT)
		return false;
	if (!G.pit_timer && !(G.pit_timer = evtimer_new(D.base, pit_release, NULL)))
		return false;
	G.pit[(G.pit_head + G.pit_n) % TARPIT] = (struct held){ fd, retry, now + TARPIT_NS, why };
	if (!G.pit_n++)
		evtimer_add(G.pit_timer, &tv);
	return true;
}

/* Refuse fd after a while in the tarpit (at once if it is full), counting
 * it in *counter; why is a constant. */
static void refuse_later(int fd, uint64_t *counter, const char *why, bool retry, uint64_t now)
{
	pthread_mutex_lock(&G.lock);
	(*counter)++;
	pthread_mutex_unlock(&G.lock);
	if (!pit_hold(fd, why, retry, now)) {
		greet_refuse_fd(fd, why, retry);
		close(fd);
	}
}

/* Refuse fd from s (why, retry: load), counting it in *counter. */
static void refuse(int fd, struct source *s, uint64_t *counter, const char *why, bool retry,
		   uint64_t now)
{
	char text[INET6_ADDRSTRLEN];

	greet_refuse_fd(fd, why, retry);
	close(fd);
	pthread_mutex_lock(&G.lock);
	(*counter)++;
	pthread_mutex_unlock(&G.lock);
	if (s) {
		addr_text(&s->addr, text, sizeof text);
		say(s, 0, now, "incoming: refused a connection from %s: %s", text, why);
	}
}

/* Whether a stranger's connection is dropped early: never below half of
 * max-pending, always from three quarters on, by a chance that grows in
 * between. */
static bool drop_early(unsigned pending)
{
	unsigned start = D.max_pending / 2, full = D.max_pending - D.max_pending / 4;
	uint32_t r;

	if (pending < start)
		return false;
	if (pending >= full || full <= start)
		return true;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
		r = (uint32_t)mono_ns();
	return r % (full - start) < pending - start;
}

void gate_accept(int fd, const struct sockaddr *sa, int salen)
{
	uint64_t now = mono_ns();
	struct in6_addr a;
	struct source *s;
	struct conn *c;
	bool pool;
	char why[200];

	pthread_mutex_lock(&G.lock);
	G.accepted++;
	pthread_mutex_unlock(&G.lock);
	if (!addr_of(sa, salen, &a) || !(s = source(&a, now))) {
		refuse(fd, NULL, &G.refused_busy, "too many sources are waiting", true, now);
		return;
	}
	s->seen = now;
	pool = is_pool(s);
	if (s->penalty_until > now) {
		static const char why_p[] = "this address is penalised for failed connections; "
					    "try again later";

		refuse_later(fd, &G.refused_penalised, why_p, false, now);
		s->quiet[0]++; /* said with the next line about it */
		return;
	}
	if (s->pending >= D.max_pending_per_source) {
		static const char why_s[] = "too many pending connections from this address";
		char text[INET6_ADDRSTRLEN];

		refuse_later(fd, &G.refused_source, why_s, true, now);
		addr_text(&s->addr, text, sizeof text);
		snprintf(why, sizeof why, "%s has %u connections waiting for their HELLO, the most "
			 "one address may have", text, s->pending);
		strike(s, K_GATE, why);
		return;
	}
	if (G.pending >= D.max_pending) {
		snprintf(why, sizeof why, "too many pending connections (%u)", G.pending);
		refuse(fd, s, &G.refused_busy, why, true, now);
		return;
	}
	if (!pool && drop_early(G.pending - G.pending_pool)) {
		snprintf(why, sizeof why, "too many pending connections (%u)", G.pending);
		refuse(fd, s, &G.refused_early, why, true, now);
		return;
	}
	if (!(c = calloc(1, sizeof *c)) || !(c->ev = event_new(D.base, fd, EV_READ, step, c)) ||
	    !(c->g = greet_new(&D.peers, fd))) {
		if (c && c->ev)
			event_free(c->ev);
		free(c);
		refuse(fd, s, &G.refused_busy, "out of memory", true, now);
		return;
	}
	c->fd = fd;
	c->src = s;
	c->pool = pool;
	c->deadline = now + (uint64_t)D.handshake_timeout_ms * NSEC_PER_MSEC;
	c->next = G.conns;
	if (G.conns)
		G.conns->prev = c;
	G.conns = c;
	pthread_mutex_lock(&G.lock);
	G.pending++;
	G.pending_pool += pool;
	s->pending++;
	pthread_mutex_unlock(&G.lock);
	step(fd, 0, c);
}

void gate_stop(void)
{
	while (G.conns)
		conn_free(G.conns);
	pit_release(-1, 0, (void *)1); /* all of them, now */
	if (G.pit_timer)
		event_free(G.pit_timer);
	G.pit_timer = NULL;
}

json_t *gate_json(void)
{
	uint64_t now = mono_ns();
	json_int_t penalised = 0;
	json_t *o;

	pthread_mutex_lock(&G.lock);
	for (unsigned i = 0; i < SOURCES; i++)
		penalised += G.src[i].used && G.src[i].penalty_until > now;
	o = json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}, "
		      "s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I}",
		      "pending", (json_int_t)G.pending, "penalised", penalised,
		      "accepted", (json_int_t)G.accepted, "served", (json_int_t)G.served,
		      "refused", "busy", (json_int_t)G.refused_busy,
		      "source", (json_int_t)G.refused_source,
		      "early", (json_int_t)G.refused_early,
		      "penalised", (json_int_t)G.refused_penalised,
		      "failed", "handshake", (json_int_t)G.failed[GREET_HANDSHAKE],
		      "garbage", (json_int_t)G.failed[GREET_GARBAGE],
		      "mismatch", (json_int_t)G.failed[GREET_MISMATCH],
		      "timeout", (json_int_t)G.failed[GREET_OK],
		      "closed", (json_int_t)G.failed[GREET_CLOSED],
		      "refused", (json_int_t)G.failed[GREET_REFUSED],
		      "penalties", (json_int_t)G.penalties);
	pthread_mutex_unlock(&G.lock);
	return o;
}
