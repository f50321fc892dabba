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
#include <unistd.h>

#define MAX_PAIRS 8
#define BUF_SIZE (64 * 1024)

/* One direction of a connection: bytes read from one socket, waiting to be
 * written to the other. */
struct dir {
	char buf[BUF_SIZE];
	size_t off, len;
	bool eof;     /* the reading side has no more */
	bool shut;    /* passed on as a half-close */
	uint64_t pos; /* bytes read so far */
};

struct pair {
	int c, s;           /* the connecting side, the destination */
	struct dir up, down; /* c -> s, s -> c */
};

struct proxy {
	int lsock, wake[2];
	uint16_t port, dst_port;
	uint64_t flip_at;
	pthread_t thread;
	struct pair pairs[MAX_PAIRS];
	/* Read by the test thread while the proxy runs. */
	unsigned conns, flips;
	uint64_t bytes_up;
};

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

/* Move bytes of one direction: read from 'from' if the buffer is empty,
 * write what is buffered to 'to'. false: the connection is broken. */
static bool pump(struct proxy *px, struct dir *d, int from, int to, short rev_from, short rev_to,
		 bool upward)
{
	if ((rev_from & (POLLIN | POLLHUP | POLLERR)) && d->len == 0 && !d->eof) {
		ssize_t n = read(from, d->buf, sizeof d->buf);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			n = -2;
		if (n == 0)
			d->eof = true;
		else if (n == -1)
			return false;
		if (n > 0) {
			if (upward && px->flip_at && px->flip_at >= d->pos &&
			    px->flip_at < d->pos + (uint64_t)n) {
				d->buf[px->flip_at - d->pos] ^= 0x5a;
				__atomic_add_fetch(&px->flips, 1, __ATOMIC_RELAXED);
			}
			d->pos += (uint64_t)n;
			d->off = 0;
			d->len = (size_t)n;
			if (upward)
				__atomic_add_fetch(&px->bytes_up, (uint64_t)n, __ATOMIC_RELAXED);
		}
	}
	if ((rev_to & POLLOUT) && d->len) {
		ssize_t n = send(to, d->buf + d->off, d->len, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (n > 0) {
			d->off += (size_t)n;
			d->len -= (size_t)n;
		}
	}
	if ((rev_to & (POLLERR)) && !(rev_to & POLLOUT))
		return false;
	if (d->eof && d->len == 0 && !d->shut) {
		shutdown(to, SHUT_WR);
		d->shut = true;
	}
	return true;
}

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;

	for (;;) {
		struct pollfd pf[2 + 2 * MAX_PAIRS];
		int map[2 + 2 * MAX_PAIRS];
		nfds_t n = 0;

		pf[n++] = (struct pollfd){ .fd = px->wake[0], .events = POLLIN };
		pf[n++] = (struct pollfd){ .fd = px->lsock, .events = POLLIN };
		for (int i = 0; i < MAX_PAIRS; i++) {
			struct pair *p = &px->pairs[i];

			if (p->c < 0)
				continue;
			map[n] = i;
			pf[n++] = (struct pollfd){ .fd = p->c,
						   .events = (short)((!p->up.len && !p->up.eof ? POLLIN : 0) |
								     (p->down.len ? POLLOUT : 0)) };
			map[n] = i;
			pf[n++] = (struct pollfd){ .fd = p->s,
						   .events = (short)((!p->down.len && !p->down.eof ? POLLIN : 0) |
								     (p->up.len ? POLLOUT : 0)) };
		}
		if (poll(pf, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents)
			break;
		if (pf[1].revents & POLLIN) {
			int c = accept4(px->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

			if (c >= 0) {
				int slot = -1, s;

				for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
					if (px->pairs[i].c < 0)
						slot = i;
				s = slot >= 0 ? connect_dst(px->dst_port) : -1;
				if (s < 0) {
					close_rst(&c);
				} else {
					struct pair *p = &px->pairs[slot];

					memset(&p->up, 0, sizeof p->up);
					memset(&p->down, 0, sizeof p->down);
					p->c = c;
					p->s = s;
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
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	struct proxy *px = calloc(1, sizeof *px);
	int e;

	if (!px)
		return NULL;
	px->dst_port = dst_port;
	px->flip_at = flip_at;
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
