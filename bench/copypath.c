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
 *   destination: pwrite   (recv into a reused 1 MiB buffer, pwrite into the memfd)
 *                fpwrite  (fallocate the whole memfd first, then as pwrite)
 *                mmap     (recv straight into a fresh mapping; not by default:
 *                          every first touch is a page fault, DESIGN.md §11)
 *
 * As a program: one JSON line per method (median, min, max over --reps) and
 * one "best" line. bench/migrate includes this file (COPYPATH_NO_MAIN) and
 * calls copypath_run() once per repetition.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CP_CHUNK (1u << 20)

enum cp_src { CP_SRC_PREAD, CP_SRC_MMAP, CP_SRC_SENDFILE, CP_NR_SRC };
enum cp_dst { CP_DST_PWRITE, CP_DST_FPWRITE, CP_DST_MMAP, CP_NR_DST };

static const char *const cp_src_name[CP_NR_SRC] = { "pread", "mmap", "sendfile" };
static const char *const cp_dst_name[CP_NR_DST] = { "pwrite", "fpwrite", "mmap" };

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
	unsigned best;               /* index of the fastest method run */
	double best_mib_s;
};

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

/* The source: connect, send len bytes of the memfd by method src, exit. */
static void cp_source(enum cp_src src, int memfd, size_t len, const struct sockaddr_in *addr)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || connect(s, (const struct sockaddr *)addr, sizeof *addr) < 0)
		_exit(1);
	if (src == CP_SRC_SENDFILE) {
		off_t off = 0;
		while ((size_t)off < len) {
			ssize_t k = sendfile(s, memfd, &off, len - (size_t)off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				_exit(1);
		}
	} else if (src == CP_SRC_MMAP) {
		const char *ram = mmap(NULL, len, PROT_READ, MAP_SHARED, memfd, 0);
		if (ram == MAP_FAILED)
			_exit(1);
		for (size_t o = 0; o < len; o += CP_CHUNK)
			if (cp_send_all(s, ram + o, len - o < CP_CHUNK ? len - o : CP_CHUNK))
				_exit(1);
	} else {
		char *buf = malloc(CP_CHUNK);
		if (!buf)
			_exit(1);
		for (size_t o = 0; o < len;) {
			size_t want = len - o < CP_CHUNK ? len - o : CP_CHUNK;
			ssize_t k = pread(memfd, buf, want, (off_t)o);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0 || cp_send_all(s, buf, (size_t)k))
				_exit(1);
			o += (size_t)k;
		}
	}
	close(s);
	_exit(0);
}

static int cp_reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* One transfer by (src, dst); MiB/s, or a negative errno. */
static double cp_transfer(int ls, const struct sockaddr_in *addr, int guest, size_t len,
			  enum cp_src src, enum cp_dst dst)
{
	char *buf = NULL, *map = MAP_FAILED;
	int c = -1, ram = -1, e = 0;
	size_t got = 0;
	double t0, dt = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(ls);
		cp_source(src, guest, len, addr);
	}
	do
		c = accept(ls, NULL, NULL);
	while (c < 0 && errno == EINTR);
	t0 = cp_now();
	ram = memfd_create("copypath-destination", MFD_CLOEXEC);
	if (c < 0 || ram < 0 || ftruncate(ram, (off_t)len) < 0) {
		e = -errno;
		goto out;
	}
	if (dst == CP_DST_FPWRITE && fallocate(ram, 0, 0, (off_t)len) < 0) {
		e = -errno;
		goto out;
	}
	if (dst == CP_DST_MMAP) {
		map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
		if (map == MAP_FAILED) {
			e = -errno;
			goto out;
		}
	} else if (!(buf = malloc(CP_CHUNK))) {
		e = -ENOMEM;
		goto out;
	}
	while (got < len) {
		size_t want = len - got < CP_CHUNK ? len - got : CP_CHUNK;
		ssize_t n = recv(c, map != MAP_FAILED ? map + got : buf, want, MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? -errno : -EPIPE;
			goto out;
		}
		if (map == MAP_FAILED && pwrite(ram, buf, (size_t)n, (off_t)got) != n) {
			e = -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	dt = cp_now() - t0;
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	free(buf);
	if (ram >= 0)
		close(ram);
	if (c >= 0)
		close(c);
	if (cp_reap(pid) && !e)
		e = -EIO;
	if (e)
		return e;
	return (double)len / (1 << 20) / dt;
}

/*
 * Fill a guest memfd of len bytes in a child, then move it once by every
 * method in the mask (bits CP_BIT(src, dst)), each into a fresh memfd.
 * 0, or a negative errno (nothing useful in *out).
 */
static int copypath_run(size_t len, unsigned methods, struct cp_result *out)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof addr;
	int ls = -1, guest = -1, one = 1, e = 0;
	pid_t pid;

	memset(out, 0, sizeof *out);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&addr, &alen) < 0) {
		e = -errno;
		goto out;
	}
	guest = memfd_create("copypath-guest", MFD_CLOEXEC);
	if (guest < 0 || ftruncate(guest, (off_t)len) < 0) {
		e = -errno;
		goto out;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		e = -errno;
		goto out;
	}
	if (pid == 0)
		cp_guest(guest, len);
	if ((e = cp_reap(pid)))
		goto out;
	for (unsigned s = 0; s < CP_NR_SRC; s++)
		for (unsigned d = 0; d < CP_NR_DST; d++) {
			unsigned m = CP_METHOD(s, d);
			double v;

			if (!(methods & (1u << m)))
				continue;
			v = cp_transfer(ls, &addr, guest, len, (enum cp_src)s, (enum cp_dst)d);
			if (v < 0) {
				e = (int)v;
				goto out;
			}
			out->mib_s[m] = v;
			if (v > out->best_mib_s) {
				out->best_mib_s = v;
				out->best = m;
			}
		}
