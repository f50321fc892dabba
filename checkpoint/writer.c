/* SPDX-License-Identifier: Apache-2.0 */
/* writer.c — ferry stream writer; see writer.h. */
#include "checkpoint/writer.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/codec.h"
#include "common/bitmap.h"
#include "common/util.h"
#include "common/xxh.h"

#define BODY_IOV_MAX 1000

static const uint8_t zeros[8];

int stream_write_record(struct stream_writer *w, uint32_t type, uint32_t flags,
			const struct iovec *body, int n)
{
	struct iovec iov[BODY_IOV_MAX + 3];
	struct stream_rec_hdr h;
	struct stream_rec_trl t;
	XXH3_state_t st;
	uint64_t len = 0;
	size_t pad;
	int k = 0, r;

	if (w->error)
		return w->error;
	if (n < 0 || n > BODY_IOV_MAX)
		return w->error = -EINVAL;
	for (int i = 0; i < n; i++)
		len += body[i].iov_len;
	/* Write nothing our own reader would refuse: a known type within its
	 * maximum, an unknown one only as OPTIONAL and within the skip limit. */
	if (flags & ~STREAM_REC_OPTIONAL)
		return w->error = -EINVAL;
	if (stream_rec_max(type, w->page_size)) {
		if (len > stream_rec_max(type, w->page_size))
			return w->error = -EMSGSIZE;
	} else if (!(flags & STREAM_REC_OPTIONAL) && type != 0 && len) {
		return w->error = -EINVAL;
	} else if (len > STREAM_SKIP_MAX) {
		return w->error = -EMSGSIZE;
	}
	pad = (size_t)(-len & 7);
	h = (struct stream_rec_hdr){ .type = htole32(type), .flags = htole32(flags),
				     .length = htole64(len) };
	t.seq = htole64(w->seq);

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &h, sizeof h);
	iov[k++] = (struct iovec){ &h, sizeof h };
	for (int i = 0; i < n; i++) {
		if (!body[i].iov_len)
			continue;
		XXH3_64bits_update(&st, body[i].iov_base, body[i].iov_len);
		iov[k++] = body[i];
	}
	if (pad) {
		XXH3_64bits_update(&st, zeros, pad);
		iov[k++] = (struct iovec){ (void *)zeros, pad };
	}
	XXH3_64bits_update(&st, &t.seq, sizeof t.seq);
	t.checksum = htole64(XXH3_64bits_digest(&st));
	iov[k++] = (struct iovec){ &t, sizeof t };

	r = w->sink.writev(w->sink.ctx, iov, k);
	if (r)
		return w->error = r;
	w->ckpt_records++;
	w->ckpt_digest = XXH3_64bits_withSeed(&t.checksum, sizeof t.checksum, w->ckpt_digest);
	w->seq++;
	w->records++;
	w->bytes += sizeof h + len + pad + sizeof t;
	return 0;
}

int stream_writer_start(struct stream_writer *w, struct xsink sink, uint32_t kind,
			uint32_t page_size, uint64_t nr_frames, const char *backend,
			const char *name, const char *config, const void *dconf,
			size_t dconf_len)
{
	struct stream_header h = {
		.major = htole16(STREAM_VERSION_MAJOR),
		.minor = htole16(STREAM_VERSION_MINOR),
		.kind = htole32(kind),
		.page_size = htole32(page_size),
		.nr_frames = htole64(nr_frames),
	};
	size_t clen = config ? strlen(config) : 0;
	struct iovec body[2] = { { &h, sizeof h }, { (void *)config, clen } };
	struct iovec magic = { (void *)STREAM_MAGIC, STREAM_MAGIC_LEN };
	int r;

	memset(w, 0, sizeof *w);
	w->sink = sink;
	w->page_size = page_size;
	w->nr_frames = nr_frames;
	if (clen > STREAM_CONFIG_MAX || !*backend || strlen(backend) >= sizeof h.backend ||
	    !*name || strlen(name) >= sizeof h.name || dconf_len > STREAM_DOMAIN_CONFIG_MAX ||
	    (dconf_len && !dconf))
		return w->error = -EINVAL;
	memcpy(h.backend, backend, strlen(backend));
	memcpy(h.name, name, strlen(name));
	h.config_len = htole32((uint32_t)clen);
	h.domain_config_len = htole32((uint32_t)dconf_len);
	r = sink.writev(sink.ctx, &magic, 1);
	if (r)
		return w->error = r;
	w->bytes = STREAM_MAGIC_LEN;
	r = stream_write_record(w, STREAM_REC_HEADER, 0, body, 2);
	if (r == 0 && dconf_len) {
		struct iovec dc = { (void *)dconf, dconf_len };

		r = stream_write_record(w, STREAM_REC_DOMAIN_CONFIG, 0, &dc, 1);
	}
	return r;
}

