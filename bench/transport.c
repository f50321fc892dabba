/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/transport — the throughput of ferry's channels themselves, with no
 * guest and no migration logic (DESIGN.md §8, §12): a "guest" process fills
 * a memfd (as bench/copypath does), a sender process reads it (pread into a
 * 1 MiB buffer per channel, as ferry's sender reads guest RAM) and sends it
 * over N channels over loopback, one thread per channel, each channel a part
 * of the RAM; this process receives each channel on its own thread into the
 * same fresh memfd (fallocate its part first, then chan_recv into a reused
 * buffer and pwrite, the copy path's pread:fpwrite). Kinds: tcp (plain
 * chan_tcp) and tls (TLS 1.3 through link_connect / link_accept, with a
 * throwaway PKI made with transport/certs.h in a temporary directory that is
 * removed at the end). The clock runs at the receiver from the end of the
 * handshakes to the last byte written.
 *
 * Next to each N, in the same repetition: the raw copy path with N streams
 * (bench/copypath.c), iperf3 on loopback with -P N (null if iperf3 is
 * missing), and once per repetition memcpy. Every measurement is followed by
 * a settle pause; one JSON line per case on stdout with the median (min,
 * max) over the repetitions, and the ratios tls/tcp and channel/copy path.
 *
 * bench/migrate includes this file (TRANSPORT_NO_MAIN) for its references
 * (iperf3, memcpy), its JSON lines, the throwaway PKI and loopback channel
 * pairs (tp_pairs_new).
 */
#define COPYPATH_NO_MAIN
#include "bench/copypath.c"

#include <ftw.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>

#include "bench/jline.h"
#include "bench/stats.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "transport/certs.h"
#include "transport/chan.h"
#include "transport/link.h"
#include "transport/tls.h"
#include "transport/tcp.h"

#define TP_LINK_TIMEOUT_MS 10000

extern char **environ;

/* ---- JSON output ---------------------------------------------------------- */

/* k_median, and with minmax also k_min and k_max, of v[0..n); null if n == 0. */
static void jl_stats(struct jline *j, const char *k, const double *v, unsigned n, bool minmax)
{
	struct stats s = stats_of(v, n);
	char key[64];

	snprintf(key, sizeof key, "%s_median", k);
	jl_num(j, key, s.med, n > 0);
	if (!minmax)
		return;
	snprintf(key, sizeof key, "%s_min", k);
	jl_num(j, key, s.min, n > 0);
	snprintf(key, sizeof key, "%s_max", k);
	jl_num(j, key, s.max, n > 0);
}

/* ---- references: memcpy, iperf3 (the copy path is bench/copypath.c) ------ */

static bool iperf_missing; /* iperf3 is not installed: its references are null */

/*
 * GB/s (10^9 bytes) of a memcpy of len bytes between populated buffers, the
 * fastest of three, measured in a child process. Not in this process: on
 * this machine (nested virtualisation) a process that holds a few GiB of
 * populated memory writes into fresh guest RAM several times slower (the
 * fill migration dropped from ~1.5 GiB/s to ~0.35 GiB/s with 2 GiB of
 * populated buffers held here), so the bench keeps its own footprint small.
 * 0 if it could not run.
 */
static double memcpy_gbps(size_t len)
{
	double best = 0;
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return 0;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return 0;
	}
	if (pid == 0) {
		char *src = mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		char *dst = mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (src == MAP_FAILED || dst == MAP_FAILED)
			_exit(1);
		memset(src, 0x5a, len);
		for (int i = 0; i < 3; i++) {
			uint64_t t0 = mono_ns();
			double v;

			memcpy(dst, src, len);
			__asm__ volatile("" : : "r"(dst) : "memory");
			v = (double)len / (double)(mono_ns() - t0);
			best = v > best ? v : best;
		}
		_exit(write(p[1], &best, sizeof best) == sizeof best ? 0 : 1);
	}
	close(p[1]);
	if (read(p[0], &best, sizeof best) != sizeof best)
		best = 0;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return best;
}