out:
	if (guest >= 0)
		close(guest);
	if (ls >= 0)
		close(ls);
	return e;
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
	"\n"
	"The raw copy path of guest RAM over loopback TCP (DESIGN.md §11): a guest\n"
	"process fills a memfd of N MiB (default 1024), a source process sends it,\n"
	"this process receives it into a fresh memfd. SRC: pread, mmap, sendfile;\n"
	"DST: pwrite, fpwrite (fallocate first), mmap. Default: every SRC with\n"
	"pwrite and fpwrite. Each repetition (default 5) refills the guest and runs\n"
	"every method once; --settle S seconds (default 2) between repetitions.\n"
	"One JSON line per method (MiB/s median, min, max) and one for the best.\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, 0, 'm' },	{ "reps", required_argument, 0, 'r' },
		{ "methods", required_argument, 0, 'M' }, { "settle", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },	{ 0 }
	};
	static double v[CP_NR_METHODS][MAX_REPS];
	unsigned long mib = 1024, reps = 5, settle = 2;
	unsigned methods = CP_DEFAULT_METHODS, best_m = 0;
	struct stats bs = { 0, 0, 0 };
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
		if ((e = copypath_run((size_t)mib << 20, methods, &res))) {
			fprintf(stderr, "copypath: %s\n", strerror(-e));
			return 1;
		}
		for (unsigned m = 0; m < CP_NR_METHODS; m++)
			v[m][r] = res.mib_s[m];
		fprintf(stderr, "copypath: rep %u: best %s:%s %.0f MiB/s\n", r + 1,
			cp_src_name[res.best / CP_NR_DST], cp_dst_name[res.best % CP_NR_DST],
			res.best_mib_s);
	}
	for (unsigned m = 0; m < CP_NR_METHODS; m++) {
		struct stats s;

		if (!(methods & (1u << m)))
			continue;
		s = stats_of(v[m], (unsigned)reps);
		printf("{\"bench\":\"copypath\",\"src\":\"%s\",\"dst\":\"%s\",\"mib\":%lu,"
		       "\"mib_s_median\":%.0f,\"mib_s_min\":%.0f,\"mib_s_max\":%.0f,\"reps\":%lu}\n",
		       cp_src_name[m / CP_NR_DST], cp_dst_name[m % CP_NR_DST], mib, s.med, s.min,
		       s.max, reps);
		if (s.med > best_med) {
			best_med = s.med;
			bs = s;
			best_m = m;
		}
	}
	printf("{\"bench\":\"copypath_best\",\"method\":\"%s:%s\",\"mib\":%lu,"
	       "\"mib_s_median\":%.0f,\"mib_s_min\":%.0f,\"mib_s_max\":%.0f,\"reps\":%lu}\n",
	       cp_src_name[best_m / CP_NR_DST], cp_dst_name[best_m % CP_NR_DST],
	       mib, bs.med, bs.min, bs.max, reps);
	return 0;
usage:
	fputs(cp_help, stderr);
	return 2;
}

#endif
