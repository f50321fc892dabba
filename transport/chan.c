/* SPDX-License-Identifier: Apache-2.0 */
/* chan.c — what every channel kind shares, and the socket helpers (sock.h). */
#include "transport/chan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "transport/sock.h"

/* TCP's view of c's connection into *ti; false if it has none. */
static bool tcp_info_of(const struct chan *c, struct tcp_info *ti)
{
	socklen_t len = sizeof *ti;

	return c->fd >= 0 && getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0;
}

uint64_t chan_rtt_ns(const struct chan *c)
{
	struct tcp_info ti;

	return tcp_info_of(c, &ti) ? (uint64_t)ti.tcpi_rtt * 1000 : 0;
}

double chan_loss(const struct chan *c)
{
	uint64_t sent = __atomic_load_n(&c->sent, __ATOMIC_RELAXED);
	struct tcp_info ti;

	if (!sent || !tcp_info_of(c, &ti))
		return 0;
	return (double)ti.tcpi_total_retrans * ti.tcpi_snd_mss / (double)sent;
}

void chan_set_timeout(struct chan *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void chan_free(struct chan *c)
{
	if (c)
		c->ops->free(c);
}

const char *chan_error(const struct chan *c, int r)
{
	return c && c->err[0] ? c->err : strerror(r < 0 ? -r : r);
}

void chan_drain(struct chan *c, int timeout_ms)
{
	c->ops->drain(c, timeout_ms);
}

int chan_init(struct chan *c, const struct chan_ops *ops)
{
	/* Engines call every op on every kind: a kind that lacks one is a
	 * build mistake, refused here rather than a NULL call later. */
	if (!ops->kind || !ops->send || !ops->recv || !ops->recv_some || !ops->wait_in ||
	    !ops->drain || !ops->close_send || !ops->shutdown || !ops->free)
		return -ENOSYS;
	c->ops = ops;
	return 0;
}

void chan_drain_some(struct chan *c, int timeout_ms)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char buf[16384];

	for (uint64_t now = mono_ns(); now < end; now = mono_ns()) {
		int ms = (int)((end - now) / NSEC_PER_MSEC) + 1;

		if (chan_wait_in(c, -1, ms) != 1 || c->ops->recv_some(c, buf, sizeof buf, ms) <= 0)
			break;
	}
}

/* ---- socket helpers shared by the kinds (sock.h) ---- */

uint64_t sock_deadline(const struct chan *c, int timeout_ms)
{
	int ms = timeout_ms == CHAN_WAIT_DEFAULT ? c->timeout_ms : timeout_ms;

	if (timeout_ms == 0)
		return 0; /* do not wait */
	return ms > 0 ? mono_ns() + (uint64_t)ms * NSEC_PER_MSEC : UINT64_MAX;
}

int sock_wait(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = mono_ns();
		int ms, r;

		if (deadline == 0 || now >= deadline)
			return -ETIMEDOUT;
		ms = deadline == UINT64_MAX ? -1
		     : (int)MIN((deadline - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC, (uint64_t)INT_MAX);
		r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r > 0)
			return 0; /* ready, or an error the next call reports */
	}
}

int sock_wait_in(int fd, bool pending, int wake_fd, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
	int r;

	if (pending)
		return 1;
	do
		r = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms > 0 ? timeout_ms : -1);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	return p[0].revents ? 1 : 2;
}


void sock_drain(int fd, int timeout_ms)
{
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char buf[16384];

	for (uint64_t now = mono_ns(); now < end; now = mono_ns()) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = (int)((end - now) / NSEC_PER_MSEC) + 1;
		ssize_t n;

		if (poll(&p, 1, ms) <= 0)
			break;
		n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
	}
}

int sock_prepare(int fd)
{
	int one = 1;

	/* Waits are poll()s with deadlines, so that a call can give its own. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on non-TCP: fine */
	return 0;
}
