/* SPDX-License-Identifier: Apache-2.0 */
/* xen_restore.c — feed libxl's restore of an incoming domain; see xen_restore.h. */
#include "hv/xen_restore.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "hv/xen_blob.h"

/* The stream formats' constants (tools/libs/guest/xg_sr_stream_format.h,
 * tools/libs/light/libxl_sr_stream_format.h in Xen 4.17). */
#define LIBXL_IDENT 0x4c6962786c466d74ULL /* "LibxlFmt", big-endian */
#define LIBXL_STREAM_VERSION 2u
#define LIBXL_REC_END 0u
#define LIBXL_REC_LIBXC_CONTEXT 1u
#define LIBXL_REC_EMULATOR_CONTEXT 3u
#define LIBXL_EMULATOR_QEMU_UPSTREAM 2u
#define IHDR_MARKER 0xffffffffffffffffULL
#define IHDR_ID 0x58454E46u /* "XENF" */
#define IHDR_VERSION 3u
#define DHDR_TYPE_X86_HVM 2u
#define XREC_END 0u
#define XREC_PAGE_DATA 1u
#define XREC_STATIC_DATA_END 0x10u
#define PAGE_BATCH 512 /* within MAX_BATCH_SIZE (1024) of xg_save_restore.h, and IOV_MAX */

struct xen_restore {
	libxl_ctx *ctx;
	libxl_domain_config cfg;
	int rfd, wfd;
	pthread_t thread;
	bool running;
	int rc;            /* libxl's result */
	uint32_t domid;
	uint64_t pfns[PAGE_BATCH];
};

static void *restore_main(void *arg)
{
	struct xen_restore *rs = arg;
	libxl_domain_restore_params params;

	libxl_domain_restore_params_init(&params);
	params.checkpointed_stream = LIBXL_CHECKPOINTED_STREAM_NONE;
	params.stream_version = 2; /* 1 is the legacy (pre-4.7) stream */
	rs->rc = libxl_domain_create_restore(rs->ctx, &rs->cfg, &rs->domid, rs->rfd, -1, &params,
					     NULL, NULL);
	libxl_domain_restore_params_dispose(&params);
	/* A writer still writing hears EPIPE now, rather than blocking. */
	close_fd(&rs->rfd);
	return NULL;
}

static int put(struct xen_restore *rs, struct iovec *iov, int n)
{
	return rs->wfd < 0 ? -EPIPE : writev_full(rs->wfd, iov, n);
}

/* One libxc record: header, body parts, padding to 8. */
static int xrec(struct xen_restore *rs, uint32_t type, struct iovec *body, int nbody)
{
	static const uint8_t zero[8];
	struct iovec h_iov, pad_iov;
	uint32_t h[2];
	size_t len = 0;
	int e;

	for (int i = 0; i < nbody; i++)
		len += body[i].iov_len;
	h[0] = htole32(type);
	h[1] = htole32((uint32_t)len);
	h_iov = (struct iovec){ h, sizeof h };
	pad_iov = (struct iovec){ (void *)zero, -len & 7 };
	if ((e = put(rs, &h_iov, 1)) || (nbody && (e = put(rs, body, nbody))))
		return e;
	return pad_iov.iov_len ? put(rs, &pad_iov, 1) : 0;
}

/* One libxl record (the same framing, libxl's types). */
static int lrec(struct xen_restore *rs, uint32_t type, struct iovec *body, int nbody)
{
	return xrec(rs, type, body, nbody);
}

