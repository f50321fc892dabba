/*
 * precopy_src.c — the source side of a pre-copy migration; see precopy.h.
 *
 * Threads: the migrating thread drives the passes and sends channel 0's
 * stripe itself; one lane thread per further channel sends its stripe of
 * each pass; a monitor thread reads the destination's messages on channel 0.
 * A pass is handed to the lanes under s->m and ends when every lane is done.
 */
#include "migrate/precopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "checkpoint/send.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/ratelimit.h"
#include "session/wire.h"

#define THROTTLE_STEP 20
#define THROTTLE_MAX 99
#define NO_PROGRESS_ITERS 3
#define ABORT_TEXT_MAX WIRE_ABORT_TEXT_MAX

/* ---- the destination's messages, read on their own thread ---- */

struct mon {
	struct chan *const *ch;
	unsigned n;
	int wake, timeout_ms;
	pthread_t thread;
	/* Under m. */
	pthread_mutex_t m;
	pthread_cond_t c;
	unsigned got;          /* bit per message type received */
	uint64_t running_arg;
	uint64_t applied;      /* passes the destination has applied on every channel */
	int err;               /* the link is gone: why */
	char why[ABORT_TEXT_MAX + 64];
};

static void shutdown_all(struct chan *const *ch, unsigned n, unsigned from)
{
	for (unsigned i = from; i < n; i++)
		chan_shutdown(ch[i]);
}

static void mon_fail(struct mon *m, int err, const char *why)
{
	pthread_mutex_lock(&m->m);
	if (!m->err) {
		m->err = err;
		snprintf(m->why, sizeof m->why, "%s", why);
	}
	pthread_cond_broadcast(&m->c);
	pthread_mutex_unlock(&m->m);
	/* Unblock the senders: nothing more will get through. */
	shutdown_all(m->ch, m->n, 0);
}

/* ABORT's text follows it: read it and fail with it. */
static void mon_abort(struct mon *m, uint64_t a)
{
	char text[ABORT_TEXT_MAX + 1] = "", why[ABORT_TEXT_MAX + 64];
	size_t len = (size_t)(a & 0xffffffffu);
	int e = (int)(a >> 32);

	if (len <= ABORT_TEXT_MAX && !chan_recv(m->ch[0], text, len, CHAN_WAIT_DEFAULT))
		text[len] = '\0';
	else
		text[0] = '\0';
	snprintf(why, sizeof why, "the destination gave up: %s", text[0] ? text : strerror(e));
	mon_fail(m, e > 0 && e < 4096 ? -e : -ECONNABORTED, why);
}

static void *mon_main(void *arg)
{
	struct mon *m = arg;
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
		r = chan_wait_in(m->ch[0], m->wake, (int)((timeout - (now - last)) / NSEC_PER_MSEC) + 1);
		if (r < 0) {
			mon_fail(m, r, strerror(-r));
			return NULL;
		}
		if (r == 0)
			continue;
		if (r == 2)
			return NULL; /* stopped */
		if ((r = wire_read_msg(m->ch[0], &type, &a))) {
			snprintf(why, sizeof why, "the destination %s",
				 r == -ECONNRESET ? "closed the connection"
				 : r == -EPROTO && !m->ch[0]->err[0] ? "sent a malformed message"
								       : chan_error(m->ch[0], r));
			mon_fail(m, r == -EAGAIN ? -ETIMEDOUT : r, why);
			return NULL;
		}
		last = mono_ns();
		if (type == WIRE_ABORT) {
			mon_abort(m, a);
			return NULL;
		}
		pthread_mutex_lock(&m->m);
		m->got |= 1u << type;
		if (type == WIRE_RUNNING)
			m->running_arg = a;
		if (type == WIRE_HEARTBEAT && a > m->applied)
			m->applied = a;
		pthread_cond_broadcast(&m->c);
		pthread_mutex_unlock(&m->m);
	}
}

