/* SPDX-License-Identifier: Apache-2.0 */
/* greet.c — an incoming connection until its checked HELLO; see greet.h. */
#include "session/greet.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "transport/tcp.h"
#include "transport/tls.h"

enum step { FIRST, HANDSHAKE, FRAME, SERVE, OVER };

struct greet {
	const struct session_conf *sc;
	int fd;              /* until c has it */
	struct chan *c;
	enum step st;
	enum greet_fault fault;
	bool trusted;
	unsigned char *buf;  /* the HELLO frame so far */
	size_t len;
	struct wire_hello h;
	char addr[64];
	char err[600];
};

const char *greet_fault_name(enum greet_fault f)
{
	static const char *const names[] = { "ok", "closed", "handshake", "garbage", "mismatch",
					     "refused", "nomem" };

	return (unsigned)f < ARRAY_SIZE(names) ? names[f] : "?";
}

struct greet *greet_new(const struct session_conf *sc, int fd)
{
	struct greet *g = calloc(1, sizeof *g);

	if (!g)
		return NULL;
	g->sc = sc;
	g->fd = fd;
	sock_peer_name(fd, g->addr, sizeof g->addr);
	return g;
}

void greet_free(struct greet *g)
{
	if (!g)
		return;
	if (g->c)
		chan_free(g->c);
	else if (g->fd >= 0)
		close(g->fd);
	free(g->buf);
	free(g);
}

enum greet_fault greet_fault(const struct greet *g)
{
	return g->fault;
}

const char *greet_error(const struct greet *g)
{
	return g->err;
}

bool greet_trusted(const struct greet *g)
{
	return g->trusted;
}

/* Drop what the peer has sent so far, so that closing sends FIN, not a
 * reset that could overtake the refusal. */
static void drop_input(int fd)
{
	char b[4096];

	for (int i = 0; i < 16 && recv(fd, b, sizeof b, MSG_DONTWAIT) > 0; i++)
		;
}

