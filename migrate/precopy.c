/* precopy.c — live pre-copy migration; see precopy.h. */
#include "migrate/precopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/reader.h"
#include "checkpoint/send.h"
#include "checkpoint/sink.h"
#include "checkpoint/snapshot.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/ratelimit.h"
#include "migrate/wire.h"

#define THROTTLE_STEP 20
#define THROTTLE_MAX 99
#define NO_PROGRESS_ITERS 3
#define ABORT_TEXT_MAX MIG_ABORT_TEXT_MAX

const char *mig_phase_name(enum mig_phase p)
{
	static const char *const n[] = { "setup", "iterating", "stop-and-copy", "commit", "done" };

	return (unsigned)p < 5 ? n[p] : "?";
}

void migrate_opts_default(struct migrate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->downtime_ns = 300 * NSEC_PER_MSEC;
	o->max_iters = 30;
	o->on_no_converge = NOCONV_STOP;
	codec_opts_default(&o->codec);
	o->peer_timeout_ms = 15000;
}

/* The receive timeout; and no Nagle: the last records of the stream and the
 * commit messages are small, and each would otherwise wait for the ACK of the
 * one before (up to the peer's delayed-ACK timer, 40 ms) during the downtime.
 * TCP_NODELAY fails harmlessly on a socket that is not TCP. */
