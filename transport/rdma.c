/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rdma.c — RDMA channels over librdmacm and libibverbs; see rdma.h. The only
 * file that includes the verbs headers. What the bytes mean and whether they
 * may be used is decided in rdma_proto.c; this file moves them.
 *
 * Threads: besides the channel's one sender and one receiver, a progress
 * thread per channel waits on the completion channel and the CM event
 * channel, checks what landed (rdma_rx_land), applies credits and control
 * messages, and wakes waiters. Everything under "lock" below is shared by
 * the three; the sender fills its staging slot outside the lock (that slot
 * is its own until the peer returns it).
 */
#include "transport/rdma.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "common/mtime.h"
#include "common/util.h"
#include "transport/rdma_proto.h"
#include "transport/sock.h"

#define CTL_RX 32 /* receive buffers for control messages, beyond one per slot */
#define CTL_TX 8  /* control messages in flight */
#define RECV_DEPTH (RDMA_SLOTS_DEFAULT + CTL_RX)
#define SEND_DEPTH (RDMA_SLOTS_MAX + CTL_TX)
#define CLOSE_WAIT_MS 5000 /* for a free control buffer at close_send, if no timeout is set */

/* What a work request is, in its wr_id: kind << 32 | index. */
enum { WR_RECV = 1, WR_WRITE = 2, WR_CTL = 3 };
#define WRID(kind, idx) ((uint64_t)(kind) << 32 | (uint32_t)(idx))

struct rchan {
	struct chan c; /* first: what the engines hold */

	/* Set up before the progress thread starts, then read-only. */
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	uint8_t *rx_ring;            /* the peer writes here (remote write access) */
	uint8_t *tx_ring;            /* our staging copy of the peer's ring */
	struct rdma_ctl_wire *ctl;   /* RECV_DEPTH receive buffers, then CTL_TX send buffers */
	struct ibv_mr *rx_mr, *tx_mr, *ctl_mr;
	size_t rx_bytes, tx_bytes;
	struct rdma_hello peer;      /* where the peer's ring is */
	pthread_t progress;
	bool progress_started, connected;
	int stop_fd;                 /* eventfd: ends the progress thread */
	int data_fd;                 /* eventfd: "something changed", for wait_in */

	/* Under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* broadcast on every change below */
	struct rdma_tx tx;
	struct rdma_rx rx;
	unsigned writes_inflight;    /* posted writes not yet completed */
	uint32_t ctl_free;           /* bit i: send buffer i is free */
	int error;                   /* the first failure (-errno); its sentence in c.err */
	bool send_closed, shut;
};

