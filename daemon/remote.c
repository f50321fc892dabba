/* SPDX-License-Identifier: Apache-2.0 */
/*
 * remote.c — the remote API over libevent's evhttp; see remote.h.
 *
 * A connection's TLS runs in an OpenSSL bufferevent on the loop (the
 * handshake too: no thread per connection). A request is decoded by
 * api/http.h into a control request and handled by the same handlers as the
 * control socket (api.h): on the loop when quick, on a task thread when it
 * talks to a guest or the disk. A connection that closes while its request
 * is on a thread is noticed (its close callback) and the answer dropped.
 */
#include "config.h"

#include "daemon/remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

#include "api/api.h"
#include "api/http.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/api.h"
#include "daemon/core.h"
#include "daemon/events.h"
#include "daemon/idem.h"
#include "daemon/metrics.h"
#include "transport/tls.h"

#define TIMEOUT_S 30          /* a request's headers and body, a reply's write */
#define HEADERS_MAX 16384
#define KEEPALIVE_S 15        /* a comment on each event stream this often */
#define FOLLOWER_BACKLOG (4 << 20) /* unsent bytes before a stream is cut */

static struct evhttp *http;
static struct event *keepalive;

/* A request on a task thread. */
struct pending {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	bool gone;                   /* the connection closed meanwhile */
	bool orphan;                 /* ... and left req to us to free */
	int ok_status;
	char token[IDEM_TOKEN_LEN];  /* its Idempotency-Key, "" if none */
	char what[160];              /* "CN POST /v1/..." for the log */
};

/* An event stream. */
struct follower {
	struct follower *next;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
};
static struct follower *followers;
static unsigned nfollowers;

/* ---- answers ---- */

/* Refusals are logged, but at most REFUSALS_LOGGED in ten seconds, then
 * counted: a caller that hammers the API cannot flood the journal. Loop
 * thread only. */
#define REFUSALS_LOGGED 20
static struct {
	time_t window;
	unsigned logged, dropped;
} refusals;

static bool refusal_logged(void)
{
	time_t w = time(NULL) / 10;

	if (w != refusals.window) {
		if (refusals.dropped)
			log_warn("api: %u more refusals in 10 s were not logged one by one",
				 refusals.dropped);
		refusals.window = w;
		refusals.logged = refusals.dropped = 0;
	}
	if (refusals.logged < REFUSALS_LOGGED) {
		refusals.logged++;
		return true;
	}
	refusals.dropped++;
	return false;
}

static void send_body(struct evhttp_request *r, int status, const char *type, const char *body,
		      size_t len)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", type);
	if (b)
		evbuffer_add(b, body, len);
	evhttp_send_reply(r, status, NULL, b);
	evbuffer_free(b);
	metrics_api_request(status);
}

static void send_json_text(struct evhttp_request *r, int status, const char *text)
{
	size_t n = strlen(text);
	char *line = malloc(n + 2);

	if (!line) {
		send_body(r, 500, "application/json", "{\"error\":\"out of memory\"}\n", 26);
		return;
	}
	memcpy(line, text, n);
	memcpy(line + n, "\n", 2);
	send_body(r, status, "application/json", line, n + 1);
	free(line);
}

/* A refusal before any handler ran: {"error", "kind"}. */
static void refuse(struct evhttp_request *r, int status, const char *kind, const char *msg,
		   const char *who)
{
	json_t *o = json_pack("{s:s, s:s}", "error", msg, "kind", kind);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	if (refusal_logged())
		log_info("api: %s: %d %s", who, status, msg);
	send_json_text(r, status, text ? text : "{\"error\":\"out of memory\"}");
	free(text);
	json_decref(o);
}

/* A control reply as the HTTP answer: its body without "ok". */
static char *reply_text(json_t *reply, int status, const char **job)
{
	json_object_del(reply, "ok");
	*job = status == 202 ? json_string_value(json_object_get(reply, "job")) : NULL;
	return json_dumps(reply, JSON_COMPACT);
}

static void answer(struct evhttp_request *r, const char *what, const char *token, int ok_status,
		   json_t *reply)
{
	int status = http_status_of(reply, ok_status);
	const char *job = NULL;
	char *text = reply_text(reply, status, &job);
	char loc[64];

	/* tests: ferryd dies with the work done and its key not yet kept */
	if (token[0] && status < 300)
		failpoint("api-answer");
	if (token[0])
		idem_finish(token, status, text ? text : "{}");
	if (r) {
		if (job) {
			snprintf(loc, sizeof loc, "/v1/jobs/%s", job);
			evhttp_add_header(evhttp_request_get_output_headers(r), "Location", loc);
		}
		send_json_text(r, status, text ? text : "{\"error\":\"out of memory\"}");
	}
	if (status >= 400 && refusal_logged())
		log_info("api: %s: %d %s", what, status, text ? text : "");
	else
		log_debug("api: %s: %d", what, status);
	free(text);
	json_decref(reply);
}