static void set_sockopts(int sock, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	int one = 1;

	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- source: the destination's messages, read on their own thread ---- */

struct mon {
	int sock, wake, timeout_ms;
	pthread_t thread;
	pthread_mutex_t m;
	pthread_cond_t c;
	unsigned got;          /* bit per message type received */
	uint64_t running_arg;
	uint64_t applied;      /* stream bytes the destination has applied */
	int err;               /* the link is gone: why */
	char why[ABORT_TEXT_MAX + 64];
};

static void mon_fail(struct mon *m, int err, const char *why)
{
	pthread_mutex_lock(&m->m);
	if (!m->err) {
		m->err = err;
		snprintf(m->why, sizeof m->why, "%s", why);
	}
	pthread_cond_broadcast(&m->c);
	pthread_mutex_unlock(&m->m);
	/* Unblock the sender: nothing more will get through. */
	shutdown(m->sock, SHUT_RDWR);
}

static void *mon_main(void *arg)
{
	struct mon *m = arg;
	struct pollfd p[2] = { { .fd = m->sock, .events = POLLIN }, { .fd = m->wake, .events = POLLIN } };
	uint64_t last = mono_ns(), timeout = (uint64_t)m->timeout_ms * NSEC_PER_MSEC, a;
	char why[ABORT_TEXT_MAX + 64];
	uint32_t type;
	int r;

	for (;;) {
		uint64_t now = mono_ns();

		if (now - last >= timeout) {
			snprintf(why, sizeof why, "the destination was silent for %d ms", m->timeout_ms);
			mon_fail(m, -ETIMEDOUT, why);
			return NULL;
		}
		r = poll(p, 2, (int)((timeout - (now - last)) / NSEC_PER_MSEC) + 1);
		if (r < 0 && errno != EINTR) {
			mon_fail(m, -errno, strerror(errno));
			return NULL;
		}
		if (r <= 0)
			continue;
		if (p[1].revents)
			return NULL; /* stopped */
		if ((r = mig_read_msg(m->sock, &type, &a))) {
			snprintf(why, sizeof why, "the destination %s",
				 r == -ECONNRESET ? "closed the connection"
				 : r == -EPROTO	  ? "sent a malformed message"
						  : strerror(-r));
			mon_fail(m, r == -EAGAIN ? -ETIMEDOUT : r, why);
			return NULL;
		}
		last = mono_ns();
		if (type == MIG_ABORT) {
			char text[ABORT_TEXT_MAX + 1] = "";
			size_t len = (size_t)(a & 0xffffffffu);
			int e = (int)(a >> 32);

			if (len <= ABORT_TEXT_MAX && !xsource_fd_read(&m->sock, text, len))
				text[len] = '\0';
			else
				text[0] = '\0';
			snprintf(why, sizeof why, "the destination gave up: %s",
				 text[0] ? text : strerror(e));
			mon_fail(m, e > 0 && e < 4096 ? -e : -ECONNABORTED, why);
			return NULL;
		}
		pthread_mutex_lock(&m->m);
		m->got |= 1u << type;
		if (type == MIG_RUNNING)
			m->running_arg = a;
		if (type == MIG_HEARTBEAT && a > m->applied)
			m->applied = a;
		pthread_cond_broadcast(&m->c);
		pthread_mutex_unlock(&m->m);
	}
}

static int mon_start(struct mon *m, int sock, int timeout_ms)
{
	int r;

	m->sock = sock;
	m->timeout_ms = timeout_ms;
	if ((m->wake = eventfd(0, EFD_CLOEXEC)) < 0)
		return -errno;
	pthread_mutex_init(&m->m, NULL);
	pthread_cond_init(&m->c, NULL);
	if ((r = pthread_create(&m->thread, NULL, mon_main, m))) {
		close(m->wake);
		m->wake = -1;
		return -r;
	}
	return 0;
}

static void mon_stop(struct mon *m)
{
	uint64_t one = 1;

	if (m->wake < 0)
		return;
	if (write(m->wake, &one, sizeof one) < 0)
		log_warn("migration: waking the monitor: %s", strerror(errno));
	pthread_join(m->thread, NULL);
	close(m->wake);
	m->wake = -1;
	pthread_mutex_destroy(&m->m);
	pthread_cond_destroy(&m->c);
}

/* Wait for a message of type; the monitor ends the wait if the peer dies or
 * goes silent. */
static int mon_wait(struct mon *m, uint32_t type, uint64_t *arg)
{
	int r;

	pthread_mutex_lock(&m->m);
	while (!(m->got & (1u << type)) && !m->err)
		pthread_cond_wait(&m->c, &m->m);
	r = m->got & (1u << type) ? 0 : m->err;
	if (!r && arg)
		*arg = m->running_arg;
	pthread_mutex_unlock(&m->m);
	return r;
}

/* Wait until the destination has applied the first bytes of the stream. */
static int mon_wait_applied(struct mon *m, uint64_t bytes)
{
	int r;

	pthread_mutex_lock(&m->m);
	while (m->applied < bytes && !m->err)
		pthread_cond_wait(&m->c, &m->m);
	r = m->applied >= bytes ? 0 : m->err;
	pthread_mutex_unlock(&m->m);
	return r;
}

/* The monitor's verdict on a link that failed under the sender; it may be
 * reading the destination's last words, so give it a moment. */
static int mon_err(struct mon *m, char *why, size_t len)
{
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 300 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->m);
	while (!m->err && m->wake >= 0 &&
	       pthread_cond_timedwait(&m->c, &m->m, &ts) == 0)
		;
	r = m->err;
	if (r)
		snprintf(why, len, "%s", m->why);
	pthread_mutex_unlock(&m->m);
	return r;
}

/* ---- source ---- */

struct src {
	struct hv_domain *d;
	const struct migrate_opts *o;
	struct migrate_stats *st;
	struct stream_writer w;
	struct page_sender ps;
	struct codec *codec;
	struct bitmap dirty;
	uint64_t nr, page_size, last_report;
	uint64_t t_copy, bytes0; /* start of the first pass */
	int sock;
	struct ratelimit rl;
};

static void report(struct src *s, bool force)
{
	uint64_t now = mono_ns();

	if (!s->o->hooks.progress || (!force && now - s->last_report < 100 * NSEC_PER_MSEC))
		return;
	s->last_report = now;
	s->st->bytes = s->w.bytes;
	if (s->t_copy && now > s->t_copy)
		s->st->throughput = (uint64_t)((double)(s->w.bytes - s->bytes0) /
					       ns_to_sec(now - s->t_copy));
	s->st->zero_frames = s->ps.zero_frames;
	if (s->codec)
		memcpy(s->st->pages, codec_stats(s->codec)->pages, sizeof s->st->pages);
	s->o->hooks.progress(s->o->hooks.ctx, s->st);
}