static int mon_start(struct mon *m, struct chan *const *ch, unsigned n, int timeout_ms)
{
	int r;

	m->ch = ch;
	m->n = n;
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

/* Wait until the destination has applied the first passes passes. */
static int mon_wait_applied(struct mon *m, uint64_t passes)
{
	int r;

	pthread_mutex_lock(&m->m);
	while (m->applied < passes && !m->err)
		pthread_cond_wait(&m->c, &m->m);
	r = m->applied >= passes ? 0 : m->err;
	pthread_mutex_unlock(&m->m);
	return r;
}

/* The monitor's verdict on a link that failed under a sender; it may be
 * reading the destination's last words, so give it a moment. */
static int mon_err(struct mon *m, char *why, size_t len)
{
	struct timespec ts;
	int r;

	if (m->wake < 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 300 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->m);
	while (!m->err && pthread_cond_timedwait(&m->c, &m->m, &ts) == 0)
		;
	r = m->err;
	if (r)
		snprintf(why, len, "%s", m->why);
	pthread_mutex_unlock(&m->m);
	return r;
}

/* ---- lanes: one stream per channel ---- */

struct src;

struct lane {
	struct src *s;
	unsigned idx;
	struct chan *ch;
	struct stream_writer w;
	struct page_sender ps;
	struct codec *codec;
	pthread_t thread;
	bool running;
	uint64_t pass_pages; /* pages + zero frames sent in the current pass */
	int r;               /* of the current pass */
};

struct src {
	struct hv_domain *d;
	const struct migrate_opts *o;
	struct migrate_stats *st;
	struct lane *lanes;
	struct chan *const *ch;
	unsigned n;
	struct bitmap dirty;
	uint64_t nr, page_size, last_report;
	uint64_t t_copy, bytes0; /* start of the first pass */
	struct ratelimit rl;
	/* The pass under way, under m: go wakes the lanes, done the driver. */
	pthread_mutex_t m;
	pthread_cond_t go, done;
	unsigned gen, busy;
	bool quit;
	const struct bitmap *set, *pop;
	unsigned it;
	uint64_t ndirty, pass_t0;
	bool final; /* the last pass: lanes but 0 end their streams after it */
};

/* Stream bytes sent on all channels. Other lanes' counters are read while
 * they write them: a progress figure, nothing decides on it. */
static uint64_t sent_bytes(const struct src *s)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < s->n; i++)
		b += __atomic_load_n(&s->lanes[i].w.bytes, __ATOMIC_RELAXED);
	return b;
}

static void sum_stats(const struct src *s, struct migrate_stats *st)
{
	memset(st->pages, 0, sizeof st->pages);
	st->zero_frames = 0;
	for (unsigned i = 0; i < s->n; i++) {
		const struct lane *l = &s->lanes[i];

		st->zero_frames += l->ps.zero_frames;
		for (int e = 0; l->codec && e < STREAM_ENC_MAX; e++)
			st->pages[e] += codec_stats(l->codec)->pages[e];
	}
	st->bytes = sent_bytes(s);
}

static void report(struct src *s, bool force)
{
	uint64_t now = mono_ns();

	if (!s->o->hooks.progress || (!force && now - s->last_report < 100 * NSEC_PER_MSEC))
		return;
	s->last_report = now;
	sum_stats(s, s->st);
	if (s->t_copy && now > s->t_copy)
		s->st->throughput = (uint64_t)((double)(s->st->bytes - s->bytes0) /
					       ns_to_sec(now - s->t_copy));
	s->o->hooks.progress(s->o->hooks.ctx, s->st);
}

/* Progress of lane 0 (the driver's own), standing for all. */
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

/* A lane's sink: its channel, under the job's bandwidth limit. */
static int lane_writev(void *ctx, const struct iovec *iov, int n)
{
	struct lane *l = ctx;
	uint64_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	ratelimit_take(&l->s->rl, len);
	return chan_send(l->ch, iov, n, CHAN_WAIT_DEFAULT);
}

/* Send this lane's stripe of the pass, then ITER_END (and END if final and
 * not channel 0, whose stream goes on with the context). */
static int lane_pass(struct lane *l)
{
	struct src *s = l->s;
	uint64_t p0 = l->ps.pages + l->ps.zero_frames;
	struct stream_iter_end ie;
	struct iovec v = { &ie, sizeof ie };
	int r;

	if ((r = page_sender_send(&l->ps, s->set, s->pop)))
		return r;
	l->pass_pages = l->ps.pages + l->ps.zero_frames - p0;
	ie = (struct stream_iter_end){ .iteration = htole64(s->it),
				       .pages = htole64(l->pass_pages),
				       .dirty = htole64(s->ndirty),
				       .duration_ns = htole64(mono_ns() - s->pass_t0) };
	if ((r = stream_write_record(&l->w, STREAM_REC_ITER_END, 0, &v, 1)))
		return r;
	if (s->final && l->idx)
		r = stream_write_end(&l->w);
	return r;
}

