/* SPDX-License-Identifier: Apache-2.0 */
/*
 * check.c — ferry-kv check: read a kvstore back and prove, against the
 * histories of the load runs that wrote it, that nothing a client was told
 * happened has been lost, doubled or reordered (docs/kvstore.md):
 *
 *  - a register key (PUT, DELETE) ends as the value of a write that was
 *    acknowledged or whose outcome is unknown, and no acknowledged write
 *    began after that one was acknowledged (it would have to come later);
 *    absent, only if a DELETE can be the last write, or no PUT was ever
 *    acknowledged;
 *  - a log key (APPEND) holds every acknowledged APPEND exactly once, an
 *    unknown one at most once, none that failed, none from nowhere, and an
 *    APPEND acknowledged before another began comes before it;
 *  - every value a read returned was written by a request of the history
 *    that did not fail.
 *
 * It also reports the longest time any client waited for an answer.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

#include "common/util.h"
#include "kv/history.h"
#include "kv/kv.h"

#define REPORT_MAX 20

struct writer {
	uint64_t client, seq;
	size_t h; /* index into the history */
};

struct ck {
	struct hist *h;
	size_t n, cap;
	struct writer *w; /* PUT and APPEND requests, sorted by (client, seq) */
	size_t nw;
	unsigned bad;
	bool json;
};

static void violation(struct ck *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct ck *k, const char *fmt, ...)
{
	va_list ap;

	if (k->bad++ < REPORT_MAX) {
		fputs("violation: ", stdout);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		fputc('\n', stdout);
	}
}

static int cmp_writer(const void *a, const void *b)
{
	const struct writer *x = a, *y = b;

	return x->client != y->client ? (x->client < y->client ? -1 : 1)
	       : x->seq != y->seq     ? (x->seq < y->seq ? -1 : 1)
				      : 0;
}

/* The write whose value chunk is id, or NULL. */
static struct hist *writer_of(struct ck *k, struct chunk_id id)
{
	struct writer key = { id.client, id.seq, 0 }, *w;

	w = bsearch(&key, k->w, k->nw, sizeof *k->w, cmp_writer);
	return w ? &k->h[w->h] : NULL;
}

static int load_history(struct ck *k, const char *path)
{
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "ferry-kv check: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		if (k->n == k->cap) {
			struct hist *n = realloc(k->h, (k->cap = k->cap * 2 + 4096) * sizeof *n);

			if (!n)
				return -ENOMEM;
			k->h = n;
		}
		if (hist_parse(line, &k->h[k->n])) {
			fprintf(stderr, "ferry-kv check: %s:%zu: not a history line\n", path, lineno);
			free(line);
			fclose(f);
			return -EINVAL;
		}
		k->n++;
	}
	free(line);
	fclose(f);
	return 0;
}

/* ---- reading the store back ---- */

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One request and its reply (blocking, 10 s). */
static int call(int fd, enum kv_op op, uint64_t client, uint64_t seq, const char *key,
		const void *val, size_t vlen, struct kv_rep *rep, uint8_t *buf)
{
	uint8_t out[KV_MSG_MAX];
	size_t have = 0, used;
	char err[128];

	if (send_all(fd, out, kv_req_make(out, op, client, seq, key, key ? strlen(key) : 0, val,
					  vlen)))
		return -1;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = kv_rep_parse(buf, have, rep, &used, err, sizeof err);
		ssize_t n;

		if (r == 0)
			return rep->seq == seq ? 0 : -1;
		if (r != -EAGAIN || poll(&p, 1, 10000) != 1 ||
		    (n = recv(fd, buf + have, KV_MSG_MAX - have, 0)) <= 0)
			return -1;
		have += (size_t)n;
	}
}

static int connect_to(const char *addr)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, fd, one = 1;

	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* ---- the rules ---- */

/* The requests of one key: k->h[r[0..nr)]. */
struct range {
	const size_t *r;
	size_t nr;
};

#define EACH(rg, i, var) \
	for (size_t i = 0; i < (rg)->nr && ((var) = &k->h[(rg)->r[i]]); i++)