static void on_sent(void *ctx, uint64_t done, uint64_t total)
{
	struct src *s = ctx;

	s->st->iter_pos = done;
	s->st->iter_frames = total;
	report(s, false);
}

static void phase(struct src *s, enum mig_phase p)
{
	s->st->phase = p;
	report(s, true);
}

/* The socket sink, under the job's bandwidth limit. */
static int src_writev(void *ctx, const struct iovec *iov, int n)
{
	struct src *s = ctx;
	uint64_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	ratelimit_take(&s->rl, len);
	return xsink_fd_writev(&s->sock, iov, n);
}

/* Send the frames in set and end the iteration; returns its duration. */
static int iterate(struct src *s, unsigned it, const struct bitmap *set,
		   const struct bitmap *pop, uint64_t ndirty, uint64_t *ns)
{
	uint64_t t0 = mono_ns(), p0 = s->ps.pages + s->ps.zero_frames;
	struct stream_iter_end ie;
	struct iovec v = { &ie, sizeof ie };
	int r;

	s->st->pass = it;
	r = page_sender_send(&s->ps, set, pop);

	*ns = mono_ns() - t0;
	if (r)
		return r;
	ie = (struct stream_iter_end){ .iteration = htole64(it),
				       .pages = htole64(s->ps.pages + s->ps.zero_frames - p0),
				       .dirty = htole64(ndirty), .duration_ns = htole64(*ns) };
	return stream_write_record(&s->w, STREAM_REC_ITER_END, 0, &v, 1);
}

static bool cancelled(const struct migrate_opts *o)
{
	return o->cancel && *o->cancel;
}

int migrate_send(struct hv_domain *d, int sock, const struct migrate_opts *o,
		 struct migrate_stats *st, char *err, size_t errlen)
{
	struct src s = { .d = d, .o = o, .st = st, .sock = sock };
	struct xsink sink = { src_writev, &s };
	struct mon mon = { .wake = -1 };
	struct hv_info info;
	struct bitmap pop = { 0 };
	const char *name = strchr(d->uri, ':') ? strchr(d->uri, ':') + 1 : d->uri;
	uint64_t t0 = mono_ns(), tp = 0, ns, prev_dirty = UINT64_MAX, bytes0, tgo, trun, dres;
	uint64_t tstep[5], nfinal;
	void *ctx = NULL;
	size_t clen;
	unsigned stalls = 0, extra = 0;
	bool paused = false, logging = false;
	char why[ABORT_TEXT_MAX + 64];
	int r;

	memset(st, 0, sizeof *st);
	ratelimit_init(&s.rl, o->bandwidth);
#define FAIL(code, ...) \
	do { \
		r = (code); \
		snprintf(err, errlen, __VA_ARGS__); \
		goto out; \
	} while (0)
/* An I/O error: the monitor usually knows the real cause. */
#define FAIL_IO(code, what) \
	do { \
		r = (code); \
		if (r == -ECANCELED || cancelled(o)) \
			FAIL(-ECANCELED, "cancelled"); \
		if (mon_err(&mon, why, sizeof why)) \
			FAIL(r, "%s: %s", what, why); \
		FAIL(r, "%s: %s", what, strerror(-r)); \
	} while (0)