/* Run argv with stdout into out (if given, NUL-terminated, malloc'd) and
 * stderr to /dev/null; *pid is the child. 0 or -errno (-ENOENT: no such
 * program). With wait, reap it and return -EIO unless it exited 0. */
static int run_prog(char *const argv[], char **out, pid_t *pid, bool wait)
{
	posix_spawn_file_actions_t fa;
	int p[2] = { -1, -1 }, r, st;
	size_t len = 0, cap = 0;
	char *buf = NULL;

	if (out && pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	if (out)
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	r = -posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (p[1] >= 0)
		close(p[1]);
	if (r) {
		if (p[0] >= 0)
			close(p[0]);
		return r;
	}
	if (out) {
		for (;;) {
			ssize_t n;
			if (cap - len < 4096) {
				char *nb = realloc(buf, cap + 65536);
				if (!nb)
					break;
				buf = nb;
				cap += 65536;
			}
			n = read(p[0], buf + len, cap - len - 1);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		close(p[0]);
		if (buf)
			buf[len] = '\0';
		*out = buf;
	}
	if (!wait)
		return 0;
	while (waitpid(*pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* A free loopback TCP port (free when asked; good enough for iperf3). */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

/* end.sum_received.bits_per_second of iperf3 -J output, or -1. */
static double iperf_parse(const char *json)
{
	const char *end = json ? strstr(json, "\"end\"") : NULL;
	const char *s = end ? strstr(end, "\"sum_received\"") : NULL;
	const char *b = s ? strstr(s, "\"bits_per_second\"") : NULL;
	char *e;
	double v;

	if (!b || !(b = strchr(b, ':')))
		return -1;
	v = strtod(b + 1, &e);
	return e == b + 1 || v <= 0 ? -1 : v;
}

/* iperf3 over loopback with streams parallel streams (-P) for seconds s:
 * MiB/s (the sum received), or -1 if it could not run. */
static double iperf_mib_s(unsigned streams, unsigned seconds)
{
	char port[16], par[16], secs[16], *out = NULL;
	char *srv[] = { "iperf3", "-s", "-1", "-p", port, NULL };
	char *cli[] = { "iperf3", "-c", "127.0.0.1", "-p", port, "-t", secs, "-P", par, "-J", NULL };
	double bps = -1;
	pid_t sp, cp;
	int r, p = free_port();

	if (iperf_missing || p < 0)
		return -1;
	snprintf(port, sizeof port, "%d", p);
	snprintf(par, sizeof par, "%u", streams);
	snprintf(secs, sizeof secs, "%u", seconds);
	r = run_prog(srv, NULL, &sp, false);
	if (r) {
		if (r == -ENOENT) {
			log_warn("iperf3 not found: its reference is null");
			iperf_missing = true;
		}
		return -1;
	}
	/* The server needs a moment to listen; probing the port would use up
	 * its single (-1) client, so retry the client instead. */
	for (int tries = 0; tries < 25 && bps < 0; tries++) {
		if (tries)
			mono_sleep_ns(200 * NSEC_PER_MSEC);
		free(out);
		out = NULL;
		r = run_prog(cli, &out, &cp, true);
		bps = iperf_parse(out);
		if (waitpid(sp, NULL, WNOHANG) == sp) {
			sp = -1;
			break;
		}
	}
	free(out);
	if (sp > 0) {
		/* It exits after its one client; not within 5 s: end it. */
		for (int i = 0; i < 50 && waitpid(sp, NULL, WNOHANG) == 0; i++)
			mono_sleep_ns(100 * NSEC_PER_MSEC);
		if (waitpid(sp, NULL, WNOHANG) == 0) {
			kill(sp, SIGKILL);
			waitpid(sp, NULL, 0);
		}
	}
	if (bps < 0)
		log_warn("iperf3 on port %s gave no result", port);
	return bps < 0 ? -1 : bps / 8 / (1 << 20);
}


/* ---- a throwaway PKI and loopback channels ---------------------------------- */

/* A CA and one host certificate (CN "bench", IP SAN 127.0.0.1) in a fresh
 * temporary directory; both ends of every TLS channel present it. */
struct tp_pki {
	char dir[64];        /* "" when not made */
	struct tls_ctx *tls; /* over the files in dir; shared by all threads */
};

/* Write ca.crt/ca.key and bench.crt/bench.key into a fresh directory and load
 * a TLS context over them. 0, or -errno with err set (nothing left behind). */
static int tp_pki_new(struct tp_pki *p, char *err, size_t errlen)
{
	static const char *const ips[] = { "127.0.0.1" };
	struct certs_host_req req = { .name = "bench", .ips = ips, .nr_ips = 1 };
	struct certs_pair *ca = NULL, *host = NULL;
	char ca_crt[96], ca_key[96], crt[96], key[96];
	struct tls_conf tc = { ca_crt, crt, key };
	time_t now = time(NULL);
	int e;

	memset(p, 0, sizeof *p);
	snprintf(p->dir, sizeof p->dir, "/tmp/ferry-bench-pki-XXXXXX");
	if (!mkdtemp(p->dir)) {
		e = -errno;
		snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
		p->dir[0] = '\0';
		return e;
	}
	snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", p->dir);
	snprintf(ca_key, sizeof ca_key, "%s/ca.key", p->dir);
	snprintf(crt, sizeof crt, "%s/bench.crt", p->dir);
	snprintf(key, sizeof key, "%s/bench.key", p->dir);
	req.not_before = now - 3600;
	req.not_after = now + 86400;
	if ((e = certs_ca_new("ferry bench CA", now - 3600, now + 86400, &ca, err, errlen)) ||
	    (e = certs_pair_write(ca, ca_crt, ca_key, true, err, errlen)) ||
	    (e = certs_host_new(ca, &req, &host, err, errlen)) ||
	    (e = certs_pair_write(host, crt, key, true, err, errlen)) ||
	    (e = tls_ctx_new(&tc, &p->tls, err, errlen)))
		p->tls = NULL;
	certs_pair_free(host);
	certs_pair_free(ca);
	return e;
}

static int tp_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Free the context and remove the directory with the keys. */
static void tp_pki_free(struct tp_pki *p)
{
	if (p->tls)
		tls_ctx_free(p->tls);
	p->tls = NULL;
	if (p->dir[0])
		nftw(p->dir, tp_rm_entry, 4, FTW_DEPTH | FTW_PHYS);
	p->dir[0] = '\0';
}

/* A loopback listener on an ephemeral port: the socket, or -errno. */
static int tp_listen(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	if (s < 0)
		return -errno;
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, CP_STREAMS_MAX) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0) {
		e = -errno;
		close(s);
		return e;
	}
	*port = ntohs(a.sin_port);
	return s;
}

/* Accept n channels on ls the way lc says (TLS or plaintext) into ch[0..n),
 * in the order the peer connects them, each opened by a one-byte hello from
 * the peer (link_accept waits for the peer to speak first). 0, or -errno with err set (none
 * left open). The channels wait without a timeout, as chan_tcp_new's do. */
static int tp_accept_n(const struct link_conf *lc, int ls, unsigned n, struct chan **ch,
		       char *err, size_t errlen)
{
	unsigned i;
	char hello;
	int e = 0;

	for (i = 0; i < n && !e; i++) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			e = -errno;
			snprintf(err, errlen, "accept: %s", strerror(errno));
			break;
		}
		if ((e = link_accept(lc, fd, &ch[i], err, errlen))) {
			close(fd);
			break;
		}
		if ((e = chan_recv(ch[i], &hello, 1, TP_LINK_TIMEOUT_MS))) {
			snprintf(err, errlen, "no hello: %s", chan_error(ch[i], e));
			chan_free(ch[i]);
			break;
		}
		chan_set_timeout(ch[i], 0);
	}
	if (e)
		while (i--)
			chan_free(ch[i]);
	return e;
}

/* Connect n channels to 127.0.0.1:port into ch[0..n), each saying its
 * one-byte hello. As tp_accept_n. */
static int tp_connect_n(const struct link_conf *lc, uint16_t port, unsigned n,
			struct chan **ch, char *err, size_t errlen)
{
	static char h = 'h';
	struct iovec hello = { &h, 1 };
	char hp[32];
	unsigned i;
	int e = 0;

	snprintf(hp, sizeof hp, "127.0.0.1:%u", port);
	for (i = 0; i < n && !e; i++) {
		if ((e = link_connect(lc, hp, 0, &ch[i], err, errlen)))
			break;
		if ((e = chan_send(ch[i], &hello, 1, TP_LINK_TIMEOUT_MS))) {
			snprintf(err, errlen, "hello: %s", chan_error(ch[i], e));
			chan_free(ch[i]);
			break;
		}
		chan_set_timeout(ch[i], 0);
	}
	if (e)
		while (i--)
			chan_free(ch[i]);
	return e;
}

struct tp_connector {
	const struct link_conf *lc;
	uint16_t port;
	unsigned n;
	struct chan **ch;
	int r;
	char err[256];
};

static void *tp_connector_main(void *arg)
{
	struct tp_connector *c = arg;

	c->r = tp_connect_n(c->lc, c->port, c->n, c->ch, c->err, sizeof c->err);
	return NULL;
}

/*
 * n connected channel pairs over loopback within this process: a[i] the
 * connecting end, b[i] the accepting one; TLS 1.3 with mutual authentication
 * if tls, else plain TCP (TCP_NODELAY either way). A thread connects while
 * this one accepts (a TLS handshake needs both). 0, or -errno with err set;
 * on success the caller frees all 2n channels.
 */
static int __attribute__((unused)) tp_pairs_new(struct tls_ctx *tls, unsigned n, struct chan **a,
						struct chan **b, char *err, size_t errlen)
{
	struct link_conf lc = { .tls = tls, .timeout_ms = TP_LINK_TIMEOUT_MS };
	struct tp_connector c = { .lc = &lc, .n = n, .ch = a };
	pthread_t t;
	int ls, e;

	if ((ls = tp_listen(&c.port)) < 0) {
		snprintf(err, errlen, "listen: %s", strerror(-ls));
		return ls;
	}
	if ((e = pthread_create(&t, NULL, tp_connector_main, &c))) {
		close(ls);
		snprintf(err, errlen, "pthread_create: %s", strerror(e));
		return -e;
	}
	e = tp_accept_n(&lc, ls, n, b, err, errlen);
	close(ls); /* a connector still waiting for us fails now */
	pthread_join(t, NULL);
	if (!e && c.r) {
		for (unsigned i = 0; i < n; i++)
			chan_free(b[i]);
		snprintf(err, errlen, "%s", c.err);
		e = c.r;
	} else if (e && !c.r) {
		for (unsigned i = 0; i < n; i++)
			chan_free(a[i]);
	}
	return e;
}

/* ---- ratios over repetitions --------------------------------------------------- */

/* The values of v[0..n) that are > 0, into out; how many. */
static unsigned tp_valid(const double *v, unsigned n, double *out)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (v[i] > 0)
			out[k++] = v[i];
	return k;
}

