/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.c — save to file and restore; see snapshot.h. */
#include "checkpoint/snapshot.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/send.h"
#include "checkpoint/writer.h"
#include "common/bitmap.h"
#include "common/log.h"
#include "common/mtime.h"

/* Save state. */
struct saver {
	struct hv_domain *d;
	struct stream_writer w;
	struct codec *codec;
	struct page_sender ps;
};

/* Write the whole stream to fd. */
static int save_stream(struct saver *s, int fd, const struct hv_info *info, const char *name,
		       const struct snapshot_opts *o, char *err, size_t errlen)
{
	struct xsink sink = { xsink_fd_writev, &fd };
	void *ctx = NULL, *dconf = NULL;
	size_t clen, dlen;
	int r;

	r = hv_domain_config(s->d, &dconf, &dlen);
	if (r == 0)
		r = stream_writer_start(&s->w, sink, STREAM_KIND_SNAPSHOT, info->page_size,
					info->nr_frames, hv_backend_name(s->d), name, info->config,
					dconf, dlen);
	free(dconf);
	if (r) {
		snprintf(err, errlen, "writing the header: %s", strerror(-r));
		return r;
	}
	r = page_sender_init(&s->ps, s->d, &s->w, s->codec, info->page_size, info->nr_frames);
	if (r == 0) {
		struct bitmap pop;

		s->ps.on_frames = o->on_frames;
		s->ps.on_frames_ctx = o->on_frames_ctx;
		s->ps.cancel = o->cancel;
		r = bitmap_init(&pop, info->nr_frames);
		if (r == 0) {
			int64_t np = hv_populated(s->d, &pop);
			r = np < 0 ? (int)np : page_sender_send(&s->ps, NULL, &pop);
		}
		bitmap_free(&pop);
	}
	if (r) {
		snprintf(err, errlen, "writing guest memory: %s", strerror(-r));
		return r;
	}
	r = hv_save_context(s->d, &ctx, &clen);
	if (r) {
		snprintf(err, errlen, "saving the vCPU context: %s", strerror(-r));
		return r;
	}
	r = stream_write_context(&s->w, ctx, clen);
	free(ctx);
	if (!r)
		r = stream_write_end(&s->w);
	if (r) {
		snprintf(err, errlen, "writing: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* fsync the directory that holds path, so that a rename into it is durable. */
static int sync_dir(const char *path)
{
	char buf[PATH_MAX];
	int fd, r = 0;

	snprintf(buf, sizeof buf, "%s", path);
	fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int snapshot_save(struct hv_domain *d, const char *path, const struct snapshot_opts *o,
		  struct snapshot_stats *st, char *err, size_t errlen)
{
	struct saver *s = calloc(1, sizeof *s);
	struct codec_opts copts;
	struct hv_info info;
	char tmp[PATH_MAX] = "";
	const char *name = strchr(d->uri, ':') ? strchr(d->uri, ':') + 1 : d->uri;
	uint64_t t0 = mono_ns(), tp = 0;
	int fd = -1, r;
	bool was_paused = false, paused = false;

	memset(st, 0, sizeof *st);
	if (!s)
		return -ENOMEM;
	s->d = d;
	if ((r = hv_info(d, &info))) {
		snprintf(err, errlen, "%s: cannot read the domain's info: %s", d->uri, strerror(-r));
		goto out;
	}
	/* A snapshot sends every frame once: a delta cache would only cost a
	 * copy of every page. */
	copts = o->codec;
	copts.delta = false;
	copts.delta_cache_pages = 0;
	if ((r = codec_new(&copts, info.page_size, &s->codec))) {
		snprintf(err, errlen, "%s", r == -EINVAL ? "bad compression options"
							 : "out of memory");
		goto out;
	}
	if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp) {
		r = -ENAMETOOLONG;
		snprintf(err, errlen, "%s: path too long", path);
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	was_paused = info.paused;
	if ((r = hv_pause(d))) {
		snprintf(err, errlen, "%s: cannot pause: %s", d->uri, strerror(-r));
		goto out;
	}
	paused = true;
	tp = mono_ns();
	r = save_stream(s, fd, &info, name, o, err, errlen);
	if (!r && fsync(fd) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
	}
	if (close(fd) < 0 && !r) {
		r = -errno;
		snprintf(err, errlen, "%s: close: %s", tmp, strerror(errno));
	}
	fd = -1;
	if (!r && rename(tmp, path) < 0) {
		r = -errno;
		snprintf(err, errlen, "renaming to %s: %s", path, strerror(errno));
	}
	if (r)
		goto out;
	tmp[0] = '\0'; /* it is the snapshot now */
	if ((r = sync_dir(path))) {
		/* The file is complete, but its name may not survive a crash. */
		snprintf(err, errlen, "%s: syncing its directory: %s", path, strerror(-r));
		goto out;
	}
	st->bytes = s->w.bytes;
	memcpy(st->pages, codec_stats(s->codec)->pages, sizeof st->pages);
	st->zero_frames = s->w.zero_frames;
	if (!o->keep_running) {
		r = hv_destroy(d);
		if (r)
			snprintf(err, errlen, "saved, but stopping %s failed: %s", d->uri, strerror(-r));
		else
			paused = false; /* gone; on failure it is resumed below */
	}
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	/* The guest is left as it was: running again unless it was paused. */
	if (paused && !was_paused) {
		int u = hv_unpause(d);
		if (u && !r) {
			r = u;
			snprintf(err, errlen, "saved, but %s did not resume: %s", d->uri, strerror(-u));
		}
	}
	if (tp)
		st->paused_ns = mono_ns() - tp;
	st->ns = mono_ns() - t0;
	if (s) {
		codec_free(s->codec);
		page_sender_free(&s->ps);
		free(s);
	}
	return r;
}

/* The domain created from a header must have the header's geometry. */
int check_created(struct hv_domain *d, const struct stream_info *i, char *err, size_t errlen)
{
	struct hv_info info;
	int r = hv_info(d, &info);

	if (r) {
		snprintf(err, errlen, "%s: %s", d->uri, strerror(-r));
		return r;
	}
	if (info.nr_frames != i->nr_frames || info.page_size != i->page_size) {
		snprintf(err, errlen, "%s has %" PRIu64 " frames of %u bytes, the stream %" PRIu64
			 " of %u", d->uri, info.nr_frames, info.page_size, i->nr_frames, i->page_size);
		return -EINVAL;
	}
	return 0;
}

/* Restore: the header creates the domain, the apply sink fills it; nothing
 * runs until the whole stream checked out. */
struct restorer {
	struct apply_sink a; /* first: the sink's ctx is the restorer too */
	const char *name;
	char *err;
	size_t errlen;
};

static int r_header(void *ctx, const struct stream_info *i)
{
	struct restorer *rs = ctx;
	char uri[128];
	int r;

	if (i->kind != STREAM_KIND_SNAPSHOT) {
		snprintf(rs->err, rs->errlen, "not a snapshot (stream kind %u)", i->kind);
		return -EINVAL;
	}
	if ((r = hv_uri(uri, sizeof uri, i->backend, rs->name ? rs->name : i->name))) {
		snprintf(rs->err, rs->errlen, "no backend \"%s\" here, or a bad name", i->backend);
		return r;
	}
	r = hv_create(uri, i->config, i->domain_config, i->domain_config_len, &rs->a.d);
	if (r) {
		snprintf(rs->err, rs->errlen, "cannot create %s: %s", uri,
			 r == -EEXIST ? "a domain of that name exists (use --name)" : strerror(-r));
		return r;
	}
	rs->a.total = i->nr_frames;
	return check_created(rs->a.d, i, rs->err, rs->errlen);
}

int snapshot_restore(const char *path, const char *name, const struct snapshot_opts *o,
		     struct hv_domain **out, struct snapshot_stats *st, char *err, size_t errlen)
{
	struct restorer rs = { .a = { .fresh = true, .on_frames = o->on_frames,
				      .on_frames_ctx = o->on_frames_ctx },
			       .name = name, .err = err, .errlen = errlen };
	struct stream_sink sink = apply_sink(&rs.a);
	struct stream_read_stats rst;
	struct xsource src;
	uint64_t t0 = mono_ns();
	char why[256] = "";
	int fd, r;

	memset(st, 0, sizeof *st);
	err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	_Static_assert(offsetof(struct restorer, a) == 0, "the sink's ctx is the restorer");
	sink.header = r_header;
	src = (struct xsource){ xsource_fd_read, &fd };
	r = stream_read(&src, &sink, true, &rst, why, sizeof why);
	close(fd);
	if (!r && rs.a.contexts != 1) {
		snprintf(err, errlen, "%s: a snapshot carries exactly one CONTEXT record, this one %u",
			 path, rs.a.contexts);
		r = -EBADMSG;
	}
	if (!r && (r = o->paused ? hv_commit(rs.a.d) : hv_unpause(rs.a.d)))
		snprintf(err, errlen, "restored, but %s: %s", o->paused ? "commit failed" : "the guest did not start",
			 strerror(-r));
	if (r) {
		/* The sink's own message wins; else the reader's. */
		if (!err[0])
			snprintf(err, errlen, "%s: %s", path, why);
		if (rs.a.d) {
			/* Uncommitted: closing the handle discards the guest. */
			hv_destroy(rs.a.d);
			hv_close(rs.a.d);
		}
		return r;
	}
	st->bytes = rst.bytes;
	memcpy(st->pages, rst.pages, sizeof st->pages);
	st->zero_frames = rst.zero_frames;
	st->ns = mono_ns() - t0;
	*out = rs.a.d;
	return 0;
}