int stream_write_pages(struct stream_writer *w, struct codec *codec, const uint64_t *frames,
		       void *const *pages, unsigned n, void *scratch)
{
	struct stream_pages ph = { .count = htole32(n) };
	struct stream_page ents[STREAM_PAGES_MAX];
	struct iovec body[2 + STREAM_PAGES_MAX];
	size_t omax = codec_out_max(w->page_size);
	int k = 0, r;

	if (n == 0 || n > STREAM_PAGES_MAX)
		return -EINVAL;
	body[k++] = (struct iovec){ &ph, sizeof ph };
	body[k++] = (struct iovec){ ents, n * sizeof ents[0] };
	for (unsigned i = 0; i < n; i++) {
		uint32_t enc = STREAM_ENC_RAW, len = w->page_size;
		const void *data = pages[i];

		if (frames[i] >= w->nr_frames)
			return w->error = -ERANGE;
		if (i && frames[i] <= frames[i - 1])
			return w->error = -EINVAL; /* the reader wants them strictly increasing */
		if (codec)
			enc = codec_encode_ref(codec, frames[i], pages[i], (char *)scratch + i * omax,
					       &len, &data);
		ents[i] = (struct stream_page){ .frame = htole64(frames[i]), .encoding = htole32(enc),
						.data_len = htole32(len) };
		if (len)
			body[k++] = (struct iovec){ (void *)data, len };
	}
	r = stream_write_record(w, STREAM_REC_PAGES, 0, body, k);
	if (r == 0)
		w->pages += n;
	return r;
}

int stream_write_zero_extent(struct stream_writer *w, uint64_t first, uint64_t count)
{
	struct stream_zero_extent z = { .first = htole64(first), .count = htole64(count) };
	struct iovec b = { &z, sizeof z };
	int r;

	if (!count || first >= w->nr_frames || count > w->nr_frames - first)
		return w->error = -ERANGE;
	r = stream_write_record(w, STREAM_REC_ZERO_EXTENT, 0, &b, 1);
	if (r == 0)
		w->zero_frames += count;
	return r;
}

int stream_write_postcopy(struct stream_writer *w, const struct bitmap *missing)
{
	uint64_t *le;
	int r = 0;

	if (missing->nbits != w->nr_frames)
		return w->error = -ERANGE;
	if (!(le = malloc(STREAM_POSTCOPY_FRAMES_MAX / 8)))
		return -ENOMEM;
	for (uint64_t first = 0; !r && first < w->nr_frames; first += STREAM_POSTCOPY_FRAMES_MAX) {
		uint64_t count = MIN(STREAM_POSTCOPY_FRAMES_MAX, w->nr_frames - first);
		uint64_t words = bitmap_words(count), any = 0;
		struct stream_postcopy p = { .first = htole64(first), .count = htole64(count) };
		struct iovec b[2] = { { &p, sizeof p }, { le, words * 8 } };

		for (uint64_t i = 0; i < words; i++) {
			uint64_t v = missing->w[first / 64 + i];

			any |= v;
			le[i] = htole64(v);
		}
		if (any)
			r = stream_write_record(w, STREAM_REC_POSTCOPY, 0, b, 2);
	}
	free(le);
	return r;
}

int stream_write_context(struct stream_writer *w, const void *blob, size_t len)
{
	struct iovec b = { (void *)blob, len };

	return stream_write_record(w, STREAM_REC_CONTEXT, 0, &b, 1);
}

int stream_write_ckpt(struct stream_writer *w, uint32_t type, uint64_t epoch, uint64_t token)
{
	struct stream_ckpt c = { .epoch = htole64(epoch), .token = htole64(token) };
	struct iovec b = { &c, sizeof c };
	int r;

	if (type != STREAM_REC_CKPT_BEGIN && type != STREAM_REC_CKPT_COMMIT)
		return -EINVAL;
	if (type == STREAM_REC_CKPT_COMMIT) {
		c.records = htole64(w->ckpt_records);
		c.digest = htole64(w->ckpt_digest);
	}
	r = stream_write_record(w, type, 0, &b, 1);
	w->ckpt_records = w->ckpt_digest = 0;
	return r;
}

int stream_write_end(struct stream_writer *w)
{
	struct stream_end e = {
		.records = htole64(w->records),
		.pages = htole64(w->pages),
		.zero_frames = htole64(w->zero_frames),
		.bytes = htole64(w->bytes),
	};
	struct iovec b = { &e, sizeof e };
	int r = stream_write_record(w, STREAM_REC_END, 0, &b, 1);

	if (r == 0)
		w->error = -EPIPE; /* nothing may follow END */
	return r;
}
