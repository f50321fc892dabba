/* SPDX-License-Identifier: Apache-2.0 */
/*
 * control.c — the control socket: one JSON request per line in, one JSON
 * reply per line out (docs/ferryd.md). A request's shape is checked on the
 * loop thread (api/api.h); a slow one runs on a task thread of its own and
 * the connection reads nothing more until its reply is out.
 */
#include "daemon/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "api/api.h"
#include "common/log.h"
#include "daemon/api.h"
#include "daemon/core.h"

#define LINE_MAX_BYTES (64 * 1024)

static struct evconnlistener *listener;

struct client {
	struct bufferevent *bev;
	int refs;        /* loop thread only */
	bool closed;     /* the peer went away; drop replies */
	bool busy;       /* a request is on a task thread */
	bool skipping;   /* discarding the rest of an over-long line */
};

static void client_read(struct bufferevent *bev, void *arg);

static void client_put(struct client *c)
{
	if (--c->refs == 0) {
		bufferevent_free(c->bev);
		free(c);
	}
}

static void send_reply(struct client *c, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);

	if (text) {
		struct evbuffer *out = bufferevent_get_output(c->bev);

		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
		free(text);
	}
	json_decref(reply);
}

static json_t *error_reply(const char *msg)
{
	return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "kind", API_ERR_INVALID);
}

static void task_done(json_t *reply, void *arg)
{
	struct client *c = arg;

	if (!c->closed) {
		send_reply(c, reply);
		c->busy = false;
		bufferevent_enable(c->bev, EV_READ);
		client_read(c->bev, c); /* requests that queued meanwhile */
	} else {
		json_decref(reply);
	}
	client_put(c);
}

static void handle_line(struct client *c, const char *line, size_t len)
{
	json_error_t je;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	const struct api_op *op;
	char err[256];

	if (!req) {
		snprintf(err, sizeof err, "malformed JSON: %s (column %d)", je.text, je.column);
		send_reply(c, error_reply(err));
		return;
	}
	if (api_check(req, &op, err, sizeof err)) {
		send_reply(c, error_reply(err));
		json_decref(req);
		return;
	}
	if (!api_slow(op, req)) {
		send_reply(c, api_handle(req));
		json_decref(req);
		return;
	}
	c->refs++;
	c->busy = true;
	bufferevent_disable(c->bev, EV_READ);
	if (api_run_async(req, task_done, c)) {
		c->refs--;
		c->busy = false;
		bufferevent_enable(c->bev, EV_READ);
		send_reply(c, error_reply("cannot start a thread"));
		json_decref(req);
	}
}

static void client_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->busy && !c->closed) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);

		if (!line) {
			if (evbuffer_get_length(in) > LINE_MAX_BYTES) {
				/* Drop it and the rest of the line; one error for it. */
				evbuffer_drain(in, evbuffer_get_length(in));
				if (!c->skipping)
					send_reply(c, error_reply("request longer than 64 KiB"));
				c->skipping = true;
			}
			return;
		}
		if (c->skipping) {
			c->skipping = false;
			free(line);
			continue;
		}
		if (n > LINE_MAX_BYTES)
			send_reply(c, error_reply("request longer than 64 KiB"));
		else if (n > 0)
			handle_line(c, line, n);
		free(line);
	}
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		c->closed = true;
		client_put(c);
	}
}

static void client_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int len, void *arg)
{
	struct client *c = calloc(1, sizeof *c);

	(void)l, (void)sa, (void)len, (void)arg;
	if (!c || !(c->bev = bufferevent_socket_new(D.base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		free(c);
		close(fd);
		return;
	}
	c->refs = 1;
	bufferevent_setcb(c->bev, client_read, NULL, client_event, c);
	bufferevent_enable(c->bev, EV_READ);
}

static struct evconnlistener *listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct evconnlistener *l;
	int fd;

	if (strlen(path) >= sizeof sa.sun_path)
		fatal("socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	/* A socket file left by a dead ferryd: nobody answers on it. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
		fatal("%s: another ferryd is running", path);
	if (fd >= 0)
		close(fd);
	unlink(path);
	l = evconnlistener_new_bind(D.base, client_accept, NULL,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64,
				    (struct sockaddr *)&sa, sizeof sa);
	if (!l)
		fatal("cannot listen on %s: %s", path, strerror(errno));
	chmod(path, 0660);
	return l;
}

void control_listen(void)
{
	listener = listen_unix(D.socket_path);
}

void control_stop(void)
{
	if (listener)
		evconnlistener_free(listener);
	listener = NULL;
	unlink(D.socket_path);
}
