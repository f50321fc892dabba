/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/migrate — live pre-copy migration (migrate/precopy.c) between two
 * real ferry-mvm runtimes over loopback TCP or TLS, over one or more
 * channels, next to the machine's own limits measured in the same run
 * (DESIGN.md §12, issue 4 item 6).
 *
 * Each case launches a fresh source runtime, prepares it (see cases[] below),
 * and migrates it with migrate_send to a receiver thread running migrate_recv
 * over sessions wrapping its connected loopback channel pairs (plain TCP, or TLS 1.3 through
 * link_connect / link_accept with a throwaway PKI made for the run and
 * removed at the end: bench/transport.c); the receiver creates the destination
 * runtime. Every migrated guest is checked with its verifier (an aborted
 * one on the source), and every runtime is destroyed, also on errors.
 *
 * Before each case, in each repetition, its references: the raw copy path of
 * bench/copypath.c (same size, best method, as many streams as the case has
 * channels), iperf3 on loopback with as many streams (null if iperf3 is
 * missing) and memcpy of the same size. A case over TLS or several channels
 * is also held against its plaintext single-channel sibling (fill for
 * fill-tls) and its plaintext sibling with as many channels, run in the same
 * repetition. Cases are
 * interleaved with their references and repeated (--reps, default 5) with a
 * settle pause between; one JSON line per case on stdout with medians (and
 * min/max), progress on stderr.
 */
#define TRANSPORT_NO_MAIN
#include "bench/transport.c"

#include <getopt.h>
#include <limits.h>

#include "bench/stats.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/hv.h"
#include "bench/guest.h"
#include "migrate/precopy.h"
#include "transport/chan.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAX_CASES 16
#define HALT_TIMEOUT_NS (300 * NSEC_PER_SEC)
#define RECV_TIMEOUT_MS 30000
#define IPERF_SECONDS 3
/* Targets (issue 5): TLS against plaintext over as many channels, and a
 * migration over as many channels as there are cores against the copy path
 * with as many streams. */
#define TLS_TARGET 0.70
#define CHANNELS_TARGET 0.80

static const char help[] =
	"usage: migrate [--reps N] [--quick] [--cases a,b,...] [--settle S]\n"
	"               [--downtime-ms MS] [--max-downtime-us US] [--max-iters N]\n"
	"               [--copypath-methods SRC:DST,...|all] [--run-dir DIR]\n"
	"               [--no-references]\n"
	"\n"
	"Live migration of a 1 GiB ferry-mvm guest over loopback, case by case:\n"
	"  idle          never touched (all holes)\n"
	"  zeros         every page written with zeros through hv_write_pages\n"
	"  fill          `fill` (incompressible), waited until every vCPU halted\n"
	"  dirtier16     `dirtier` ws=512M at 16 MiB/s, running 2 s before\n"
	"  dirtier64     the same at 64 MiB/s\n"
	"  max-stop      `dirtier` ws=512M at rate=max on 2 vCPUs, --on-no-converge stop\n"
	"  max-throttle  the same, throttle (auto-converge)\n"
	"  max-abort     the same, abort\n"
	"  fill-tls      fill over one TLS 1.3 channel\n"
	"  fill-ch2      fill over 2 TCP channels\n"
	"  fill-tls-ch2  fill over 2 TLS channels\n"
	"  dirtier64-ch2 dirtier64 over 2 TCP channels\n"
	"The other cases use one TCP channel.\n"
	"dirtier16/64 run at the --downtime-ms target (default 50), the max cases at\n"
	"--max-downtime-us (default 1 µs: reachable only by an iteration that finds\n"
	"nothing dirty) with --max-iters (default 5), the others at the engine's\n"
	"defaults (300 ms, 30 iterations). Each case in each repetition is preceded by\n"
	"its references: the raw copy path (bench/copypath, best method), iperf3\n"
	"on loopback (3 s), both with as many streams as the case has channels,\n"
	"and memcpy, all of the same size.\n"
	"--reps N (default 5), --settle S seconds between measurements (default 3),\n"
	"--quick: 256 MiB guests, 1 repetition. --no-references: only the\n"
	"migrations (for profiling; every reference and ratio is null). The runtime is $FERRY_MVM, else\n"
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
	unsigned channels;
	bool tls;
};