/* The final value's chunks (n < 0: absent) against the key's writes. */
static void check_register(struct ck *k, const char *key, const struct range *rg,
			   const struct chunk_id *fin, int n)
{
	struct hist *o, *d, *p;
	struct hist *w = NULL;

	if (n > 1 || (n == 1 && (!(w = writer_of(k, fin[0])) || w->op != KV_PUT ||
				   strcmp(w->key, key)))) {
		violation(k, "key %s holds a value no PUT of the history wrote", key);
		return;
	}
	if (w && w->outcome == OUT_FAILED) {
		violation(k, "key %s holds the value of a PUT that failed (client %016" PRIx64
			  " seq %" PRIu64 ")", key, w->client, w->seq);
		return;
	}
	if (w) {
		/* No acknowledged write of the key may have begun after w was
		 * acknowledged: it would be the last. */
		EACH(rg, i, o) {
			if (w->outcome != OUT_ACK)
				break;
			if ((o->op == KV_PUT || o->op == KV_DELETE) && o->outcome == OUT_ACK &&
			    o != w && o->start_ns > w->end_ns) {
				violation(k, "key %s is stale: it holds the PUT of client %016" PRIx64
					  " seq %" PRIu64 ", but a %s acknowledged later (client %016"
					  PRIx64 " seq %" PRIu64 ") began after it was acknowledged", key,
					  w->client, w->seq, kv_op_name(o->op), o->client, o->seq);
				return;
			}
		}
		return;
	}
	/* Absent: a DELETE may be the last write, or no PUT was acknowledged. */
	bool any_put = false;

	EACH(rg, i, d) {
		bool later = false;

		if (d->op == KV_PUT && d->outcome == OUT_ACK)
			any_put = true;
		if (d->op != KV_DELETE || d->outcome == OUT_FAILED)
			continue;
		EACH(rg, j, p) {
			if (d->outcome != OUT_ACK || later)
				break;
			later = p->op == KV_PUT && p->outcome == OUT_ACK && p->start_ns > d->end_ns;
		}
		if (!later)
			return;
	}
	if (any_put)
		violation(k, "key %s is gone, but a PUT of it was acknowledged and no DELETE can "
			  "have come after it (lost)", key);
}

static void check_log(struct ck *k, const char *key, const struct range *rg,
		      const struct chunk_id *fin, int n)
{
	struct hist **w = calloc((size_t)(n > 0 ? n : 1), sizeof *w), *a;

	if (!w)
		return;
	for (int i = 0; i < n; i++) {
		w[i] = writer_of(k, fin[i]);
		if (!w[i] || w[i]->op != KV_APPEND || strcmp(w[i]->key, key)) {
			violation(k, "log %s holds a chunk no APPEND of the history wrote", key);
			goto out;
		}
		if (w[i]->outcome == OUT_FAILED)
			violation(k, "log %s holds the chunk of an APPEND that failed (seq %" PRIu64 ")",
				  key, w[i]->seq);
		for (int j = 0; j < i; j++)
			if (w[j] == w[i])
				violation(k, "log %s holds the APPEND of client %016" PRIx64 " seq %" PRIu64
					  " twice", key, w[i]->client, w[i]->seq);
		/* Acknowledged before an earlier chunk's APPEND began: out of order. */
		for (int j = 0; j < i; j++)
			if (w[i]->outcome == OUT_ACK && w[i]->end_ns < w[j]->start_ns)
				violation(k, "log %s: the APPEND of seq %" PRIu64 " was acknowledged "
					  "before that of seq %" PRIu64 " began, yet comes after it",
					  key, w[i]->seq, w[j]->seq);
	}
	EACH(rg, i, a) {
		bool found = false;

		if (a->op != KV_APPEND || a->outcome != OUT_ACK)
			continue;
		for (int j = 0; j < n && !found; j++)
			found = w[j] == a;
		if (!found)
			violation(k, "log %s lost the acknowledged APPEND of client %016" PRIx64
				  " seq %" PRIu64, key, a->client, a->seq);
	}
out:
	free(w);
}

/* Every value a read returned was written by the history, and not by a
 * request that failed. */
static void check_reads(struct ck *k)
{
	for (size_t i = 0; i < k->n; i++) {
		struct hist *g = &k->h[i];

		if (g->op != KV_GET || g->outcome != OUT_ACK)
			continue;
		if (g->nres < 0) {
			violation(k, "a GET of %s read a value that is not made of chunks", g->key);
			continue;
		}
		for (int c = 0; c < g->nres; c++) {
			struct hist *w = writer_of(k, g->res[c]);

			if (!w || strcmp(w->key, g->key))
				violation(k, "a GET of %s (client %016" PRIx64 " seq %" PRIu64 ") read a "
					  "chunk no write of the history made", g->key, g->client, g->seq);
			else if (w->outcome == OUT_FAILED)
				violation(k, "a GET of %s read the value of a write that failed", g->key);
		}
	}
}

static const struct hist *sort_h;

static int cmp_by_key(const void *a, const void *b)
{
	return strcmp(sort_h[*(const size_t *)a].key, sort_h[*(const size_t *)b].key);
}