	if ((r = hv_info(d, &info)))
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	s.nr = info.nr_frames;
	s.page_size = info.page_size;
	st->ram_bytes = s.nr * s.page_size;
	set_sockopts(sock, o->peer_timeout_ms);
	if ((r = mon_start(&mon, sock, o->peer_timeout_ms)))
		FAIL(r, "starting the monitor thread: %s", strerror(-r));
	if ((r = codec_new(&o->codec, info.page_size, &s.codec)) ||
	    (r = bitmap_init(&s.dirty, s.nr)) || (r = bitmap_init(&pop, s.nr)))
		FAIL(r, "out of memory");
	if ((r = stream_writer_start(&s.w, sink, STREAM_KIND_MIGRATION, info.page_size, s.nr, "mvm",
				     name, info.config)))
		FAIL_IO(r, "sending the header");
	if ((r = page_sender_init(&s.ps, d, &s.w, s.codec, info.page_size, s.nr)))
		FAIL(r, "out of memory");
	s.ps.progress = on_sent;
	s.ps.progress_ctx = &s;
	s.ps.cancel = o->cancel;
	/* The log first, then the copy: a page written during iteration 0 is
	 * sent again later. */
	if ((r = hv_logdirty_enable(d)))
		FAIL(r, "%s: cannot enable dirty logging: %s", d->uri, strerror(-r));
	logging = true;
	if ((r = (int)hv_populated(d, &pop)) < 0)
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	st->setup_ns = mono_ns() - t0;
	bytes0 = s.bytes0 = s.w.bytes;
	s.t_copy = mono_ns();
	phase(&s, MIG_PH_ITERATING);
	/* Only pages sent again can be deltas: iteration 0 fills no cache. */
	codec_cache_new_pages(s.codec, false);
	if ((r = iterate(&s, 0, NULL, &pop, s.nr, &ns)))
		FAIL_IO(r, "iteration 0");
	codec_cache_new_pages(s.codec, true);