static const struct mcase cases[] = {
	{ "idle", "idle", NULL, 1, PREP_NONE, TARGET_DEFAULT, NOCONV_STOP, 1, false },
	{ "zeros", "idle", NULL, 1, PREP_ZEROS, TARGET_DEFAULT, NOCONV_STOP, 1, false },
	{ "fill", "fill", NULL, 2, PREP_HALT, TARGET_DEFAULT, NOCONV_STOP, 1, false },
	{ "dirtier16", "dirtier", "16", 1, PREP_WARM, TARGET_LOW, NOCONV_STOP, 1, false },
	{ "dirtier64", "dirtier", "64", 1, PREP_WARM, TARGET_LOW, NOCONV_STOP, 1, false },
	{ "max-stop", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_STOP, 1, false },
	{ "max-throttle", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_THROTTLE, 1, false },
	{ "max-abort", "dirtier", "max", 2, PREP_WARM, TARGET_MIN, NOCONV_ABORT, 1, false },
	{ "fill-tls", "fill", NULL, 2, PREP_HALT, TARGET_DEFAULT, NOCONV_STOP, 1, true },
	{ "fill-ch2", "fill", NULL, 2, PREP_HALT, TARGET_DEFAULT, NOCONV_STOP, 2, false },
	{ "fill-tls-ch2", "fill", NULL, 2, PREP_HALT, TARGET_DEFAULT, NOCONV_STOP, 2, true },
	{ "dirtier64-ch2", "dirtier", "64", 1, PREP_WARM, TARGET_LOW, NOCONV_STOP, 2, false },
};
#define NR_CASES ARRAY_SIZE(cases)

static const char *const policy_name[] = { "stop", "throttle", "abort" };

/* Settings. */
static uint64_t ram_mib = 1024, reps = 5, settle_s = 3, low_target_ms = 50, min_target_us = 1,
		max_case_iters = 5;
static unsigned cp_methods = CP_DEFAULT_METHODS;
static struct tp_pki pki; /* made only when a TLS case is selected */
static bool no_refs;       /* --no-references */

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

/* ---- one migration ---------------------------------------------------------- */

struct recv_job {
	struct chan *ch[CP_STREAMS_MAX];
	unsigned n;
	const char *name;
	int r;
	struct hv_domain *d;
	char err[256];
};

static void *receiver(void *arg)
{
	struct recv_job *j = arg;
	struct migrate_opts o;
	struct session *s;

	migrate_opts_default(&o);
	o.peer_timeout_ms = RECV_TIMEOUT_MS;
	if ((j->r = session_wrap(j->ch, j->n, RECV_TIMEOUT_MS, &s))) {
		snprintf(j->err, sizeof j->err, "%s", strerror(-j->r));
		return NULL;
	}
	memset(j->ch, 0, sizeof j->ch); /* the session's now */
	j->r = migrate_recv(s, j->name, &o, &j->d, j->err, sizeof j->err);
	session_free(s);
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
	char why[200];
	bool ok = false;
	int e = guest_verify(d, &ok, why, sizeof why);

	if (e)
		snprintf(rp->verify, sizeof rp->verify, "%s: verify failed: %s", where, strerror(-e));
	else if (!ok)
		snprintf(rp->verify, sizeof rp->verify, "%s: %s", where, why);
	else
		snprintf(rp->verify, sizeof rp->verify, "ok");
	rp->verify_ok = !e && ok;
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
	uint64_t t0 = mono_ns();
	double halted;
	int e;

	for (;;) {
		if ((e = guest_stat(d, "halted", &halted)))
			return e;
		if (halted >= vcpus)
			return 0;
		if (mono_ns() - t0 > HALT_TIMEOUT_NS)
			return -ETIMEDOUT;
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	}
}

