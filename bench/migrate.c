/*
 * bench/migrate — live pre-copy migration (migrate/precopy.c) between two
 * real ferry-mvm runtimes over loopback TCP, next to the machine's own limits
 * measured in the same run (DESIGN.md §12, issue 4 item 6).
 *
 * Each case launches a fresh source runtime, prepares it (see cases[] below),
 * and migrates it with migrate_send to a receiver thread running migrate_recv
 * over a connected loopback TCP pair; the receiver creates the destination
 * runtime. Every migrated guest is checked with hv_mvm_verify (an aborted
 * one on the source), and every runtime is destroyed, also on errors.
 *
 * Before each case, in each repetition, its references: the raw copy path of
 * bench/copypath.c (same size, best method), single-stream iperf3 on loopback
 * (null if iperf3 is missing) and memcpy of the same size. Cases are
 * interleaved with their references and repeated (--reps, default 5) with a
 * settle pause between; one JSON line per case on stdout with medians (and
 * min/max), progress on stderr.
 */
#define COPYPATH_NO_MAIN
#include "bench/copypath.c"

#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>

#include "bench/stats.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/hv.h"
#include "hv/mvm.h"
#include "migrate/precopy.h"
#include "transport/chan.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAX_CASES 16
#define HALT_TIMEOUT_NS (300 * NSEC_PER_SEC)
#define RECV_TIMEOUT_MS 30000
#define IPERF_SECONDS "3"

extern char **environ;

static const char help[] =
	"usage: migrate [--reps N] [--quick] [--cases a,b,...] [--settle S]\n"
	"               [--downtime-ms MS] [--max-downtime-us US] [--max-iters N]\n"
	"               [--copypath-methods SRC:DST,...|all] [--run-dir DIR]\n"
	"\n"
	"Live migration of a 1 GiB ferry-mvm guest over loopback TCP, case by case:\n"
	"  idle          never touched (all holes)\n"
	"  zeros         every page written with zeros through hv_write_pages\n"
	"  fill          `fill` (incompressible), waited until every vCPU halted\n"
	"  dirtier16     `dirtier` ws=512M at 16 MiB/s, running 2 s before\n"
	"  dirtier64     the same at 64 MiB/s\n"
	"  max-stop      `dirtier` ws=512M at rate=max on 2 vCPUs, --on-no-converge stop\n"
	"  max-throttle  the same, throttle (auto-converge)\n"
	"  max-abort     the same, abort\n"
	"dirtier16/64 run at the --downtime-ms target (default 50), the max cases at\n"
	"--max-downtime-us (default 1 µs: reachable only by an iteration that finds\n"
	"nothing dirty) with --max-iters (default 5), the others at the engine's\n"
	"defaults (300 ms, 30 iterations). Each case in each repetition is preceded by\n"
	"its references: the raw copy path (bench/copypath, best method), iperf3\n"
	"on loopback (single stream, 3 s) and memcpy, all of the same size.\n"
	"--reps N (default 5), --settle S seconds between measurements (default 3),\n"
	"--quick: 256 MiB guests, 1 repetition. The runtime is $FERRY_MVM, else\n"
	"../ferry-mvm next to this program; its run directory --run-dir, else\n"
	"$FERRY_RUN_DIR, else a fresh /tmp/ferry-bench-XXXXXX removed at the end.\n";

enum prep { PREP_NONE, PREP_ZEROS, PREP_HALT, PREP_WARM };
/* Downtime target: the engine's default (300 ms), --downtime-ms (50), or
 * --max-downtime-us (1 µs: no iteration can meet it). */
enum target { TARGET_DEFAULT, TARGET_LOW, TARGET_MIN };

struct mcase {
	const char *name;
	const char *workload; /* idle, fill, dirtier */
	const char *rate;     /* dirtier: MiB/s or max; ws is half of RAM */
	unsigned vcpus;
	enum prep prep;
	enum target target;
	enum noconv_policy policy;
};