static void kick(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof one) < 0) {
		/* Already signalled (the counter is far from full): nothing to do. */
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

/* Record the channel's first failure (under lock) and wake everyone. */
static void __attribute__((format(printf, 3, 4)))
fail(struct rchan *rc, int r, const char *fmt, ...)
{
	va_list ap;

	if (!rc->error) {
		va_start(ap, fmt);
		vsnprintf(rc->c.err, sizeof rc->c.err, fmt, ap);
		va_end(ap);
		rc->error = r;
	}
	pthread_cond_broadcast(&rc->cond);
	kick(rc->data_fd);
}

/* ---- posting work requests (under lock) ---- */

static int post_recv(struct rchan *rc, unsigned i)
{
	struct ibv_sge sge = { (uintptr_t)&rc->ctl[i], sizeof rc->ctl[i], rc->ctl_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = WRID(WR_RECV, i), .sg_list = &sge, .num_sge = 1 }, *bad;
	int e = ibv_post_recv(rc->id->qp, &wr, &bad);

	return e ? -e : 0;
}

/* Send a control message if a buffer is free: 0, -EAGAIN, or -errno. */
static int post_ctl(struct rchan *rc, enum rdma_ctl_type type, uint64_t arg, const char *text)
{
	struct rdma_ctl_wire *w;
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad;
	unsigned i;
	int e;

	if (!rc->ctl_free)
		return -EAGAIN;
	i = (unsigned)__builtin_ctz(rc->ctl_free);
	w = &rc->ctl[RECV_DEPTH + i];
	rdma_ctl_encode(w, type, arg, text);
	sge = (struct ibv_sge){ (uintptr_t)w, sizeof *w, rc->ctl_mr->lkey };
	wr = (struct ibv_send_wr){ .wr_id = WRID(WR_CTL, i), .sg_list = &sge, .num_sge = 1,
				   .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };
	if ((e = ibv_post_send(rc->id->qp, &wr, &bad)))
		return -e;
	rc->ctl_free &= ~(1u << i);
	return 0;
}

/* Return the slots the reader has finished, if it is time (see
 * rdma_rx_credit_due); if no control buffer is free, try again later. */
static void return_credit(struct rchan *rc, bool waiting)
{
	uint64_t before = rc->rx.reported, upto;
	int r;

	if (!rdma_rx_credit_due(&rc->rx, waiting, &upto))
		return;
	if ((r = post_ctl(rc, RDMA_CTL_CREDIT, upto, NULL))) {
		rc->rx.reported = before;
		if (r != -EAGAIN)
			fail(rc, r, "cannot send an RDMA credit: %s", strerror(-r));
	}
}

/* ---- the progress thread ---- */

/* A control message from the peer (under lock): 0, or -errno with why. */
static int on_ctl(struct rchan *rc, const void *buf, uint32_t len, char *why, size_t n)
{
	struct rdma_ctl m;
	int r;

	if ((r = rdma_ctl_parse(buf, len, &m, why, n)))
		return r;
	switch (m.type) {
	case RDMA_CTL_CREDIT:
		return rdma_tx_credit(&rc->tx, m.arg, why, n);
	case RDMA_CTL_CLOSE:
		return rdma_rx_close(&rc->rx, m.arg, why, n);
	case RDMA_CTL_ERROR:
		snprintf(why, n, "the RDMA peer failed: %s", m.text[0] ? m.text : strerror((int)m.arg));
		return -(int)m.arg;
	}
	return -EPROTO; /* rdma_ctl_parse admits no other type */
}

/* One completion (under lock). */
static void on_wc(struct rchan *rc, const struct ibv_wc *wc)
{
	unsigned kind = (unsigned)(wc->wr_id >> 32), idx = (uint32_t)wc->wr_id;
	char why[sizeof rc->c.err];
	int r = 0;

	if (kind == WR_WRITE)
		rc->writes_inflight--;
	else if (kind == WR_CTL)
		rc->ctl_free |= 1u << idx;
	if (wc->status != IBV_WC_SUCCESS) {
		fail(rc, wc->status == IBV_WC_WR_FLUSH_ERR ? -ECONNRESET : -EIO,
		     "RDMA work request failed: %s", ibv_wc_status_str(wc->status));
		return;
	}
	if (kind != WR_RECV || idx >= RECV_DEPTH)
		return; /* a write's slot comes back with the peer's CREDIT */
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM)
		r = rdma_rx_land(&rc->rx, be32toh(wc->imm_data), wc->byte_len, why, sizeof why);
	else if (wc->opcode == IBV_WC_RECV)
		r = on_ctl(rc, &rc->ctl[idx], wc->byte_len, why, sizeof why);
	else {
		snprintf(why, sizeof why, "unexpected RDMA completion (opcode %d)", (int)wc->opcode);
		r = -EPROTO;
	}
	if (!r)
		r = post_recv(rc, idx);
	if (r) {
		/* Tell the peer why, if there is a buffer to say it with. */
		if (r == -EPROTO)
			post_ctl(rc, RDMA_CTL_ERROR, EPROTO, why);
		fail(rc, r, "%s", why);
	}
}

/* Handle every completion there is (under lock). */
static void poll_cq(struct rchan *rc)
{
	struct ibv_wc wc[16];
	int n;

	while ((n = ibv_poll_cq(rc->cq, (int)ARRAY_SIZE(wc), wc)) > 0)
		for (int i = 0; i < n; i++)
			on_wc(rc, &wc[i]);
	if (n < 0)
		fail(rc, -EIO, "polling the RDMA completion queue failed");
	pthread_cond_broadcast(&rc->cond);
}

static void drain_cq(struct rchan *rc)
{
	struct ibv_cq *cq;
	void *ctx;

	/* Re-arm before polling, so that nothing completes unnoticed. */
	if (ibv_get_cq_event(rc->cc, &cq, &ctx) == 0) {
		ibv_ack_cq_events(cq, 1);
		ibv_req_notify_cq(cq, 0);
	}
	pthread_mutex_lock(&rc->lock);
	poll_cq(rc);
	pthread_mutex_unlock(&rc->lock);
	kick(rc->data_fd);
}