/* Per repetition a / b where both ran, into out; how many. */
static unsigned tp_ratios(const double *a, const double *b, unsigned n, double *out)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (a[i] > 0 && b[i] > 0)
			out[k++] = a[i] / b[i];
	return k;
}

#ifndef TRANSPORT_NO_MAIN

/* ---- one transfer over channels ------------------------------------------- */

#include <getopt.h>

/* One channel's work on either side: its part of the RAM. */
struct tp_part {
	struct chan *ch;
	int fd;          /* sender: the guest memfd; receiver: the fresh one */
	size_t off, len;
	int err;
};

/* Sender thread: wait for the receiver's go, then pread the part chunk by
 * chunk into a buffer of its own and chan_send it. */
static void *tp_send_part(void *arg)
{
	struct tp_part *p = arg;
	char go, *buf = malloc(CP_CHUNK);

	if (!buf) {
		p->err = -ENOMEM;
		return NULL;
	}
	if ((p->err = chan_recv(p->ch, &go, 1, CHAN_WAIT_DEFAULT)))
		goto out;
	for (size_t o = 0; o < p->len;) {
		size_t want = MIN(p->len - o, (size_t)CP_CHUNK);
		struct iovec iov = { buf, want };

		if ((p->err = pio_full(p->fd, buf, want, (off_t)(p->off + o), false)))
			break;
		if ((p->err = chan_send(p->ch, &iov, 1, CHAN_WAIT_DEFAULT)))
			break;
		o += want;
	}
out:
	free(buf);
	return NULL;
}

