/* SPDX-License-Identifier: Apache-2.0 */
/* proxy.c — a corrupting TCP forwarder for tests; see proxy.h. */
#include "tests/integration/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))

#define MAX_PAIRS 16
#define RING (8u << 20) /* bytes in flight per direction: 8 MiB / delay bounds the rate */
#define QN 4096         /* reads in flight per direction */

/*
 * One direction of a connection: a ring of bytes read from one socket and
 * not yet written to the other, [wpos, rpos) in stream positions. Each read
 * is queued with the time it may be passed on (now, or now + the delay).
 */
struct dir {
	char *buf;
	uint64_t rpos, wpos;
	struct {
		uint64_t end, at;
	} q[QN];
	unsigned qh, qn;
	bool eof;     /* the reading side has no more */
	bool shut;    /* passed on as a half-close */
	uint64_t delay_ns;
	bool flip;    /* flip the byte at flip_at of this direction */
};

struct pair {
	int c, s;           /* the connecting side, the destination */
	struct dir up, down; /* c -> s, s -> c */
};

struct proxy {
	int lsock, wake[2];
	uint16_t port, dst_port;
	struct proxy_opts o;
	pthread_t thread;
	struct pair pairs[MAX_PAIRS];
	/* Read by the test thread while the proxy runs. */
	unsigned conns, flips;
	bool cut; /* set by the test thread (atomic) */
	uint64_t bytes_up;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The stream position up to which bytes may be written now. */
static uint64_t ready_end(const struct dir *d, uint64_t now)
{
	uint64_t end = d->wpos;

	for (unsigned i = 0; i < d->qn; i++) {
		unsigned k = (d->qh + i) % QN;

		if (d->q[k].at > now)
			break;
		end = d->q[k].end;
	}
	return end;
}

/* When the next queued bytes become ready (0: none waiting). */
static uint64_t next_ready(const struct dir *d, uint64_t now)
{
	for (unsigned i = 0; i < d->qn; i++) {
		unsigned k = (d->qh + i) % QN;

		if (d->q[k].at > now)
			return d->q[k].at;
	}
	return 0;
}

static bool can_read(const struct dir *d)
{
	return !d->eof && d->rpos - d->wpos < RING && d->qn < QN;
}

/* Close a socket so that its peer sees a reset, not an orderly end. */
static void close_rst(int *fd)
{
	struct linger l = { 1, 0 };

	if (*fd < 0)
		return;
	setsockopt(*fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(*fd);
	*fd = -1;
}

static void pair_close(struct pair *p, bool reset)
{
	if (reset) {
		close_rst(&p->c);
		close_rst(&p->s);
	} else {
		close(p->c);
		close(p->s);
		p->c = p->s = -1;
	}
	free(p->up.buf);
	free(p->down.buf);
	p->up.buf = p->down.buf = NULL;
}

static int connect_dst(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -1;
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(s);
		return -1;
	}
	fcntl(s, F_SETFL, O_NONBLOCK);
	return s;
}

/* Move bytes of one direction: read from 'from' into the ring, write what
 * is ready to 'to'. false: the connection is broken. */
static bool pump(struct proxy *px, struct dir *d, int from, int to, short rev_from, short rev_to,
		 bool upward)
{
	uint64_t now = now_ns();

	if ((rev_from & (POLLIN | POLLHUP | POLLERR)) && can_read(d)) {
		size_t at = (size_t)(d->rpos % RING);
		size_t room = MIN(RING - at, RING - (size_t)(d->rpos - d->wpos));
		ssize_t n = read(from, d->buf + at, room);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			n = -2;
		if (n == 0)
			d->eof = true;
		else if (n == -1)
			return false;
		if (n > 0) {
			uint64_t f = px->o.flip_at;

			if (d->flip && f && f >= d->rpos && f < d->rpos + (uint64_t)n) {
				d->buf[f % RING] ^= 0x5a;
				__atomic_add_fetch(&px->flips, 1, __ATOMIC_RELAXED);
			}
			d->rpos += (uint64_t)n;
			d->q[(d->qh + d->qn) % QN].end = d->rpos;
			d->q[(d->qh + d->qn) % QN].at = now + d->delay_ns;
			d->qn++;
			if (upward)
				__atomic_add_fetch(&px->bytes_up, (uint64_t)n, __ATOMIC_RELAXED);
		}
	}
	if (rev_to & POLLOUT) {
		uint64_t end = ready_end(d, now);

		if (end > d->wpos) {
			size_t at = (size_t)(d->wpos % RING);
			size_t len = (size_t)MIN(end - d->wpos, (uint64_t)(RING - at));
			ssize_t n = send(to, d->buf + at, len, MSG_NOSIGNAL);

			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return false;
			if (n > 0)
				d->wpos += (uint64_t)n;
			while (d->qn && d->q[d->qh].end <= d->wpos) {
				d->qh = (d->qh + 1) % QN;
				d->qn--;
			}
		}
	}
	if ((rev_to & (POLLERR)) && !(rev_to & POLLOUT))
		return false;
	if (d->eof && d->wpos == d->rpos && !d->shut) {
		shutdown(to, SHUT_WR);
		d->shut = true;
	}
	return true;
}

/* Events to poll for: reading while there is room, writing while bytes are ready. */
static short events(const struct dir *rd, const struct dir *wr, uint64_t now)
{
	return (short)((can_read(rd) ? POLLIN : 0) | (ready_end(wr, now) > wr->wpos ? POLLOUT : 0));
}

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	bool was_cut = false;

