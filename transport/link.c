/* SPDX-License-Identifier: Apache-2.0 */
/* link.c — TLS or plaintext, as configured; see link.h. */
#include "transport/link.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mtime.h"
#include "transport/sock.h"
#include "transport/tcp.h"

#define TLS_HANDSHAKE_RECORD 0x16

int link_connect(const struct link_conf *lc, const char *hostport, unsigned defport,
		 struct chan **out, char *err, size_t errlen)
{
	char host[256];
	int fd, r;

	if ((r = tcp_connect(hostport, defport, lc->timeout_ms, &fd, host, sizeof host, err,
			     errlen)))
		return r;
	r = lc->tls ? chan_tls_connect(lc->tls, fd, host, lc->timeout_ms, out, err, errlen)
		    : chan_tcp_new(fd, out);
	if (r == -EPROTONOSUPPORT && !chan_tcp_new(fd, out)) {
		/* The peer refused in plaintext: the caller reads why. */
		chan_set_timeout(*out, lc->timeout_ms);
		return r;
	}
	if (r) {
		if (!lc->tls)
			snprintf(err, errlen, "%s", strerror(-r));
		close(fd);
		return r;
	}
	chan_set_timeout(*out, lc->timeout_ms);
	return 0;
}

/* The first byte the peer sends, within timeout_ms: 0 and *b, or -errno. */
static int peek_first(int fd, int timeout_ms, unsigned char *b)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	do
		n = recv(fd, b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ECONNRESET : 0;
}

int link_accept_begin(const struct link_conf *lc, int fd, unsigned char first,
		      struct chan **out, char *err, size_t errlen)
{
	char addr[128];
	int r;

	sock_peer_name(fd, addr, sizeof addr);
	if (lc->tls && first != TLS_HANDSHAKE_RECORD) {
		snprintf(err, errlen, "%s spoke plaintext to this TLS-only host (it runs with "
			 "insecure-plaintext?)", addr);
		return -EPROTONOSUPPORT;
	}
	if (!lc->tls && first == TLS_HANDSHAKE_RECORD) {
		snprintf(err, errlen, "%s started TLS, but this host runs with insecure-plaintext",
			 addr);
		return -EPROTONOSUPPORT;
	}
	r = lc->tls ? chan_tls_accept_begin(lc->tls, fd, out, err, errlen) : chan_tcp_new(fd, out);
	if (r && !lc->tls)
		snprintf(err, errlen, "%s", strerror(-r));
	return r;
}

int link_accept_step(struct chan *c, short *events, char *err, size_t errlen)
{
	return strcmp(chan_kind(c), "tls") == 0 ? chan_tls_accept_step(c, events, err, errlen) : 0;
}

int link_accept(const struct link_conf *lc, int fd, struct chan **out, char *err,
		size_t errlen)
{
	uint64_t deadline = mono_ns() + (uint64_t)(lc->timeout_ms > 0 ? lc->timeout_ms : 15000) *
						NSEC_PER_MSEC;
	struct chan *c;
	unsigned char b;
	char addr[128];
	short ev;
	int r;

	sock_peer_name(fd, addr, sizeof addr);
	if ((r = peek_first(fd, lc->timeout_ms, &b))) {
		snprintf(err, errlen, "%s said nothing: %s", addr,
			 r == -ETIMEDOUT ? "timed out" : strerror(-r));
		return r;
	}
	if ((r = link_accept_begin(lc, fd, b, &c, err, errlen)))
		return r;
	while ((r = link_accept_step(c, &ev, err, errlen)) == -EAGAIN)
		if (sock_wait(fd, ev, deadline)) {
			snprintf(err, errlen, "the TLS handshake with %s timed out", addr);
			r = -ETIMEDOUT;
			break;
		}
	if (r) {
		c->fd = -1; /* fd stays the caller's, as documented */
		chan_free(c);
		return r;
	}
	chan_set_timeout(c, lc->timeout_ms);
	*out = c;
	return 0;
}