/* Receiver thread: fallocate the part, then chan_recv it chunk by chunk into
 * a reused buffer and pwrite it into the fresh memfd. */
static void *tp_recv_part(void *arg)
{
	struct tp_part *p = arg;
	char *buf = malloc(CP_CHUNK);

	if (!buf) {
		p->err = -ENOMEM;
		return NULL;
	}
	if (p->len && fallocate(p->fd, 0, (off_t)p->off, (off_t)p->len) < 0)
		p->err = -errno;
	for (size_t o = 0; o < p->len && !p->err;) {
		size_t want = MIN(p->len - o, (size_t)CP_CHUNK);

		if ((p->err = chan_recv(p->ch, buf, want, CHAN_WAIT_DEFAULT)))
			break;
		p->err = pio_full(p->fd, buf, want, (off_t)(p->off + o), true);
		o += want;
	}
	free(buf);
	return NULL;
}

/* Run fn over parts[0..n), one thread each; the first error (of a part, or
 * of pthread_create). */
static int tp_run_parts(struct tp_part *parts, unsigned n, void *(*fn)(void *))
{
	pthread_t t[CP_STREAMS_MAX];
	unsigned started;
	int e = 0;

	for (started = 0; started < n; started++)
		if ((e = -pthread_create(&t[started], NULL, fn, &parts[started])))
			break;
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < n && !e; i++)
		e = parts[i].err;
	return e;
}