	for (unsigned it = 1;; it++) {
		int64_t n;
		double bw = (double)(s.w.bytes - bytes0) / ns_to_sec(mono_ns() - t0 - st->setup_ns);
		double per_page = s.ps.pages ? (double)(s.w.bytes - bytes0) / (double)s.ps.pages
					     : (double)s.page_size;
		uint64_t th = mono_ns();

		if ((r = failpoint("mig-src-iter")))
			FAIL(r, "failpoint mig-src-iter");
		if (cancelled(o))
			FAIL(-ECANCELED, "cancelled");
		bitmap_zero(&s.dirty);
		n = hv_logdirty_harvest(d, &s.dirty, 0);
		if (n < 0)
			FAIL((int)n, "%s: harvesting the dirty log: %s", d->uri, strerror((int)-n));
		st->dirty_pages = (uint64_t)n;
		st->dirty_rate = (uint64_t)((double)n / ns_to_sec(ns + (mono_ns() - th) + 1));
		st->expected_downtime_ns = bw > 0 ? (uint64_t)((double)n * per_page / bw * 1e9) : 0;
		st->throughput = (uint64_t)bw;
		log_debug("%s: pass %u: %" PRId64 " dirty pages, %.0f MiB/s, expected downtime "
			  "%.1f ms", d->uri, it, n, bw / (1 << 20), ns_to_ms(st->expected_downtime_ns));
		if (st->expected_downtime_ns <= o->downtime_ns)
			break;
		stalls = (uint64_t)n >= prev_dirty ? stalls + 1 : 0;
		prev_dirty = (uint64_t)n;
		if (it > o->max_iters + extra || stalls >= NO_PROGRESS_ITERS) {
			if (o->on_no_converge == NOCONV_ABORT)
				FAIL(-ETIMEDOUT, "did not converge: %" PRId64 " dirty pages, expected "
				     "downtime %.1f ms over the target %.1f ms after %u iterations",
				     n, ns_to_ms(st->expected_downtime_ns), ns_to_ms(o->downtime_ns),
				     it - 1);
			if (o->on_no_converge == NOCONV_STOP || st->throttle >= THROTTLE_MAX)
				break; /* stop anyway with these pages */
			/* Auto-converge: slow the guest down and try again. */
			st->throttle = st->throttle + THROTTLE_STEP > THROTTLE_MAX
					       ? THROTTLE_MAX : st->throttle + THROTTLE_STEP;
			if ((r = hv_throttle(d, st->throttle)))
				FAIL(r, "%s: throttle: %s", d->uri, strerror(-r));
			log_info("%s: throttled to %u%% to converge", d->uri, st->throttle);
			extra += 2;
			stalls = 0;
		}
		if ((r = iterate(&s, it, &s.dirty, NULL, (uint64_t)n, &ns)))
			FAIL_IO(r, "iteration");
		st->iterations = it;
		bitmap_zero(&s.dirty);
	}
	st->throughput = (uint64_t)((double)(s.w.bytes - bytes0) /
				    ns_to_sec(mono_ns() - t0 - st->setup_ns));
	/* Pause only once the destination has caught up: what the socket
	 * buffers hold would otherwise be drained during the downtime. */
	if ((r = mon_wait_applied(&mon, s.w.bytes)))
		FAIL_IO(r, "waiting for the destination to apply the last iteration");
	/* Stop and copy: pause, the FINAL harvest (plus what was harvested but
	 * not sent, still in dirty), the context, END. */
	tp = mono_ns();
	if ((r = hv_pause(d)))
		FAIL(r, "%s: pause: %s", d->uri, strerror(-r));
	paused = true;
	tstep[0] = mono_ns();
	phase(&s, MIG_PH_STOP_COPY);
	if ((r = failpoint("mig-src-stopcopy")))
		FAIL(r, "failpoint mig-src-stopcopy");
	if ((r = (int)hv_logdirty_harvest(d, &s.dirty, HV_HARVEST_FINAL)) < 0)
		FAIL(r, "%s: final harvest: %s", d->uri, strerror(-r));
	tstep[1] = mono_ns();
	nfinal = bitmap_count(&s.dirty);
	if ((r = iterate(&s, st->iterations + 1, &s.dirty, NULL, nfinal, &ns)))
		FAIL_IO(r, "stop-and-copy");
	tstep[2] = mono_ns();
	if ((r = hv_save_context(d, &ctx, &clen)))
		FAIL(r, "%s: saving the context: %s", d->uri, strerror(-r));
	if ((r = stream_write_context(&s.w, ctx, clen)) || (r = stream_write_end(&s.w)))
		FAIL_IO(r, "sending the context");
	tstep[3] = mono_ns();
	phase(&s, MIG_PH_COMMIT);
	if ((r = mon_wait(&mon, MIG_READY, NULL)))
		FAIL_IO(r, "no READY from the destination");
	tstep[4] = mono_ns();
	/* The hook journals GO durably and is the last point a cancel wins. */
	if (o->hooks.journal && (r = o->hooks.journal(o->hooks.ctx, MIG_PT_GO)))
		FAIL(r, "%s", r == -ECANCELED ? "cancelled" : "journaling GO failed");
	if ((r = failpoint("mig-src-before-go")))
		FAIL(r, "failpoint mig-src-before-go");
	/* The point of no return. */
	tgo = mono_ns();
	st->committed = true;
	if ((r = mig_send_msg(sock, MIG_GO, 0))) {
		snprintf(err, errlen, "GO may not have reached the destination (%s); the guest is "
			 "paused here and the migration unresolved", strerror(-r));
		goto out;
	}
	failpoint("mig-src-after-go");
	if ((r = mon_wait(&mon, MIG_RUNNING, &dres))) {
		mon_err(&mon, why, sizeof why);
		snprintf(err, errlen, "GO sent, but no RUNNING (%s); the guest is paused here and "
			 "the migration unresolved", why);
		goto out;
	}
	trun = mono_ns();
	/* Downtime: from pause to GO here, plus half the round trip, plus the
	 * destination's own GO-to-resume interval; no clocks compared. */
	st->downtime_ns = (tgo - tp) + ((trun - tgo) > dres ? (trun - tgo - dres) / 2 : 0) + dres;
	log_debug("%s: downtime %.2f ms: pause %.2f, final harvest %.2f, %" PRIu64 " pages %.2f, "
		  "context %.2f, READY %.2f, journal %.2f, GO to RUNNING %.2f (destination %.2f)",
		  d->uri, ns_to_ms(st->downtime_ns), ns_to_ms(tstep[0] - tp),
		  ns_to_ms(tstep[1] - tstep[0]), nfinal, ns_to_ms(tstep[2] - tstep[1]),
		  ns_to_ms(tstep[3] - tstep[2]), ns_to_ms(tstep[4] - tstep[3]),
		  ns_to_ms(tgo - tstep[4]), ns_to_ms(trun - tgo), ns_to_ms(dres));
	r = hv_destroy(d);
	paused = false;
	if (r)
		snprintf(err, errlen, "migrated, but destroying the source failed: %s", strerror(-r));
	st->phase = MIG_PH_DONE;
out:
#undef FAIL
#undef FAIL_IO
	mon_stop(&mon);
	if (r && !st->committed) {
		/* Roll back: the source runs on, as it was. */
		if (st->throttle)
			hv_throttle(d, 0);
		if (logging)
			hv_logdirty_disable(d);
		if (paused)
			hv_unpause(d);
	} else if (st->throttle && !st->committed) {
		hv_throttle(d, 0);
	}
	st->total_ns = mono_ns() - t0;
	st->bytes = s.w.bytes;
	if (s.codec)
		memcpy(st->pages, codec_stats(s.codec)->pages, sizeof st->pages);
	st->zero_frames = s.ps.zero_frames;
	if (o->hooks.progress)
		o->hooks.progress(o->hooks.ctx, st);
	free(ctx);
	page_sender_free(&s.ps);
	codec_free(s.codec);
	bitmap_free(&s.dirty);
	bitmap_free(&pop);
	return r;
}

