/* SPDX-License-Identifier: Apache-2.0 */
/* reader.c — ferry stream reader; see reader.h. */
#include "checkpoint/reader.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/codec.h"
#include "common/xxh.h"

#define NR_FRAMES_MAX (1ULL << 36)       /* 256 TiB of 4 KiB pages */
#define SKIP_CHUNK (64u << 10)

struct rd {
	const struct xsource *src;
	const struct stream_sink *sink;
	struct stream_read_stats *st;
	struct stream_info info;
	bool have_header;
	uint32_t want_dconf; /* HEADER announced a DOMAIN_CONFIG of this length */
	uint64_t seq;      /* expected sequence number of the next record */
	uint64_t off;      /* stream offset of the current record */
	uint64_t pages, zero_frames; /* totals for END */
	char *buf;         /* one record body + padding */
	size_t buflen;
	uint8_t *pagebuf;  /* STREAM_PAGES_MAX decoded pages */
	char *err;
	size_t errlen;
	/* The current record, for messages. */
	uint32_t type;
	/* Since the last CKPT_BEGIN (stream.h, struct stream_ckpt). */
	bool in_ckpt;
	uint64_t ckpt_records, ckpt_digest, trl_checksum;
};

static int fail(struct rd *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct rd *r, int code, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err, r->errlen, "record #%" PRIu64 " (%s) at byte %" PRIu64 ": ",
			 r->seq, stream_rec_name(r->type), r->off);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < r->errlen)
		vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

/* Read len bytes; a clean or partial end of the source is a truncation. */
static int get(struct rd *r, void *buf, size_t len, const char *what)
{
	int e = r->src->read(r->src->ctx, buf, len);

	if (e == -ENODATA || e == -EIO)
		return fail(r, -EBADMSG, "stream ends inside the %s (truncated)", what);
	if (e)
		return fail(r, e, "reading the %s: %s", what, strerror(-e));
	return 0;
}

static int grow(struct rd *r, size_t len)
{
	char *b;

	if (len < 64)
		len = 64; /* never a NULL buffer, even for an empty body */
	if (len <= r->buflen)
		return 0;
	b = realloc(r->buf, len);
	if (!b)
		return fail(r, -ENOMEM, "no memory for a body of %zu bytes", len);
	r->buf = b;
	r->buflen = len;
	return 0;
}

/* A non-empty string of at most n - 1 bytes, NUL-padded to n. */
static bool padded_string(const char *s, size_t n)
{
	size_t len = strnlen(s, n);

	if (len == 0 || len == n)
		return false;
	for (size_t k = len; k < n; k++)
		if (s[k])
			return false;
	return true;
}

static int tell_header(struct rd *r);

