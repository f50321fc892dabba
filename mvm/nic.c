/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nic.c — the virtual NIC: rings in guest RAM, the network thread, output
 * gating, and the guest's side of serving a connection; see nic.h.
 *
 * The network thread waits in epoll (edge-triggered) on the listener, the
 * connections and an eventfd; after every wake it pumps the open slots: in,
 * those whose socket said it had bytes and has not yet run dry; out, those
 * with bytes to send whose socket has not said it is full. Ring positions are
 * written with release and read with acquire: one producer and one consumer
 * per ring, no lock. The gate's state is under n->lock; whether it is on is
 * also readable without it.
 *
 * Waking the thread: the guest (and the control thread) bump n->work and
 * write the eventfd only if the thread said it is about to sleep
 * (n->sleeping), which it says before it looks at n->work a last time: no
 * wake-up is lost, and a busy guest makes no system call to wake it.
 */
#include "mvm/nic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "mvm/runtime.h"

#define MARKS_MAX 64
#define EVENTS 64
#define WAKE_TOKEN ((uint64_t)-1)
#define LISTEN_TOKEN ((uint64_t)-2)

struct mark {
	uint64_t epoch, pos;
};

struct nic {
	struct mvm *m;
	struct kv_layout l;
	struct nic_hdr *hdr;
	int ep, wake;
	pthread_t thread;
	/* The network thread's own. */
	int *fd;                 /* per slot, -1 */
	uint64_t stall_ns;       /* 0: never close a stalled connection */
	uint64_t *seen_head;     /* per slot: rx_head when last seen moving */
	uint64_t *since;         /* ... and when (mono_ns) */
	uint8_t *rx_ready;       /* per slot: the socket may have bytes for us */
	uint8_t *tx_full;        /* per slot: the socket took no more; wait for EPOLLOUT */
	/* Waking it (see above). */
	_Atomic uint64_t work;
	atomic_bool sleeping;
	/* Under lock. */
	pthread_mutex_t lock;
	int listen_fd;
	bool gated;
	uint64_t epoch, released;
	uint64_t *sendable;      /* per slot: what may leave while gated */
	/* bool gated: also read without the lock (pump_tx) */
	struct mark (*marks)[MARKS_MAX];
	unsigned *nmarks;
	/* Counters (atomic). */
	uint64_t accepted, refused, rx_bytes, tx_bytes;
	/* The guest's (vCPU 0). */
	uint64_t next_slot;
	uint8_t *in, *out;       /* KV_MSG_MAX each */
};

static struct nic_slot *slot(struct nic *n, uint64_t i)
{
	return (struct nic_slot *)(void *)(n->m->ram + n->l.nic_off + 4096 + i * n->l.slot_bytes);
}

static uint8_t *rx_ring(struct nic *n, uint64_t i)
{
	return (uint8_t *)slot(n, i) + 4096;
}

static uint8_t *tx_ring(struct nic *n, uint64_t i)
{
	return rx_ring(n, i) + n->l.ring_bytes;
}

static uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void st(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint32_t ld32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

void nic_kick(struct nic *n)
{
	uint64_t one = 1;

	atomic_fetch_add(&n->work, 1);
	if (!atomic_load(&n->sleeping) || !atomic_exchange(&n->sleeping, false))
		return;
	if (write(n->wake, &one, sizeof one) < 0) {
		/* The counter is full: the thread is awake anyway. */
	}
}

/* The two pieces of ring bytes [pos, pos + len) (len <= ring size). */
static int ring_iov(uint8_t *ring, uint64_t size, uint64_t pos, uint64_t len, struct iovec *v)
{
	uint64_t off = pos & (size - 1), first = MIN(len, size - off);

	v[0] = (struct iovec){ ring + off, first };
	v[1] = (struct iovec){ ring, len - first };
	return len > first ? 2 : 1;
}

/* ---- the network thread ---- */

static void set_state(struct nic_slot *s, uint32_t bits)
{
	__atomic_or_fetch(&s->state, bits, __ATOMIC_ACQ_REL);
}

static void accept_all(struct nic *n)
{
	for (;;) {
		uint64_t i;
		int fd;

		pthread_mutex_lock(&n->lock);
		fd = n->listen_fd >= 0 ? accept4(n->listen_fd, NULL, NULL,
						  SOCK_NONBLOCK | SOCK_CLOEXEC) : -1;
		pthread_mutex_unlock(&n->lock);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_warn("%s: nic: accept: %s", n->m->name, strerror(errno));
			return;
		}
		for (i = 0; i < n->l.nslots && (ld(&slot(n, i)->incarnation) || n->fd[i] >= 0); i++)
			;
		if (i == n->l.nslots) {
			/* Full: the client retries elsewhere or later. */
			__atomic_fetch_add(&n->refused, 1, __ATOMIC_RELAXED);
			close(fd);
			continue;
		}
		struct nic_slot *s = slot(n, i);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					  .data.u64 = i };
		int one = 1;

		/* Answers go out as they are made: no Nagle wait on the ACK of
		 * the previous one (40 ms with delayed ACKs). */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

		memset(s, 0, sizeof *s);
		n->rx_ready[i] = 1;
		n->tx_full[i] = 0;
		n->seen_head[i] = 0;
		n->since[i] = mono_ns();
		s->conn = ++n->hdr->conns;
		s->incarnation = n->hdr->incarnation;
		pthread_mutex_lock(&n->lock);
		n->sendable[i] = 0;
		n->nmarks[i] = 0;
		pthread_mutex_unlock(&n->lock);
		__atomic_store_n(&s->state, NIC_OPEN, __ATOMIC_RELEASE);
		n->fd[i] = fd;
		epoll_ctl(n->ep, EPOLL_CTL_ADD, fd, &ev);
		__atomic_fetch_add(&n->accepted, 1, __ATOMIC_RELAXED);
	}
}

/* Bytes in: from the socket into the slot's receive ring. */
static bool pump_rx(struct nic *n, uint64_t i)
{
	struct nic_slot *s = slot(n, i);
	bool any = false;

	while (n->rx_ready[i] && !(ld32(&s->state) & NIC_PEER_GONE)) {
		uint64_t tail = s->rx_tail, space;
		struct iovec v[2];
		ssize_t r;

		/* Our last tail store before the guest's head: see serve_slot. */
		atomic_thread_fence(memory_order_seq_cst);
		space = n->l.ring_bytes - (tail - ld(&s->rx_head));

		if (!space)
			break; /* still ready: again once the guest has taken some */
		r = readv(n->fd[i], v, ring_iov(rx_ring(n, i), n->l.ring_bytes, tail, space, v));
		if (r > 0) {
			st(&s->rx_tail, tail + (uint64_t)r);
			__atomic_fetch_add(&n->rx_bytes, (uint64_t)r, __ATOMIC_RELAXED);
			any = true;
			if ((uint64_t)r < space)
				n->rx_ready[i] = 0; /* drained: the next edge says when */
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			n->rx_ready[i] = 0;
			break;
		}
		set_state(s, NIC_PEER_GONE);
		any = true;
	}
	return any;
}

/* Bytes out: what the guest wrote and the gate lets go. */
static void pump_tx(struct nic *n, uint64_t i)
{
	struct nic_slot *s = slot(n, i);

	while (!n->tx_full[i]) {
		/* The tail first: bytes below it were produced before the gate,
		 * if it is off now, was on (HOLD takes its mark under the lock). */
		uint64_t head = s->tx_head, limit = ld(&s->tx_tail);
		struct iovec v[2];
		ssize_t r;

		if (head >= limit)
			return;
		if (__atomic_load_n(&n->gated, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&n->lock);
			if (n->gated)
				limit = MIN(limit, n->sendable[i]);
			pthread_mutex_unlock(&n->lock);
			if (head >= limit)
				return;
		}
		if (ld32(&s->state) & NIC_PEER_GONE)
			return;
		r = writev(n->fd[i], v, ring_iov(tx_ring(n, i), n->l.ring_bytes, head, limit - head, v));
		if (r > 0) {
			st(&s->tx_head, head + (uint64_t)r);
			__atomic_fetch_add(&n->tx_bytes, (uint64_t)r, __ATOMIC_RELAXED);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			n->tx_full[i] = 1; /* until EPOLLOUT */
			return;
		}
		set_state(s, NIC_PEER_GONE);
		return;
	}
}