/* ---- destination ---- */

struct dst {
	struct apply_sink a; /* first: the sink's ctx */
	struct stream_sink inner;
	const struct migrate_opts *o;
	const char *name;
	char *err;
	size_t errlen;
	int sock, timeout_ms;
	bool silent;
	struct migrate_stats st;
	uint64_t last_report;
	/* Heartbeats, on their own thread; wlock orders all writes. */
	pthread_mutex_t wlock, m;
	pthread_cond_t c;
	pthread_t hb;
	bool hb_on, stop;
};

static void d_report(struct dst *ds, bool force)
{
	uint64_t now = mono_ns();

	if (!ds->o->hooks.progress || (!force && now - ds->last_report < 100 * NSEC_PER_MSEC))
		return;
	ds->last_report = now;
	ds->o->hooks.progress(ds->o->hooks.ctx, &ds->st);
}

static int d_send(struct dst *ds, uint32_t type, uint64_t arg)
{
	int r;

	pthread_mutex_lock(&ds->wlock);
	r = mig_send_msg(ds->sock, type, arg);
	pthread_mutex_unlock(&ds->wlock);
	return r;
}

static void *hb_main(void *arg)
{
	struct dst *ds = arg;
	int every = ds->timeout_ms / 4 > 10 ? ds->timeout_ms / 4 : 10;

	pthread_mutex_lock(&ds->m);
	while (!ds->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += every / 1000;
		ts.tv_nsec += (long)(every % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&ds->c, &ds->m, &ts) == 0 || ds->stop)
			continue;
		pthread_mutex_unlock(&ds->m);
		if (d_send(ds, MIG_HEARTBEAT, 0))
			return NULL; /* the link is gone; the reader will notice */
		pthread_mutex_lock(&ds->m);
	}
	pthread_mutex_unlock(&ds->m);
	return NULL;
}

/* Tell the source why (best effort, never blocking), then let it read that
 * before the connection goes: closing with its stream still unread would
 * reset the connection and could drop the reason on the way. */
static void d_abort(struct dst *ds, int e, const char *text)
{
	struct pollfd p = { .fd = ds->sock, .events = POLLIN };
	uint64_t end = mono_ns() + 1000 * NSEC_PER_MSEC;
	char sink[65536];

	pthread_mutex_lock(&ds->wlock);
	mig_send_abort(ds->sock, e, text);
	shutdown(ds->sock, SHUT_WR);
	pthread_mutex_unlock(&ds->wlock);
	/* The source closes once it has the reason: drain until then. */
	while (mono_ns() < end && poll(&p, 1, 100) >= 0)
		if (p.revents && recv(ds->sock, sink, sizeof sink, MSG_DONTWAIT) == 0)
			break;
}