static int do_header(struct rd *r, const char *b, uint64_t len)
{
	struct stream_header h;
	struct stream_info *i = &r->info;
	uint32_t clen;

	if (len < sizeof h)
		return fail(r, -EBADMSG, "header body of %" PRIu64 " bytes", len);
	memcpy(&h, b, sizeof h);
	i->major = le16toh(h.major);
	i->minor = le16toh(h.minor);
	i->kind = le32toh(h.kind);
	i->page_size = le32toh(h.page_size);
	i->nr_frames = le64toh(h.nr_frames);
	clen = le32toh(h.config_len);
	if (i->major != STREAM_VERSION_MAJOR)
		return fail(r, -EPROTONOSUPPORT, "stream version %u.%u, this reader reads %u.x",
			    i->major, i->minor, STREAM_VERSION_MAJOR);
	if (i->page_size != 4096)
		return fail(r, -EBADMSG, "page size %u (only 4096 is supported)", i->page_size);
	if (i->nr_frames == 0 || i->nr_frames > NR_FRAMES_MAX)
		return fail(r, -EBADMSG, "%" PRIu64 " frames", i->nr_frames);
	if (i->kind < STREAM_KIND_SNAPSHOT || i->kind > STREAM_KIND_REPLICATION)
		return fail(r, -EBADMSG, "unknown stream kind %u", i->kind);
	if (clen > STREAM_CONFIG_MAX || len != sizeof h + clen)
		return fail(r, -EBADMSG, "config of %u bytes in a header of %" PRIu64, clen, len);
	if (h.reserved0 || h.reserved1)
		return fail(r, -EBADMSG, "reserved header fields are set");
	r->want_dconf = le32toh(h.domain_config_len);
	if (r->want_dconf > STREAM_DOMAIN_CONFIG_MAX)
		return fail(r, -EBADMSG, "a domain config of %u bytes (at most %u)", r->want_dconf,
			    STREAM_DOMAIN_CONFIG_MAX);
	if (!padded_string(h.backend, sizeof h.backend))
		return fail(r, -EBADMSG, "backend name is not a NUL-padded string");
	if (!padded_string(h.name, sizeof h.name))
		return fail(r, -EBADMSG, "domain name is not a NUL-padded string");
	memcpy(i->backend, h.backend, sizeof h.backend);
	i->backend[sizeof h.backend] = '\0';
	memcpy(i->name, h.name, sizeof h.name);
	i->name[sizeof h.name] = '\0';
	memcpy(i->config, b + sizeof h, clen);
	i->config[clen] = '\0';
	if (strlen(i->config) != clen)
		return fail(r, -EBADMSG, "config text holds a NUL byte");
	r->have_header = true;
	if (!r->pagebuf) {
		r->pagebuf = malloc((size_t)STREAM_PAGES_MAX * i->page_size);
		if (!r->pagebuf)
			return fail(r, -ENOMEM, "no memory for page buffers");
	}
	return r->want_dconf ? 0 : tell_header(r);
}

/* DOMAIN_CONFIG, announced by the HEADER before it: now the receiver hears
 * of the stream, the configuration in hand. */
static int do_domain_config(struct rd *r, const char *b, uint64_t len)
{
	int e;

	if (!r->want_dconf)
		return fail(r, -EBADMSG, "DOMAIN_CONFIG that HEADER did not announce");
	if (len != r->want_dconf)
		return fail(r, -EBADMSG, "DOMAIN_CONFIG of %" PRIu64 " bytes, HEADER announced %u",
			    len, r->want_dconf);
	r->want_dconf = 0;
	r->info.domain_config = b;
	r->info.domain_config_len = (size_t)len;
	e = tell_header(r);
	r->info.domain_config = NULL;
	return e;
}

static int tell_header(struct rd *r)
{
	struct stream_info *i = &r->info;

	if (r->sink->header) {
		int e = r->sink->header(r->sink->ctx, i);
		if (e > 0)
			e = -EPROTO;
		if (e)
			return fail(r, e, "refused by the receiver: %s", strerror(-e));
	}
	return 0;
}