static void cm_events(struct rchan *rc)
{
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(rc->ec, &ev) == 0) {
		enum rdma_cm_event_type t = ev->event;

		rdma_ack_cm_event(ev);
		pthread_mutex_lock(&rc->lock);
		/* A peer that sent CLOSE and went away ended cleanly: take in what
		 * completed before the disconnect first. */
		poll_cq(rc);
		if (t == RDMA_CM_EVENT_DISCONNECTED)
			fail(rc, -ECONNRESET, "the RDMA peer disconnected");
		else if (t == RDMA_CM_EVENT_DEVICE_REMOVAL)
			fail(rc, -ENODEV, "the RDMA device was removed");
		pthread_mutex_unlock(&rc->lock);
	}
}

static void *progress_main(void *arg)
{
	struct rchan *rc = arg;
	struct pollfd p[3] = {
		{ .fd = rc->cc->fd, .events = POLLIN },
		{ .fd = rc->ec->fd, .events = POLLIN },
		{ .fd = rc->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			pthread_mutex_lock(&rc->lock);
			fail(rc, -errno, "RDMA progress: poll: %s", strerror(errno));
			pthread_mutex_unlock(&rc->lock);
			break;
		}
		if (p[2].revents)
			break;
		if (p[0].revents)
			drain_cq(rc);
		if (p[1].revents)
			cm_events(rc);
	}
	return NULL;
}

/* ---- waiting (under lock) ---- */

/* One wait for a change, to deadline (as sock_deadline gives it). */
static int wait_change(struct rchan *rc, uint64_t deadline)
{
	struct timespec ts;

	if (deadline == 0 || (deadline != UINT64_MAX && mono_ns() >= deadline))
		return -ETIMEDOUT;
	if (deadline == UINT64_MAX) {
		pthread_cond_wait(&rc->cond, &rc->lock);
		return 0;
	}
	ts = ns_to_ts(deadline);
	pthread_cond_timedwait(&rc->cond, &rc->lock, &ts);
	return 0;
}

/* Whether a slot may be written: 1, 0 (wait), or the error a send gets. */
static int send_state(const struct rchan *rc)
{
	if (rc->shut || rc->send_closed)
		return -EPIPE;
	if (rc->error)
		return rc->error == -ECONNRESET ? -EPIPE : rc->error;
	return rdma_tx_can_write(&rc->tx) && rc->writes_inflight < rc->tx.nslots;
}

/* ---- chan_ops ---- */

/* Copy the next slot's worth of cur into staging and write it to the peer
 * (called under lock with send_state() == 1). */
static int write_slot(struct rchan *rc, struct rdma_iov_cursor *cur)
{
	struct ibv_send_wr wr, *bad;
	struct ibv_sge sge;
	uint32_t slot, len;
	uint64_t seq;
	uint8_t *src;
	int e;

	rdma_tx_next(&rc->tx, &slot, &seq);
	src = rc->tx_ring + (size_t)slot * rc->peer.slot_size;
	pthread_mutex_unlock(&rc->lock);
	len = rdma_slot_fill(src, rc->peer.slot_size, slot, seq, cur);
	pthread_mutex_lock(&rc->lock);
	sge = (struct ibv_sge){ (uintptr_t)src, len, rc->tx_mr->lkey };
	wr = (struct ibv_send_wr){
		.wr_id = WRID(WR_WRITE, slot),
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
		.send_flags = IBV_SEND_SIGNALED,
		.imm_data = htobe32(rdma_imm(slot, seq)),
		.wr.rdma = { .remote_addr = rc->peer.addr + (uint64_t)slot * rc->peer.slot_size,
			     .rkey = rc->peer.rkey },
	};
	if ((e = ibv_post_send(rc->id->qp, &wr, &bad))) {
		fail(rc, -e, "cannot post an RDMA write: %s", strerror(e));
		return -e;
	}
	rc->writes_inflight++;
	return 0;
}

static int rdma_send(struct chan *c, const struct iovec *iov, int n, int timeout_ms)
{
	struct rchan *rc = (struct rchan *)c;
	uint64_t deadline = sock_deadline(c, timeout_ms);
	struct rdma_iov_cursor cur;
	int r = 0;

	if (n < 0 || n > CHAN_IOV_MAX)
		return -EINVAL;
	rdma_cursor_init(&cur, iov, n);
	pthread_mutex_lock(&rc->lock);
	while (!rdma_cursor_done(&cur)) {
		while (!(r = send_state(rc)))
			if ((r = wait_change(rc, deadline)))
				goto out;
		if (r < 0 || (r = write_slot(rc, &cur)))
			goto out;
	}
out:
	pthread_mutex_unlock(&rc->lock);
	return r < 0 ? r : 0;
}

