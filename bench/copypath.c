/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/copypath — the machine's raw copy path for guest RAM (DESIGN.md §11):
 * how fast bytes that one process wrote into a memfd reach a fresh memfd of
 * another process over loopback TCP, with no migration logic at all. It is the
 * reference that bench/migrate holds a migration against, in the same run.
 *
 * A "guest" process fills a memfd of N MiB with incompressible data and exits
 * (the pages stay in the memfd, as a running VM's would). Then, for each
 * method, a "source" process sends the memfd over 127.0.0.1 and the
 * "destination" (this process) receives it into a fresh memfd. The clock runs
 * at the destination from accept() to the last byte written, as a migration's
 * pre-copy phase would.
 *
 *   source:      pread    (pread into a 1 MiB buffer, then send: what ferry's
 *                          sender does)
 *                mmap     (send straight from a shared mapping of the memfd)
 *                sendfile (sendfile from the memfd)
 *                hpread   (as pread, and XXH3 over each chunk before it goes:
 *                          a sender that checksums what it sends, as ferry's)
 *                hsendfile (pread each chunk into the buffer and XXH3 it, then
 *                          sendfile the same bytes from the memfd: a sender
 *                          that checksums, without the copy into the socket)
 *   destination: pwrite   (recv into a reused 1 MiB buffer, pwrite into the memfd)
 *                fpwrite  (fallocate the whole memfd first, then as pwrite)
 *                mmap     (recv straight into a fresh mapping; not by default:
 *                          every first touch is a page fault, DESIGN.md §11)
 *                fmmap    (fallocate the part, map it with MADV_POPULATE_WRITE,
 *                          then recv straight into the mapping: one copy
 *                          fewer than fpwrite, no fault per page)
 *
 * With --streams N (copypath_run_streams) the RAM is cut into N equal parts,
 * each sent by its own source process over its own connection and received
 * by its own thread of the destination into the same fresh memfd: the
 * reference for a migration over N channels.
 *
 * As a program: one JSON line per method (median, min, max over --reps) and
 * one "best" line. bench/migrate and bench/transport include this file
 * (COPYPATH_NO_MAIN) and call copypath_run_streams() (or copypath_move() on
 * a guest of their own) once per repetition.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/xxh.h"

#define CP_CHUNK (1u << 20)
#define CP_STREAMS_MAX 8

enum cp_src { CP_SRC_PREAD, CP_SRC_MMAP, CP_SRC_SENDFILE, CP_SRC_HPREAD, CP_SRC_HSENDFILE,
	      CP_NR_SRC };
enum cp_dst { CP_DST_PWRITE, CP_DST_FPWRITE, CP_DST_MMAP, CP_DST_FMMAP, CP_NR_DST };

static const char *const cp_src_name[CP_NR_SRC] = { "pread", "mmap", "sendfile", "hpread",
						    "hsendfile" };
static const char *const cp_dst_name[CP_NR_DST] = { "pwrite", "fpwrite", "mmap", "fmmap" };

#define CP_NR_METHODS (CP_NR_SRC * CP_NR_DST)
#define CP_METHOD(s, d) ((unsigned)(s) * CP_NR_DST + (unsigned)(d))
#define CP_BIT(s, d) (1u << CP_METHOD(s, d))
/* Every source with pwrite and fpwrite: the candidates for "best". */
#define CP_DEFAULT_METHODS \
	(CP_BIT(CP_SRC_PREAD, CP_DST_PWRITE) | CP_BIT(CP_SRC_PREAD, CP_DST_FPWRITE) | \
	 CP_BIT(CP_SRC_MMAP, CP_DST_PWRITE) | CP_BIT(CP_SRC_MMAP, CP_DST_FPWRITE) | \
	 CP_BIT(CP_SRC_SENDFILE, CP_DST_PWRITE) | CP_BIT(CP_SRC_SENDFILE, CP_DST_FPWRITE))

struct cp_result {
	double mib_s[CP_NR_METHODS]; /* 0 for a method not run */
	double cpu_s[CP_NR_METHODS]; /* CPU seconds of the transfer, both sides */
	unsigned best;               /* index of the fastest method run */
	double best_mib_s;
};

static double cp_tv(struct timeval t)
{
	return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

static double cp_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The guest: write every byte of the memfd once (splitmix64 words, so the
 * content is incompressible), in a process of its own. */
static void cp_guest(int memfd, size_t len)
{
	uint64_t *w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	uint64_t x = 0x243f6a8885a308d3ull;

	if (w == MAP_FAILED)
		_exit(1);
	for (size_t i = 0; i < len / sizeof *w; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		w[i] = z ^ (z >> 31);
	}
	_exit(0);
}

static int cp_send_all(int s, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(s, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* sendfile [off, end) of memfd to s; 0 or -1. */
static int cp_sendfile_all(int s, int memfd, size_t off, size_t end)
{
	off_t o = (off_t)off;

	while ((size_t)o < end) {
		ssize_t k = sendfile(s, memfd, &o, end - (size_t)o);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
	}
	return 0;
}

/* The sources' checksums go here, so that the compiler keeps them. */
static volatile uint64_t cp_sum;

/* The source: connect, send len bytes of the memfd from offset off by
 * method src, exit. */
static void cp_source(enum cp_src src, int memfd, size_t off, size_t len,
		      const struct sockaddr_in *addr)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	size_t end = off + len;

	if (s < 0 || connect(s, (const struct sockaddr *)addr, sizeof *addr) < 0)
		_exit(1);
	if (src == CP_SRC_SENDFILE) {
		if (cp_sendfile_all(s, memfd, off, end))
			_exit(1);
	} else if (src == CP_SRC_MMAP) {
		const char *ram = mmap(NULL, end, PROT_READ, MAP_SHARED, memfd, 0);
		if (ram == MAP_FAILED)
			_exit(1);
		for (size_t o = off; o < end; o += CP_CHUNK)
			if (cp_send_all(s, ram + o, end - o < CP_CHUNK ? end - o : CP_CHUNK))
				_exit(1);
	} else {
		char *buf = malloc(CP_CHUNK);
		if (!buf)
			_exit(1);
		for (size_t o = off; o < end;) {
			size_t want = end - o < CP_CHUNK ? end - o : CP_CHUNK;
			ssize_t k = pread(memfd, buf, want, (off_t)o);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				_exit(1);
			if (src != CP_SRC_PREAD)
				cp_sum ^= XXH3_64bits(buf, (size_t)k);
			if (src == CP_SRC_HSENDFILE ? cp_sendfile_all(s, memfd, o, o + (size_t)k)
						    : cp_send_all(s, buf, (size_t)k))
				_exit(1);
			o += (size_t)k;
		}
	}
	close(s);
	_exit(0);
}

/* Wait for a child; add the CPU seconds it used to *cpu_s (if not NULL). */
static int cp_reap(pid_t pid, double *cpu_s)
{
	struct rusage ru;
	int st;

	while (wait4(pid, &st, 0, &ru) < 0)
		if (errno != EINTR)
			return -errno;
	if (cpu_s)
		*cpu_s += cp_tv(ru.ru_utime) + cp_tv(ru.ru_stime);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* CPU seconds this process (the receiving threads) has used. */
static double cp_self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return cp_tv(ru.ru_utime) + cp_tv(ru.ru_stime);
}

/* Stream i of n carries [off, off + len) of the RAM: equal parts in whole
 * chunks, the last part taking what is left. */
static void cp_part(size_t total, unsigned i, unsigned n, size_t *off, size_t *len)
{
	size_t part = total / n / CP_CHUNK * CP_CHUNK;

	*off = part * i;
	*len = i + 1 == n ? total - *off : part;
}

/* One destination stream: its connection, its part of the fresh memfd. */
struct cp_stream {
	int sock;            /* accepted connection */
	int ram;             /* the destination memfd (shared by all streams) */
	char *map;           /* its mapping (CP_DST_MMAP), else NULL */
	enum cp_dst dst;
	size_t off, len;     /* the part of the RAM this stream carries */
	pthread_mutex_t *wlock; /* shared: one writer of the memfd at a time */
	int err;             /* 0 or -errno */
};

/* Receive one stream's part into the destination memfd by its method:
 * fallocate the part first (fpwrite), then recv into a reused buffer and
 * pwrite, or recv straight into the mapping. Sets s->err. The streams take
 * turns writing, as ferry's destination does (hv/mvm.c, page_io): a write
 * holds the memfd's inode lock, and the kernel's waiters for it spin while
 * the CPU they take is one another stream needs (2 streams, 1 GiB, here:
 * 888 MiB/s without turns, against 2 GiB/s with one stream). */
static void *cp_recv_stream(void *arg)
{
	struct cp_stream *s = arg;
	char *buf = NULL;
	size_t got = 0;

	if ((s->dst == CP_DST_FPWRITE || s->dst == CP_DST_FMMAP) && s->len) {
		int r;

		pthread_mutex_lock(s->wlock);
		r = fallocate(s->ram, 0, (off_t)s->off, (off_t)s->len);
		pthread_mutex_unlock(s->wlock);
		if (r < 0 || (s->dst == CP_DST_FMMAP &&
			      madvise(s->map + s->off, s->len, MADV_POPULATE_WRITE) < 0)) {
			s->err = -errno;
			return NULL;
		}
	}
	if (!s->map && !(buf = malloc(CP_CHUNK))) {
		s->err = -ENOMEM;
		return NULL;
	}
	while (got < s->len) {
		size_t want = s->len - got < CP_CHUNK ? s->len - got : CP_CHUNK;
		char *to = s->map ? s->map + s->off + got : buf;
		ssize_t n = recv(s->sock, to, want, MSG_WAITALL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			s->err = n < 0 ? -errno : -EPIPE;
			break;
		}
		if (!s->map) {
			ssize_t w;

			pthread_mutex_lock(s->wlock);
			w = pwrite(s->ram, buf, (size_t)n, (off_t)(s->off + got));
			pthread_mutex_unlock(s->wlock);
			if (w != n) {
				s->err = -EIO;
				break;
			}
		}
		got += (size_t)n;
	}
	free(buf);
	return NULL;
}

/*
 * Run the destination of one transfer over the accepted sockets ss[i].sock:
 * a fresh memfd of len bytes, one thread per stream (the caller's own thread
 * when there is one stream, as before streams existed). 0 or -errno.
 */
static int cp_receive(struct cp_stream *ss, unsigned n, size_t len, enum cp_dst dst)
{
	pthread_t tid[CP_STREAMS_MAX];
	pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
	char *map = NULL;
	unsigned started = 0;
	int ram, e = 0;

	ram = memfd_create("copypath-destination", MFD_CLOEXEC);
	if (ram < 0 || ftruncate(ram, (off_t)len) < 0) {
		e = -errno;
		goto out;
	}
	if (dst == CP_DST_MMAP || dst == CP_DST_FMMAP) {
		map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			e = -errno;
			goto out;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		ss[i].ram = ram;
		ss[i].map = map;
		ss[i].dst = dst;
		ss[i].wlock = &wlock;
		ss[i].err = 0;
		cp_part(len, i, n, &ss[i].off, &ss[i].len);
	}
	if (n == 1) {
		cp_recv_stream(&ss[0]);
	} else {
		for (; started < n; started++)
			if ((e = -pthread_create(&tid[started], NULL, cp_recv_stream, &ss[started])))
				break;
		for (unsigned i = 0; i < started; i++)
			pthread_join(tid[i], NULL);
		if (e)
			goto out;
	}
	for (unsigned i = 0; i < n && !e; i++)
		e = ss[i].err;
out:
	if (map)
		munmap(map, len);
	if (ram >= 0)
		close(ram);
	return e;
}

/*
 * One transfer by (src, dst) over n streams: n source processes, each
 * connecting to its own listener ls[i] (bound at addr[i]) and sending its
 * part of the guest memfd; this process receives them into a fresh memfd.
 * The clock runs from the last accept() to the last byte written. MiB/s,
 * or a negative errno; *cpu_s: the CPU seconds of the source processes
 * (their whole life) and of this process over the receive (the freeing of
 * the fresh memfd included, as a destination that gives a guest back pays it).
 */
static double cp_transfer(const int *ls, const struct sockaddr_in *addr, unsigned n,
			  int guest, size_t len, enum cp_src src, enum cp_dst dst, double *cpu_s)
{
	struct cp_stream ss[CP_STREAMS_MAX];
	pid_t pid[CP_STREAMS_MAX];
	unsigned forked = 0;
	double t0 = 0, dt = 0, c0 = cp_self_cpu();
	int e = 0;

	fflush(NULL);
	for (unsigned i = 0; i < n; i++)
		ss[i].sock = -1;
	for (; forked < n; forked++) {
		size_t off, plen;

		cp_part(len, forked, n, &off, &plen);
		pid[forked] = fork();
		if (pid[forked] < 0) {
			e = -errno;
			goto out;
		}
		if (pid[forked] == 0) {
			for (unsigned i = 0; i < n; i++)
				close(ls[i]);
			cp_source(src, guest, off, plen, &addr[forked]);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		do
			ss[i].sock = accept(ls[i], NULL, NULL);
		while (ss[i].sock < 0 && errno == EINTR);
		if (ss[i].sock < 0) {
			e = -errno;
			goto out;
		}
	}
	t0 = cp_now();
	if (!(e = cp_receive(ss, n, len, dst)))
		dt = cp_now() - t0;
out:
	for (unsigned i = 0; i < n; i++)
		if (ss[i].sock >= 0)
			close(ss[i].sock);
	for (unsigned i = 0; i < forked; i++) {
		if (e)
			kill(pid[i], SIGKILL);
		if (cp_reap(pid[i], cpu_s) && !e)
			e = -EIO;
	}
	if (e)
		return e;
	*cpu_s += cp_self_cpu() - c0;
	return (double)len / (1 << 20) / dt;
}

/* A memfd of len bytes that a guest process of its own filled (and left):
 * the fd, or a negative errno. */
static int cp_guest_new(size_t len)
{
	int guest = memfd_create("copypath-guest", MFD_CLOEXEC), e;
	pid_t pid;

	if (guest < 0)
		return -errno;
	if (ftruncate(guest, (off_t)len) < 0) {
		e = -errno;
		goto err;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		e = -errno;
		goto err;
	}
	if (pid == 0)
		cp_guest(guest, len);
	if ((e = cp_reap(pid, NULL)))
		goto err;
	return guest;
err:
	close(guest);
	return e;
}

/* n loopback listeners, each in ls[i] and its address in addr[i]. 0 or
 * -errno (none left open). */
static int cp_listen(unsigned n, int *ls, struct sockaddr_in *addr)
{
	int one = 1, e = 0;

	for (unsigned i = 0; i < n; i++)
		ls[i] = -1;
	for (unsigned i = 0; i < n && !e; i++) {
		socklen_t alen = sizeof addr[i];

		memset(&addr[i], 0, sizeof addr[i]);
		addr[i].sin_family = AF_INET;
		addr[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ls[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ls[i] < 0 || setsockopt(ls[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    bind(ls[i], (struct sockaddr *)&addr[i], sizeof addr[i]) < 0 ||
		    listen(ls[i], 1) < 0 ||
		    getsockname(ls[i], (struct sockaddr *)&addr[i], &alen) < 0)
			e = -errno;
	}
	if (e)
		for (unsigned i = 0; i < n; i++)
			if (ls[i] >= 0)
				close(ls[i]);
	return e;
}

/*
 * Move an already filled guest memfd of len bytes once by every method in
 * the mask (bits CP_BIT(src, dst)) over n streams (1..CP_STREAMS_MAX),
 * each time into a fresh memfd. The guest stays the caller's. 0, or a
 * negative errno (nothing useful in *out). The methods run in a fixed order,
 * and on this project's test machine the first of a move is the slow one
 * whatever it is (0.5-0.7 GiB/s against 1.6-2.3 for the next ones: it runs
 * right after the guest's fill, into memory the host had taken back).
 */
static int __attribute__((unused)) copypath_move(int guest, size_t len, unsigned methods, unsigned n,
			 struct cp_result *out)
{
	struct sockaddr_in addr[CP_STREAMS_MAX];
	int ls[CP_STREAMS_MAX], e;

	memset(out, 0, sizeof *out);
	if (n == 0 || n > CP_STREAMS_MAX)
		return -EINVAL;
	if ((e = cp_listen(n, ls, addr)))
		return e;
	for (unsigned s = 0; s < CP_NR_SRC && !e; s++)
		for (unsigned d = 0; d < CP_NR_DST && !e; d++) {
			unsigned m = CP_METHOD(s, d);
			double v, cpu = 0;

			if (!(methods & (1u << m)))
				continue;
			v = cp_transfer(ls, addr, n, guest, len, (enum cp_src)s, (enum cp_dst)d, &cpu);
			if (v < 0) {
				e = (int)v;
				break;
			}
			out->mib_s[m] = v;
			out->cpu_s[m] = cpu;
			if (v > out->best_mib_s) {
				out->best_mib_s = v;
				out->best = m;
			}
		}
	for (unsigned i = 0; i < n; i++)
		close(ls[i]);
	return e;
}

/*
 * Fill a guest memfd of len bytes in a child, then move it once by every
 * method in the mask over n parallel streams (each a disjoint part of the
 * RAM on its own loopback TCP connection, from its own source process into
 * its own receiving thread). 0, or a negative errno.
 */
static int copypath_run_streams(size_t len, unsigned methods, unsigned n,
				struct cp_result *out)
{
	int guest = cp_guest_new(len), e;

	memset(out, 0, sizeof *out);
	if (guest < 0)
		return guest;
	e = copypath_move(guest, len, methods, n, out);
	close(guest);
	return e;
}

/* The same over one stream (the API before streams; the program and each
 * includer use only some of these, hence unused). */
static int __attribute__((unused)) copypath_run(size_t len, unsigned methods, struct cp_result *out)
{
	return copypath_run_streams(len, methods, 1, out);
}

/* "pread:pwrite" -> method index; -1 if unknown. */
static int cp_parse_method(const char *s, size_t n)
{
	for (unsigned a = 0; a < CP_NR_SRC; a++)
		for (unsigned b = 0; b < CP_NR_DST; b++) {
			char name[32];
			snprintf(name, sizeof name, "%s:%s", cp_src_name[a], cp_dst_name[b]);
			if (strlen(name) == n && !strncmp(name, s, n))
				return (int)CP_METHOD(a, b);
		}
	return -1;
}

/* "pread:pwrite,sendfile:fpwrite" or "all" -> mask; 0 if malformed. */
static unsigned cp_parse_methods(const char *s)
{
	unsigned mask = 0;

	if (!strcmp(s, "all"))
		return (1u << CP_NR_METHODS) - 1;
	while (*s) {
		size_t n = strcspn(s, ",");
		int m = cp_parse_method(s, n);
		if (m < 0)
			return 0;
		mask |= 1u << m;
		s += n + (s[n] == ',');
	}
	return mask;
}

#ifndef COPYPATH_NO_MAIN

#include <getopt.h>

#include "bench/stats.h"

static const char cp_help[] =
	"usage: copypath [--mib N] [--reps N] [--methods SRC:DST[,...]|all] [--settle S]\n"
	"                [--streams N]\n"
	"\n"
	"The raw copy path of guest RAM over loopback TCP (DESIGN.md §11): a guest\n"
	"process fills a memfd of N MiB (default 1024), a source process sends it,\n"
	"this process receives it into a fresh memfd. SRC: pread, mmap, sendfile,\n"
	"hpread and hsendfile (as pread, with XXH3 over each chunk; then send it,\n"
	"or sendfile the same bytes); DST: pwrite, fpwrite (fallocate first), mmap,\n"
	"fmmap (fallocate, map populated, recv into the mapping). Default: pread,\n"
	"mmap and sendfile with pwrite and fpwrite. Each repetition (default 5)\n"
	"refills the guest and runs every method once; --settle S seconds (default\n"
	"2) between repetitions.\n"
	"--streams N (1-8, default 1): N source processes each send a part of the\n"
	"RAM over a connection of its own; N threads receive them.\n"
	"One JSON line per method (MiB/s median, min, max; cpu_s: the CPU seconds\n"
	"of one transfer, sources and receiver, median) and one for the best.\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, 0, 'm' },	{ "reps", required_argument, 0, 'r' },
		{ "methods", required_argument, 0, 'M' }, { "settle", required_argument, 0, 's' },
		{ "streams", required_argument, 0, 'n' }, { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	static double v[CP_NR_METHODS][MAX_REPS], cpu[CP_NR_METHODS][MAX_REPS];
	unsigned long mib = 1024, reps = 5, settle = 2, streams = 1;
	unsigned methods = CP_DEFAULT_METHODS, best_m = 0;
	struct stats bs = { 0, 0, 0 }, bc = { 0, 0, 0 };
	double best_med = 0;
	char *end;
	int c, e;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mib = strtoul(optarg, &end, 10);
			if (*end || mib == 0 || mib > (1ul << 20))
				goto usage;
			break;
		case 'r':
			reps = strtoul(optarg, &end, 10);
			if (*end || reps == 0 || reps > MAX_REPS)
				goto usage;
			break;
		case 's':
			settle = strtoul(optarg, &end, 10);
			if (*end || settle > 3600)
				goto usage;
			break;
		case 'n':
			streams = strtoul(optarg, &end, 10);
			if (*end || streams == 0 || streams > CP_STREAMS_MAX)
				goto usage;
			break;
		case 'M':
			if (!(methods = cp_parse_methods(optarg)))
				goto usage;
			break;
		case 'h': fputs(cp_help, stdout); return 0;
		default: goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	signal(SIGPIPE, SIG_IGN);

	for (unsigned r = 0; r < reps; r++) {
		struct cp_result res;

		if (r && settle)
			sleep((unsigned)settle);
		if ((e = copypath_run_streams((size_t)mib << 20, methods, (unsigned)streams, &res))) {
			fprintf(stderr, "copypath: %s\n", strerror(-e));
			return 1;
		}
		for (unsigned m = 0; m < CP_NR_METHODS; m++) {
			v[m][r] = res.mib_s[m];
			cpu[m][r] = res.cpu_s[m];
		}
		fprintf(stderr, "copypath: rep %u: best %s:%s %.0f MiB/s\n", r + 1,
			cp_src_name[res.best / CP_NR_DST], cp_dst_name[res.best % CP_NR_DST],
			res.best_mib_s);
	}
	for (unsigned m = 0; m < CP_NR_METHODS; m++) {
		struct stats s, sc;

		if (!(methods & (1u << m)))
			continue;
		s = stats_of(v[m], (unsigned)reps);
		sc = stats_of(cpu[m], (unsigned)reps);
		printf("{\"bench\":\"copypath\",\"src\":\"%s\",\"dst\":\"%s\",\"streams\":%lu,\"mib\":%lu,"
		       "\"mib_s_median\":%.0f,\"mib_s_min\":%.0f,\"mib_s_max\":%.0f,"
		       "\"cpu_s_median\":%.3f,\"reps\":%lu}\n",
		       cp_src_name[m / CP_NR_DST], cp_dst_name[m % CP_NR_DST], streams, mib, s.med, s.min,
		       s.max, sc.med, reps);
		if (s.med > best_med) {
			best_med = s.med;
			bs = s;
			bc = sc;
			best_m = m;
		}
	}
	printf("{\"bench\":\"copypath_best\",\"method\":\"%s:%s\",\"streams\":%lu,\"mib\":%lu,"
	       "\"mib_s_median\":%.0f,\"mib_s_min\":%.0f,\"mib_s_max\":%.0f,"
	       "\"cpu_s_median\":%.3f,\"reps\":%lu}\n",
	       cp_src_name[best_m / CP_NR_DST], cp_dst_name[best_m % CP_NR_DST],
	       streams, mib, bs.med, bs.min, bs.max, bc.med, reps);
	return 0;
usage:
	fputs(cp_help, stderr);
	return 2;
}

#endif
