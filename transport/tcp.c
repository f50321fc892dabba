/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcp.c — plain TCP channels (chan.h): the socket as it is, non-blocking,
 * every wait a poll() to a deadline; and connecting to "HOST[:PORT]".
 */
#include "transport/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "transport/sock.h"

static int tcp_send(struct chan *c, const struct iovec *iov_in, int n, int timeout_ms)
{
	struct iovec iov[CHAN_IOV_MAX];
	uint64_t deadline = UINT64_MAX;
	bool waited = false;

	if (n > CHAN_IOV_MAX)
		return -EINVAL;
	memcpy(iov, iov_in, sizeof *iov * (size_t)n);
	for (int i = 0; i < n;) {
		struct msghdr mh = { .msg_iov = iov + i, .msg_iovlen = (size_t)MIN(n - i, IOV_MAX) };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		int r;

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (!waited) {
				deadline = sock_deadline(c, timeout_ms);
				waited = true;
			}
			if ((r = sock_wait(c->fd, POLLOUT, deadline)))
				return r;
			continue;
		}
		if (w < 0)
			return errno == ECONNRESET || errno == ENOTCONN ? -EPIPE : -errno;
		iov_advance(iov, n, &i, (size_t)w);
	}
	return 0;
}

static int tcp_recv(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = UINT64_MAX;
	bool waited = false;
	size_t got = 0;

	while (got < len) {
		ssize_t r = recv(c->fd, (char *)buf + got, len - got, 0);
		int e;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (!waited) {
				deadline = sock_deadline(c, timeout_ms);
				waited = true;
			}
			if ((e = sock_wait(c->fd, POLLIN, deadline)))
				return e;
			continue;
		}
		if (r < 0)
			return errno == ENOTCONN ? -ECONNRESET : -errno;
		if (r == 0)
			return got ? -ECONNRESET : -ENODATA;
		got += (size_t)r;
	}
	return 0;
}

static ssize_t tcp_recv_some(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = sock_deadline(c, timeout_ms);

	for (;;) {
		ssize_t r = recv(c->fd, buf, len, 0);
		int e;

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if ((e = sock_wait(c->fd, POLLIN, deadline)))
			return e;
	}
}

static int tcp_wait_in(struct chan *c, int wake_fd, int timeout_ms)
{
	return sock_wait_in(c->fd, false, wake_fd, timeout_ms);
}

static void tcp_drain(struct chan *c, int timeout_ms)
{
	sock_drain(c->fd, timeout_ms);
}

static void tcp_close_send(struct chan *c)
{
	shutdown(c->fd, SHUT_WR);
}

static void tcp_shutdown(struct chan *c)
{
	shutdown(c->fd, SHUT_RDWR);
}

static void tcp_free(struct chan *c)
{
	close(c->fd);
	free(c);
}

static const struct chan_ops tcp_ops = {
	.kind = "tcp",
	.send = tcp_send,
	.recv = tcp_recv,
	.recv_some = tcp_recv_some,
	.wait_in = tcp_wait_in,
	.drain = tcp_drain,
	.close_send = tcp_close_send,
	.shutdown = tcp_shutdown,
	.free = tcp_free,
};

int chan_tcp_new(int fd, struct chan **out)
{
	struct chan *c = calloc(1, sizeof *c);
	int r;

	if (!c)
		return -ENOMEM;
	if ((r = sock_prepare(fd))) {
		free(c);
		return r;
	}
	if ((r = chan_init(c, &tcp_ops))) {
		free(c);
		return r;
	}
	c->fd = fd;
	sock_peer_name(fd, c->peer, sizeof c->peer);
	*out = c;
	return 0;
}

void sock_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char h[INET6_ADDRSTRLEN] = "?", p[8] = "?";

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
}

int tcp_connect(const char *hostport, unsigned defport, int timeout_ms, int *out, char *host,
		size_t hostlen, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *a;
	char port[16];
	int r, fd = -1;

	if (parse_host_port(hostport, defport, host, hostlen, port, sizeof port)) {
		snprintf(err, errlen, "\"%s\" is not HOST[:PORT]", hostport);
		return -EINVAL;
	}
	if ((r = getaddrinfo(host, port, &hints, &ai))) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	r = -ECONNREFUSED;
	for (a = ai; a; a = a->ai_next) {
		struct pollfd p;
		int e = 0;
		socklen_t el = sizeof e;

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			r = -errno;
			close_fd(&fd);
			continue;
		}
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, timeout_ms) != 1) {
			r = -ETIMEDOUT;
			close_fd(&fd);
			continue;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
		if (e) {
			r = -e;
			close_fd(&fd);
			continue;
		}
		break;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", hostport, strerror(-r));
		return r;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*out = fd;
	return 0;
}