static int rdma_recv(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	struct rchan *rc = (struct rchan *)c;
	uint64_t deadline = 0;
	bool waited = false;
	size_t got = 0;
	int r = 0;

	pthread_mutex_lock(&rc->lock);
	for (;;) {
		got += rdma_rx_read(&rc->rx, (uint8_t *)buf + got, len - got);
		return_credit(rc, got < len);
		if (got == len)
			break;
		if (rc->rx.closed) {
			r = got ? -ECONNRESET : -ENODATA;
			break;
		}
		if (rc->shut || rc->error) {
			r = rc->shut ? -ECONNRESET : rc->error;
			break;
		}
		if (!waited) {
			deadline = sock_deadline(c, timeout_ms);
			waited = true;
		}
		if ((r = wait_change(rc, deadline)))
			break;
	}
	pthread_mutex_unlock(&rc->lock);
	return got == len ? 0 : r;
}

static ssize_t rdma_recv_some(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	struct rchan *rc = (struct rchan *)c;
	uint64_t deadline = 0;
	bool waited = false;
	ssize_t r;

	pthread_mutex_lock(&rc->lock);
	for (;;) {
		size_t got = rdma_rx_read(&rc->rx, buf, len);

		return_credit(rc, false);
		if (got || rc->rx.closed) {
			r = (ssize_t)got;
			break;
		}
		if (rc->shut || rc->error) {
			r = rc->shut ? -ECONNRESET : rc->error;
			break;
		}
		if (!waited) {
			deadline = sock_deadline(c, timeout_ms);
			waited = true;
		}
		if ((r = wait_change(rc, deadline)))
			break;
	}
	pthread_mutex_unlock(&rc->lock);
	return r;
}