/*
 * libevent 2.1, a connection that fails under a request its user has not
 * answered: it detaches the request (no connection any more) and leaves it
 * to the user to free; a connection freed otherwise (evhttp_free) frees its
 * requests itself. The close callback runs in both cases, and tells them
 * apart by whether the request still has its connection.
 */
static void pending_closed(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;

	(void)evcon;
	p->gone = true;
	p->orphan = evhttp_request_get_connection(p->req) == NULL;
}

static void pending_done(json_t *reply, void *arg)
{
	struct pending *p = arg;

	if (!p->gone)
		evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	answer(p->gone ? NULL : p->req, p->what, p->token, p->ok_status, reply);
	if (p->orphan)
		evhttp_request_free(p->req);
	free(p);
}

/* ---- event streams ---- */

static void follower_drop(struct follower *f, bool end)
{
	struct follower **pp = &followers;

	while (*pp && *pp != f)
		pp = &(*pp)->next;
	if (*pp)
		*pp = f->next;
	nfollowers--;
	if (end) {
		evhttp_connection_set_closecb(f->evcon, NULL, NULL);
		evhttp_send_reply_end(f->req);
	}
	free(f);
}

static void follower_closed(struct evhttp_connection *evcon, void *arg)
{
	struct follower *f = arg;
	struct evhttp_request *req = f->req;

	(void)evcon;
	follower_drop(f, false);
	/* Detached: ours to free (see pending_closed). */
	if (!evhttp_request_get_connection(req))
		evhttp_request_free(req);
}

static void follower_send(struct follower *f, const char *text, size_t len)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(f->evcon);
	struct evbuffer *b;

	/* A follower that does not read is cut off, not buffered for. */
	if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > FOLLOWER_BACKLOG) {
		log_warn("api: an event stream is %d MiB behind; closing it",
			 FOLLOWER_BACKLOG >> 20);
		follower_drop(f, true);
		return;
	}
	if ((b = evbuffer_new())) {
		evbuffer_add(b, text, len);
		evhttp_send_reply_chunk(f->req, b);
		evbuffer_free(b);
	}
}

static void broadcast(void *ctx, uint64_t id, const char *type, const char *json)
{
	char *text;
	int n;

	(void)ctx;
	if (!followers)
		return;
	n = asprintf(&text, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)id, type,
		     json);
	if (n < 0)
		return;
	for (struct follower *f = followers, *next; f; f = next) {
		next = f->next;
		follower_send(f, text, (size_t)n);
	}
	free(text);
}

static void keepalive_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	for (struct follower *f = followers, *next; f; f = next) {
		next = f->next;
		follower_send(f, ": keepalive\n\n", 13);
	}
}

static void follow(struct evhttp_request *r, const char *who)
{
	struct follower *f;

	if (nfollowers >= REMOTE_FOLLOWERS_MAX) {
		refuse(r, 503, API_ERR_UNAVAILABLE, "too many event streams are open", who);
		return;
	}
	if (!(f = calloc(1, sizeof *f))) {
		refuse(r, 500, API_ERR_FAILED, "out of memory", who);
		return;
	}
	f->req = r;
	f->evcon = evhttp_request_get_connection(r);
	f->next = followers;
	followers = f;
	nfollowers++;
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
			  "text/event-stream");
	evhttp_add_header(evhttp_request_get_output_headers(r), "Cache-Control", "no-cache");
	evhttp_send_reply_start(r, 200, NULL);
	metrics_api_request(200);
	evhttp_connection_set_closecb(f->evcon, follower_closed, f);
	follower_send(f, ": ferry events; job and vm\n\n", 28);
	log_info("api: %s follows the events", who);
}

/* ---- requests ---- */

static enum http_method method_of(struct evhttp_request *r)
{
	switch (evhttp_request_get_command(r)) {
	case EVHTTP_REQ_GET: return HTTP_GET;
	case EVHTTP_REQ_POST: return HTTP_POST;
	case EVHTTP_REQ_DELETE: return HTTP_DELETE;
	default: return HTTP_OTHER;
	}
}

