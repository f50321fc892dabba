/* precopy.c — live pre-copy migration; see precopy.h. */
#include "migrate/precopy.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/reader.h"
#include "checkpoint/send.h"
#include "checkpoint/sink.h"
#include "checkpoint/snapshot.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "common/mtime.h"

/* Commit messages after the stream, each one 16-byte packet. */
#define MIG_MAGIC 0x47494d46u /* "FMIG" */
enum mig_msg { MIG_READY = 1, MIG_GO = 2, MIG_RUNNING = 3 };

struct mig_ctl {
	uint32_t magic;
	uint32_t type;
	uint64_t arg; /* RUNNING: the destination's resume time, ns */
};
_Static_assert(sizeof(struct mig_ctl) == 16, "wire size");

#define THROTTLE_STEP 20
#define THROTTLE_MAX 99
#define NO_PROGRESS_ITERS 3

void migrate_opts_default(struct migrate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->downtime_ns = 300 * NSEC_PER_MSEC;
	o->max_iters = 30;
	o->on_no_converge = NOCONV_STOP;
	codec_opts_default(&o->codec);
	o->timeout_ms = 30000;
}

static int send_ctl(int sock, uint32_t type, uint64_t arg)
{
	struct mig_ctl m = { htole32(MIG_MAGIC), htole32(type), htole64(arg) };
	struct iovec v = { &m, sizeof m };

	return xsink_fd_writev(&sock, &v, 1);
}

/* Wait for one message of the expected type within timeout_ms. */
static int recv_ctl(int sock, uint32_t type, int timeout_ms, uint64_t *arg)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	struct mig_ctl m;
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	r = xsource_fd_read(&sock, &m, sizeof m);
	if (r)
		return r == -ENODATA || r == -EIO ? -ECONNRESET : r;
	if (le32toh(m.magic) != MIG_MAGIC || le32toh(m.type) != type)
		return -EPROTO;
	if (arg)
		*arg = le64toh(m.arg);
	return 0;
}

/* ---- source ---- */

struct src {
	struct hv_domain *d;
	struct stream_writer w;
	struct page_sender ps;
	struct codec *codec;
	struct bitmap dirty;
	uint64_t nr, page_size;
};

/* Send the frames in set and end the iteration; returns its duration. */
static int iterate(struct src *s, unsigned it, const struct bitmap *set,
		   const struct bitmap *pop, uint64_t ndirty, uint64_t *ns)
{
	uint64_t t0 = mono_ns(), p0 = s->ps.pages + s->ps.zero_frames;
	struct stream_iter_end ie;
	struct iovec v = { &ie, sizeof ie };
	int r = page_sender_send(&s->ps, set, pop);

	*ns = mono_ns() - t0;
	if (r)
		return r;
	ie = (struct stream_iter_end){ .iteration = htole64(it),
				       .pages = htole64(s->ps.pages + s->ps.zero_frames - p0),
				       .dirty = htole64(ndirty), .duration_ns = htole64(*ns) };
	return stream_write_record(&s->w, STREAM_REC_ITER_END, 0, &v, 1);
}

int migrate_send(struct hv_domain *d, int sock, const struct migrate_opts *o,
		 struct migrate_stats *st, char *err, size_t errlen)
{
	struct src s = { .d = d };
	struct xsink sink = { xsink_fd_writev, &sock };
	struct hv_info info;
	struct bitmap pop = { 0 };
	const char *name = strchr(d->uri, ':') ? strchr(d->uri, ':') + 1 : d->uri;
	uint64_t t0 = mono_ns(), tp = 0, ns, prev_dirty = UINT64_MAX, bytes0, tgo, trun, dres;
	void *ctx = NULL;
	size_t clen;
	unsigned stalls = 0, extra = 0;
	bool paused = false, logging = false;
	int r;

	memset(st, 0, sizeof *st);
#define FAIL(code, ...) \
	do { \
		r = (code); \
		snprintf(err, errlen, __VA_ARGS__); \
		goto out; \
	} while (0)