static int rdma_wait_in(struct chan *c, int wake_fd, int timeout_ms)
{
	struct rchan *rc = (struct rchan *)c;
	uint64_t end = timeout_ms > 0 ? mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC : 0;
	uint64_t drained;

	for (;;) {
		bool ready;
		int r, ms = -1;

		pthread_mutex_lock(&rc->lock);
		ready = rdma_rx_pending(&rc->rx) || rc->rx.closed || rc->error || rc->shut;
		pthread_mutex_unlock(&rc->lock);
		if (ready)
			return 1;
		if (end) {
			uint64_t now = mono_ns();

			if (now >= end)
				return 0;
			ms = (int)MIN((end - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC, (uint64_t)INT32_MAX);
		}
		r = sock_wait_in(rc->data_fd, false, wake_fd, ms);
		if (r != 1)
			return r;
		if (read(rc->data_fd, &drained, sizeof drained) < 0) {
			/* Raced with another reader of the counter: look again. */
		}
	}
}

static void rdma_close_send(struct chan *c)
{
	struct rchan *rc = (struct rchan *)c;
	int ms = c->timeout_ms ? c->timeout_ms : CLOSE_WAIT_MS;
	uint64_t deadline = mono_ns() + (uint64_t)ms * NSEC_PER_MSEC;

	pthread_mutex_lock(&rc->lock);
	/* CLOSE follows the last write on the same queue, so the peer sees
	 * every slot before it; it says how many there were. */
	while (!rc->send_closed && !rc->shut && !rc->error &&
	       post_ctl(rc, RDMA_CTL_CLOSE, rc->tx.seq, NULL) == -EAGAIN)
		if (wait_change(rc, deadline))
			break;
	rc->send_closed = true;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
}

static void rdma_shutdown(struct chan *c)
{
	struct rchan *rc = (struct rchan *)c;

	pthread_mutex_lock(&rc->lock);
	rc->shut = true;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
	kick(rc->data_fd);
	if (rc->connected)
		rdma_disconnect(rc->id); /* flushes what is posted; the peer sees the end */
}

/* Undo whatever of the setup was done, in reverse; also for half-made channels. */
static void rdma_free(struct chan *c)
{
	struct rchan *rc = (struct rchan *)c;

	if (!rc)
		return;
	if (rc->progress_started) {
		kick(rc->stop_fd);
		pthread_join(rc->progress, NULL);
	}
	if (rc->connected)
		rdma_disconnect(rc->id);
	if (rc->id && rc->id->qp)
		rdma_destroy_qp(rc->id);
	if (rc->tx_mr)
		ibv_dereg_mr(rc->tx_mr);
	if (rc->rx_mr)
		ibv_dereg_mr(rc->rx_mr);
	if (rc->ctl_mr)
		ibv_dereg_mr(rc->ctl_mr);
	if (rc->tx_ring)
		munmap(rc->tx_ring, rc->tx_bytes);
	if (rc->rx_ring)
		munmap(rc->rx_ring, rc->rx_bytes);
	free(rc->ctl);
	if (rc->cq)
		ibv_destroy_cq(rc->cq);
	if (rc->cc)
		ibv_destroy_comp_channel(rc->cc);
	if (rc->pd)
		ibv_dealloc_pd(rc->pd);
	if (rc->id)
		rdma_destroy_id(rc->id);
	if (rc->ec)
		rdma_destroy_event_channel(rc->ec);
	if (rc->stop_fd >= 0)
		close(rc->stop_fd);
	if (rc->data_fd >= 0)
		close(rc->data_fd);
	pthread_cond_destroy(&rc->cond);
	pthread_mutex_destroy(&rc->lock);
	free(rc);
}

static const struct chan_ops rdma_ops = {
	.kind = "rdma",
	.send = rdma_send,
	.recv = rdma_recv,
	.recv_some = rdma_recv_some,
	.wait_in = rdma_wait_in,
	.drain = chan_drain_some,
	.close_send = rdma_close_send,
	.shutdown = rdma_shutdown,
	.free = rdma_free,
};

/* ---- setting up ---- */

/* -ENODEV with the sentence the operator needs if this host has no device. */
static int have_device(char *err, size_t errlen)
{
	struct ibv_device **list;
	int n = 0;

	list = ibv_get_device_list(&n);
	if (list)
		ibv_free_device_list(list);
	if (!list && errno == ENOSYS) {
		snprintf(err, errlen, "no RDMA device on this host (the kernel has no RDMA support)");
		return -ENODEV;
	}
	if (!list || n <= 0) {
		snprintf(err, errlen, "no RDMA device on this host (libibverbs found none%s%s)",
			 list ? "" : ": ", list ? "" : strerror(errno));
		return -ENODEV;
	}
	return 0;
}

/* A channel with its locks, eventfds and a CM event channel; no id yet. */
static int rchan_new(struct rchan **out, char *err, size_t errlen)
{
	struct rchan *rc = calloc(1, sizeof *rc);
	pthread_condattr_t ca;
	int e;

	if (!rc)
		return -ENOMEM;
	if (chan_init(&rc->c, &rdma_ops)) {
		free(rc);
		return -ENOSYS;
	}
	rc->c.fd = -1; /* no socket: the channel is the queue pair */
	rc->ctl_free = (1u << CTL_TX) - 1;
	pthread_mutex_init(&rc->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are mono_ns() */
	pthread_cond_init(&rc->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc->data_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rc->stop_fd < 0 || rc->data_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto err;
	}
	rc->ec = rdma_create_event_channel();
	if (!rc->ec || set_nonblock(rc->ec->fd)) {
		snprintf(err, errlen, "cannot open the RDMA connection manager: %s", strerror(errno));
		goto err;
	}
	*out = rc;
	return 0;
err:
	e = errno ? errno : EIO;
	rdma_free(&rc->c);
	return -e;
}

static void *ring_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* The queue pair, the receive ring and control buffers; receives posted. */
static int setup_qp(struct rchan *rc, char *err, size_t errlen)
{
	struct ibv_context *dev = rc->id->verbs;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
		.cap = { .max_send_wr = SEND_DEPTH, .max_recv_wr = RECV_DEPTH,
			 .max_send_sge = 1, .max_recv_sge = 1 },
	};
	const char *what;
	int e;

	what = "protection domain";
	if (!(rc->pd = ibv_alloc_pd(dev)))
		goto err;
	what = "completion channel";
	if (!(rc->cc = ibv_create_comp_channel(dev)) || set_nonblock(rc->cc->fd))
		goto err;
	what = "completion queue";
	if (!(rc->cq = ibv_create_cq(dev, SEND_DEPTH + RECV_DEPTH, rc, rc->cc, 0)) ||
	    ibv_req_notify_cq(rc->cq, 0))
		goto err;
	qa.send_cq = qa.recv_cq = rc->cq;
	what = "queue pair";
	if (rdma_create_qp(rc->id, rc->pd, &qa))
		goto err;
	what = "receive ring";
	rc->rx_bytes = (size_t)RDMA_SLOTS_DEFAULT * RDMA_SLOT_SIZE_DEFAULT;
	if (!(rc->rx_ring = ring_alloc(rc->rx_bytes)) ||
	    !(rc->rx_mr = ibv_reg_mr(rc->pd, rc->rx_ring, rc->rx_bytes,
				     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)))
		goto err;
	what = "control buffers";
	if (!(rc->ctl = calloc(RECV_DEPTH + CTL_TX, sizeof *rc->ctl)) ||
	    !(rc->ctl_mr = ibv_reg_mr(rc->pd, rc->ctl, (RECV_DEPTH + CTL_TX) * sizeof *rc->ctl,
				      IBV_ACCESS_LOCAL_WRITE)))
		goto err;
	rdma_rx_init(&rc->rx, rc->rx_ring, RDMA_SLOTS_DEFAULT, RDMA_SLOT_SIZE_DEFAULT);
	for (unsigned i = 0; i < RECV_DEPTH; i++) {
		int r = post_recv(rc, i);

		if (r) {
			snprintf(err, errlen, "cannot post RDMA receives: %s", strerror(-r));
			return r;
		}
	}
	return 0;
err:
	e = errno ? errno : ENOMEM;
	snprintf(err, errlen, "cannot set up the RDMA %s: %s", what, strerror(e));
	return -e;
}

/* The peer is known and connected: staging for its ring, then the progress thread. */
static int start(struct rchan *rc, const struct rdma_hello *peer, char *err, size_t errlen)
{
	struct sockaddr *sa = rdma_get_peer_addr(rc->id);
	char h[NI_MAXHOST] = "?";
	int r;

	rc->connected = true;
	rc->peer = *peer;
	rc->tx_bytes = (size_t)peer->nslots * peer->slot_size; /* <= RDMA_RING_MAX: checked in the hello */
	if (!(rc->tx_ring = ring_alloc(rc->tx_bytes)) ||
	    !(rc->tx_mr = ibv_reg_mr(rc->pd, rc->tx_ring, rc->tx_bytes, IBV_ACCESS_LOCAL_WRITE))) {
		r = errno ? errno : ENOMEM;
		snprintf(err, errlen, "cannot set up the RDMA staging ring: %s", strerror(r));
		return -r;
	}
	rdma_tx_init(&rc->tx, peer->nslots, peer->slot_size);
	getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
		    h, sizeof h, NULL, 0, NI_NUMERICHOST);
	snprintf(rc->c.peer, sizeof rc->c.peer, "%s:%u", h, be16toh(rdma_get_dst_port(rc->id)));
	if ((r = pthread_create(&rc->progress, NULL, progress_main, rc))) {
		snprintf(err, errlen, "cannot start the RDMA progress thread: %s", strerror(r));
		return -r;
	}
	rc->progress_started = true;
	return 0;
}