void greet_refuse_fd(int fd, const char *why, bool retry)
{
	char frame[sizeof(struct wire_frame_hdr) + 700];
	size_t n = wire_frame_encode_refusal(frame, sizeof frame, why, retry);

	drop_input(fd);
	/* Best effort: the peer may be gone, or its window full. */
	if (n && send(fd, frame, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		n = 0;
	shutdown(fd, SHUT_WR);
}

static enum greet_state fail(struct greet *g, enum greet_fault f)
{
	g->fault = f;
	g->st = OVER;
	return GREET_FAILED;
}

/* Whether the peer of c may open sessions here (allow-from, role); if not,
 * why. */
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

/* The first byte: TLS or plaintext, as this host runs. */
static enum greet_state first(struct greet *g, short *events)
{
	unsigned char b;
	ssize_t n = recv(g->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	int r;

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		*events = POLLIN;
		return GREET_WAIT;
	}
	if (n <= 0) {
		snprintf(g->err, sizeof g->err, "%s closed the connection before saying anything",
			 g->addr);
		return fail(g, GREET_CLOSED);
	}
	r = link_accept_begin(&g->sc->link, g->fd, b, &g->c, g->err, sizeof g->err);
	if (r == -EPROTONOSUPPORT) {
		bool garbage = g->sc->link.tls && b != 'F'; /* not even a ferry frame */
		char why[400];

		if (garbage)
			snprintf(why, sizeof why, "%s: this is a ferry migration port, TLS only",
				 g->sc->host);
		else if (g->sc->link.tls)
			snprintf(why, sizeof why, "%s accepts only TLS connections; the source "
				 "connected in plaintext (insecure-plaintext is set on one side only)",
				 g->sc->host);
		else
			snprintf(why, sizeof why, "%s runs with insecure-plaintext and accepts no TLS "
				 "connections (insecure-plaintext is set on one side only)",
				 g->sc->host);
		greet_refuse_fd(g->fd, why, false);
		return fail(g, garbage ? GREET_GARBAGE : GREET_MISMATCH);
	}
	if (r) {
		g->c = NULL;
		return fail(g, r == -ENOMEM ? GREET_NOMEM : GREET_CLOSED);
	}
	g->fd = -1; /* c's now */
	g->st = HANDSHAKE;
	return GREET_WAIT;
}

/* The HELLO is whole: check what can be checked without a thread. */
static enum greet_state check(struct greet *g, uint32_t version, const void *body, size_t len)
{
	struct chan *c = g->c;
	json_t *o;

	if (wire_frame_body(body, len, &o, g->err, sizeof g->err))
		return fail(g, GREET_GARBAGE);
	if (version != WIRE_PROTO_VERSION)
		snprintf(g->err, sizeof g->err, "migration protocol version %u is not supported: "
			 "this host speaks version %d", version, WIRE_PROTO_VERSION);
	else if (allowed(g->sc, c, g->err, sizeof g->err) &&
		 !wire_hello_parse(o, &g->h, g->err, sizeof g->err))
		g->err[0] = '\0';
	json_decref(o);
	if (g->err[0]) {
		chan_set_timeout(c, 100); /* an empty socket buffer takes it at once */
		session_refuse_chan(c, "%s", g->err);
		return fail(g, GREET_REFUSED);
	}
	g->trusted = true;
	g->st = SERVE;
	return GREET_DONE;
}

/* Read the HELLO frame: its header, then exactly its body. */
static enum greet_state frame(struct greet *g, short *events)
{
	const size_t hl = sizeof(struct wire_frame_hdr);
	uint32_t version = 0, blen = 0;

	if (!g->buf && !(g->buf = malloc(hl)))
		return fail(g, GREET_NOMEM);
	for (;;) {
		size_t want = hl + blen;
		ssize_t n;

		if (g->len >= hl) {
			if (wire_frame_parse_hdr((const void *)g->buf, &version, &blen)) {
				snprintf(g->err, sizeof g->err, "%s does not speak the ferry "
					 "migration protocol", g->c->peer);
				return fail(g, GREET_GARBAGE);
			}
			want = hl + blen;
			if (g->len == want)
				return check(g, version, g->buf + hl, blen);
			if (g->len == hl) {
				unsigned char *b = realloc(g->buf, want);

				if (!b)
					return fail(g, GREET_NOMEM);
				g->buf = b;
			}
		}
		n = chan_recv_some(g->c, g->buf + g->len, want - g->len, 0);
		if (n == -ETIMEDOUT) {
			*events = POLLIN;
			return GREET_WAIT;
		}
		if (n <= 0) {
			snprintf(g->err, sizeof g->err, "%s %s before its HELLO", g->c->peer,
				 n == 0 ? "closed the connection" : "failed");
			return fail(g, GREET_CLOSED);
		}
		g->len += (size_t)n;
	}
}

enum greet_state greet_step(struct greet *g, short *events)
{
	int r;

	switch (g->st) {
	case FIRST:
		if (first(g, events) != GREET_WAIT || g->st == FIRST)
			return g->st == OVER ? GREET_FAILED : GREET_WAIT;
		/* fall through */
	case HANDSHAKE:
		r = link_accept_step(g->c, events, g->err, sizeof g->err);
		if (r == -EAGAIN)
			return GREET_WAIT;
		if (r)
			return fail(g, r == -ECONNRESET ? GREET_CLOSED : GREET_HANDSHAKE);
		g->st = FRAME;
		/* fall through */
	case FRAME:
		return frame(g, events);
	case SERVE:
		return GREET_DONE;
	case OVER:
		break;
	}
	return GREET_FAILED;
}

void greet_serve(struct greet *g, const struct session_handlers *hd)
{
	struct chan *c = g->c;

	g->c = NULL;
	chan_set_timeout(c, g->sc->link.timeout_ms);
	session_serve_hello(g->sc, c, &g->h, hd);
	greet_free(g);
}