/*
 * A connection whose bytes the guest has not taken for stall_ns — half a
 * request that the rest never follows, or a client that does not read its
 * answers, so that there is no room for the next — would hold its slot for
 * ever: it is closed (the guest sees its peer gone). Time while the guest is
 * paused does not count (net_main restarts every clock after a pause).
 */
static void check_stall(struct nic *n, uint64_t i, uint64_t now)
{
	struct nic_slot *s = slot(n, i);
	uint64_t head = ld(&s->rx_head);

	if (!n->stall_ns || (ld32(&s->state) & NIC_PEER_GONE))
		return;
	if (head != n->seen_head[i] || head == s->rx_tail) {
		n->seen_head[i] = head;
		n->since[i] = now;
		return;
	}
	if (now - n->since[i] < n->stall_ns)
		return;
	log_info("%s: nic: connection %" PRIu64 " stalled for %" PRIu64 " ms; closed", n->m->name,
		 s->conn, (uint64_t)((now - n->since[i]) / NSEC_PER_MSEC));
	shutdown(n->fd[i], SHUT_RDWR);
	set_state(s, NIC_PEER_GONE);
	mvm_kick_vcpus(n->m);
}

/* Close and free a slot whose connection is over. */
static void maybe_close(struct nic *n, uint64_t i)
{
	struct nic_slot *s = slot(n, i);
	uint32_t state = ld32(&s->state);

	/* Over once the guest is done and its last words are out, or the peer
	 * is gone and the guest has seen it. */
	if (!(state & NIC_GUEST_DONE))
		return;
	if (!(state & NIC_PEER_GONE) && s->tx_head < ld(&s->tx_tail))
		return;
	epoll_ctl(n->ep, EPOLL_CTL_DEL, n->fd[i], NULL);
	close(n->fd[i]);
	n->fd[i] = -1;
	__atomic_store_n(&s->state, 0, __ATOMIC_RELEASE);
	st(&s->incarnation, 0);
}