/* The sender process: connect n channels, send the parts, exit 0 or 1. */
static void tp_sender(const struct link_conf *lc, uint16_t port, unsigned n, int guest,
		      size_t len)
{
	struct tp_part parts[CP_STREAMS_MAX];
	struct chan *ch[CP_STREAMS_MAX];
	char err[256];
	int e;

	if ((e = tp_connect_n(lc, port, n, ch, err, sizeof err))) {
		fprintf(stderr, "transport: sender: %s\n", err);
		_exit(1);
	}
	for (unsigned i = 0; i < n; i++) {
		parts[i] = (struct tp_part){ .ch = ch[i], .fd = guest };
		cp_part(len, i, n, &parts[i].off, &parts[i].len);
	}
	e = tp_run_parts(parts, n, tp_send_part);
	if (e)
		fprintf(stderr, "transport: sender: %s\n", strerror(-e));
	for (unsigned i = 0; i < n; i++)
		chan_free(ch[i]);
	_exit(e ? 1 : 0);
}

/*
 * Move the guest memfd (len bytes) from a sender process through n channels
 * of the kind lc says into a fresh memfd here. MiB/s from the end of the
 * handshakes to the last byte written, or a negative errno.
 */
static double tp_transfer(const struct link_conf *lc, unsigned n, int guest, size_t len)
{
	struct tp_part parts[CP_STREAMS_MAX];
	struct chan *ch[CP_STREAMS_MAX];
	char err[256];
	uint16_t port = 0;
	int ls, ram = -1, e;
	double t0, dt = 0;
	pid_t pid;

	if ((ls = tp_listen(&port)) < 0)
		return ls;
	fflush(NULL);
	if ((pid = fork()) < 0) {
		e = -errno;
		close(ls);
		return e;
	}
	if (pid == 0) {
		close(ls);
		tp_sender(lc, port, n, guest, len);
	}
	e = tp_accept_n(lc, ls, n, ch, err, sizeof err);
	close(ls);
	if (e) {
		log_warn("accepting %u channels: %s", n, err);
		kill(pid, SIGKILL);
		cp_reap(pid, NULL);
		return e;
	}
	t0 = cp_now();
	ram = memfd_create("transport-destination", MFD_CLOEXEC);
	if (ram < 0 || ftruncate(ram, (off_t)len) < 0) {
		e = -errno;
		goto out;
	}
	for (unsigned i = 0; i < n && !e; i++) {
		static char g = 'g';
		struct iovec go = { &g, 1 };

		parts[i] = (struct tp_part){ .ch = ch[i], .fd = ram };
		cp_part(len, i, n, &parts[i].off, &parts[i].len);
		e = chan_send(ch[i], &go, 1, CHAN_WAIT_DEFAULT);
	}
	if (!e && !(e = tp_run_parts(parts, n, tp_recv_part)))
		dt = cp_now() - t0;
out:
	if (ram >= 0)
		close(ram);
	for (unsigned i = 0; i < n; i++)
		chan_free(ch[i]);
	if (e)
		kill(pid, SIGKILL);
	if (cp_reap(pid, NULL) && !e)
		e = -EIO;
	return e ? e : (double)len / (1 << 20) / dt;
}