int xen_restore_start(libxl_ctx *ctx, libxl_domain_config *cfg, const void *dconf,
		      size_t dconf_len, int xen_version, struct xen_restore **out)
{
	struct xen_restore *rs = calloc(1, sizeof *rs);
	struct {
		uint64_t ident;
		uint32_t version, options;
	} lhdr = { htobe64(LIBXL_IDENT), htobe32(LIBXL_STREAM_VERSION), 0 };
	struct {
		uint64_t marker;
		uint32_t id, version;
		uint16_t options, res1;
		uint32_t res2;
	} ihdr = { IHDR_MARKER, htonl(IHDR_ID), htonl(IHDR_VERSION), htons(0), 0, 0 };
	struct {
		uint32_t type;
		uint16_t page_shift, res1;
		uint32_t xen_major, xen_minor;
	} dhdr = { htole32(DHDR_TYPE_X86_HVM), htole16(12), 0,
		   htole32(((uint32_t)xen_version >> 16) & 0xffff),
		   htole32((uint32_t)xen_version & 0xffff) };
	struct xen_rec r;
	size_t off = 0;
	int fds[2], e;

	if (!rs) {
		libxl_domain_config_dispose(cfg);
		return -ENOMEM;
	}
	rs->ctx = ctx;
	rs->cfg = *cfg;
	rs->rfd = rs->wfd = -1;
	if (pipe2(fds, O_CLOEXEC)) {
		e = -errno;
		goto fail;
	}
	rs->rfd = fds[0];
	rs->wfd = fds[1];
	if ((e = -pthread_create(&rs->thread, NULL, restore_main, rs)))
		goto fail;
	rs->running = true;
	{
		struct iovec l = { &lhdr, sizeof lhdr };

		/* The libxl header, then a LIBXC_CONTEXT record: it has no body;
		 * the libxc stream follows it up to that stream's END. */
		if ((e = put(rs, &l, 1)) || (e = lrec(rs, LIBXL_REC_LIBXC_CONTEXT, NULL, 0)))
			goto fail;
	}
	{
		struct iovec h[2] = { { &ihdr, sizeof ihdr }, { &dhdr, sizeof dhdr } };

		if ((e = put(rs, h, 2)))
			goto fail;
	}
	/* Static data: the CPU policy, as write_x86_cpu_policy_records does. */
	while (xen_blob_next(dconf, dconf_len, &off, &r) > 0) {
		struct iovec b = { (void *)r.body, r.len };

		if ((r.type == XREC_X86_CPUID_POLICY || r.type == XREC_X86_MSR_POLICY) &&
		    (e = xrec(rs, r.type, &b, 1)))
			goto fail;
	}
	if ((e = xrec(rs, XREC_STATIC_DATA_END, NULL, 0)))
		goto fail;
	*out = rs;
	return 0;
fail:
	xen_restore_free(rs);
	return e;
}

int xen_restore_pages(struct xen_restore *rs, const uint64_t *frames, size_t n,
		      const void *const *bufs)
{
	struct iovec iov[2 + PAGE_BATCH];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < PAGE_BATCH ? n - done : PAGE_BATCH;
		uint32_t hdr[2] = { htole32((uint32_t)k), 0 };
		int e;

		/* A pfn entry is the page's type (NOTAB: 0, a normal page with
		 * data) in the top bits and the pfn below them. */
		for (size_t i = 0; i < k; i++) {
			rs->pfns[i] = htole64(frames[done + i] & 0x000fffffffffffffULL);
			iov[2 + i] = (struct iovec){ (void *)bufs[done + i], 4096 };
		}
		iov[0] = (struct iovec){ hdr, sizeof hdr };
		iov[1] = (struct iovec){ rs->pfns, k * sizeof rs->pfns[0] };
		if ((e = xrec(rs, XREC_PAGE_DATA, iov, (int)(2 + k))))
			return e;
		done += k;
	}
	return 0;
}

int xen_restore_finish(struct xen_restore *rs, const void *ctx, size_t len, uint32_t *domid)
{
	static const uint32_t order[] = { XREC_X86_TSC_INFO, XREC_HVM_CONTEXT, XREC_HVM_PARAMS };
	struct xen_rec r;
	int e = 0;

	/* The end of the checkpoint, in x86_hvm_end_of_checkpoint's order. */
	for (size_t i = 0; !e && i < sizeof order / sizeof *order; i++)
		if (xen_blob_find(ctx, len, order[i], &r)) {
			struct iovec b = { (void *)r.body, r.len };

			e = xrec(rs, order[i], &b, 1);
		}
	if (!e)
		e = xrec(rs, XREC_END, NULL, 0);
	if (!e && xen_blob_find(ctx, len, XREC_EMULATOR, &r)) {
		uint32_t eh[2] = { htole32(LIBXL_EMULATOR_QEMU_UPSTREAM), 0 };
		struct iovec b[2] = { { eh, sizeof eh }, { (void *)r.body, r.len } };

		e = lrec(rs, LIBXL_REC_EMULATOR_CONTEXT, b, 2);
	}
	if (!e)
		e = lrec(rs, LIBXL_REC_END, NULL, 0);
	close_fd(&rs->wfd);
	if (rs->running) {
		pthread_join(rs->thread, NULL);
		rs->running = false;
	}
	if (e)
		return e;
	if (rs->rc) {
		log_error("xen: libxl could not restore the incoming domain (libxl error %d)",
			  rs->rc);
		return -EIO;
	}
	*domid = rs->domid;
	return 0;
}

void xen_restore_free(struct xen_restore *rs)
{
	if (!rs)
		return;
	close_fd(&rs->wfd);
	if (rs->running)
		pthread_join(rs->thread, NULL);
	else
		close_fd(&rs->rfd);
	libxl_domain_config_dispose(&rs->cfg);
	free(rs);
}