/* Let the guest run 2 s; its steps/s over the last 1.5 s. */
static int warm_up(struct hv_domain *d, double *steps_s)
{
	double a, b;
	uint64_t t0, t1;
	int e;

	mono_sleep_ns(500 * NSEC_PER_MSEC);
	if ((e = guest_stat(d, "steps", &a)))
		return e;
	t0 = mono_ns();
	mono_sleep_ns(1500 * NSEC_PER_MSEC);
	if ((e = guest_stat(d, "steps", &b)))
		return e;
	t1 = mono_ns();
	*steps_s = (b - a) / ns_to_sec(t1 - t0);
	return 0;
}

/* Free ch[0..n) and clear the slots (NULL ones are fine). */
static void free_chans(struct chan **ch, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		chan_free(ch[i]);
		ch[i] = NULL;
	}
}

/*
 * One repetition of case c: launch and prepare the source runtime, migrate
 * it over the case's channels to a receiver thread, verify the guest where
 * it ended up, and end every runtime. Everything it learnt goes into *rp.
 */
static void run_case(const struct mcase *c, unsigned repno, struct rep *rp)
{
	char src_name[48], dst_name[64], wl[96], why[256];
	struct hv_domain *src = NULL, *dst = NULL;
	struct recv_job j = { 0 };
	struct chan *sch[CP_STREAMS_MAX] = { 0 };
	struct migrate_opts o;
	struct hv_info info;
	pid_t src_pid = -1, dst_pid = -1;
	unsigned n = c->channels;
	pthread_t t;
	int e;

	rp->steps_s = -1;
	snprintf(src_name, sizeof src_name, "bm-%s-%d-%u", c->name, (int)getpid(), repno);
	snprintf(dst_name, sizeof dst_name, "%s-b", src_name);
	case_workload(c, wl, sizeof wl);
	struct hv_spec spec = { ram_mib << 20, c->vcpus, wl, NULL };
	struct session *ss = NULL;

#define BENCH_FAIL(...) \
	do { \
		snprintf(rp->err, sizeof rp->err, __VA_ARGS__); \
		rp->bench_failed = true; \
		goto out; \
	} while (0)

	if ((e = guest_launch(src_name, &spec, &src)))
		BENCH_FAIL("launching %s (%s): %s", src_name, wl, strerror(-e));
	if ((e = hv_info(src, &info)))
		BENCH_FAIL("opening %s: %s", src_name, strerror(-e));
	src_pid = info.pid;
	track(src_pid);
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
	if ((e = tp_pairs_new(c->tls ? pki.tls : NULL, n, sch, j.ch, why, sizeof why)))
		BENCH_FAIL("%u loopback %s channel pairs: %.200s", n, c->tls ? "TLS" : "TCP", why);
	j.n = n;
	j.name = dst_name;
	if ((e = session_wrap(sch, n, o.peer_timeout_ms, &ss)))
		BENCH_FAIL("session: %s", strerror(-e));
	memset(sch, 0, sizeof sch); /* the session's now */
	if ((e = pthread_create(&t, NULL, receiver, &j)))
		BENCH_FAIL("pthread_create: %s", strerror(e));
	rp->r = migrate_send(src, ss, &o, &rp->st, rp->err, sizeof rp->err);
	session_free(ss);
	ss = NULL;
	pthread_join(t, NULL);
	free_chans(j.ch, n);
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
		hv_close(src); /* reaps it */
		src = NULL;
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
	session_free(ss);
	free_chans(sch, n);
	free_chans(j.ch, n);
	vm_end(&dst, dst_pid, false); /* the handle reaps the runtime it created */
	vm_end(&src, src_pid, false); /* as does the one of the runtime it launched */
}

/* ---- the run --------------------------------------------------------------- */