/* Validate a whole PAGES body, decode every page, then hand them over. */
static int do_pages(struct rd *r, const char *b, uint64_t len)
{
	const uint32_t ps = r->info.page_size;
	const uint64_t omax = codec_out_max(ps);
	struct stream_pages ph;
	uint64_t frames[STREAM_PAGES_MAX], data_total = 0;
	uint32_t encs[STREAM_PAGES_MAX], lens[STREAM_PAGES_MAX];
	void *pages[STREAM_PAGES_MAX];
	const char *data;
	uint32_t n;
	int e;

	if (len < sizeof ph)
		return fail(r, -EBADMSG, "pages body of %" PRIu64 " bytes", len);
	memcpy(&ph, b, sizeof ph);
	n = le32toh(ph.count);
	if (n == 0 || n > STREAM_PAGES_MAX || ph.reserved)
		return fail(r, -EBADMSG, "batch of %u pages (1..%u)", n, STREAM_PAGES_MAX);
	if (len < sizeof ph + (uint64_t)n * sizeof(struct stream_page))
		return fail(r, -EBADMSG, "%u page entries do not fit in %" PRIu64 " bytes", n, len);
	data = b + sizeof ph + (size_t)n * sizeof(struct stream_page);
	for (uint32_t i = 0; i < n; i++) {
		struct stream_page p;
		uint32_t enc, dl;

		memcpy(&p, b + sizeof ph + i * sizeof p, sizeof p);
		frames[i] = le64toh(p.frame);
		enc = le32toh(p.encoding);
		dl = le32toh(p.data_len);
		if (frames[i] >= r->info.nr_frames)
			return fail(r, -EBADMSG, "page %u: frame %" PRIu64 " beyond %" PRIu64, i,
				    frames[i], r->info.nr_frames);
		if (i && frames[i] <= frames[i - 1])
			return fail(r, -EBADMSG, "page %u: frames not strictly increasing", i);
		if (enc >= STREAM_ENC_MAX)
			return fail(r, -EBADMSG, "page %u: unknown encoding %u", i, enc);
		if ((enc == STREAM_ENC_ZERO && dl) || (enc == STREAM_ENC_RAW && dl != ps) ||
		    ((enc == STREAM_ENC_LZ4 || enc == STREAM_ENC_DELTA) && (!dl || dl > omax)))
			return fail(r, -EBADMSG, "page %u: %s data of %u bytes", i,
				    stream_enc_name(enc), dl);
		if (dl > len - (uint64_t)(data - b) - data_total)
			return fail(r, -EBADMSG, "page %u: data runs past the record", i);
		encs[i] = enc;
		lens[i] = dl;
		data_total += dl;
	}
	if ((uint64_t)(data - b) + data_total != len)
		return fail(r, -EBADMSG, "%" PRIu64 " bytes after the last page's data",
			    len - (uint64_t)(data - b) - data_total);
	/* Every entry checks out: decode (delta bases are read only now). */
	data_total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t enc = encs[i], dl = lens[i];

		r->st->pages[enc]++;
		if (enc == STREAM_ENC_RAW) {
			/* Already the page: no copy (the body lives until the next record). */
			pages[i] = (void *)(data + data_total);
			data_total += dl;
			continue;
		}
		pages[i] = r->pagebuf + (size_t)i * ps;
		if (enc == STREAM_ENC_DELTA) {
			if (!r->sink->base)
				return fail(r, -EBADMSG, "page %u: delta page, but this stream "
					    "cannot carry deltas", i);
			e = r->sink->base(r->sink->ctx, frames[i], pages[i]);
			if (e > 0)
				e = -EPROTO;
			if (e)
				return fail(r, e, "page %u: reading the delta base of frame %" PRIu64
					    ": %s", i, frames[i], strerror(-e));
		}
		e = codec_decode(enc, data + data_total, dl, pages[i], ps);
		if (e)
			return fail(r, -EBADMSG, "page %u (frame %" PRIu64 "): corrupt %s data", i,
				    frames[i], stream_enc_name(enc));
		data_total += dl;
	}
	r->pages += n;
	if (!r->sink->pages)
		return fail(r, -EBADMSG, "this stream cannot carry pages");
	e = r->sink->pages(r->sink->ctx, frames, pages, n);
	if (e > 0)
		e = -EPROTO; /* a sink returns 0 or -errno; never mistake it for END */
	return e ? fail(r, e, "storing pages: %s", strerror(-e)) : 0;
}

static int do_end(struct rd *r, const char *b, uint64_t len)
{
	struct stream_end e;

	if (len != sizeof e)
		return fail(r, -EBADMSG, "end body of %" PRIu64 " bytes", len);
	memcpy(&e, b, sizeof e);
	if (le64toh(e.records) != r->seq || le64toh(e.pages) != r->pages ||
	    le64toh(e.zero_frames) != r->zero_frames || le64toh(e.bytes) != r->off)
		return fail(r, -EBADMSG,
			    "totals do not match: %" PRIu64 " records, %" PRIu64 " pages, %" PRIu64
			    " zero frames, %" PRIu64 " bytes announced; %" PRIu64 ", %" PRIu64
			    ", %" PRIu64 ", %" PRIu64 " read",
			    le64toh(e.records), le64toh(e.pages), le64toh(e.zero_frames),
			    le64toh(e.bytes), r->seq, r->pages, r->zero_frames, r->off);
	if (r->sink->end) {
		struct stream_end h = { r->seq, r->pages, r->zero_frames, r->off };
		int x = r->sink->end(r->sink->ctx, &h);
		if (x > 0)
			x = -EPROTO;
		if (x)
			return fail(r, x, "%s", strerror(-x));
	}
	return 0;
}