static const struct mcase cases[] = {
	{ "idle", "idle", NULL, 1, PREP_NONE, TARGET_DEFAULT, NOCONV_STOP },
	{ "zeros", "idle", NULL, 1, PREP_ZEROS, TARGET_DEFAULT, NOCONV_STOP },
	{ "fill", "fill", NULL, 2, PREP_HALT, TARGET_DEFAULT, NOCONV_STOP },
	{ "dirtier16", "dirtier", "16", 1, PREP_WARM, TARGET_LOW, NOCONV_STOP },
	{ "dirtier64", "dirtier", "64", 1, PREP_WARM, TARGET_LOW, NOCONV_STOP },
	{ "max-stop", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_STOP },
	{ "max-throttle", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_THROTTLE },
	{ "max-abort", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_ABORT },
};
#define NR_CASES ARRAY_SIZE(cases)

static const char *const policy_name[] = { "stop", "throttle", "abort" };

/* Settings. */
static uint64_t ram_mib = 1024, reps = 5, settle_s = 3, low_target_ms = 50, min_target_us = 1,
		max_case_iters = 5;
static unsigned cp_methods = CP_DEFAULT_METHODS;
static bool iperf_missing;

static uint64_t target_ns(const struct mcase *c)
{
	return c->target == TARGET_MIN   ? min_target_us * NSEC_PER_USEC
	       : c->target == TARGET_LOW ? low_target_ms * NSEC_PER_MSEC
					 : 300 * NSEC_PER_MSEC;
}

/* The workload text of a case ("dirtier:ws=512M,rate=16"). */
static void case_workload(const struct mcase *c, char *buf, size_t len)
{
	if (c->rate)
		snprintf(buf, len, "%s:ws=%" PRIu64 "M,rate=%s", c->workload, ram_mib / 2, c->rate);
	else
		snprintf(buf, len, "%s", c->workload);
}

/* ---- runtimes we started, for the fatal-signal path --------------------- */

static volatile pid_t tracked[8];

static void track(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(tracked); i++)
		if (tracked[i] <= 0) {
			tracked[i] = pid;
			return;
		}
	log_warn("too many runtimes to track; pid %d untracked", (int)pid);
}

static void untrack(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(tracked); i++)
		if (tracked[i] == pid)
			tracked[i] = 0;
}

/* Killed (Ctrl-C, timeout): end the runtimes we started, which run in
 * sessions of their own and would outlive us; then die of the signal. */