/* MiB/s of the pre-copy phase of a repetition that migrated, else 0. */
static double rep_mib_s(const struct rep *rp)
{
	if (rp->bench_failed || !rp->st.committed)
		return 0;
	return (double)rp->st.throughput / (1 << 20);
}

/* The selected case that differs from c only in its channels and TLS (its
 * plaintext sibling, e.g. fill for fill-tls); -1 if none or c itself. */
static int sibling(const struct mcase *c, unsigned channels, bool tls, const bool *sel)
{
	for (unsigned i = 0; i < NR_CASES; i++) {
		const struct mcase *o = &cases[i];

		if (o != c && sel[i] && o->channels == channels && o->tls == tls &&
		    !strcmp(o->workload, c->workload) && o->vcpus == c->vcpus &&
		    o->prep == c->prep && o->target == c->target && o->policy == c->policy &&
		    (o->rate ? c->rate && !strcmp(o->rate, c->rate) : !c->rate))
			return (int)i;
	}
	return -1;
}

/*
 * prefix_case (the sibling's name), then the case's throughput against the
 * sibling's in the same repetitions: prefix (median / median) and
 * prefix_per_rep (median, min, max of the per-repetition ratios). The
 * median of the per-repetition ratios in *ratio (0 if none): what a target
 * is held against, each repetition against its own sibling.
 */
static void sibling_fields(struct jline *j, const char *prefix, int si, const struct rep *rp,
			   struct rep (*all)[MAX_REPS], unsigned n, double *ratio)
{
	double a[MAX_REPS], b[MAX_REPS], w[MAX_REPS];
	char key[64];
	unsigned kr;

	snprintf(key, sizeof key, "%s_case", prefix);
	jl_str(j, key, si >= 0 ? cases[si].name : NULL);
	for (unsigned i = 0; i < n; i++) {
		a[i] = rep_mib_s(&rp[i]);
		b[i] = si >= 0 ? rep_mib_s(&all[si][i]) : 0;
	}
	kr = tp_ratios(a, b, n, w);
	{
		double va[MAX_REPS], vb[MAX_REPS];
		unsigned ka = tp_valid(a, n, va), kb = tp_valid(b, n, vb);
		struct stats sa = stats_of(va, ka), sb = stats_of(vb, kb);
		bool ok = ka && kb && sb.med > 0;

		jl_num(j, prefix, sa.med / sb.med, ok);
	}
	*ratio = kr ? stats_of(w, kr).med : 0;
	snprintf(key, sizeof key, "%s_per_rep", prefix);
	jl_stats(j, key, w, kr, true);
}

/* One JSON line for case ci over its n repetitions (all: every case's, for
 * the ratios to its plaintext siblings run in the same repetitions). */