/* The errno and words for a CM event that is not the one we waited for. */
static int cm_failure(const struct rdma_cm_event *ev, char *err, size_t errlen)
{
	int r;

	switch (ev->event) {
	case RDMA_CM_EVENT_REJECTED:
		r = -ECONNREFUSED;
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		r = -EHOSTUNREACH;
		break;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		r = -ENODEV;
		break;
	default:
		r = -ECONNABORTED;
	}
	snprintf(err, errlen, "RDMA connection: %s (status %d)", rdma_event_str(ev->event),
		 ev->status);
	return r;
}

/*
 * Wait to deadline for the CM event want on ec. With hello, its private
 * data is the peer's hello, parsed before the event is given back.
 */
static int cm_expect(struct rdma_event_channel *ec, enum rdma_cm_event_type want,
		     uint64_t deadline, struct rdma_hello *hello, char *err, size_t errlen)
{
	struct rdma_cm_event *ev;
	int r;

	for (;;) {
		if ((r = sock_wait(ec->fd, POLLIN, deadline))) {
			snprintf(err, errlen, "RDMA connection: timed out waiting for %s",
				 rdma_event_str(want));
			return r;
		}
		if (rdma_get_cm_event(ec, &ev) == 0)
			break;
		if (errno != EAGAIN && errno != EINTR) {
			snprintf(err, errlen, "RDMA connection manager: %s", strerror(errno));
			return -errno;
		}
	}
	if (ev->event != want)
		r = cm_failure(ev, err, errlen);
	else if (hello)
		r = rdma_hello_parse(ev->param.conn.private_data, ev->param.conn.private_data_len,
				     hello, err, errlen);
	rdma_ack_cm_event(ev);
	return r;
}