/* A lane failed: the others' channels are of no use any more (channel 0
 * stays: the destination's reason may be on its way there). */
static void lane_failed(struct lane *l)
{
	shutdown_all(l->s->ch, l->s->n, 1);
}

static void *lane_main(void *arg)
{
	struct lane *l = arg;
	struct src *s = l->s;
	unsigned gen = 0;

	pthread_mutex_lock(&s->m);
	for (;;) {
		while (s->gen == gen && !s->quit)
			pthread_cond_wait(&s->go, &s->m);
		if (s->quit)
			break;
		gen = s->gen;
		pthread_mutex_unlock(&s->m);
		l->r = lane_pass(l);
		if (l->r)
			lane_failed(l);
		pthread_mutex_lock(&s->m);
		if (--s->busy == 0)
			pthread_cond_signal(&s->done);
	}
	pthread_mutex_unlock(&s->m);
	return NULL;
}

/* Send one pass on every channel; returns its duration in *ns. */
static int run_pass(struct src *s, unsigned it, const struct bitmap *set,
		    const struct bitmap *pop, uint64_t ndirty, bool final, uint64_t *ns)
{
	int r;

	s->st->pass = it;
	pthread_mutex_lock(&s->m);
	s->it = it;
	s->set = set;
	s->pop = pop;
	s->ndirty = ndirty;
	s->final = final;
	s->pass_t0 = mono_ns();
	s->busy = s->n - 1;
	s->gen++;
	pthread_cond_broadcast(&s->go);
	pthread_mutex_unlock(&s->m);

	r = s->lanes[0].r = lane_pass(&s->lanes[0]);
	if (r)
		lane_failed(&s->lanes[0]);

	pthread_mutex_lock(&s->m);
	while (s->busy)
		pthread_cond_wait(&s->done, &s->m);
	pthread_mutex_unlock(&s->m);
	*ns = mono_ns() - s->pass_t0;
	for (unsigned i = 0; !r && i < s->n; i++)
		r = s->lanes[i].r;
	if (!r)
		log_debug("%s: pass %u sent in %.1f ms; %.1f MiB so far", s->d->uri, it,
			  ns_to_ms(*ns), (double)sent_bytes(s) / (1 << 20));
	return r;
}

static uint64_t pass_pages(const struct src *s)
{
	uint64_t p = 0;

	for (unsigned i = 0; i < s->n; i++)
		p += s->lanes[i].ps.pages;
	return p;
}

/* Writers, codecs, senders and threads of the lanes. 0 or -errno. */
static int lanes_start(struct src *s, const struct hv_info *info, const char *name)
{
	struct codec_opts co = s->o->codec;
	int r;

	/* The delta cache is the job's: each lane gets its share. */
	co.delta_cache_pages = co.delta_cache_pages / s->n;
	if (s->o->codec.delta_cache_pages && !co.delta_cache_pages)
		co.delta_cache_pages = 1;
	if (!(s->lanes = calloc(s->n, sizeof *s->lanes)))
		return -ENOMEM;
	for (unsigned i = 0; i < s->n; i++) {
		struct lane *l = &s->lanes[i];

		l->s = s;
		l->idx = i;
		l->ch = s->ch[i];
		if ((r = codec_new(&co, info->page_size, &l->codec)))
			return r;
		if ((r = page_sender_init(&l->ps, s->d, &l->w, l->codec, info->page_size, s->nr)))
			return r;
		l->ps.stripe = i;
		l->ps.nstripes = s->n;
		l->ps.cancel = s->o->cancel;
		if ((r = stream_writer_start(&l->w, (struct xsink){ lane_writev, l },
					     STREAM_KIND_MIGRATION, info->page_size, s->nr, hv_backend_name(s->d),
					     name, info->config)))
			return r;
	}
	s->lanes[0].ps.progress = on_sent;
	s->lanes[0].ps.progress_ctx = s;
	for (unsigned i = 1; i < s->n; i++) {
		if ((r = -pthread_create(&s->lanes[i].thread, NULL, lane_main, &s->lanes[i])))
			return r;
		s->lanes[i].running = true;
	}
	return 0;
}