static int d_read(void *ctx, void *buf, size_t len)
{
	struct dst *ds = ctx;
	int r = xsource_fd_read(&ds->sock, buf, len);

	if (r == -EAGAIN || r == -EWOULDBLOCK) {
		ds->silent = true;
		return -ETIMEDOUT;
	}
	if (!r)
		ds->st.bytes += len;
	return r;
}

static int d_header(void *ctx, const struct stream_info *i)
{
	struct dst *ds = ctx;
	char uri[128];
	int r;

	if (i->kind != STREAM_KIND_MIGRATION) {
		snprintf(ds->err, ds->errlen, "not a migration stream (kind %u)", i->kind);
		return -EINVAL;
	}
	snprintf(uri, sizeof uri, "%s:%s", i->backend, ds->name ? ds->name : i->name);
	r = hv_create(uri, i->config, &ds->a.d);
	if (r) {
		snprintf(ds->err, ds->errlen, "cannot create %s: %s", uri,
			 r == -EEXIST ? "a domain of that name exists here" : strerror(-r));
		return r;
	}
	ds->st.ram_bytes = i->nr_frames * i->page_size;
	ds->st.phase = MIG_PH_ITERATING;
	d_report(ds, true);
	if ((r = failpoint("mig-dst-setup")))
		return r;
	return check_created(ds->a.d, i, ds->err, ds->errlen);
}

static int d_pages(void *ctx, const uint64_t *frames, void *const *pages, unsigned n)
{
	struct dst *ds = ctx;

	d_report(ds, false);
	return ds->inner.pages(ctx, frames, pages, n);
}

static int d_iter_end(void *ctx, const struct stream_iter_end *it)
{
	struct dst *ds = ctx;
	int r;

	ds->st.iterations = (unsigned)le64toh(it->iteration);
	d_report(ds, true);
	if ((r = failpoint("mig-dst-iter")))
		return r;
	if (ds->inner.iter_end && (r = ds->inner.iter_end(ctx, it)))
		return r;
	/* Everything up to here is applied: tell the source (it pauses the
	 * guest only once its last iteration is). */
	return d_send(ds, MIG_HEARTBEAT, ds->st.bytes);
}

static int d_context(void *ctx, const void *blob, size_t len)
{
	struct dst *ds = ctx;
	int r;

	ds->st.phase = MIG_PH_STOP_COPY;
	d_report(ds, true);
	if ((r = failpoint("mig-dst-stopcopy")))
		return r;
	return ds->inner.context(ctx, blob, len);
}

static int d_journal(struct dst *ds, enum mig_point pt)
{
	return ds->o->hooks.journal ? ds->o->hooks.journal(ds->o->hooks.ctx, pt) : 0;
}