/* ---- the run ------------------------------------------------------------------ */

enum tp_kind { TP_COPYPATH, TP_TCP, TP_TLS, TP_IPERF, TP_NR_KINDS };
static const char *const tp_kind_name[TP_NR_KINDS] = { "copypath", "tcp", "tls", "iperf3" };

#define TP_MAX_NS 3

static const char tp_help[] =
	"usage: transport [--mib N] [--reps N] [--channels 1,2,4] [--settle S]\n"
	"                 [--iperf-seconds S] [--copypath-methods SRC:DST,...] [--quick]\n"
	"\n"
	"Throughput of ferry's channels over loopback, no guest: a sender process\n"
	"reads a filled memfd of N MiB (default 1024) and sends it over N channels\n"
	"(--channels, default 1,2,4; at most 8 each, 3 values), one thread each;\n"
	"this process receives each channel on its own thread into a fresh memfd.\n"
	"Kinds tcp and tls (TLS 1.3, a throwaway PKI in /tmp, removed at the end).\n"
	"Next to each N, in the same repetition: the raw copy path with N streams\n"
	"(--copypath-methods, default pread:fpwrite, the channels' own path),\n"
	"iperf3 -P N on loopback (--iperf-seconds, default 3; null if missing), and\n"
	"memcpy once per repetition. --reps N (default 5), --settle S seconds after\n"
	"each measurement (default 2); --quick: 256 MiB, 1 repetition, settle 1 s,\n"
	"iperf3 1 s. One JSON line per case on stdout, progress on stderr.\n";

/* Settings. */
static uint64_t tp_mib = 1024, tp_reps = 5, tp_settle = 2, tp_iperf_s = 3;
static unsigned tp_ns[TP_MAX_NS] = { 1, 2, 4 }, tp_nr_ns = 3;
static unsigned tp_methods = CP_BIT(CP_SRC_PREAD, CP_DST_FPWRITE);

/* Results: MiB/s by kind, by index into tp_ns, by repetition (0: failed). */
static double tp_v[TP_NR_KINDS][TP_MAX_NS][MAX_REPS];
static double tp_memcpy[MAX_REPS];

/* "1,2,4" -> tp_ns; -1 if malformed. */
static int tp_parse_ns(const char *s)
{
	unsigned n = 0;

	while (*s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);

		if (end == s || v == 0 || v > CP_STREAMS_MAX || n == TP_MAX_NS ||
		    (*end && *end != ','))
			return -1;
		tp_ns[n++] = (unsigned)v;
		s = end + (*end == ',');
	}
	if (!n)
		return -1;
	tp_nr_ns = n;
	return 0;
}

/* median(a) / median(b) over their valid values, and the per-repetition
 * ratios' median, min and max, under key. */