static void lanes_stop(struct src *s)
{
	if (!s->lanes)
		return;
	pthread_mutex_lock(&s->m);
	s->quit = true;
	pthread_cond_broadcast(&s->go);
	pthread_mutex_unlock(&s->m);
	for (unsigned i = 0; i < s->n; i++) {
		struct lane *l = &s->lanes[i];

		if (l->running)
			pthread_join(l->thread, NULL);
		page_sender_free(&l->ps);
		codec_free(l->codec);
	}
	free(s->lanes);
	s->lanes = NULL;
}

static void cache_new_pages(struct src *s, bool on)
{
	for (unsigned i = 0; i < s->n; i++)
		codec_cache_new_pages(s->lanes[i].codec, on);
}

static bool cancelled(const struct migrate_opts *o)
{
	return o->cancel && *o->cancel;
}

int migrate_send(struct hv_domain *d, struct chan *const *ch, unsigned n,
		 const struct migrate_opts *o, struct migrate_stats *st, char *err, size_t errlen)
{
	struct src s = { .d = d, .o = o, .st = st, .ch = ch, .n = n };
	struct mon mon = { .wake = -1 };
	struct hv_info info;
	struct bitmap pop = { 0 };
	const char *name = strchr(d->uri, ':') ? strchr(d->uri, ':') + 1 : d->uri;
	uint64_t t0 = mono_ns(), tp = 0, ns, prev_dirty = UINT64_MAX, bytes0, tgo, trun, dres;
	uint64_t tstep[5], nfinal;
	void *ctx = NULL;
	size_t clen;
	unsigned stalls = 0, extra = 0, passes = 0;
	bool paused = false, logging = false;
	char why[ABORT_TEXT_MAX + 64];
	int r;

	memset(st, 0, sizeof *st);
	st->channels = n;
	ratelimit_init(&s.rl, o->bandwidth);
	pthread_mutex_init(&s.m, NULL);
	pthread_cond_init(&s.go, NULL);
	pthread_cond_init(&s.done, NULL);
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
		FAIL(r, "%s: %s", what, chan_error(ch[0], r)); \
	} while (0)

	if (n < 1 || n > WIRE_CHANNELS_MAX)
		FAIL(-EINVAL, "%u channels: 1 to %d", n, WIRE_CHANNELS_MAX);
	if ((r = hv_info(d, &info)))
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	s.nr = info.nr_frames;
	s.page_size = info.page_size;
	st->ram_bytes = s.nr * s.page_size;
	for (unsigned i = 0; i < n; i++)
		chan_set_timeout(ch[i], o->peer_timeout_ms);
	if ((r = mon_start(&mon, ch, n, o->peer_timeout_ms)))
		FAIL(r, "starting the monitor thread: %s", strerror(-r));
	if ((r = bitmap_init(&s.dirty, s.nr)) || (r = bitmap_init(&pop, s.nr)))
		FAIL(r, "out of memory");
	if ((r = lanes_start(&s, &info, name))) {
		if (r == -ENOMEM || r == -EAGAIN)
			FAIL(r, "setting up %u channels: %s", n, strerror(-r));
		FAIL_IO(r, "sending the header");
	}
	/* The log first, then the copy: a page written during iteration 0 is
	 * sent again later. */
	if ((r = hv_logdirty_enable(d)))
		FAIL(r, "%s: cannot enable dirty logging: %s", d->uri, strerror(-r));
	logging = true;
	if ((r = (int)hv_populated(d, &pop)) < 0)
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	st->setup_ns = mono_ns() - t0;
	bytes0 = s.bytes0 = sent_bytes(&s);
	s.t_copy = mono_ns();
	phase(&s, MIG_PH_ITERATING);
	/* Only pages sent again can be deltas: iteration 0 fills no cache. */
	cache_new_pages(&s, false);
	if ((r = run_pass(&s, 0, NULL, &pop, s.nr, false, &ns)))
		FAIL_IO(r, "iteration 0");
	passes++;
	cache_new_pages(&s, true);

	for (unsigned it = 1;; it++) {
		int64_t nd;
		uint64_t sent = sent_bytes(&s), pages = pass_pages(&s);
		double bw = (double)(sent - bytes0) / ns_to_sec(mono_ns() - t0 - st->setup_ns);
		double per_page = pages ? (double)(sent - bytes0) / (double)pages
					: (double)s.page_size;
		uint64_t th = mono_ns();

		if ((r = failpoint("mig-src-iter")))
			FAIL(r, "failpoint mig-src-iter");
		if (cancelled(o))
			FAIL(-ECANCELED, "cancelled");
		bitmap_zero(&s.dirty);
		nd = hv_logdirty_harvest(d, &s.dirty, 0);
		if (nd < 0)
			FAIL((int)nd, "%s: harvesting the dirty log: %s", d->uri, strerror((int)-nd));
		st->dirty_pages = (uint64_t)nd;
		st->dirty_rate = (uint64_t)((double)nd / ns_to_sec(ns + (mono_ns() - th) + 1));
		st->expected_downtime_ns = bw > 0 ? (uint64_t)((double)nd * per_page / bw * 1e9) : 0;
		st->throughput = (uint64_t)bw;
		log_debug("%s: pass %u: %" PRId64 " dirty pages, %.0f MiB/s, expected downtime "
			  "%.1f ms", d->uri, it, nd, bw / (1 << 20), ns_to_ms(st->expected_downtime_ns));
		if (st->expected_downtime_ns <= o->downtime_ns)
			break;
		stalls = (uint64_t)nd >= prev_dirty ? stalls + 1 : 0;
		prev_dirty = (uint64_t)nd;
		if (it > o->max_iters + extra || stalls >= NO_PROGRESS_ITERS) {
			if (o->on_no_converge == NOCONV_ABORT)
				FAIL(-ETIMEDOUT, "did not converge: %" PRId64 " dirty pages, expected "
				     "downtime %.1f ms over the target %.1f ms after %u iterations",
				     nd, ns_to_ms(st->expected_downtime_ns), ns_to_ms(o->downtime_ns),
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
		if ((r = run_pass(&s, it, &s.dirty, NULL, (uint64_t)nd, false, &ns)))
			FAIL_IO(r, "iteration");
		passes++;
		st->iterations = it;
		bitmap_zero(&s.dirty);
	}
	st->throughput = (uint64_t)((double)(sent_bytes(&s) - bytes0) /
				    ns_to_sec(mono_ns() - t0 - st->setup_ns));
	/* Pause only once the destination has caught up: what the socket
	 * buffers hold would otherwise be drained during the downtime. */
	if ((r = mon_wait_applied(&mon, passes)))
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
	if ((r = run_pass(&s, st->iterations + 1, &s.dirty, NULL, nfinal, true, &ns)))
		FAIL_IO(r, "stop-and-copy");
	tstep[2] = mono_ns();
	if ((r = hv_save_context(d, &ctx, &clen)))
		FAIL(r, "%s: saving the context: %s", d->uri, strerror(-r));
	if ((r = stream_write_context(&s.lanes[0].w, ctx, clen)) ||
	    (r = stream_write_end(&s.lanes[0].w)))
		FAIL_IO(r, "sending the context");
	tstep[3] = mono_ns();
	phase(&s, MIG_PH_COMMIT);
	if ((r = mon_wait(&mon, WIRE_READY, NULL)))
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
	if ((r = wire_send_msg(ch[0], WIRE_GO, 0))) {
		snprintf(err, errlen, "GO may not have reached the destination (%s); the guest is "
			 "paused here and the migration unresolved", chan_error(ch[0], r));
		goto out;
	}
	failpoint("mig-src-after-go");
	if ((r = mon_wait(&mon, WIRE_RUNNING, &dres))) {
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
	if (r && !st->committed)
		shutdown_all(ch, n, 0); /* unblock any lane still sending */
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
	if (s.lanes)
		sum_stats(&s, st);
	if (o->hooks.progress)
		o->hooks.progress(o->hooks.ctx, st);
	lanes_stop(&s);
	free(ctx);
	bitmap_free(&s.dirty);
	bitmap_free(&pop);
	pthread_mutex_destroy(&s.m);
	pthread_cond_destroy(&s.go);
	pthread_cond_destroy(&s.done);
	ratelimit_destroy(&s.rl);
	return r;
}