/* Who called: 0 and *peer, or the refusal has been sent. */
static int caller(struct evhttp_request *r, struct tls_peer *peer)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(r);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	char msg[512];
	int e = ssl ? tls_ssl_peer(ssl, peer) : -ENOENT;

	if (e == -EACCES) {
		snprintf(msg, sizeof msg, "the certificate of %s is not from this pool's CA (%s)",
			 peer->cn, peer->why);
		refuse(r, 403, "forbidden", msg, peer->cn);
		return -EPERM;
	}
	if (e) {
		refuse(r, 403, "forbidden", "no client certificate (the API needs one from the "
		       "pool's CA: ferry certs client NAME --role manager)",
		       evhttp_request_get_uri(r));
		return -EPERM;
	}
	if (peer->role == CERTS_ROLE_MANAGER || peer->role == CERTS_ROLE_MONITOR)
		return 0;
	if (peer->role == CERTS_ROLE_HOST)
		snprintf(msg, sizeof msg, "%s presented a host's certificate: hosts may migrate to "
			 "each other, but only a manager's certificate (ferry certs client NAME "
			 "--role manager) may drive a host", peer->cn);
	else
		snprintf(msg, sizeof msg, "%s presented a certificate of a role ferry does not "
			 "know", peer->cn);
	refuse(r, 403, "forbidden", msg, peer->cn);
	return -EPERM;
}

/* The Idempotency-Key of a POST: 0 (token set, or "" without a key), or the
 * answer (a replay, or a refusal) has been sent. */
static int idempotency(struct evhttp_request *r, const struct tls_peer *peer, const char *path,
		       const void *body, size_t len, char *token, const char *who)
{
	const char *key = evhttp_find_header(evhttp_request_get_input_headers(r),
					     "Idempotency-Key");
	char *stored = NULL;
	int status = 0;

	token[0] = '\0';
	if (!key || evhttp_request_get_command(r) != EVHTTP_REQ_POST)
		return 0;
	if (!idem_key_ok(key)) {
		refuse(r, 400, API_ERR_INVALID, "Idempotency-Key: 1 to 255 printable ASCII "
		       "characters", who);
		return -EINVAL;
	}
	idem_token(peer->sha256, key, "POST", path, body, len, token);
	switch (idem_begin(token, &status, &stored)) {
	case IDEM_NEW:
		return 0;
	case IDEM_REPLAY:
		evhttp_add_header(evhttp_request_get_output_headers(r), "Idempotent-Replayed",
				  "true");
		send_json_text(r, status, stored ? stored : "{}");
		log_info("api: %s: Idempotency-Key %s answered again (%d)", who, key, status);
		free(stored);
		return -EALREADY;
	case IDEM_BUSY:
		refuse(r, 409, API_ERR_CONFLICT, "a request with this Idempotency-Key is still "
		       "being answered", who);
		return -EBUSY;
	case IDEM_MISMATCH:
		refuse(r, 422, API_ERR_INVALID, "this Idempotency-Key was used for another "
		       "request (method, path or body differ)", who);
		return -EINVAL;
	}
	return -EINVAL;
}