static void *net_main(void *arg)
{
	struct nic *n = arg;
	struct mvm *m = n->m;
	struct epoll_event ev[EVENTS];
	uint64_t seen = 0;

	mvm_thread_started(m);

	while (!atomic_load_explicit(&m->quit, memory_order_relaxed)) {
		bool rx = false;
		uint64_t now;
		int k;

		if (atomic_load_explicit(&m->pause_req, memory_order_acquire)) {
			mvm_park(m);
			now = mono_ns();
			for (uint64_t i = 0; i < n->l.nslots; i++)
				n->since[i] = now;
			continue;
		}
		/* About to sleep: say so, then look a last time for work (and a
		 * pause) that came since the last round. */
		atomic_store(&n->sleeping, true);
		k = atomic_load(&n->work) != seen ||
		    atomic_load_explicit(&m->pause_req, memory_order_acquire) ? 0 : 100;
		k = epoll_wait(n->ep, ev, EVENTS, k);
		atomic_store(&n->sleeping, false);
		seen = atomic_load(&n->work);
		for (int e = 0; e < k; e++) {
			uint64_t drained, t = ev[e].data.u64;

			if (t == WAKE_TOKEN) {
				if (read(n->wake, &drained, sizeof drained) < 0) {
					/* Raced with another read: nothing lost. */
				}
			} else if (t == LISTEN_TOKEN) {
				accept_all(n);
			} else if (t < n->l.nslots) {
				if (ev[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					n->rx_ready[t] = 1;
				if (ev[e].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
					n->tx_full[t] = 0;
			}
		}
		/* Every open slot: the rings' space and the gate change without a
		 * socket event; a slot with nothing to do costs a few loads. */
		now = mono_ns();
		for (uint64_t i = 0; i < n->l.nslots; i++) {
			if (n->fd[i] < 0)
				continue;
			rx |= pump_rx(n, i);
			pump_tx(n, i);
			check_stall(n, i, now);
			maybe_close(n, i);
		}
		if (rx)
			mvm_kick_vcpus(m);
	}
	return NULL;
}

/* ---- set-up, listener, new host, gate ---- */

int nic_start(struct mvm *m, const struct kv_layout *l, uint64_t stall_ms, bool fresh)
{
	struct nic *n = calloc(1, sizeof *n);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WAKE_TOKEN };
	int r;

	if (!n)
		return -ENOMEM;
	n->m = m;
	n->l = *l;
	n->hdr = (struct nic_hdr *)(void *)(m->ram + l->nic_off);
	n->listen_fd = -1;
	pthread_mutex_init(&n->lock, NULL);
	n->fd = malloc(l->nslots * sizeof *n->fd);
	n->stall_ns = stall_ms * NSEC_PER_MSEC;
	n->seen_head = calloc(l->nslots, sizeof *n->seen_head);
	n->since = calloc(l->nslots, sizeof *n->since);
	n->rx_ready = calloc(l->nslots, 1);
	n->tx_full = calloc(l->nslots, 1);
	n->sendable = calloc(l->nslots, sizeof *n->sendable);
	n->marks = calloc(l->nslots, sizeof *n->marks);
	n->nmarks = calloc(l->nslots, sizeof *n->nmarks);
	n->in = malloc(KV_MSG_MAX);
	n->out = malloc(KV_MSG_MAX);
	n->ep = epoll_create1(EPOLL_CLOEXEC);
	n->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!n->fd || !n->seen_head || !n->since || !n->rx_ready || !n->tx_full || !n->sendable || !n->marks || !n->nmarks || !n->in || !n->out || n->ep < 0 ||
	    n->wake < 0 || epoll_ctl(n->ep, EPOLL_CTL_ADD, n->wake, &ev) < 0)
		return log_error("%s: nic: %s", m->name, strerror(errno ? errno : ENOMEM)), -ENOMEM;
	for (uint64_t i = 0; i < l->nslots; i++)
		n->fd[i] = -1;
	if (fresh) {
		n->hdr->magic = NIC_MAGIC;
		n->hdr->version = 1;
		n->hdr->nslots = (uint32_t)l->nslots;
		n->hdr->ring_bytes = l->ring_bytes;
		n->hdr->incarnation = 1;
	}
	m->nic = n;
	m->writers++;
	if ((r = -pthread_create(&n->thread, NULL, net_main, n))) {
		m->writers--;
		return log_error("%s: nic: thread: %s", m->name, strerror(-r)), r;
	}
	return 0;
}

/* Reset every connection (the guest leaves this host); writers parked. */
static void reset_all(struct nic *n)
{
	struct linger lg = { 1, 0 };

	for (uint64_t i = 0; i < n->l.nslots; i++) {
		if (n->fd[i] < 0)
			continue;
		setsockopt(n->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		epoll_ctl(n->ep, EPOLL_CTL_DEL, n->fd[i], NULL);
		close(n->fd[i]);
		n->fd[i] = -1;
		memset(slot(n, i), 0, sizeof(struct nic_slot)); /* free: nobody runs */
	}
}

int nic_listen(struct nic *n, int fd, bool parked)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = LISTEN_TOKEN };
	int acc = 0;
	socklen_t len = sizeof acc;

	if (fd >= 0 && (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc))
		return -ENOTSOCK;
	pthread_mutex_lock(&n->lock);
	if (n->listen_fd >= 0) {
		epoll_ctl(n->ep, EPOLL_CTL_DEL, n->listen_fd, NULL);
		close(n->listen_fd);
	}
	n->listen_fd = fd;
	if (fd >= 0) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		epoll_ctl(n->ep, EPOLL_CTL_ADD, fd, &ev);
	}
	pthread_mutex_unlock(&n->lock);
	/* The address leaves with the guest: its clients hear so at once (a
	 * reset) instead of waiting on a host that no longer answers. */
	if (fd < 0 && parked)
		reset_all(n);
	nic_kick(n); /* connections may be waiting already */
	return 0;
}