static void on_fatal(int sig)
{
	for (size_t i = 0; i < ARRAY_SIZE(tracked); i++)
		if (tracked[i] > 0)
			kill(tracked[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- JSON output ---------------------------------------------------------- */

struct jline {
	char buf[8192];
	size_t len;
};

static void jl_add(struct jline *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jl_add(struct jline *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->len >= sizeof j->buf)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->len += (size_t)n;
}

/* A string, escaped; null if v is NULL. */
static void jl_str(struct jline *j, const char *k, const char *v)
{
	if (!v) {
		jl_add(j, ",\"%s\":null", k);
		return;
	}
	jl_add(j, ",\"%s\":\"", k);
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '"' || c == '\\')
			jl_add(j, "\\%c", c);
		else if (c < 0x20)
			jl_add(j, "\\u%04x", c);
		else
			jl_add(j, "%c", c);
	}
	jl_add(j, "\"");
}

static void jl_u64(struct jline *j, const char *k, uint64_t v)
{
	jl_add(j, ",\"%s\":%" PRIu64, k, v);
}

static void jl_bool(struct jline *j, const char *k, bool v)
{
	jl_add(j, ",\"%s\":%s", k, v ? "true" : "false");
}

static void jl_num(struct jline *j, const char *k, double v, bool valid)
{
	if (valid && v == v && v < 1e300 && v > -1e300)
		jl_add(j, ",\"%s\":%.4g", k, v);
	else
		jl_add(j, ",\"%s\":null", k);
}

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

/* Single-stream iperf3 over loopback: MiB/s, or -1 if it could not run. */
static double iperf_mib_s(void)
{
	char port[16], *out = NULL;
	char *srv[] = { "iperf3", "-s", "-1", "-p", port, NULL };
	char *cli[] = { "iperf3", "-c", "127.0.0.1", "-p", port, "-t", IPERF_SECONDS, "-J", NULL };
	double bps = -1;
	pid_t sp, cp;
	int r, p = free_port();

	if (iperf_missing || p < 0)
		return -1;
	snprintf(port, sizeof port, "%d", p);
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

/* ---- one migration ---------------------------------------------------------- */

/* A connected loopback TCP pair. */
static int tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e = 0;

	*a = *b = -1;
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0 ||
	    (*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(*a, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    (*b = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		e = -errno;
		close_fd(a);
		close_fd(b);
	}
	close(l);
	return e;
}

struct recv_job {
	struct chan *ch;
	const char *name;
	int r;
	struct hv_domain *d;
	char err[256];
};

static void *receiver(void *arg)
{
	struct recv_job *j = arg;

	struct migrate_opts o;

	migrate_opts_default(&o);
	o.peer_timeout_ms = RECV_TIMEOUT_MS;
	j->r = migrate_recv(&j->ch, 1, j->name, &o, &j->d, j->err, sizeof j->err);
	return NULL;
}

/* What one repetition of one case gave. */
struct rep {
	int r;                 /* migrate_send's result */
	char err[256];         /* its reason, or a failure of the bench around it */
	bool bench_failed;     /* the bench itself failed (not the engine's outcome) */
	struct migrate_stats st;
	double steps_s;        /* the guest's steps/s before migrating; < 0: n/a */
	bool verify_ok;
	char verify[256];
	double cp_mib_s, iperf_mib_s, memcpy_gbps;
	unsigned cp_best;
};

/* End a runtime: destroy through the handle, else kill by pid; reap our
 * child (reap: the handle does not reap a runtime it did not create). */
static void vm_end(struct hv_domain **d, pid_t pid, bool reap)
{
	int e = *d ? hv_destroy(*d) : -ENOENT;

	if (*d)
		hv_close(*d);
	*d = NULL;
	if (pid > 0) {
		if (e)
			kill(pid, SIGKILL);
		if (reap)
			waitpid(pid, NULL, 0);
		untrack(pid);
	}
}

static void do_verify(struct hv_domain *d, struct rep *rp, const char *where)
{
	struct mvm_verify v;
	int e = hv_mvm_verify(d, &v);

	if (e)
		snprintf(rp->verify, sizeof rp->verify, "%s: verify failed: %s", where, strerror(-e));
	else if (v.why != MVM_VERIFY_OK)
		snprintf(rp->verify, sizeof rp->verify, "%s: %s", where, v.msg);
	else
		snprintf(rp->verify, sizeof rp->verify, "ok");
	rp->verify_ok = !e && v.why == MVM_VERIFY_OK;
}

/* Write zeros into every frame through hv_write_pages. */
static int write_zeros(struct hv_domain *d, const struct hv_info *info)
{
	enum { BATCH = 1024 };
	static uint64_t frames[BATCH];
	static const void *bufs[BATCH];
	void *zero = calloc(1, info->page_size);
	int e = 0;

	if (!zero)
		return -ENOMEM;
	for (size_t i = 0; i < BATCH; i++)
		bufs[i] = zero;
	for (uint64_t f = 0; f < info->nr_frames && !e; f += BATCH) {
		size_t n = (size_t)MIN((uint64_t)BATCH, info->nr_frames - f);
		for (size_t i = 0; i < n; i++)
			frames[i] = f + i;
		e = hv_write_pages(d, frames, n, bufs);
	}
	free(zero);
	return e;
}

static int wait_halted(struct hv_domain *d, unsigned vcpus)
{
	struct hv_mvm_stats s;
	uint64_t t0 = mono_ns();
	int e;

	for (;;) {
		if ((e = hv_mvm_stats(d, &s)))
			return e;
		if (s.halted >= vcpus)
			return 0;
		if (mono_ns() - t0 > HALT_TIMEOUT_NS)
			return -ETIMEDOUT;
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
}

/* Let the guest run 2 s; its steps/s over the last 1.5 s. */
static int warm_up(struct hv_domain *d, double *steps_s)
{
	struct hv_mvm_stats a, b;
	uint64_t t0, t1;
	int e;

	mono_sleep_ns(500 * NSEC_PER_MSEC);
	if ((e = hv_mvm_stats(d, &a)))
		return e;
	t0 = mono_ns();
	mono_sleep_ns(1500 * NSEC_PER_MSEC);
	if ((e = hv_mvm_stats(d, &b)))
		return e;
	t1 = mono_ns();
	*steps_s = (double)(b.steps - a.steps) / ns_to_sec(t1 - t0);
	return 0;
}

static void run_case(const struct mcase *c, unsigned repno, struct rep *rp)
{
	char src_name[48], dst_name[64], uri[96], wl[96], cfg[160], why[256];
	struct hv_domain *src = NULL, *dst = NULL;
	struct recv_job j = { 0 };
	struct chan *sch = NULL;
	struct migrate_opts o;
	struct hv_info info;
	pid_t src_pid = -1, dst_pid = -1;
	pthread_t t;
	int s = -1, js = -1, e;

	rp->steps_s = -1;
	snprintf(src_name, sizeof src_name, "bm-%s-%d-%u", c->name, (int)getpid(), repno);
	snprintf(dst_name, sizeof dst_name, "%s-b", src_name);
	snprintf(uri, sizeof uri, "mvm:%s", src_name);
	case_workload(c, wl, sizeof wl);
	snprintf(cfg, sizeof cfg, "mem=%" PRIu64 "M vcpus=%u workload=%s", ram_mib, c->vcpus, wl);

#define BENCH_FAIL(...) \
	do { \
		snprintf(rp->err, sizeof rp->err, __VA_ARGS__); \
		rp->bench_failed = true; \
		goto out; \
	} while (0)

	if ((e = hv_mvm_launch(src_name, cfg, false, &src_pid)))
		BENCH_FAIL("launching %s (%s): %s", src_name, cfg, strerror(-e));
	track(src_pid);
	if ((e = hv_open(uri, &src)) || (e = hv_info(src, &info)))
		BENCH_FAIL("opening %s: %s", uri, strerror(-e));
	switch (c->prep) {
	case PREP_ZEROS:
		if ((e = write_zeros(src, &info)))
			BENCH_FAIL("writing zeros: %s", strerror(-e));
		break;
	case PREP_HALT:
		if ((e = wait_halted(src, info.nr_vcpus)))
			BENCH_FAIL("waiting for %s to halt: %s", c->workload, strerror(-e));
		break;
	case PREP_WARM:
		if ((e = warm_up(src, &rp->steps_s)))
			BENCH_FAIL("warming up: %s", strerror(-e));
		break;
	case PREP_NONE:
		break;
	}

	migrate_opts_default(&o);
	o.downtime_ns = target_ns(c);
	if (c->target == TARGET_MIN)
		o.max_iters = (unsigned)max_case_iters;
	o.on_no_converge = c->policy;
	if ((e = tcp_pair(&s, &js)))
		BENCH_FAIL("loopback TCP pair: %s", strerror(-e));
	if ((e = chan_tcp_new(s, &sch)) || (e = chan_tcp_new(js, &j.ch))) {
		close_fd(&js);
		BENCH_FAIL("channels: %s", strerror(-e));
	}
	s = js = -1;
	j.name = dst_name;
	if ((e = pthread_create(&t, NULL, receiver, &j)))
		BENCH_FAIL("pthread_create: %s", strerror(e));
	rp->r = migrate_send(src, &sch, 1, &o, &rp->st, rp->err, sizeof rp->err);
	chan_free(sch);
	sch = NULL;
	pthread_join(t, NULL);
	chan_free(j.ch);
	j.ch = NULL;
	dst = j.d;
	if (dst) {
		struct hv_info di;
		if (hv_info(dst, &di) == 0 && di.pid > 0) {
			dst_pid = di.pid;
			track(dst_pid);
		}
	}

	if (rp->r == 0) {
		/* Moved: the source is gone; the destination runs the guest. */
		hv_close(src);
		src = NULL;
		waitpid(src_pid, NULL, 0);
		untrack(src_pid);
		src_pid = -1;
		if (!dst)
			BENCH_FAIL("the source committed, the destination failed: %.200s", j.err);
		do_verify(dst, rp, "destination");
	} else if (!rp->st.committed) {
		/* Rolled back: the source must run on, intact. */
		snprintf(why, sizeof why, "%s", rp->err);
		if (dst)
			BENCH_FAIL("rolled back (%.200s), yet the destination kept a guest", why);
		if ((e = hv_info(src, &info)))
			BENCH_FAIL("source after rollback: %s", strerror(-e));
		if (info.paused)
			BENCH_FAIL("source still paused after rollback (%.200s)", why);
		do_verify(src, rp, "source after rollback");
		if (c->policy != NOCONV_ABORT)
			rp->bench_failed = true; /* only abort may roll back */
	} else {
		rp->bench_failed = true; /* unresolved: err says why */
	}
out:
#undef BENCH_FAIL
	close_fd(&s);
	close_fd(&js);
	chan_free(sch);
	chan_free(j.ch);
	vm_end(&dst, dst_pid, false); /* the handle reaps the runtime it created */
	vm_end(&src, src_pid, true);
}

/* ---- the run --------------------------------------------------------------- */

static void report(const struct mcase *c, const struct rep *rp, unsigned n)
{
	static const char *const enc_name[STREAM_ENC_MAX] = { "zero", "raw", "lz4", "delta" };
	double v[MAX_REPS];
	unsigned k, committed = 0, cp_votes[CP_NR_METHODS] = { 0 }, best = 0;
	const char *verify = "ok", *error = NULL;
	bool verified = true;
	bool failed = false, abort_case = c->policy == NOCONV_ABORT;
	char wl[96], vbuf[300], key[32];
	double ps = (double)sysconf(_SC_PAGESIZE);
	struct jline j = { .len = 0 };

	case_workload(c, wl, sizeof wl);
	for (unsigned i = 0; i < n; i++) {
		committed += rp[i].st.committed;
		failed |= rp[i].bench_failed;
		if (!error && (rp[i].bench_failed || rp[i].r))
			error = rp[i].err;
		if (verified && !rp[i].verify_ok) {
			verified = false;
			snprintf(vbuf, sizeof vbuf, "rep %u: %s", i + 1,
				 rp[i].verify[0] ? rp[i].verify : "not verified");
			verify = vbuf;
		}
		if (rp[i].cp_mib_s > 0)
			cp_votes[rp[i].cp_best]++;
	}
	for (unsigned m = 0; m < CP_NR_METHODS; m++)
		if (cp_votes[m] > cp_votes[best])
			best = m;

	jl_add(&j, "{\"bench\":\"migrate\"");
	jl_str(&j, "case", c->name);
	jl_u64(&j, "ram_mib", ram_mib);
	jl_u64(&j, "vcpus", c->vcpus);
	jl_str(&j, "workload", wl);
	jl_num(&j, "downtime_target_ms", ns_to_ms(target_ns(c)), true);
	jl_str(&j, "on_no_converge", policy_name[c->policy]);
	{
		struct migrate_opts o;
		migrate_opts_default(&o);
		jl_u64(&j, "max_iters", c->target == TARGET_MIN ? max_case_iters : o.max_iters);
	}
	jl_u64(&j, "reps", n);
	jl_str(&j, "outcome", failed ? "failed" : committed == n ? "migrated"
					  : committed == 0 && abort_case ? "aborted" : "mixed");
	jl_bool(&j, "committed", committed == n);
	jl_u64(&j, "committed_reps", committed);
	jl_str(&j, "verify", verify);
	jl_str(&j, "error", error);

	/* Engine statistics, over the repetitions with the expected outcome. */
#define OVER(expr) \
	do { \
		k = 0; \
		for (unsigned i = 0; i < n; i++) \
			if (!rp[i].bench_failed) \
				v[k++] = (expr); \
	} while (0)
	OVER(ns_to_ms(rp[i].st.setup_ns));
	jl_stats(&j, "setup_ms", v, k, true);
	OVER(ns_to_ms(rp[i].st.total_ns));
	jl_stats(&j, "total_ms", v, k, true);
	OVER(ns_to_ms(rp[i].st.downtime_ns));
	jl_stats(&j, "downtime_ms", v, k, true);
	OVER(ns_to_ms(rp[i].st.expected_downtime_ns));
	jl_stats(&j, "expected_downtime_ms", v, k, true);
	OVER((double)rp[i].st.bytes);
	jl_stats(&j, "bytes", v, k, false);
	for (unsigned e = 0; e < STREAM_ENC_MAX; e++) {
		snprintf(key, sizeof key, "pages_%s", enc_name[e]);
		OVER((double)rp[i].st.pages[e]);
		jl_stats(&j, key, v, k, false);
	}
	OVER((double)rp[i].st.zero_frames);
	jl_stats(&j, "zero_frames", v, k, false);
	OVER((double)rp[i].st.iterations);
	jl_stats(&j, "iterations", v, k, true);
	OVER((double)rp[i].st.dirty_rate);
	jl_stats(&j, "dirty_rate_pages_s", v, k, true);
	OVER((double)rp[i].st.dirty_rate * ps / (1 << 20));
	jl_stats(&j, "dirty_rate_mib_s", v, k, false);
	OVER((double)rp[i].st.throughput / (1 << 20));
	jl_stats(&j, "throughput_mib_s", v, k, true);
	OVER((double)rp[i].st.throttle);
	jl_stats(&j, "throttle_pct", v, k, true);

	/* The guest's own rate before migrating. */
	k = 0;
	for (unsigned i = 0; i < n; i++)
		if (rp[i].steps_s >= 0)
			v[k++] = rp[i].steps_s;
	jl_stats(&j, "guest_steps_s", v, k, true);
	for (unsigned i = 0; i < k; i++)
		v[i] = v[i] * ps / (1 << 20);
	jl_stats(&j, "guest_mib_s", v, k, false);

	/* References from the same repetitions. */
	k = 0;
	for (unsigned i = 0; i < n; i++)
		if (rp[i].cp_mib_s > 0)
			v[k++] = rp[i].cp_mib_s;
	jl_stats(&j, "copypath_mib_s", v, k, true);
	if (k) {
		char m[32];
		snprintf(m, sizeof m, "%s:%s", cp_src_name[best / CP_NR_DST],
			 cp_dst_name[best % CP_NR_DST]);
		jl_str(&j, "copypath_best_method", m);
	} else {
		jl_str(&j, "copypath_best_method", NULL);
	}
	{
		struct stats cp = stats_of(v, k), tp;
		double w[MAX_REPS];
		unsigned kk = 0;

		/* Throughput is only set once the pre-copy phase ended (not on abort). */
		for (unsigned i = 0; i < n; i++)
			if (!rp[i].bench_failed && rp[i].st.committed)
				w[kk++] = (double)rp[i].st.throughput / (1 << 20);
		tp = stats_of(w, kk);
		jl_num(&j, "throughput_to_copypath", tp.med / cp.med, k && kk && cp.med > 0);
		/* The same, repetition by repetition (each against its own
		 * reference, measured just before it), then over the repetitions. */
		kk = 0;
		for (unsigned i = 0; i < n; i++)
			if (!rp[i].bench_failed && rp[i].st.committed && rp[i].cp_mib_s > 0)
				w[kk++] = (double)rp[i].st.throughput / (1 << 20) / rp[i].cp_mib_s;
		jl_stats(&j, "throughput_to_copypath_per_rep", w, kk, true);
	}
	k = 0;
	for (unsigned i = 0; i < n; i++)
		if (rp[i].iperf_mib_s > 0)
			v[k++] = rp[i].iperf_mib_s;
	jl_stats(&j, "iperf3_mib_s", v, k, true);
	k = 0;
	for (unsigned i = 0; i < n; i++)
		if (rp[i].memcpy_gbps > 0)
			v[k++] = rp[i].memcpy_gbps;
	jl_stats(&j, "memcpy_gbps", v, k, true);
#undef OVER
	printf("%s}\n", j.buf);
	fflush(stdout);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* FERRY_MVM, if unset: ../ferry-mvm next to this program. */
static void default_runtime(void)
{
	char exe[PATH_MAX], path[PATH_MAX + 32], *slash;
	const char *env = getenv("FERRY_MVM");
	ssize_t n;

	if (env && *env)
		return;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	if (!(slash = strrchr(exe, '/')))
		return;
	*slash = '\0';
	snprintf(path, sizeof path, "%s/../ferry-mvm", exe);
	if (access(path, X_OK) == 0)
		setenv("FERRY_MVM", path, 1);
}

/* "a,b,c" -> the cases to run, in the table's order; 0 if unknown. */
static unsigned parse_cases(const char *s, bool *sel)
{
	unsigned n = 0;

	memset(sel, 0, NR_CASES * sizeof *sel);
	while (*s) {
		size_t len = strcspn(s, ",");
		bool found = false;

		for (unsigned i = 0; i < NR_CASES; i++)
			if (strlen(cases[i].name) == len && !strncmp(cases[i].name, s, len)) {
				n += !sel[i];
				sel[i] = found = true;
			}
		if (!found)
			return 0;
		s += len + (s[len] == ',');
	}
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reps", required_argument, 0, 'r' },	 { "quick", no_argument, 0, 'q' },
		{ "cases", required_argument, 0, 'c' },	 { "settle", required_argument, 0, 's' },
		{ "downtime-ms", required_argument, 0, 'D' },
		{ "max-downtime-us", required_argument, 0, 'X' },
		{ "max-iters", required_argument, 0, 'I' },
		{ "copypath-methods", required_argument, 0, 'M' },
		{ "run-dir", required_argument, 0, 'd' }, { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	static const int fatal[] = { SIGINT, SIGTERM, SIGHUP };
	static struct rep results[NR_CASES][MAX_REPS];
	bool sel[NR_CASES], quick = false, reps_set = false, dir_set = false, bad = false;
	char tmpdir[] = "/tmp/ferry-bench-XXXXXX";
	const char *made_dir = NULL;
	uint64_t t_start;
	size_t len;
	int c, e;

	for (unsigned i = 0; i < NR_CASES; i++)
		sel[i] = true;
	log_init("migrate", LOG_WARN);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_u64(optarg, 1, MAX_REPS, &reps))
				goto usage;
			reps_set = true;
			break;
		case 'q': quick = true; break;
		case 'c':
			if (!parse_cases(optarg, sel)) {
				fprintf(stderr, "migrate: bad --cases '%s'\n", optarg);
				goto usage;
			}
			break;
		case 's':
			if (parse_u64(optarg, 0, 3600, &settle_s))
				goto usage;
			break;
		case 'D':
			if (parse_u64(optarg, 1, 3600000, &low_target_ms))
				goto usage;
			break;
		case 'X':
			if (parse_u64(optarg, 1, 3600000000ull, &min_target_us))
				goto usage;
			break;
		case 'I':
			if (parse_u64(optarg, 1, 10000, &max_case_iters))
				goto usage;
			break;
		case 'M':
			if (!(cp_methods = cp_parse_methods(optarg)))
				goto usage;
			break;
		case 'd':
			ferry_set_run_dir(optarg);
			dir_set = true;
			break;
		case 'h': fputs(help, stdout); return 0;
		default: goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	if (quick) {
		ram_mib = 256;
		if (!reps_set)
			reps = 1;
	}
	len = (size_t)ram_mib << 20;

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ARRAY_SIZE(fatal); i++)
		signal(fatal[i], on_fatal);
	default_runtime();
	if (!dir_set && !(getenv("FERRY_RUN_DIR") && *getenv("FERRY_RUN_DIR"))) {
		if (!mkdtemp(tmpdir)) {
			log_error("mkdtemp: %s", strerror(errno));
			return 1;
		}
		made_dir = tmpdir;
		ferry_set_run_dir(tmpdir);
	}
	fprintf(stderr, "migrate: runtime %s, run directory %s, %" PRIu64 " MiB, %" PRIu64
		" repetitions\n", hv_mvm_runtime_path(), ferry_run_dir(), ram_mib, reps);

	t_start = mono_ns();
	for (unsigned r = 0; r < reps; r++)
		for (unsigned ci = 0; ci < NR_CASES; ci++) {
			const struct mcase *mc = &cases[ci];
			struct rep *rp = &results[ci][r];
			struct cp_result cp;

			if (!sel[ci])
				continue;
			/* The references, then the case. */
			if ((e = copypath_run(len, cp_methods, &cp))) {
				log_warn("copy path: %s", strerror(-e));
				rp->cp_mib_s = -1;
			} else {
				rp->cp_mib_s = cp.best_mib_s;
				rp->cp_best = cp.best;
			}
			rp->iperf_mib_s = iperf_mib_s();
			rp->memcpy_gbps = memcpy_gbps(len);
			mono_sleep_ns(settle_s * NSEC_PER_SEC);
			run_case(mc, r, rp);
			fprintf(stderr,
				"migrate: [%5.0f s] rep %u %-12s %s: total %.0f ms, downtime %.1f ms, "
				"%u it, %.0f MiB/s (copy path %.0f, iperf3 %.0f, memcpy %.1f GB/s)%s%s "
				"verify %s\n",
				ns_to_sec(mono_ns() - t_start), r + 1, mc->name,
				rp->bench_failed ? "FAILED" : rp->r ? "rolled back" : "moved",
				ns_to_ms(rp->st.total_ns), ns_to_ms(rp->st.downtime_ns),
				rp->st.iterations, (double)rp->st.throughput / (1 << 20), rp->cp_mib_s,
				rp->iperf_mib_s, rp->memcpy_gbps, rp->err[0] ? ": " : "", rp->err,
				rp->verify[0] ? rp->verify : "-");
			bad |= rp->bench_failed || !rp->verify_ok;
			mono_sleep_ns(settle_s * NSEC_PER_SEC);
		}
	for (unsigned ci = 0; ci < NR_CASES; ci++)
		if (sel[ci])
			report(&cases[ci], results[ci], (unsigned)reps);

	if (made_dir) {
		if (!bad)
			nftw(made_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		else
			fprintf(stderr, "migrate: runtime logs kept in %s\n", made_dir);
	}
	return bad ? 1 : 0;
usage:
	fputs(help, stderr);
	return 2;
}