static void report(unsigned ci, struct rep (*all)[MAX_REPS], const bool *sel, unsigned n)
{
	const struct mcase *c = &cases[ci];
	const struct rep *rp = all[ci];
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	double cp_ratio = 0;
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
	jl_u64(&j, "channels", c->channels);
	jl_str(&j, "transport", c->tls ? "tls" : "tcp");
	jl_u64(&j, "cores", cores > 0 ? (uint64_t)cores : 0);
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
		jl_u64(&j, "copypath_streams", c->channels);
		jl_num(&j, "throughput_to_copypath", tp.med / cp.med, k && kk && cp.med > 0);
		/* The same, repetition by repetition (each against its own
		 * reference, measured just before it), then over the repetitions. */
		kk = 0;
		for (unsigned i = 0; i < n; i++)
			if (!rp[i].bench_failed && rp[i].st.committed && rp[i].cp_mib_s > 0)
				w[kk++] = (double)rp[i].st.throughput / (1 << 20) / rp[i].cp_mib_s;
		jl_stats(&j, "throughput_to_copypath_per_rep", w, kk, true);
		/* The target is held against each repetition's own reference. */
		cp_ratio = kk ? stats_of(w, kk).med : 0;
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

	/* Against the plaintext siblings, and the targets. */
	if (c->tls || c->channels > 1) {
		double r1 = 0, rp_plain = 0;

		sibling_fields(&j, "throughput_to_plain1", sibling(c, 1, false, sel), rp, all, n,
			       &r1);
		if (c->tls) {
			sibling_fields(&j, "throughput_to_plain", sibling(c, c->channels, false, sel),
				       rp, all, n, &rp_plain);
			jl_num(&j, "tls_target", TLS_TARGET, true);
			if (rp_plain > 0)
				jl_bool(&j, "tls_target_met", rp_plain >= TLS_TARGET);
			else
				jl_add(&j, ",\"tls_target_met\":null");
		}
	}
	if (cores > 1 && c->channels == (unsigned)cores) {
		jl_num(&j, "channels_target", CHANNELS_TARGET, true);
		if (cp_ratio > 0)
			jl_bool(&j, "channels_target_met", cp_ratio >= CHANNELS_TARGET);
		else
			jl_add(&j, ",\"channels_target_met\":null");
	}
#undef OVER
	printf("%s}\n", j.buf);
	fflush(stdout);
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
		{ "no-references", no_argument, 0, 'N' },
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
		case 'N': no_refs = true; break;
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
	guest_default_runtime();
	if (!dir_set && !(getenv("FERRY_RUN_DIR") && *getenv("FERRY_RUN_DIR"))) {
		if (!mkdtemp(tmpdir)) {
			log_error("mkdtemp: %s", strerror(errno));
			return 1;
		}
		made_dir = tmpdir;
		ferry_set_run_dir(tmpdir);
	}
	for (unsigned i = 0; i < NR_CASES; i++)
		if (sel[i] && cases[i].tls && !pki.tls) {
			char err[512];

			if (tp_pki_new(&pki, err, sizeof err)) {
				log_error("throwaway PKI: %s", err);
				tp_pki_free(&pki);
				return 1;
			}
		}
	fprintf(stderr, "migrate: backend %s, run directory %s, %" PRIu64 " MiB, %" PRIu64
		" repetitions\n", hv_default_backend(), ferry_run_dir(), ram_mib, reps);

	t_start = mono_ns();
	for (unsigned r = 0; r < reps; r++)
		for (unsigned ci = 0; ci < NR_CASES; ci++) {
			const struct mcase *mc = &cases[ci];
			struct rep *rp = &results[ci][r];
			struct cp_result cp;

			if (!sel[ci])
				continue;
			/* The references, then the case. */
			if (no_refs) {
				rp->cp_mib_s = rp->iperf_mib_s = rp->memcpy_gbps = -1;
			} else if ((e = copypath_run_streams(len, cp_methods, mc->channels, &cp))) {
				log_warn("copy path: %s", strerror(-e));
				rp->cp_mib_s = -1;
			} else {
				rp->cp_mib_s = cp.best_mib_s;
				rp->cp_best = cp.best;
			}
			if (!no_refs) {
				rp->iperf_mib_s = iperf_mib_s(mc->channels, IPERF_SECONDS);
				rp->memcpy_gbps = memcpy_gbps(len);
			}
			mono_sleep_ns(settle_s * NSEC_PER_SEC);
			run_case(mc, r, rp);
			fprintf(stderr,
				"migrate: [%5.0f s] rep %u %-13s %s: total %.0f ms, downtime %.1f ms, "
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
	tp_pki_free(&pki);
	for (unsigned ci = 0; ci < NR_CASES; ci++)
		if (sel[ci])
			report(ci, results, sel, (unsigned)reps);

	if (made_dir) {
		if (!bad)
			nftw(made_dir, tp_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		else
			fprintf(stderr, "migrate: runtime logs kept in %s\n", made_dir);
	}
	return bad ? 1 : 0;
usage:
	fputs(help, stderr);
	return 2;
}