void nic_new_host(struct nic *n)
{
	uint64_t dropped = 0;

	n->hdr->incarnation++;
	for (uint64_t i = 0; i < n->l.nslots; i++) {
		struct nic_slot *s = slot(n, i);

		if (s->incarnation) {
			dropped++;
			memset(s, 0, sizeof *s);
		}
		if (n->fd[i] >= 0) {
			epoll_ctl(n->ep, EPOLL_CTL_DEL, n->fd[i], NULL);
			close(n->fd[i]);
			n->fd[i] = -1;
		}
		n->nmarks[i] = 0;
		n->sendable[i] = 0;
	}
	log_info("%s: nic: incarnation %" PRIu64 " on this host; %" PRIu64 " connection(s) of "
		 "the previous one dropped", n->m->name, n->hdr->incarnation, dropped);
}

int nic_gate(struct nic *n, enum nic_gate_op op, uint64_t epoch)
{
	int r = 0;

	pthread_mutex_lock(&n->lock);
	switch (op) {
	case NIC_GATE_HOLD:
		/* Off: what is out there already may go; from now on it waits.
		 * On already (a new pairing of a primary whose daemon restarted):
		 * what is held stays held, as epoch - 1 — released with the first
		 * epoch the new standby acknowledges, never before. */
		for (uint64_t i = 0; i < n->l.nslots; i++) {
			uint64_t pos = ld(&slot(n, i)->tx_tail);

			if (!n->gated)
				n->sendable[i] = pos;
			n->nmarks[i] = 0;
			if (pos > n->sendable[i]) {
				n->marks[i][0] = (struct mark){ epoch ? epoch - 1 : 0, pos };
				n->nmarks[i] = 1;
			}
		}
		__atomic_store_n(&n->gated, true, __ATOMIC_RELEASE);
		n->epoch = epoch;
		n->released = epoch ? epoch - 1 : 0;
		break;
	case NIC_GATE_MARK:
		if (!n->gated || epoch <= n->epoch) {
			r = -EINVAL;
			break;
		}
		for (uint64_t i = 0; i < n->l.nslots; i++) {
			uint64_t pos = ld(&slot(n, i)->tx_tail);
			unsigned k = n->nmarks[i];

			if (pos <= (k ? n->marks[i][k - 1].pos : n->sendable[i]))
				continue;
			/* Full: merge into the newest mark (held longer, never less). */
			if (k == MARKS_MAX)
				k--;
			n->marks[i][k] = (struct mark){ n->epoch, pos };
			n->nmarks[i] = k + 1;
		}
		n->epoch = epoch;
		break;
	case NIC_GATE_RELEASE:
		if (!n->gated || epoch >= n->epoch) {
			r = -EINVAL;
			break;
		}
		for (uint64_t i = 0; i < n->l.nslots; i++) {
			unsigned k = 0;

			while (k < n->nmarks[i] && n->marks[i][k].epoch <= epoch)
				n->sendable[i] = n->marks[i][k++].pos;
			memmove(n->marks[i], n->marks[i] + k, (n->nmarks[i] - k) * sizeof(struct mark));
			n->nmarks[i] -= k;
		}
		if (epoch > n->released)
			n->released = epoch;
		break;
	case NIC_GATE_OPEN:
		__atomic_store_n(&n->gated, false, __ATOMIC_RELEASE);
		break;
	default:
		r = -EINVAL;
	}
	pthread_mutex_unlock(&n->lock);
	nic_kick(n);
	return r;
}

void nic_stats(struct nic *n, struct nic_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&n->lock);
	for (uint64_t i = 0; i < n->l.nslots; i++) {
		struct nic_slot *s = slot(n, i);

		if (!ld(&s->incarnation))
			continue;
		out->open++;
		if (n->gated)
			out->held_bytes += ld(&s->tx_tail) - MIN(ld(&s->tx_tail), n->sendable[i]);
	}
	out->gated = n->gated;
	out->epoch = n->epoch;
	out->released = n->released;
	pthread_mutex_unlock(&n->lock);
	out->incarnation = n->hdr->incarnation;
	out->accepted = __atomic_load_n(&n->accepted, __ATOMIC_RELAXED);
	out->refused = __atomic_load_n(&n->refused, __ATOMIC_RELAXED);
	out->rx_bytes = __atomic_load_n(&n->rx_bytes, __ATOMIC_RELAXED);
	out->tx_bytes = __atomic_load_n(&n->tx_bytes, __ATOMIC_RELAXED);
}