static const char help[] =
	"usage: ferry-kv check ADDR:PORT --history FILE [--history FILE...] [--json]\n"
	"\n"
	"Reads every key the histories name back from the kvstore at ADDR:PORT and\n"
	"checks the store and the reads against the histories (docs/kvstore.md):\n"
	"registers end with their last write (or a later one whose outcome is\n"
	"unknown), every acknowledged APPEND is in its log exactly once and in\n"
	"order, every value read was written. Exit status 0 if so, 1 if not.\n";

int check_main(int argc, char **argv)
{
	struct ck k = { 0 };
	const char *addr = NULL;
	size_t *ord = NULL, nord = 0;
	uint64_t max_wait = 0, acked = 0, unknown = 0, failed = 0, id = 0;
	uint8_t buf[KV_MSG_MAX];
	struct kv_rep rep;
	uint32_t w = htole32(1);
	int fd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(help, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--json")) {
			k.json = true;
		} else if (!strcmp(argv[i], "--history") && i + 1 < argc) {
			if (load_history(&k, argv[++i]))
				return 2;
		} else if (argv[i][0] != '-' && !addr) {
			addr = argv[i];
		} else {
			fputs(help, stderr);
			return 2;
		}
	}
	if (!addr || !k.n) {
		fputs(help, stderr);
		return 2;
	}
	/* The writes by their chunk id; the keys; the waits. */
	k.w = calloc(k.n, sizeof *k.w);
	ord = calloc(k.n, sizeof *ord);
	if (!k.w || !ord)
		return 1;
	for (size_t i = 0; i < k.n; i++) {
		struct hist *h = &k.h[i];

		if (h->op == KV_PUT || h->op == KV_APPEND)
			k.w[k.nw++] = (struct writer){ h->client, h->seq, i };
		if (h->op != KV_HELLO)
			ord[nord++] = i;
		if (h->outcome == OUT_ACK) {
			acked++;
			if (h->end_ns > h->start_ns && h->end_ns - h->start_ns > max_wait)
				max_wait = h->end_ns - h->start_ns;
		} else if (h->outcome == OUT_UNKNOWN) {
			unknown++;
		} else {
			failed++;
		}
	}
	qsort(k.w, k.nw, sizeof *k.w, cmp_writer);
	sort_h = k.h;
	qsort(ord, nord, sizeof *ord, cmp_by_key);
	check_reads(&k);
	if ((fd = connect_to(addr)) < 0) {
		fprintf(stderr, "ferry-kv check: cannot connect to %s\n", addr);
		return 1;
	}
	while (!id)
		if (getrandom(&id, sizeof id, 0) != sizeof id)
			id = 1;
	if (call(fd, KV_HELLO, id, 1, NULL, &w, 4, &rep, buf) || rep.status != KV_OK) {
		fprintf(stderr, "ferry-kv check: %s did not answer HELLO\n", addr);
		return 1;
	}
	size_t checked = 0;

	for (size_t i = 0, e; i < nord; i = e) {
		const char *key = k.h[ord[i]].key;
		struct chunk_id fin[HIST_CHUNKS_MAX];
		struct range rg;
		int n = -1;

		for (e = i; e < nord && !strcmp(k.h[ord[e]].key, key); e++)
			;
		rg = (struct range){ ord + i, e - i };
		if (call(fd, KV_GET, id, 2 + checked, key, NULL, 0, &rep, buf)) {
			fprintf(stderr, "ferry-kv check: reading %s from %s failed\n", key, addr);
			return 1;
		}
		checked++;
		if (rep.status == KV_OK && (n = chunk_parse(rep.val, rep.val_len, fin,
							    HIST_CHUNKS_MAX)) < 0) {
			violation(&k, "key %s holds a value that is not made of chunks", key);
			continue;
		}
		if (key[0] == 'l')
			check_log(&k, key, &rg, fin, n < 0 ? 0 : n);
		else
			check_register(&k, key, &rg, fin, n);
	}
	close(fd);
	if (k.json)
		printf("{\"ok\":%s,\"violations\":%u,\"keys\":%zu,\"requests\":%zu,\"acked\":%" PRIu64
		       ",\"unknown\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"max_wait_ms\":%.3f}\n",
		       k.bad ? "false" : "true", k.bad, checked, k.n, acked, unknown, failed,
		       (double)max_wait / 1e6);
	else if (!k.bad)
		printf("ok: %zu keys, %zu requests (%" PRIu64 " acknowledged, %" PRIu64 " unknown, %"
		       PRIu64 " failed); longest wait for an answer %.1f ms\n", checked, k.n, acked,
		       unknown, failed, (double)max_wait / 1e6);
	else
		printf("FAILED: %u violation(s) over %zu keys and %zu requests\n", k.bad, checked,
		       k.n);
	for (size_t i = 0; i < k.n; i++)
		free(k.h[i].res);
	free(k.h);
	free(k.w);
	free(ord);
	return k.bad ? 1 : 0;
}