static int do_postcopy(struct rd *r, const char *b, uint64_t len)
{
	struct stream_postcopy p;
	uint64_t first, count, words, last;
	int x;

	if (len < sizeof p)
		return fail(r, -EBADMSG, "body of %" PRIu64 " bytes", len);
	memcpy(&p, b, sizeof p);
	first = le64toh(p.first);
	count = le64toh(p.count);
	if (!count || count > STREAM_POSTCOPY_FRAMES_MAX || first % 64 ||
	    first >= r->info.nr_frames || count > r->info.nr_frames - first)
		return fail(r, -EBADMSG, "frames %" PRIu64 "+%" PRIu64 " of %" PRIu64, first, count,
			    r->info.nr_frames);
	words = (count + 63) / 64;
	if (len != sizeof p + words * 8)
		return fail(r, -EBADMSG, "%" PRIu64 " bytes of bits for %" PRIu64 " frames",
			    len - sizeof p, count);
	memcpy(&last, b + sizeof p + (words - 1) * 8, 8);
	if (count % 64 && le64toh(last) >> (count % 64))
		return fail(r, -EBADMSG, "bits set past the frames it covers");
	if (!r->sink->postcopy)
		return fail(r, -EBADMSG, "this stream cannot switch to post-copy");
	if ((x = r->sink->postcopy(r->sink->ctx, first, count, b + sizeof p)) > 0)
		x = -EPROTO;
	return x;
}