/* "HOST[:PORT]" for rdmacm, once a device is known to exist: the address to
 * connect to, or (passive) to listen on. 0 and *ai (rdma_freeaddrinfo), or
 * -errno with err set. */
static int rdma_resolve(const char *hostport, unsigned defport, bool passive,
			struct rdma_addrinfo **ai, char *err, size_t errlen)
{
	struct rdma_addrinfo hints = { .ai_flags = passive ? RAI_PASSIVE : 0,
				       .ai_port_space = RDMA_PS_TCP };
	char host[256], port[16];
	int r;

	if (parse_host_port(hostport, defport, host, sizeof host, port, sizeof port)) {
		snprintf(err, errlen, "\"%s\" is not %s[:PORT]", hostport, passive ? "ADDR" : "HOST");
		return -EINVAL;
	}
	if ((r = have_device(err, errlen)))
		return r;
	if (rdma_getaddrinfo(host, port, &hints, ai)) {
		snprintf(err, errlen, "%s: cannot resolve for RDMA: %s", host, strerror(errno));
		return passive ? -EADDRNOTAVAIL : -EHOSTUNREACH;
	}
	return 0;
}

/* Our hello, as the connection's private data. */
static struct rdma_conn_param conn_param(struct rchan *rc, struct rdma_hello_wire *w)
{
	rdma_hello_encode(w, RDMA_SLOTS_DEFAULT, RDMA_SLOT_SIZE_DEFAULT, (uintptr_t)rc->rx_ring,
			  rc->rx_mr->rkey);
	return (struct rdma_conn_param){
		.private_data = w,
		.private_data_len = sizeof *w,
		.retry_count = 7,
		.rnr_retry_count = 7, /* a control message waits for a receive buffer */
	};
}

static uint64_t deadline_of(int timeout_ms)
{
	return timeout_ms > 0 ? mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC : UINT64_MAX;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = mono_ns();

	if (deadline == UINT64_MAX)
		return 5000; /* librdmacm wants a bound for each resolution step */
	return now >= deadline ? 1 : (int)MIN((deadline - now) / NSEC_PER_MSEC + 1, (uint64_t)INT32_MAX);
}

int chan_rdma_connect(const char *hostport, unsigned defport, int timeout_ms, struct chan **out,
		      char *err, size_t errlen)
{
	struct rdma_addrinfo *ai = NULL;
	uint64_t deadline = deadline_of(timeout_ms);
	struct rdma_hello_wire hw;
	struct rdma_conn_param cp;
	struct rdma_hello peer;
	struct rchan *rc = NULL;
	int r;

	*out = NULL;
	if ((r = rdma_resolve(hostport, defport, false, &ai, err, errlen)))
		return r;
	if ((r = rchan_new(&rc, err, errlen)))
		goto out;
	if (rdma_create_id(rc->ec, &rc->id, rc, RDMA_PS_TCP) ||
	    rdma_resolve_addr(rc->id, ai->ai_src_addr, ai->ai_dst_addr, ms_left(deadline))) {
		r = -errno;
		snprintf(err, errlen, "cannot reach %s over RDMA: %s", hostport, strerror(errno));
		goto out;
	}
	if ((r = cm_expect(rc->ec, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, NULL, err, errlen)))
		goto out;
	if (rdma_resolve_route(rc->id, ms_left(deadline))) {
		r = -errno;
		snprintf(err, errlen, "no RDMA route to %s: %s", hostport, strerror(errno));
		goto out;
	}
	if ((r = cm_expect(rc->ec, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, NULL, err, errlen)) ||
	    (r = setup_qp(rc, err, errlen)))
		goto out;
	cp = conn_param(rc, &hw);
	if (rdma_connect(rc->id, &cp)) {
		r = -errno;
		snprintf(err, errlen, "cannot connect to %s over RDMA: %s", hostport, strerror(errno));
		goto out;
	}
	if ((r = cm_expect(rc->ec, RDMA_CM_EVENT_ESTABLISHED, deadline, &peer, err, errlen)) ||
	    (r = start(rc, &peer, err, errlen)))
		goto out;
	*out = &rc->c;
	rc = NULL;
out:
	if (rc)
		rdma_free(&rc->c);
	rdma_freeaddrinfo(ai);
	return r;
}