/* Wait up to the peer timeout for GO. */
static int wait_go(struct dst *ds)
{
	struct pollfd p = { .fd = ds->sock, .events = POLLIN };
	uint32_t type;
	uint64_t a;
	int r;

	do
		r = poll(&p, 1, ds->timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	if ((r = mig_read_msg(ds->sock, &type, &a)))
		return r;
	return type == MIG_GO ? 0 : -EPROTO;
}

int migrate_recv(int sock, const char *name, const struct migrate_opts *o,
		 struct hv_domain **out, char *err, size_t errlen)
{
	struct dst ds = { .a = { .fresh = true }, .o = o, .name = name, .err = err,
			  .errlen = errlen, .sock = sock, .timeout_ms = o->peer_timeout_ms };
	struct stream_sink sink;
	struct xsource src = { d_read, &ds };
	pthread_condattr_t ca;
	char why[256];
	uint64_t t0;
	int r;

	err[0] = '\0';
	*out = NULL;
	ds.inner = apply_sink(&ds.a);
	sink = ds.inner;
	sink.header = d_header;
	sink.pages = d_pages;
	sink.iter_end = d_iter_end;
	sink.context = d_context;
	sink.ctx = &ds;
	pthread_mutex_init(&ds.wlock, NULL);
	pthread_mutex_init(&ds.m, NULL);
	/* hb_main's deadlines are CLOCK_MONOTONIC: with the default clock
	 * (REALTIME) they would lie in the past and it would spin. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ds.c, &ca);
	pthread_condattr_destroy(&ca);
	set_sockopts(sock, o->peer_timeout_ms);
	if ((r = -pthread_create(&ds.hb, NULL, hb_main, &ds))) {
		snprintf(err, errlen, "starting the heartbeat thread: %s", strerror(-r));
		goto done;
	}
	ds.hb_on = true;
	r = stream_read(&src, &sink, false, NULL, why, sizeof why);
	if (!r && ds.a.contexts != 1) {
		snprintf(why, sizeof why, "the stream carried %u CONTEXT records, not one",
			 ds.a.contexts);
		r = -EBADMSG;
	}
	if (r) {
		if (ds.silent)
			snprintf(err, errlen, "the source was silent for %d ms", o->peer_timeout_ms);
		else if (!err[0])
			snprintf(err, errlen, "%s", why);
		goto discard;
	}
	ds.st.phase = MIG_PH_COMMIT;
	d_report(&ds, true);
	if ((r = d_journal(&ds, MIG_PT_READY))) {
		snprintf(err, errlen, "journaling READY failed: %s", strerror(-r));
		goto discard;
	}
	if ((r = d_send(&ds, MIG_READY, 0))) {
		snprintf(err, errlen, "sending READY: %s", strerror(-r));
		goto discard;
	}
	if ((r = failpoint("mig-dst-before-go")))
		goto discard;
	/* Never resume without GO; the link dropping before it discards. */
	if ((r = wait_go(&ds))) {
		snprintf(err, errlen, "no GO from the source: %s",
			 r == -ETIMEDOUT ? "it was silent" : r == -ECONNRESET ? "the connection closed"
							   : strerror(-r));
		goto discard;
	}
	t0 = mono_ns();
	/* From here this copy is the guest: nothing below discards it. */
	if ((r = d_journal(&ds, MIG_PT_RESUME)))
		log_error("%s: journaling GO failed (%s); resuming anyway", name, strerror(-r));
	failpoint("mig-dst-after-go");
	if ((r = hv_unpause(ds.a.d))) {
		snprintf(err, errlen, "resuming after GO: %s", strerror(-r));
		goto done; /* unresolved: the source stays paused */
	}
	ds.st.downtime_ns = mono_ns() - t0;
	ds.st.phase = MIG_PH_DONE;
	if (o->hooks.resumed)
		o->hooks.resumed(o->hooks.ctx, ds.a.d);
	failpoint("mig-dst-after-resume");
	d_send(&ds, MIG_RUNNING, ds.st.downtime_ns);
	if ((r = d_journal(&ds, MIG_PT_RUNNING)))
		log_error("%s: journaling RUNNING failed: %s", name, strerror(-r));
	d_report(&ds, true);
	*out = ds.a.d;
	ds.a.d = NULL;
	r = 0;
	goto done;
discard:
	d_abort(&ds, -r, err);
	if (ds.a.d) {
		hv_destroy(ds.a.d);
		hv_close(ds.a.d);
		ds.a.d = NULL;
	}
done:
	if (ds.hb_on) {
		pthread_mutex_lock(&ds.m);
		ds.stop = true;
		pthread_cond_signal(&ds.c);
		pthread_mutex_unlock(&ds.m);
		pthread_join(ds.hb, NULL);
	}
	hv_close(ds.a.d);
	pthread_mutex_destroy(&ds.wlock);
	pthread_mutex_destroy(&ds.m);
	pthread_cond_destroy(&ds.c);
	return r;
}