/* Dispatch one checked record body. Returns 1 after END. */
static int dispatch(struct rd *r, uint32_t type, const char *b, uint64_t len)
{
	const struct stream_sink *s = r->sink;
	int e = 0;

	switch (type) {
	case STREAM_REC_PAGES:
		return do_pages(r, b, len);
	case STREAM_REC_ZERO_EXTENT: {
		struct stream_zero_extent z;
		uint64_t first, count;

		if (len != sizeof z)
			return fail(r, -EBADMSG, "body of %" PRIu64 " bytes", len);
		memcpy(&z, b, sizeof z);
		first = le64toh(z.first);
		count = le64toh(z.count);
		if (!count || first >= r->info.nr_frames || count > r->info.nr_frames - first)
			return fail(r, -EBADMSG, "frames %" PRIu64 "+%" PRIu64 " outside %" PRIu64,
				    first, count, r->info.nr_frames);
		if (!s->zero)
			return fail(r, -EBADMSG, "this stream cannot carry zero extents");
		r->zero_frames += count;
		r->st->zero_frames += count;
		e = s->zero(s->ctx, first, count);
		break;
	}
	case STREAM_REC_POSTCOPY:
		return do_postcopy(r, b, len);
	case STREAM_REC_CONTEXT:
	case STREAM_REC_DEVICE: {
		int (*fn)(void *, const void *, size_t) = type == STREAM_REC_CONTEXT ? s->context
										    : s->device;
		if (!fn)
			return fail(r, -EBADMSG, "this reader takes no %s record",
				    stream_rec_name(type));
		e = fn(s->ctx, b, len);
		break;
	}
	case STREAM_REC_ITER_END: {
		struct stream_iter_end it;

		if (len != sizeof it)
			return fail(r, -EBADMSG, "body of %" PRIu64 " bytes", len);
		memcpy(&it, b, sizeof it);
		it.iteration = le64toh(it.iteration);
		it.pages = le64toh(it.pages);
		it.dirty = le64toh(it.dirty);
		it.duration_ns = le64toh(it.duration_ns);
		e = s->iter_end ? s->iter_end(s->ctx, &it) : 0;
		break;
	}
	case STREAM_REC_CKPT_BEGIN:
	case STREAM_REC_CKPT_COMMIT: {
		struct stream_ckpt c;

		if (len != sizeof c)
			return fail(r, -EBADMSG, "body of %" PRIu64 " bytes", len);
		memcpy(&c, b, sizeof c);
		if (!s->ckpt)
			return fail(r, -EBADMSG, "this stream carries no checkpoints");
		c.epoch = le64toh(c.epoch);
		c.token = le64toh(c.token);
		c.records = le64toh(c.records);
		c.digest = le64toh(c.digest);
		if (type == STREAM_REC_CKPT_COMMIT &&
		    (!r->in_ckpt || c.records != r->ckpt_records || c.digest != r->ckpt_digest))
			return fail(r, -EBADMSG, "epoch %" PRIu64 ": %s", c.epoch,
				    !r->in_ckpt ? "COMMIT without BEGIN"
						: "its count or digest of records differs from what "
						  "arrived");
		if (type == STREAM_REC_CKPT_BEGIN && (c.records || c.digest))
			return fail(r, -EBADMSG, "epoch %" PRIu64 ": BEGIN with counts", c.epoch);
		r->in_ckpt = type == STREAM_REC_CKPT_BEGIN;
		r->ckpt_records = r->ckpt_digest = 0;
		e = s->ckpt(s->ctx, type, &c);
		break;
	}
	case STREAM_REC_END:
		e = do_end(r, b, len);
		return e ? e : 1;
	case STREAM_REC_HEADER:
		return fail(r, -EBADMSG, "a second HEADER");
	}
	if (e > 0)
		e = -EPROTO;
	return e ? fail(r, e, "%s", strerror(-e)) : 0;
}

/* Read and hash n bytes of an unknown optional record's body, unkept. */
static int skip(struct rd *r, XXH3_state_t *st, uint64_t n)
{
	char chunk[SKIP_CHUNK];

	while (n) {
		size_t k = n < sizeof chunk ? (size_t)n : sizeof chunk;
		int e = get(r, chunk, k, "record body");
		if (e)
			return e;
		XXH3_64bits_update(st, chunk, k);
		n -= k;
	}
	return 0;
}