/* ---- listening ---- */

struct chan_rdma_listener {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
};

void chan_rdma_listener_free(struct chan_rdma_listener *l)
{
	if (!l)
		return;
	if (l->id)
		rdma_destroy_id(l->id);
	if (l->ec)
		rdma_destroy_event_channel(l->ec);
	free(l);
}

int chan_rdma_listen(const char *hostport, unsigned defport, struct chan_rdma_listener **out,
		     char *err, size_t errlen)
{
	struct rdma_addrinfo *ai = NULL;
	struct chan_rdma_listener *l = NULL;
	int r;

	*out = NULL;
	if ((r = rdma_resolve(hostport, defport, true, &ai, err, errlen)))
		return r;
	if (!(l = calloc(1, sizeof *l))) {
		r = -ENOMEM;
		goto out;
	}
	if (!(l->ec = rdma_create_event_channel()) || set_nonblock(l->ec->fd) ||
	    rdma_create_id(l->ec, &l->id, NULL, RDMA_PS_TCP) ||
	    rdma_bind_addr(l->id, ai->ai_src_addr) || rdma_listen(l->id, 16)) {
		r = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot listen for RDMA on %s: %s", hostport, strerror(-r));
		goto out;
	}
	*out = l;
	l = NULL;
out:
	chan_rdma_listener_free(l);
	rdma_freeaddrinfo(ai);
	return r;
}

int chan_rdma_listener_fd(const struct chan_rdma_listener *l)
{
	return l->ec->fd;
}

/* The next connection request's id and the peer's hello; others are skipped. */
static int next_request(struct chan_rdma_listener *l, uint64_t deadline, struct rdma_cm_id **id,
			struct rdma_hello *peer, char *err, size_t errlen)
{
	struct rdma_cm_event *ev;
	int r;

	for (;;) {
		if ((r = sock_wait(l->ec->fd, POLLIN, deadline))) {
			snprintf(err, errlen, "no RDMA connection request in time");
			return r;
		}
		if (rdma_get_cm_event(l->ec, &ev))
			continue;
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdma_ack_cm_event(ev);
			continue;
		}
		*id = ev->id;
		r = rdma_hello_parse(ev->param.conn.private_data, ev->param.conn.private_data_len,
				     peer, err, errlen);
		rdma_ack_cm_event(ev);
		if (r) {
			rdma_reject(*id, NULL, 0);
			rdma_destroy_id(*id);
		}
		return r;
	}
}

int chan_rdma_accept(struct chan_rdma_listener *l, int timeout_ms, struct chan **out, char *err,
		     size_t errlen)
{
	uint64_t deadline = deadline_of(timeout_ms);
	struct rdma_hello_wire hw;
	struct rdma_conn_param cp;
	struct rdma_hello peer;
	struct rdma_cm_id *id;
	struct rchan *rc = NULL;
	int r;

	*out = NULL;
	if ((r = next_request(l, deadline, &id, &peer, err, errlen)))
		return r;
	if ((r = rchan_new(&rc, err, errlen))) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return r;
	}
	rc->id = id; /* the channel owns it from here */
	id->context = rc;
	if (rdma_migrate_id(id, rc->ec)) {
		r = -errno;
		snprintf(err, errlen, "RDMA accept: %s", strerror(errno));
		goto out;
	}
	if ((r = setup_qp(rc, err, errlen))) {
		rdma_reject(id, NULL, 0);
		goto out;
	}
	cp = conn_param(rc, &hw);
	if (rdma_accept(id, &cp)) {
		r = -errno;
		snprintf(err, errlen, "RDMA accept: %s", strerror(errno));
		goto out;
	}
	if ((r = cm_expect(rc->ec, RDMA_CM_EVENT_ESTABLISHED, deadline, NULL, err, errlen)) ||
	    (r = start(rc, &peer, err, errlen)))
		goto out;
	*out = &rc->c;
	rc = NULL;
out:
	if (rc)
		rdma_free(&rc->c);
	return r;
}
