/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chan.h — a channel: one reliable, ordered, full-duplex link to a peer host
 * (DESIGN.md §8). Kinds: tcp (tcp.c), tls (tls.c), rdma (rdma.c), each an
 * ops table in its own file that defines every op. Engines see only this
 * header; no other file includes a transport's library.
 *
 * Sending: chan_send() hands over one framed record as scatter-gather pieces
 * and returns once all of it is on its way, or fails. Receiving: chan_recv()
 * reads exactly len bytes. A record boundary is the sender's business: the
 * stream (checkpoint/) carries its own framing and checks, so a reader may
 * read a record in pieces.
 *
 * Threads: one thread may send while another receives on the same channel;
 * two senders (or two receivers) must serialise themselves. chan_shutdown()
 * may be called from any thread at any time: every blocked or later send
 * and receive fails promptly (-ECONNRESET or -EPIPE).
 *
 * Timeouts: every blocking wait is bounded by the channel's timeout
 * (chan_set_timeout; 0 = none) unless a call gives its own: -ETIMEDOUT.
 *
 * Errors are -errno; chan_error() gives a sentence for the last failure when
 * the kind knows more than errno says (a TLS alert, a certificate problem).
 */
#ifndef FERRY_TRANSPORT_CHAN_H
#define FERRY_TRANSPORT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>


#define CHAN_IOV_MAX 1024
#define CHAN_WAIT_DEFAULT (-1) /* timeout argument: use the channel's */

struct chan;

struct chan_ops {
	const char *kind; /* "tcp", "tls", "rdma" */
	/* All of iov[0..n) (n <= CHAN_IOV_MAX) within timeout_ms (0: do not
	 * wait at all — best effort, e.g. a last word before closing). */
	int (*send)(struct chan *c, const struct iovec *iov, int n, int timeout_ms);
	/* Exactly len bytes: 0; -ENODATA at a clean end before any byte,
	 * -ECONNRESET at an end part-way or a reset, -ETIMEDOUT, -EPROTO. */
	int (*recv)(struct chan *c, void *buf, size_t len, int timeout_ms);
	/* Some bytes, at most len: the count, 0 at the end of data, or -errno.
	 * Within timeout_ms as recv. */
	ssize_t (*recv_some)(struct chan *c, void *buf, size_t len, int timeout_ms);
	/* Wait until a byte can be received (1), wake_fd is readable (2), or
	 * timeout_ms passes (0). wake_fd may be -1. */
	int (*wait_in)(struct chan *c, int wake_fd, int timeout_ms);
	/* Read and drop what arrives until the peer's end of data, a failure,
	 * or timeout_ms: a last word sent before closing then reaches the peer
	 * instead of being lost to a reset. */
	void (*drain)(struct chan *c, int timeout_ms);
	/* Stop sending (a clean end of data for the peer), keep receiving. */
	void (*close_send)(struct chan *c);
	void (*shutdown)(struct chan *c);
	void (*free)(struct chan *c);
};

struct chan {
	const struct chan_ops *ops;
	int fd;           /* the socket (for the kind's own use and logs) */
	int timeout_ms;   /* default bound of every wait; 0 = none */
	char peer[256];   /* the peer: its authenticated name (tls), else its address */
	char err[256];    /* the last failure in words, if the kind knows more */
	/* Counted by chan_send / chan_recv: one sending and one receiving
	 * thread each own theirs. */
	uint64_t sent, received;
};

static inline int chan_send(struct chan *c, const struct iovec *iov, int n, int timeout_ms)
{
	size_t len = 0;
	int r;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (!(r = c->ops->send(c, iov, n, timeout_ms)))
		c->sent += len;
	return r;
}

static inline int chan_recv(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	int r = c->ops->recv(c, buf, len, timeout_ms);

	if (!r)
		c->received += len;
	return r;
}

static inline ssize_t chan_recv_some(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	return c->ops->recv_some(c, buf, len, timeout_ms);
}

static inline int chan_wait_in(struct chan *c, int wake_fd, int timeout_ms)
{
	return c->ops->wait_in(c, wake_fd, timeout_ms);
}

static inline void chan_close_send(struct chan *c) { c->ops->close_send(c); }
static inline void chan_shutdown(struct chan *c) { c->ops->shutdown(c); }
static inline const char *chan_kind(const struct chan *c) { return c->ops->kind; }

/* Read and drop what arrives until the peer closes, or for timeout_ms. */
void chan_drain(struct chan *c, int timeout_ms);

/* The round trip the kernel measures on c's connection (TCP's smoothed
 * RTT), in ns; 0 if unknown (not TCP, or nothing measured yet). */
uint64_t chan_rtt_ns(const struct chan *c);

/* About the share of what was sent on c that TCP had to send again (its
 * retransmitted segments against the bytes sent; 0 if unknown): a lossy
 * link shows here. Any thread. */
double chan_loss(const struct chan *c);

/* The default timeout of every wait; 0 = none. */
void chan_set_timeout(struct chan *c, int timeout_ms);

/* Free c (closing its socket); NULL is fine. */
void chan_free(struct chan *c);

/* The last failure: c->err if the kind said more, else strerror(-r). */
const char *chan_error(const struct chan *c, int r);

/* For the kinds: set c's ops, refusing (-ENOSYS) a table that lacks an op. */
int chan_init(struct chan *c, const struct chan_ops *ops);
/* For the kinds: a drain op made of wait_in and recv_some. */
void chan_drain_some(struct chan *c, int timeout_ms);

#endif