	if ((r = hv_info(d, &info)))
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	s.nr = info.nr_frames;
	s.page_size = info.page_size;
	if ((r = codec_new(&o->codec, info.page_size, &s.codec)) ||
	    (r = bitmap_init(&s.dirty, s.nr)) || (r = bitmap_init(&pop, s.nr)))
		FAIL(r, "out of memory");
	if ((r = stream_writer_start(&s.w, sink, STREAM_KIND_MIGRATION, info.page_size, s.nr, "mvm",
				     name, info.config)))
		FAIL(r, "sending the header: %s", strerror(-r));
	if ((r = page_sender_init(&s.ps, d, &s.w, s.codec, info.page_size, s.nr)))
		FAIL(r, "out of memory");
	/* The log first, then the copy: a page written during iteration 0 is
	 * sent again later. */
	if ((r = hv_logdirty_enable(d)))
		FAIL(r, "%s: cannot enable dirty logging: %s", d->uri, strerror(-r));
	logging = true;
	if ((r = (int)hv_populated(d, &pop)) < 0)
		FAIL(r, "%s: %s", d->uri, strerror(-r));
	st->setup_ns = mono_ns() - t0;
	bytes0 = s.w.bytes;
	if ((r = iterate(&s, 0, NULL, &pop, s.nr, &ns)))
		FAIL(r, "iteration 0: %s", strerror(-r));

	for (unsigned it = 1;; it++) {
		int64_t n;
		double bw = (double)(s.w.bytes - bytes0) / ns_to_sec(mono_ns() - t0 - st->setup_ns);
		double per_page = s.ps.pages ? (double)(s.w.bytes - bytes0) / (double)s.ps.pages
					     : (double)s.page_size;
		uint64_t th = mono_ns();

		bitmap_zero(&s.dirty);
		n = hv_logdirty_harvest(d, &s.dirty, 0);
		if (n < 0)
			FAIL((int)n, "%s: harvesting the dirty log: %s", d->uri, strerror((int)-n));
		st->iterations = it;
		st->dirty_rate = (uint64_t)((double)n / ns_to_sec(ns + (mono_ns() - th) + 1));
		st->expected_downtime_ns = bw > 0 ? (uint64_t)((double)n * per_page / bw * 1e9) : 0;
		if (st->expected_downtime_ns <= o->downtime_ns)
			break;
		stalls = (uint64_t)n >= prev_dirty ? stalls + 1 : 0;
		prev_dirty = (uint64_t)n;
		if (it >= o->max_iters + extra || stalls >= NO_PROGRESS_ITERS) {
			if (o->on_no_converge == NOCONV_ABORT)
				FAIL(-ETIMEDOUT, "did not converge: %" PRId64 " dirty pages, expected "
				     "downtime %.0f ms over the target %.0f ms after %u iterations",
				     n, ns_to_ms(st->expected_downtime_ns), ns_to_ms(o->downtime_ns), it);
			if (o->on_no_converge == NOCONV_STOP || st->throttle >= THROTTLE_MAX)
				goto send_last; /* stop anyway with these pages */
			/* Auto-converge: slow the guest down and try again. */
			st->throttle = st->throttle + THROTTLE_STEP > THROTTLE_MAX
					       ? THROTTLE_MAX : st->throttle + THROTTLE_STEP;
			if ((r = hv_throttle(d, st->throttle)))
				FAIL(r, "%s: throttle: %s", d->uri, strerror(-r));
			extra += 2;
			stalls = 0;
		}
		if ((r = iterate(&s, it, &s.dirty, NULL, (uint64_t)n, &ns)))
			FAIL(r, "iteration %u: %s", it, strerror(-r));
		bitmap_zero(&s.dirty);
	}
send_last:
	st->throughput = (uint64_t)((double)(s.w.bytes - bytes0) /
				    ns_to_sec(mono_ns() - t0 - st->setup_ns));
	/* Stop and copy: pause, the FINAL harvest (plus what was harvested but
	 * not sent, still in dirty), the context, END. */
	tp = mono_ns();
	if ((r = hv_pause(d)))
		FAIL(r, "%s: pause: %s", d->uri, strerror(-r));
	paused = true;
	if ((r = (int)hv_logdirty_harvest(d, &s.dirty, HV_HARVEST_FINAL)) < 0)
		FAIL(r, "%s: final harvest: %s", d->uri, strerror(-r));
	if ((r = iterate(&s, st->iterations + 1, &s.dirty, NULL, bitmap_count(&s.dirty), &ns)))
		FAIL(r, "stop-and-copy: %s", strerror(-r));
	if ((r = hv_save_context(d, &ctx, &clen)))
		FAIL(r, "%s: saving the context: %s", d->uri, strerror(-r));
	if ((r = stream_write_context(&s.w, ctx, clen)) || (r = stream_write_end(&s.w)))
		FAIL(r, "sending: %s", strerror(-r));
	if ((r = recv_ctl(sock, MIG_READY, o->timeout_ms, NULL)))
		FAIL(r, "the destination did not confirm (READY): %s", strerror(-r));
	/* The point of no return. */
	tgo = mono_ns();
	if ((r = send_ctl(sock, MIG_GO, 0)))
		FAIL(r, "sending GO: %s", strerror(-r));
	st->committed = true;
	if ((r = recv_ctl(sock, MIG_RUNNING, o->timeout_ms, &dres))) {
		/* After GO nothing is rolled back: the guest stays paused here. */
		snprintf(err, errlen, "GO sent, but no RUNNING: %s; the guest is paused here and "
			 "the migration unresolved", strerror(-r));
		goto out;
	}
	trun = mono_ns();
	/* Downtime: from pause to GO here, plus half the round trip, plus the
	 * destination's own GO-to-resume interval; no clocks compared. */
	st->downtime_ns = (tgo - tp) + ((trun - tgo) > dres ? (trun - tgo - dres) / 2 : 0) + dres;
	r = hv_destroy(d);
	paused = false;
	if (r)
		snprintf(err, errlen, "migrated, but destroying the source failed: %s", strerror(-r));
out:
#undef FAIL
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
	const char *name;
	char *err;
	size_t errlen;
};

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
	return check_created(ds->a.d, i, ds->err, ds->errlen);
}