	for (;;) {
		struct pollfd pf[2 + 2 * MAX_PAIRS];
		int map[2 + 2 * MAX_PAIRS], timeout = 50; /* notice a cut */
		uint64_t now = now_ns();
		bool cut = __atomic_load_n(&px->cut, __ATOMIC_RELAXED);
		nfds_t n = 0;

		if (was_cut && !cut) /* mended: what was cut stays dead */
			for (int i = 0; i < MAX_PAIRS; i++)
				if (px->pairs[i].c >= 0)
					pair_close(&px->pairs[i], true);
		was_cut = cut;
		pf[n++] = (struct pollfd){ .fd = px->wake[0], .events = POLLIN };
		pf[n++] = (struct pollfd){ .fd = px->lsock, .events = POLLIN };
		for (int i = 0; i < MAX_PAIRS && !cut; i++) {
			struct pair *p = &px->pairs[i];

			if (p->c < 0)
				continue;
			map[n] = i;
			pf[n++] = (struct pollfd){ .fd = p->c, .events = events(&p->up, &p->down, now) };
			map[n] = i;
			pf[n++] = (struct pollfd){ .fd = p->s, .events = events(&p->down, &p->up, now) };
			/* Wake when delayed bytes become ready. */
			for (int k = 0; k < 2; k++) {
				uint64_t at = next_ready(k ? &p->down : &p->up, now);
				int ms = at ? (int)((at - now) / 1000000) + 1 : -1;

				if (ms >= 0 && ms < timeout)
					timeout = ms;
			}
		}
		if (poll(pf, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents)
			break;
		if (pf[1].revents & POLLIN) {
			int c = accept4(px->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

			if (c >= 0 && cut) {
				close_rst(&c);
			} else if (c >= 0) {
				int slot = -1, s;

				for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
					if (px->pairs[i].c < 0)
						slot = i;
				s = slot >= 0 ? connect_dst(px->dst_port) : -1;
				if (s < 0) {
					close_rst(&c);
				} else {
					struct pair *p = &px->pairs[slot];
					int k = (int)px->conns;

					memset(&p->up, 0, sizeof p->up);
					memset(&p->down, 0, sizeof p->down);
					p->up.buf = malloc(RING);
					p->down.buf = malloc(RING);
					p->c = c;
					p->s = s;
					if (!p->up.buf || !p->down.buf) {
						pair_close(p, true);
						continue;
					}
					p->up.flip = px->o.flip_conn < 0 || px->o.flip_conn == k;
					if (px->o.delay_conn < 0 || px->o.delay_conn == k)
						p->up.delay_ns = (uint64_t)px->o.delay_ms * 1000000;
					__atomic_add_fetch(&px->conns, 1, __ATOMIC_RELAXED);
				}
			}
		}
		for (nfds_t k = 2; k < n; k += 2) {
			struct pair *p = &px->pairs[map[k]];
			bool ok;

			if (p->c < 0)
				continue;
			ok = pump(px, &p->up, p->c, p->s, pf[k].revents, pf[k + 1].revents, true) &&
			     pump(px, &p->down, p->s, p->c, pf[k + 1].revents, pf[k].revents, false);
			if (!ok)
				pair_close(p, true);
			else if (p->up.shut && p->down.shut)
				pair_close(p, false);
		}
	}
	for (int i = 0; i < MAX_PAIRS; i++)
		if (px->pairs[i].c >= 0)
			pair_close(&px->pairs[i], true);
	return NULL;
}

struct proxy *proxy_start(uint16_t dst_port, uint64_t flip_at)
{
	struct proxy_opts o = { .flip_at = flip_at, .flip_conn = -1, .delay_conn = -1 };

	return proxy_start_opts(dst_port, &o);
}

struct proxy *proxy_start_opts(uint16_t dst_port, const struct proxy_opts *o)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	struct proxy *px = calloc(1, sizeof *px);
	int e;

	if (!px)
		return NULL;
	px->dst_port = dst_port;
	px->o = *o;
	for (int i = 0; i < MAX_PAIRS; i++)
		px->pairs[i].c = px->pairs[i].s = -1;
	px->wake[0] = px->wake[1] = -1;
	px->lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (px->lsock < 0 || bind(px->lsock, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    listen(px->lsock, 8) < 0 || getsockname(px->lsock, (struct sockaddr *)&sa, &len) < 0 ||
	    pipe2(px->wake, O_CLOEXEC) < 0)
		goto err;
	px->port = ntohs(sa.sin_port);
	if ((e = pthread_create(&px->thread, NULL, proxy_main, px))) {
		errno = e;
		goto err;
	}
	return px;
err:
	e = errno;
	if (px->lsock >= 0)
		close(px->lsock);
	if (px->wake[0] >= 0) {
		close(px->wake[0]);
		close(px->wake[1]);
	}
	free(px);
	errno = e;
	return NULL;
}

uint16_t proxy_port(const struct proxy *p)
{
	return p->port;
}

unsigned proxy_connections(const struct proxy *p)
{
	return __atomic_load_n(&p->conns, __ATOMIC_RELAXED);
}

uint64_t proxy_bytes_up(const struct proxy *p)
{
	return __atomic_load_n(&p->bytes_up, __ATOMIC_RELAXED);
}

unsigned proxy_flips(const struct proxy *p)
{
	return __atomic_load_n(&p->flips, __ATOMIC_RELAXED);
}

void proxy_cut(struct proxy *p, bool cut)
{
	__atomic_store_n(&p->cut, cut, __ATOMIC_RELAXED);
}

void proxy_stop(struct proxy *p)
{
	if (!p)
		return;
	if (write(p->wake[1], "x", 1) != 1)
		abort(); /* a pipe with room: cannot fail */
	pthread_join(p->thread, NULL);
	close(p->lsock);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}