static void on_request(struct evhttp_request *r, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
	struct evbuffer *in = evhttp_request_get_input_buffer(r);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	size_t len = evbuffer_get_length(in);
	const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
	const struct api_op *op;
	struct http_call call;
	struct tls_peer peer;
	struct pending *p;
	char err[512], token[IDEM_TOKEN_LEN], what[160];
	int st;

	(void)arg;
	if (caller(r, &peer))
		return;
	snprintf(what, sizeof what, "%.60s %s %.80s", peer.cn,
		 evhttp_request_get_command(r) == EVHTTP_REQ_GET ? "GET"
		 : evhttp_request_get_command(r) == EVHTTP_REQ_POST ? "POST"
		 : evhttp_request_get_command(r) == EVHTTP_REQ_DELETE ? "DELETE" : "?",
		 path ? path : "?");
	if (!path || (len && !body)) {
		refuse(r, 400, API_ERR_INVALID, "a request without a path", what);
		return;
	}
	if ((st = http_decode(method_of(r), path, query, body, len, &call, err, sizeof err))) {
		if (st == 405)
			evhttp_add_header(evhttp_request_get_output_headers(r), "Allow",
					  call.allow);
		refuse(r, st, st == 404 ? API_ERR_NOT_FOUND : API_ERR_INVALID, err, what);
		return;
	}
	if (call.write && peer.role != CERTS_ROLE_MANAGER) {
		json_decref(call.req);
		snprintf(err, sizeof err, "%s presented a monitor's certificate: it may only read "
			 "(GET); this needs a manager's", peer.cn);
		refuse(r, 403, "forbidden", err, what);
		return;
	}
	if (call.action == HTTP_METRICS) {
		char *text = metrics_render();

		if (!text)
			refuse(r, 500, API_ERR_FAILED, "out of memory", what);
		else
			send_body(r, 200, "text/plain; version=0.0.4; charset=utf-8", text,
				  strlen(text));
		free(text);
		return;
	}
	if (call.action == HTTP_EVENTS) {
		follow(r, peer.cn);
		return;
	}
	if (idempotency(r, &peer, path, body, len, token, what)) {
		json_decref(call.req);
		return;
	}
	if (api_check(call.req, &op, err, sizeof err)) { /* http_decode checked it */
		json_decref(call.req);
		if (token[0])
			idem_finish(token, 500, "");
		refuse(r, 500, API_ERR_FAILED, err, what);
		return;
	}
	/* A job it starts keeps the key in its own record (idem.h). */
	if (token[0] && api_takes(op, "idempotency"))
		json_object_set_new(call.req, "idempotency", json_string(token));
	if (!api_slow(op, call.req)) {
		answer(r, what, token, call.ok_status, api_handle(call.req));
		json_decref(call.req);
		return;
	}
	if (!(p = calloc(1, sizeof *p)))
		goto busy;
	p->req = r;
	p->evcon = evhttp_request_get_connection(r);
	p->ok_status = call.ok_status;
	snprintf(p->token, sizeof p->token, "%s", token);
	snprintf(p->what, sizeof p->what, "%s", what);
	evhttp_connection_set_closecb(p->evcon, pending_closed, p);
	if (api_run_async(call.req, pending_done, p) == 0)
		return;
	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	free(p);
busy:
	json_decref(call.req);
	if (token[0])
		idem_finish(token, 503, "");
	refuse(r, 503, API_ERR_UNAVAILABLE, "cannot start a thread for the request", what);
}

/* ---- the listener ---- */

static struct bufferevent *new_conn(struct event_base *base, void *arg)
{
	SSL *ssl = tls_ctx_ssl_new(D.peers.link.tls);
	struct bufferevent *bev;

	(void)arg;
	if (!ssl)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	else
		SSL_free(ssl);
	return bev;
}

void remote_listen(void)
{
	char host[256], port[16];
	struct timeval tick = { KEEPALIVE_S, 0 };
	uint64_t p;

	if (!D.api_listen[0])
		return;
	if (D.plaintext || !D.peers.link.tls)
		fatal("api-listen = %s needs TLS: the remote API knows its callers by their "
		      "certificates (remove insecure-plaintext, or api-listen)", D.api_listen);
	if (parse_host_port(D.api_listen, API_DEFAULT_PORT, host, sizeof host, port,
			    sizeof port) || parse_u64(port, 1, 65535, &p))
		fatal("api-listen: \"%s\" is not ADDR[:PORT]", D.api_listen);
	if (!(http = evhttp_new(D.base)))
		fatal("out of memory");
	evhttp_set_bevcb(http, new_conn, NULL);
	evhttp_set_gencb(http, on_request, NULL);
	/* Bodies up to 1 MiB reach http_decode, which refuses those over
	 * HTTP_BODY_MAX in JSON; libevent refuses larger ones itself. */
	evhttp_set_max_body_size(http, 16 * HTTP_BODY_MAX);
	evhttp_set_max_headers_size(http, HEADERS_MAX);
	evhttp_set_timeout(http, TIMEOUT_S);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
	if (!evhttp_bind_socket_with_handle(http, host, (uint16_t)p))
		fatal("api-listen: cannot listen on %s:%s: %s", host, port, strerror(errno));
	events_follow(broadcast, NULL);
	keepalive = event_new(D.base, -1, EV_PERSIST, keepalive_tick, NULL);
	if (keepalive)
		event_add(keepalive, &tick);
	log_info("remote API on https://%s:%s/v1/ (mutual TLS, %s)", host, port, D.tls_ca);
}

void remote_stop(void)
{
	if (!http)
		return;
	events_follow(NULL, NULL);
	/* The loop will not run their last writes: close them here. */
	while (followers) {
		struct evhttp_connection *evcon = followers->evcon;

		evhttp_connection_set_closecb(evcon, NULL, NULL);
		follower_drop(followers, false);
		evhttp_connection_free(evcon);
	}
	if (keepalive)
		event_free(keepalive);
	keepalive = NULL;
	evhttp_free(http);
	http = NULL;
}