int migrate_recv(int sock, const char *name, int timeout_ms, struct hv_domain **out,
		 char *err, size_t errlen)
{
	struct dst ds = { .a = { .fresh = true }, .name = name, .err = err, .errlen = errlen };
	struct stream_sink sink = apply_sink(&ds.a);
	struct xsource src = { xsource_fd_read, &sock };
	char why[256];
	uint64_t t0;
	int r;

	err[0] = '\0';
	sink.header = d_header;
	r = stream_read(&src, &sink, false, NULL, why, sizeof why);
	if (!r && ds.a.contexts != 1) {
		snprintf(why, sizeof why, "the stream carried %u CONTEXT records, not one",
			 ds.a.contexts);
		r = -EBADMSG;
	}
	if (r) {
		if (!err[0])
			snprintf(err, errlen, "%s", why);
		goto discard;
	}
	if ((r = send_ctl(sock, MIG_READY, 0))) {
		snprintf(err, errlen, "sending READY: %s", strerror(-r));
		goto discard;
	}
	/* Never resume without GO; the link dropping before it discards. */
	if ((r = recv_ctl(sock, MIG_GO, timeout_ms, NULL))) {
		snprintf(err, errlen, "no GO from the source: %s", strerror(-r));
		goto discard;
	}
	t0 = mono_ns();
	if ((r = hv_unpause(ds.a.d))) {
		snprintf(err, errlen, "resuming after GO: %s", strerror(-r));
		hv_close(ds.a.d); /* unresolved: the source stays paused */
		return r;
	}
	send_ctl(sock, MIG_RUNNING, mono_ns() - t0);
	*out = ds.a.d;
	return 0;
discard:
	if (ds.a.d) {
		hv_destroy(ds.a.d);
		hv_close(ds.a.d);
	}
	return r;
}
