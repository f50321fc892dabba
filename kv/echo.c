/* SPDX-License-Identifier: Apache-2.0 */
/*
 * echo.c — ferry-kv echo: a trivial server of the kvstore protocol that
 * answers every request at once (OK, or NOT_FOUND for a GET) and keeps
 * nothing. Benchmarks run the same client against it in the same run: it is
 * what this machine's loopback and this client can do at best.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "common/util.h"
#include "kv/kv.h"
#include "kv/proto.h"

static void on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	for (;;) {
		size_t len = evbuffer_get_length(in), used;
		uint8_t *p = evbuffer_pullup(in, (ssize_t)MIN(len, (size_t)KV_MSG_MAX));
		struct kv_rep_hdr h;
		struct kv_req rq;
		char err[128];
		int r = len ? kv_req_parse(p, MIN(len, (size_t)KV_MSG_MAX), &rq, &used, err,
					   sizeof err) : -EAGAIN;

		if (r == -EAGAIN)
			return;
		if (r) {
			bufferevent_free(bev);
			return;
		}
		kv_rep_hdr_make(&h, rq.op, rq.op == KV_GET ? KV_NOT_FOUND : KV_OK, rq.seq,
				rq.op == KV_HELLO ? rq.window : 0, 0);
		bufferevent_write(bev, &h, sizeof h);
		evbuffer_drain(in, used);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int len, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(arg, fd, BEV_OPT_CLOSE_ON_FREE);
	int one = 1;

	(void)l, (void)sa, (void)len;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig, (void)what;
	event_base_loopexit(arg, NULL);
}

int echo_main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	struct event_base *base;
	struct evconnlistener *l;
	struct event *s1, *s2;

	if (argc != 2 || argv[1][0] == '-') {
		fputs("usage: ferry-kv echo ADDR:PORT\n\nAnswers every kvstore request at once and "
		      "keeps nothing, until SIGINT or SIGTERM.\n", argc == 2 ? stdout : stderr);
		return argc == 2 ? 0 : 2;
	}
	if (evutil_parse_sockaddr_port(argv[1], (struct sockaddr *)&ss, &len)) {
		fprintf(stderr, "ferry-kv echo: bad address %s\n", argv[1]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	l = evconnlistener_new_bind(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE |
				    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 256,
				    (struct sockaddr *)&ss, len);
	if (!l) {
		fprintf(stderr, "ferry-kv echo: cannot listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	s1 = evsignal_new(base, SIGINT, on_signal, base);
	s2 = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(s1, NULL);
	event_add(s2, NULL);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_free(s1);
	event_free(s2);
	event_base_free(base);
	return 0;
}