/* One record. Returns 1 after END, 0 to go on, or -errno. */
static int read_record(struct rd *r)
{
	struct stream_rec_hdr h;
	struct stream_rec_trl t;
	XXH3_state_t st;
	uint64_t len, max, total;
	uint32_t type, flags;
	bool known;
	int e;

	r->type = 0;
	e = r->src->read(r->src->ctx, &h, sizeof h);
	if (e == -ENODATA)
		return fail(r, -EBADMSG, "stream ends before its END record (truncated)");
	if (e == -EIO)
		return fail(r, -EBADMSG, "stream ends inside a record header (truncated)");
	if (e)
		return fail(r, e, "reading a record header: %s", strerror(-e));
	type = le32toh(h.type);
	flags = le32toh(h.flags);
	len = le64toh(h.length);
	r->type = type;
	known = stream_rec_max(type, r->info.page_size ? r->info.page_size : 4096) != 0;
	if (flags & ~STREAM_REC_OPTIONAL)
		return fail(r, -EBADMSG, "unknown flags 0x%x", flags);
	if (!r->have_header && type != STREAM_REC_HEADER)
		return fail(r, -EBADMSG, "the first record must be HEADER");
	if (!known && !(flags & STREAM_REC_OPTIONAL))
		return fail(r, -EOPNOTSUPP,
			    "unknown mandatory record type %u: written by a newer ferry "
			    "(stream %u.%u)", type, r->info.major, r->info.minor);
	max = known ? stream_rec_max(type, r->info.page_size ? r->info.page_size : 4096) : STREAM_SKIP_MAX;
	if (len > max)
		return fail(r, -EBADMSG, "length %" PRIu64 " exceeds the maximum %" PRIu64, len, max);
	total = len + (-len & 7);

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &h, sizeof h);
	if (known) {
		if ((e = grow(r, (size_t)total)) || (e = get(r, r->buf, (size_t)total, "record body")))
			return e;
	} else {
		/* Skip the body, keep only the padding (at the start of buf). */
		if ((e = skip(r, &st, len)) || (e = grow(r, 8)) ||
		    (e = get(r, r->buf, (size_t)(total - len), "record padding")))
			return e;
	}
	{
		const char *pad = known ? r->buf + len : r->buf;

		XXH3_64bits_update(&st, known ? r->buf : pad, known ? (size_t)total : (size_t)(total - len));
		for (uint64_t i = 0; i < total - len; i++)
			if (pad[i])
				return fail(r, -EBADMSG, "padding byte %" PRIu64 " is not zero", i);
	}
	if ((e = get(r, &t, sizeof t, "record trailer")))
		return e;
	XXH3_64bits_update(&st, &t.seq, sizeof t.seq);
	if (le64toh(t.seq) != r->seq)
		return fail(r, -EBADMSG, "sequence number %" PRIu64 ", expected %" PRIu64,
			    le64toh(t.seq), r->seq);
	if (le64toh(t.checksum) != XXH3_64bits_digest(&st))
		return fail(r, -EBADMSG, "checksum mismatch");
	r->trl_checksum = t.checksum;

	if (type == STREAM_REC_HEADER && !r->have_header)
		e = do_header(r, r->buf, len);
	else if (r->want_dconf && type != STREAM_REC_DOMAIN_CONFIG)
		e = fail(r, -EBADMSG, "HEADER announced a DOMAIN_CONFIG record; this is not one");
	else if (type == STREAM_REC_DOMAIN_CONFIG)
		e = do_domain_config(r, r->buf, len);
	else if (!known)
		r->st->skipped++, e = 0;
	else
		e = dispatch(r, type, r->buf, len);
	if (e < 0)
		return e;
	if (type != STREAM_REC_CKPT_BEGIN && type != STREAM_REC_CKPT_COMMIT) {
		r->ckpt_records++;
		r->ckpt_digest = XXH3_64bits_withSeed(&r->trl_checksum, sizeof r->trl_checksum,
						      r->ckpt_digest);
	}
	r->st->records++;
	r->seq++;
	r->off += sizeof h + total + sizeof t;
	r->st->bytes = r->off;
	return e;
}

int stream_read(const struct xsource *src, const struct stream_sink *sink, bool expect_eof,
		struct stream_read_stats *stats, char *err, size_t errlen)
{
	struct stream_read_stats dummy;
	struct rd r = { .src = src, .sink = sink, .err = err, .errlen = errlen };
	char magic[STREAM_MAGIC_LEN];
	int e;

	r.st = stats ? stats : &dummy;
	memset(r.st, 0, sizeof *r.st);
	err[0] = '\0';
	e = src->read(src->ctx, magic, sizeof magic);
	if (e || memcmp(magic, STREAM_MAGIC, sizeof magic)) {
		snprintf(err, errlen, "not a ferry stream (%s)",
			 e == -ENODATA || e == -EIO ? "too short" : e ? strerror(-e) : "bad magic");
		return e && e != -ENODATA && e != -EIO ? e : -EBADMSG;
	}
	r.off = STREAM_MAGIC_LEN;
	while ((e = read_record(&r)) == 0)
		;
	if (e == 1 && expect_eof) {
		char c;
		int x = src->read(src->ctx, &c, 1);
		if (x != -ENODATA) {
			snprintf(err, errlen, "data after the END record at byte %" PRIu64, r.off);
			e = -EBADMSG;
		}
	}
	free(r.buf);
	free(r.pagebuf);
	return e == 1 ? 0 : e;
}
