/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_greet.c — libFuzzer target for what a stranger can send to the
 * migration port before it has said who it is (session/greet.c): the first
 * byte, a TLS handshake, the HELLO frame and its checks, driven step by
 * step as the listener's event loop drives them, over a real loopback
 * connection. The first input byte picks the listener's kind (even:
 * plaintext, odd: TLS with a throwaway pool CA made at start-up) and how
 * the rest is cut into writes; the rest is what the peer sends, then it
 * closes its side.
 *
 * Whatever arrives, greet_step must end (done or failed) without blocking;
 * a failure must say why; a HELLO that passes must be one wire_hello_parse
 * accepts, and only plaintext can get there (random bytes do not make a
 * TLS handshake with a certificate from the pool's CA).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "session/greet.h"
#include "transport/certs.h"
#include "transport/tls.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lfd = -1;
static struct sockaddr_in laddr;
static struct tls_ctx *tls;

/* A throwaway pool CA and host certificate, for the TLS listener. */
static void make_pki(void)
{
	char dir[] = "/tmp/ferry-fuzz-greet-XXXXXX", crt[300], key[300], cac[300], err[300];
	const char *ip = "127.0.0.1";
	struct certs_pair *ca, *host;
	struct certs_host_req req = { .name = "fuzz", .ips = &ip, .nr_ips = 1 };
	time_t now = time(NULL);
	struct tls_conf tc = { cac, crt, key };

	CHECK(mkdtemp(dir));
	snprintf(cac, sizeof cac, "%s/ca.crt", dir);
	snprintf(crt, sizeof crt, "%s/fuzz.crt", dir);
	snprintf(key, sizeof key, "%s/fuzz.key", dir);
	req.not_before = now - 3600;
	req.not_after = now + 86400;
	CHECK(!certs_ca_new(NULL, now - 3600, now + 86400, &ca, err, sizeof err));
	CHECK(!certs_host_new(ca, &req, &host, err, sizeof err));
	CHECK(!certs_pair_write(host, crt, key, true, err, sizeof err));
	snprintf(key, sizeof key, "%s/ca.key", dir);
	CHECK(!certs_pair_write(ca, cac, key, true, err, sizeof err));
	snprintf(key, sizeof key, "%s/fuzz.key", dir);
	CHECK(!tls_ctx_new(&tc, &tls, err, sizeof err));
	certs_pair_free(host);
	certs_pair_free(ca);
	unlink(crt);
	unlink(key);
	unlink(cac);
	snprintf(key, sizeof key, "%s/ca.key", dir);
	unlink(key);
	rmdir(dir);
}

static void init(void)
{
	socklen_t len = sizeof laddr;

	laddr = (struct sockaddr_in){ .sin_family = AF_INET,
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(lfd >= 0);
	CHECK(!bind(lfd, (struct sockaddr *)&laddr, sizeof laddr));
	CHECK(!listen(lfd, 16));
	CHECK(!getsockname(lfd, (struct sockaddr *)&laddr, &len));
	make_pki();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_conf sc = { .host = "fuzz", .allow_from = "*", .caps = WIRE_CAPS_ALL,
				   .channels = 4, .peer_timeout_ms = 1000,
				   .handshake_timeout_ms = 1000 };
	enum greet_state st = GREET_WAIT;
	struct greet *g;
	size_t cut, off = 0;
	int cfd, sfd;

	if (lfd < 0)
		init();
	if (size < 1 || size > 70000)
		return 0;
	sc.link.tls = data[0] & 1 ? tls : NULL;
	sc.link.timeout_ms = 1000;
	cut = 1 + (data[0] >> 1) * 97u; /* the size of each write */
	data++, size--;
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(cfd >= 0);
	/* Loopback's ephemeral ports can run short for a moment after tens of
	 * thousands of inputs (and the suite's other tests before them):
	 * wait a little for them rather than call that a finding. */
	for (int tries = 0; connect(cfd, (struct sockaddr *)&laddr, sizeof laddr); tries++) {
		CHECK(tries < 200 && (errno == EADDRNOTAVAIL || errno == EAGAIN));
		usleep(10000);
	}
	sfd = accept(lfd, NULL, NULL);
	CHECK(sfd >= 0);
	g = greet_new(&sc, sfd);
	CHECK(g);
	/* Feed the bytes a write at a time, stepping between writes, then
	 * close: every step must return, and the end must be reached. */
	for (unsigned spins = 0; st == GREET_WAIT; spins++) {
		short ev = 0;

		CHECK(spins < 100000);
		if (off < size) {
			size_t n = size - off < cut ? size - off : cut;
			ssize_t w = send(cfd, data + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w > 0)
				off += (size_t)w;
			if (off == size)
				shutdown(cfd, SHUT_WR);
		} else if (size == 0 && spins == 0) {
			shutdown(cfd, SHUT_WR);
		}
		st = greet_step(g, &ev);
		if (st == GREET_WAIT) {
			struct pollfd p = { .fd = sfd, .events = ev };
			char sink[4096];

			CHECK(ev == POLLIN || ev == POLLOUT);
			/* What the listener says back is read and dropped, so
			 * that it never waits for room. */
			while (recv(cfd, sink, sizeof sink, MSG_DONTWAIT) > 0)
				;
			if (off == size)
				poll(&p, 1, 10);
		}
	}
	if (st == GREET_FAILED) {
		CHECK(greet_error(g)[0] || greet_fault(g) == GREET_NOMEM);
		CHECK(greet_fault(g) != GREET_OK);
		CHECK(!greet_trusted(g));
	} else {
		CHECK(st == GREET_DONE);
		CHECK(!sc.link.tls); /* no TLS handshake from random bytes */
		CHECK(greet_trusted(g));
	}
	greet_free(g);
	/* An abortive close: tens of thousands of inputs a minute would leave
	 * as many connections in TIME_WAIT and use up loopback's ephemeral
	 * ports (connect then fails: EADDRNOTAVAIL). */
	setsockopt(cfd, SOL_SOCKET, SO_LINGER, &(struct linger){ .l_onoff = 1, .l_linger = 0 },
		   sizeof(struct linger));
	close(cfd);
	return 0;
}