/* ---- the guest's side ---- */

/* Copy ring bytes [pos, pos + len) out, or buf into the ring at pos. */
static void ring_copy(uint8_t *ring, uint64_t size, uint64_t pos, void *buf, uint64_t len,
		      bool out)
{
	struct iovec v[2];
	int k = ring_iov(ring, size, pos, len, v);
	uint8_t *p = buf;

	for (int i = 0; i < k; i++) {
		if (out)
			memcpy(p, v[i].iov_base, v[i].iov_len);
		else
			memcpy(v[i].iov_base, p, v[i].iov_len);
		p += v[i].iov_len;
	}
}

/*
 * Serve one request of slot i if it has one and room for the reply. Returns
 * 0 if it did nothing, 1 if it did, 2 if the network thread has work from it
 * too: bytes that may leave, a slot to close, or room in a receive ring it
 * found full. While output is held, an answer alone gives it none (the
 * release does), so a busy guest under replication does not wake it once
 * per request. The full ring is a store-then-load on both sides, each behind
 * a full fence: either the guest sees the tail the thread wrote when it ran
 * out of room, or the thread sees the guest's new head and reads on.
 */
static int serve_slot(struct nic *n, struct kv_store *st_, uint64_t i)
{
	struct nic_slot *s = slot(n, i);
	uint64_t ring = n->l.ring_bytes, head, avail, len, used;
	uint32_t state = ld32(&s->state);
	struct kv_req rq;
	char err[128];
	size_t rlen;
	int r;

	if (ld(&s->incarnation) != n->hdr->incarnation || !(state & NIC_OPEN) ||
	    (state & NIC_GUEST_DONE))
		return 0;
	if (state & NIC_PEER_GONE) {
		/* Its client is gone: what it left unanswered, it retries. */
		set_state(s, NIC_GUEST_DONE);
		return 2;
	}
	head = s->rx_head;
	avail = ld(&s->rx_tail) - head;
	if (!avail || ring - (s->tx_tail - ld(&s->tx_head)) < KV_MSG_MAX)
		return 0; /* nothing in, or no room for the answer yet */
	len = MIN(avail, (uint64_t)KV_MSG_MAX);
	ring_copy(rx_ring(n, i), ring, head, n->in, len, true);
	r = kv_req_parse(n->in, len, &rq, &used, err, sizeof err);
	if (r == -EAGAIN)
		return 0; /* half a request: wait for the rest */
	if (r) {
		/* Garbage: say so, and close the connection once that is out. */
		struct kv_rep_hdr h;

		kv_rep_hdr_make(&h, KV_HELLO, KV_BAD_REQUEST, 0, 0, 0);
		memcpy(n->out, &h, sizeof h);
		rlen = sizeof h;
		used = avail;
		set_state(s, NIC_GUEST_DONE);
	} else {
		rlen = kv_handle(st_, &s->kv, &rq, n->out);
	}
	ring_copy(tx_ring(n, i), ring, s->tx_tail, n->out, rlen, false);
	st(&s->tx_tail, s->tx_tail + rlen);
	st(&s->rx_head, head + used);
	if (!__atomic_load_n(&n->gated, __ATOMIC_ACQUIRE) || (ld32(&s->state) & NIC_GUEST_DONE))
		return 2;
	atomic_thread_fence(memory_order_seq_cst);
	return ld(&s->rx_tail) - head == ring ? 2 : 1;
}

bool nic_serve_step(struct nic *n, struct kv_store *s)
{
	for (uint64_t k = 0; k < n->l.nslots; k++) {
		uint64_t i = (n->next_slot + k) % n->l.nslots;
		int r = serve_slot(n, s, i);

		if (r) {
			n->next_slot = i + 1;
			if (r == 2)
				nic_kick(n);
			return true;
		}
	}
	return false;
}
