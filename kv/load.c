/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load.c — ferry-kv load: N pipelined clients against a kvstore (one
 * address or a list), on one libevent loop. Every value written is unique
 * (a chunk naming its writer, history.h); a client that loses its
 * connection reconnects — to the next address — says HELLO with its oldest
 * unanswered sequence number, and sends its unanswered requests again with
 * the same numbers, so the store answers them from its record instead of
 * applying them twice. Every request and its outcome goes to the history.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/mtime.h"
#include "common/util.h"
#include "kv/history.h"
#include "kv/kv.h"

#define ADDRS_MAX 16

struct req {
	uint64_t seq, start_ns;
	enum kv_op op;
	char key[24];
	uint32_t len;
};

struct load;

struct cl {
	struct load *L;
	uint64_t id, next_seq, rng;
	struct bufferevent *bev;
	bool ready;        /* HELLO answered on this connection */
	unsigned addr;
	struct req q[KV_WINDOW_MAX];
	unsigned qh, qn;   /* outstanding, oldest first */
	int backoff_ms;
	struct event *retry;
	uint64_t next_due;   /* --rate: when it may issue its next request */
	uint64_t last_rx;    /* mono ns of the last byte in, or of the connect */
	struct event *pace;
};

struct load {
	struct event_base *base;
	struct sockaddr_storage addr[ADDRS_MAX];
	int addrlen[ADDRS_MAX];
	unsigned naddr, nclients, depth, keys, logs, put, get, append, del;
	unsigned value_size, append_size;
	double duration, drain, rate;
	unsigned timeout_ms;
	struct event *tick;
	uint64_t limit;
	FILE *hist;
	bool stopping;
	struct event *stop_ev, *drain_ev, *sig[2];
	struct cl *c;
	/* Results. */
	uint64_t issued, acked, failed, unknown, resent, reconnects, outstanding;
	uint64_t max_wait_ns, t0;
	uint64_t *lat;
	size_t nlat, caplat;
};