static void tp_ratio_fields(struct jline *j, const char *key, const double *a, const double *b,
			    unsigned n)
{
	double va[MAX_REPS], vb[MAX_REPS], r[MAX_REPS];
	unsigned ka = tp_valid(a, n, va), kb = tp_valid(b, n, vb), kr = tp_ratios(a, b, n, r);
	struct stats sa = stats_of(va, ka), sb = stats_of(vb, kb);
	char k2[64];

	jl_num(j, key, sa.med / sb.med, ka && kb && sb.med > 0);
	snprintf(k2, sizeof k2, "%s_per_rep", key);
	jl_stats(j, k2, r, kr, true);
}

/* One JSON line for kind at tp_ns[ni]. */
static void tp_report(enum tp_kind kind, unsigned ni)
{
	const double *v = tp_v[kind][ni];
	unsigned n = (unsigned)tp_reps, k, nch = tp_ns[ni];
	struct jline j = { .len = 0 };
	char name[32], m[32];
	double w[MAX_REPS];

	snprintf(name, sizeof name, "%s-%s%u", tp_kind_name[kind],
		 kind == TP_IPERF ? "P" : kind == TP_COPYPATH ? "s" : "ch", nch);
	jl_add(&j, "{\"bench\":\"transport\"");
	jl_str(&j, "case", name);
	jl_str(&j, "kind", tp_kind_name[kind]);
	jl_u64(&j, kind == TP_TCP || kind == TP_TLS ? "channels" : "streams", nch);
	jl_u64(&j, "mib", tp_mib);
	jl_u64(&j, "reps", n);
	k = tp_valid(v, n, w);
	jl_u64(&j, "ok_reps", k);
	jl_stats(&j, "mib_s", w, k, true);
	if (kind == TP_COPYPATH) {
		unsigned b = 0;

		while (!(tp_methods & (1u << b)))
			b++;
		snprintf(m, sizeof m, "%s:%s%s", cp_src_name[b / CP_NR_DST],
			 cp_dst_name[b % CP_NR_DST], tp_methods & ~(1u << b) ? " (best of given)" : "");
		jl_str(&j, "method", m);
	}
	if (kind == TP_TCP || kind == TP_TLS) {
		tp_ratio_fields(&j, "to_copypath", v, tp_v[TP_COPYPATH][ni], n);
		tp_ratio_fields(&j, "to_iperf3", v, tp_v[TP_IPERF][ni], n);
	}
	if (kind == TP_TLS)
		tp_ratio_fields(&j, "tls_to_tcp", v, tp_v[TP_TCP][ni], n);
	printf("%s}\n", j.buf);
}

/* The memcpy line. */
static void tp_report_memcpy(void)
{
	struct jline j = { .len = 0 };
	double w[MAX_REPS];
	unsigned k = tp_valid(tp_memcpy, (unsigned)tp_reps, w);

	jl_add(&j, "{\"bench\":\"transport\"");
	jl_str(&j, "case", "memcpy");
	jl_str(&j, "kind", "memcpy");
	jl_u64(&j, "mib", tp_mib);
	jl_u64(&j, "reps", tp_reps);
	jl_stats(&j, "gbps", w, k, true);
	printf("%s}\n", j.buf);
}

/* Measure one kind at tp_ns[ni] in repetition r on the filled guest; MiB/s,
 * 0 on failure (logged), -1 if it cannot run (iperf3 missing). */
static double tp_measure(enum tp_kind kind, unsigned ni, int guest, size_t len,
			 struct tls_ctx *tls)
{
	struct link_conf lc = { .tls = kind == TP_TLS ? tls : NULL,
				.timeout_ms = TP_LINK_TIMEOUT_MS };
	struct cp_result cp;
	unsigned n = tp_ns[ni];
	double v;
	int e;

	switch (kind) {
	case TP_COPYPATH:
		if ((e = copypath_move(guest, len, tp_methods, n, &cp))) {
			log_warn("copy path, %u streams: %s", n, strerror(-e));
			return 0;
		}
		return cp.best_mib_s;
	case TP_IPERF:
		return iperf_mib_s(n, (unsigned)tp_iperf_s);
	default:
		v = tp_transfer(&lc, n, guest, len);
		if (v < 0) {
			log_warn("%s over %u channels: %s", tp_kind_name[kind], n, strerror((int)-v));
			return 0;
		}
		return v;
	}
}