static uint64_t real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct cl *c)
{
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t fresh_id(void)
{
	uint64_t id = 0;

	while (!id)
		if (getrandom(&id, sizeof id, 0) != sizeof id)
			id = real_now() ^ (uint64_t)rand();
	return id;
}

static void connect_cl(struct cl *c);

static void finish_if_drained(struct load *L)
{
	if (L->stopping && L->outstanding == 0)
		event_base_loopexit(L->base, NULL);
}

/* Send request r (again, after a reconnect) on c's connection. */
static void send_req(struct cl *c, const struct req *r)
{
	uint8_t buf[KV_MSG_MAX];
	size_t klen = strlen(r->key), vlen = r->op == KV_PUT || r->op == KV_APPEND ? r->len : 0;
	size_t len = kv_req_make(buf, r->op, c->id, r->seq, r->key, klen, NULL, vlen);

	if (vlen) /* the value is made in place */
		chunk_make(buf + len - vlen, c->id, (uint32_t)r->seq, vlen);
	bufferevent_write(c->bev, buf, len);
}

static void send_hello(struct cl *c)
{
	uint8_t buf[40];
	uint32_t w = htole32(c->L->depth);

	bufferevent_write(c->bev, buf, kv_req_make(buf, KV_HELLO, c->id,
						   c->qn ? c->q[c->qh].seq : c->next_seq, NULL, 0,
						   &w, 4));
}

/* Record the outcome of the oldest outstanding request. */
static void done(struct cl *c, enum outcome out, const struct kv_rep *rep)
{
	struct load *L = c->L;
	struct req *r = &c->q[c->qh];
	struct chunk_id ids[HIST_CHUNKS_MAX];
	struct hist h = { .client = c->id, .seq = r->seq, .op = r->op, .len = r->len,
			  .outcome = out, .status = rep ? rep->status : KV_OK,
			  .aux = rep ? rep->aux : 0, .start_ns = r->start_ns, .end_ns = real_now() };

	snprintf(h.key, sizeof h.key, "%s", r->key);
	if (out == OUT_ACK && r->op == KV_GET && rep->status == KV_OK) {
		h.nres = chunk_parse(rep->val, rep->val_len, ids, HIST_CHUNKS_MAX);
		h.res = ids;
	}
	hist_write(L->hist, &h);
	if (out == OUT_ACK) {
		uint64_t wait = h.end_ns > h.start_ns ? h.end_ns - h.start_ns : 0;

		L->acked++;
		if (wait > L->max_wait_ns)
			L->max_wait_ns = wait;
		if (L->nlat == L->caplat) {
			uint64_t *n = realloc(L->lat, (L->caplat = L->caplat * 2 + 4096) * sizeof *n);

			if (n)
				L->lat = n;
			else
				L->caplat = L->nlat;
		}
		if (L->nlat < L->caplat)
			L->lat[L->nlat++] = wait;
	} else if (out == OUT_FAILED) {
		L->failed++;
	} else {
		L->unknown++;
	}
	c->qh = (c->qh + 1) % KV_WINDOW_MAX;
	c->qn--;
	L->outstanding--;
}

/* Issue new requests up to the pipeline depth. */
static void fill(struct cl *c)
{
	struct load *L = c->L;

	while (!L->stopping && c->ready && c->qn < L->depth && (!L->limit || L->issued < L->limit)) {
		struct req *r = &c->q[(c->qh + c->qn) % KV_WINDOW_MAX];
		unsigned pick = (unsigned)(rnd(c) % 100);

		if (L->rate > 0) {
			/* Paced: this client's share of the rate, no bursts to catch up. */
			uint64_t now = mono_ns(), every = (uint64_t)(1e9 * L->nclients / L->rate);

			if (now < c->next_due) {
				struct timeval tv = { 0, (suseconds_t)((c->next_due - now) / 1000) };

				if (!evtimer_pending(c->pace, NULL))
					evtimer_add(c->pace, &tv);
				return;
			}
			c->next_due = MAX(c->next_due + every, now - every);
		}

		r->seq = c->next_seq++;
		r->start_ns = real_now();
		r->len = 0;
		if (pick < L->put) {
			r->op = KV_PUT;
			r->len = L->value_size;
		} else if (pick < L->put + L->get) {
			r->op = KV_GET;
		} else if (pick < L->put + L->get + L->append) {
			r->op = KV_APPEND;
			r->len = L->append_size;
		} else {
			r->op = KV_DELETE;
		}
		if (r->op == KV_APPEND || (r->op == KV_GET && L->logs && rnd(c) % 5 == 0))
			snprintf(r->key, sizeof r->key, "l%u", (unsigned)(rnd(c) % L->logs));
		else
			snprintf(r->key, sizeof r->key, "r%u", (unsigned)(rnd(c) % L->keys));
		c->qn++;
		L->issued++;
		L->outstanding++;
		send_req(c, r);
		if (L->limit && L->issued >= L->limit && !L->stopping)
			event_active(L->stop_ev, EV_TIMEOUT, 0);
	}
}

static void drop(struct cl *c)
{
	struct timeval tv = { 0, c->backoff_ms * 1000 };

	bufferevent_free(c->bev);
	c->bev = NULL;
	c->ready = false;
	c->L->reconnects++;
	c->addr = (c->addr + 1) % c->L->naddr;
	c->backoff_ms = c->backoff_ms ? MIN(c->backoff_ms * 2, 500) : 10;
	evtimer_add(c->retry, &tv);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct cl *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	c->last_rx = mono_ns();
	for (;;) {
		size_t len = evbuffer_get_length(in), used;
		uint8_t *p = evbuffer_pullup(in, (ssize_t)MIN(len, (size_t)KV_MSG_MAX));
		struct kv_rep rep;
		char err[128];
		int r = len ? kv_rep_parse(p, MIN(len, (size_t)KV_MSG_MAX), &rep, &used, err, sizeof err)
			    : -EAGAIN;

		if (r == -EAGAIN)
			return;
		if (r) {
			fprintf(stderr, "ferry-kv: client %016" PRIx64 ": %s; reconnecting\n", c->id, err);
			drop(c);
			return;
		}
		if (rep.op == KV_HELLO) {
			if (rep.status == KV_OK) {
				c->ready = true;
				c->backoff_ms = 0;
				for (unsigned i = 0; i < c->qn; i++, c->L->resent++)
					send_req(c, &c->q[(c->qh + i) % KV_WINDOW_MAX]);
			} else if (rep.status == KV_UNKNOWN_CLIENT) {
				/* Our record is gone: what we were waiting for is unknown;
				 * carry on as a new client. */
				while (c->qn)
					done(c, OUT_UNKNOWN, NULL);
				c->id = fresh_id();
				c->next_seq = 1;
				send_hello(c);
			} else {
				fprintf(stderr, "ferry-kv: HELLO refused: %s\n",
					kv_status_name(rep.status));
				drop(c);
				return;
			}
		} else if (!c->qn || rep.seq != c->q[c->qh].seq) {
			fprintf(stderr, "ferry-kv: client %016" PRIx64 ": a reply to seq %" PRIu64
				" out of order; reconnecting\n", c->id, rep.seq);
			drop(c);
			return;
		} else {
			done(c, kv_status_applied(rep.op, rep.status) ? OUT_ACK
				: kv_status_not_applied(rep.status) ? OUT_FAILED : OUT_UNKNOWN, &rep);
			if (rep.status == KV_UNKNOWN_CLIENT) {
				/* The store forgot us (evicted): the rest is unknown; go on
				 * as a new client on a new connection. */
				while (c->qn)
					done(c, OUT_UNKNOWN, NULL);
				c->id = fresh_id();
				c->next_seq = 1;
				drop(c);
				finish_if_drained(c->L);
				return;
			}
		}
		evbuffer_drain(in, used);
		fill(c);
		finish_if_drained(c->L);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct cl *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		send_hello(c);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		drop(c);
}

static void connect_cl(struct cl *c)
{
	struct load *L = c->L;

	c->last_rx = mono_ns();
	c->bev = bufferevent_socket_new(L->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&L->addr[c->addr],
				       L->addrlen[c->addr]) < 0)
		drop(c);
}

/* A connection that owes answers and has been silent for the timeout is
 * dead (its peer may be a host that left): reconnect and retry. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct load *L = arg;
	uint64_t now = mono_ns(), limit = (uint64_t)L->timeout_ms * NSEC_PER_MSEC;

	(void)fd, (void)what;
	for (unsigned i = 0; i < L->nclients; i++) {
		struct cl *c = &L->c[i];

		if (c->bev && (c->qn || !c->ready) && now - c->last_rx > limit)
			drop(c);
	}
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	fill(arg);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	connect_cl(arg);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct load *L = arg;

	(void)fd, (void)what;
	/* Whatever is still unanswered has an unknown outcome. */
	for (unsigned i = 0; i < L->nclients; i++)
		while (L->c[i].qn)
			done(&L->c[i], OUT_UNKNOWN, NULL);
	event_base_loopexit(L->base, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct load *L = arg;
	struct timeval tv = { (time_t)L->drain, (suseconds_t)((L->drain - floor(L->drain)) * 1e6) };

	(void)fd, (void)what;
	if (L->stopping)
		return;
	L->stopping = true;
	evtimer_add(L->drain_ev, &tv);
	finish_if_drained(L);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(struct load *L, double p)
{
	if (!L->nlat)
		return 0;
	return (double)L->lat[(size_t)(p * (double)(L->nlat - 1))] / 1e6;
}

static const char help[] =
	"usage: ferry-kv load ADDR:PORT[,ADDR:PORT...] --history FILE [options]\n"
	"\n"
	"Runs pipelined clients against a kvstore guest and writes a history of\n"
	"every request and its outcome (acknowledged, failed, unknown) for\n"
	"`ferry-kv check`. A client whose connection breaks reconnects (to the next\n"
	"address) and retries its unanswered requests with their own numbers.\n"
	"Stops after --duration, after --requests, or on SIGINT/SIGTERM; then waits\n"
	"up to --drain seconds for answers. Prints one JSON line of results.\n"
	"\n"
	"  --clients N       connections (default 8)\n"
	"  --depth N         requests in flight per client, 1..256 (default 4)\n"
	"  --keys N          register keys r0.. (default 1000)\n"
	"  --logs N          log keys l0.. for APPEND (default 1000; 0: none)\n"
	"  --mix P,G,A,D     percent of PUT, GET, APPEND, DELETE (default 40,40,15,5)\n"
	"  --value-size B    PUT value bytes, 34..4096 (default 256)\n"
	"  --append-size B   APPEND chunk bytes (default 40)\n"
	"  --duration S      seconds (default: until stopped)\n"
	"  --requests N      stop after N requests\n"
	"  --rate R          requests per second over all clients (default: as fast\n"
	"                    as answers come)\n"
	"  --drain S         seconds to wait for answers at the end (default 10)\n"
	"  --timeout MS      a connection silent this long while it owes answers is\n"
	"                    given up and the requests retried elsewhere (default 2000;\n"
	"                    0: never)\n"
	"  --history FILE    where the history goes (required)\n";

int load_main(int argc, char **argv)
{
	static struct load L;
	const char *hist = NULL;
	char *addrs = NULL, *save = NULL, *tok;
	int i, r;

	L = (struct load){ .nclients = 8, .depth = 4, .keys = 1000, .logs = 1000, .put = 40,
			   .get = 40, .append = 15, .del = 5, .value_size = 256, .append_size = 40,
			   .drain = 10, .timeout_ms = 2000 };
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(help, stdout);
			return 0;
		}
		if (a[0] != '-') {
			addrs = argv[i];
			continue;
		}
		if (!v)
			goto bad;
		i++;
		if (!strcmp(a, "--history"))
			hist = v;
		else if (!strcmp(a, "--clients") && !parse_u64(v, 1, 4096, &n))
			L.nclients = (unsigned)n;
		else if (!strcmp(a, "--depth") && !parse_u64(v, 1, KV_WINDOW_MAX, &n))
			L.depth = (unsigned)n;
		else if (!strcmp(a, "--keys") && !parse_u64(v, 1, 10000000, &n))
			L.keys = (unsigned)n;
		else if (!strcmp(a, "--logs") && !parse_u64(v, 0, 1000000, &n))
			L.logs = (unsigned)n;
		else if (!strcmp(a, "--value-size") && !parse_u64(v, CHUNK_MIN, KV_VAL_MAX, &n))
			L.value_size = (unsigned)n;
		else if (!strcmp(a, "--append-size") && !parse_u64(v, CHUNK_MIN, KV_VAL_MAX, &n))
			L.append_size = (unsigned)n;
		else if (!strcmp(a, "--requests") && !parse_u64(v, 1, UINT64_MAX, &n))
			L.limit = n;
		else if (!strcmp(a, "--duration") && (L.duration = atof(v)) > 0)
			;
		else if (!strcmp(a, "--drain") && (L.drain = atof(v)) >= 0)
			;
		else if (!strcmp(a, "--rate") && (L.rate = atof(v)) > 0)
			;
		else if (!strcmp(a, "--timeout") && !parse_u64(v, 0, 3600000, &n))
			L.timeout_ms = (unsigned)n;
		else if (!strcmp(a, "--mix") &&
			 sscanf(v, "%u,%u,%u,%u", &L.put, &L.get, &L.append, &L.del) == 4 &&
			 L.put + L.get + L.append + L.del == 100)
			;
		else
			goto bad;
	}
	if (!addrs || !hist || (L.append && !L.logs))
		goto bad;
	for (tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		L.addrlen[L.naddr] = (int)sizeof L.addr[0];
		if (L.naddr == ADDRS_MAX ||
		    evutil_parse_sockaddr_port(tok, (struct sockaddr *)&L.addr[L.naddr],
					       &L.addrlen[L.naddr])) {
			fprintf(stderr, "ferry-kv load: bad address %s (ADDR:PORT)\n", tok);
			return 2;
		}
		L.naddr++;
	}
	if (!(L.hist = fopen(hist, "we"))) {
		fprintf(stderr, "ferry-kv load: %s: %s\n", hist, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	L.base = event_base_new();
	L.stop_ev = evtimer_new(L.base, on_stop, &L);
	L.drain_ev = evtimer_new(L.base, on_drain, &L);
	L.sig[0] = evsignal_new(L.base, SIGINT, on_stop, &L);
	L.sig[1] = evsignal_new(L.base, SIGTERM, on_stop, &L);
	event_add(L.sig[0], NULL);
	event_add(L.sig[1], NULL);
	if (L.duration > 0) {
		struct timeval tv = { (time_t)L.duration,
				      (suseconds_t)((L.duration - floor(L.duration)) * 1e6) };
		evtimer_add(L.stop_ev, &tv);
	}
	if (L.timeout_ms) {
		struct timeval tv = { 0, 100000 };

		L.tick = event_new(L.base, -1, EV_PERSIST, on_tick, &L);
		evtimer_add(L.tick, &tv);
	}
	L.c = calloc(L.nclients, sizeof *L.c);
	if (!L.c)
		return 1;
	L.t0 = mono_ns();
	for (unsigned k = 0; k < L.nclients; k++) {
		struct cl *c = &L.c[k];

		*c = (struct cl){ .L = &L, .id = fresh_id(), .next_seq = 1, .addr = k % L.naddr };
		c->rng = c->id;
		c->retry = evtimer_new(L.base, on_retry, c);
		c->pace = evtimer_new(L.base, on_pace, c);
		connect_cl(c);
	}
	event_base_dispatch(L.base);
	r = fflush(L.hist) || fclose(L.hist) ? 1 : 0;
	qsort(L.lat, L.nlat, sizeof *L.lat, cmp_u64);
	printf("{\"clients\":%u,\"depth\":%u,\"seconds\":%.3f,\"requests\":%" PRIu64
	       ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"unknown\":%" PRIu64
	       ",\"resent\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"per_s\":%.0f,"
	       "\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"max_wait_ms\":%.3f}\n",
	       L.nclients, L.depth, ns_to_sec(mono_ns() - L.t0), L.issued, L.acked, L.failed,
	       L.unknown, L.resent, L.reconnects,
	       (double)L.acked / ns_to_sec(mono_ns() - L.t0), pct_ms(&L, 0.5), pct_ms(&L, 0.99),
	       (double)L.max_wait_ns / 1e6);
	for (unsigned k = 0; k < L.nclients; k++) {
		if (L.c[k].bev)
			bufferevent_free(L.c[k].bev);
		event_free(L.c[k].retry);
		event_free(L.c[k].pace);
	}
	free(L.c);
	free(L.lat);
	if (L.tick)
		event_free(L.tick);
	event_free(L.stop_ev);
	event_free(L.drain_ev);
	event_free(L.sig[0]);
	event_free(L.sig[1]);
	event_base_free(L.base);
	return r;
bad:
	fputs(help, stderr);
	return 2;
}