/* One repetition: a fresh guest, memcpy, then for each N the copy path, tcp,
 * tls and iperf3, each followed by the settle pause. false if any failed. */
static bool tp_rep(unsigned r, struct tls_ctx *tls, uint64_t t_start)
{
	size_t len = (size_t)tp_mib << 20;
	int guest = cp_guest_new(len);
	bool ok = true;

	if (guest < 0) {
		log_error("filling the guest: %s", strerror(-guest));
		return false;
	}
	tp_memcpy[r] = memcpy_gbps(len);
	fprintf(stderr, "transport: [%5.0f s] rep %u memcpy %.1f GB/s\n",
		ns_to_sec(mono_ns() - t_start), r + 1, tp_memcpy[r]);
	for (unsigned ni = 0; ni < tp_nr_ns; ni++)
		for (unsigned k = 0; k < TP_NR_KINDS; k++) {
			double v;

			mono_sleep_ns(tp_settle * NSEC_PER_SEC);
			v = tp_measure((enum tp_kind)k, ni, guest, len, tls);
			tp_v[k][ni][r] = v;
			ok &= v != 0;
			fprintf(stderr, "transport: [%5.0f s] rep %u %-8s N=%u: %.0f MiB/s\n",
				ns_to_sec(mono_ns() - t_start), r + 1, tp_kind_name[k], tp_ns[ni],
				v);
		}
	close(guest);
	return ok;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, 0, 'm' },	   { "reps", required_argument, 0, 'r' },
		{ "channels", required_argument, 0, 'n' }, { "settle", required_argument, 0, 's' },
		{ "iperf-seconds", required_argument, 0, 'i' },
		{ "copypath-methods", required_argument, 0, 'M' },
		{ "quick", no_argument, 0, 'q' },	   { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	bool quick = false, mib_set = false, reps_set = false, settle_set = false, iperf_set = false;
	bool ok = true;
	struct tp_pki pki;
	char err[512];
	uint64_t t0;
	int c, e;

	log_init("transport", LOG_WARN);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_u64(optarg, 1, 1u << 20, &tp_mib))
				goto usage;
			mib_set = true;
			break;
		case 'r':
			if (parse_u64(optarg, 1, MAX_REPS, &tp_reps))
				goto usage;
			reps_set = true;
			break;
		case 'n':
			if (tp_parse_ns(optarg))
				goto usage;
			break;
		case 's':
			if (parse_u64(optarg, 0, 3600, &tp_settle))
				goto usage;
			settle_set = true;
			break;
		case 'i':
			if (parse_u64(optarg, 1, 600, &tp_iperf_s))
				goto usage;
			iperf_set = true;
			break;
		case 'M':
			if (!(tp_methods = cp_parse_methods(optarg)))
				goto usage;
			break;
		case 'q': quick = true; break;
		case 'h': fputs(tp_help, stdout); return 0;
		default: goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	if (quick) {
		tp_mib = mib_set ? tp_mib : 256;
		tp_reps = reps_set ? tp_reps : 1;
		tp_settle = settle_set ? tp_settle : 1;
		tp_iperf_s = iperf_set ? tp_iperf_s : 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((e = tp_pki_new(&pki, err, sizeof err))) {
		log_error("throwaway PKI: %s", err);
		tp_pki_free(&pki);
		return 1;
	}
	fprintf(stderr, "transport: %" PRIu64 " MiB, %" PRIu64 " repetitions, PKI in %s\n",
		tp_mib, tp_reps, pki.dir);
	t0 = mono_ns();
	for (unsigned r = 0; r < tp_reps; r++)
		ok &= tp_rep(r, pki.tls, t0);
	tp_pki_free(&pki);
	for (unsigned ni = 0; ni < tp_nr_ns; ni++)
		for (unsigned k = 0; k < TP_NR_KINDS; k++)
			tp_report((enum tp_kind)k, ni);
	tp_report_memcpy();
	return ok ? 0 : 1;
usage:
	fputs(tp_help, stderr);
	return 2;
}

#endif
