/* SPDX-License-Identifier: Apache-2.0 */
/* stream.c — per-type limits and names of the ferry stream; see stream.h. */
#include "checkpoint/stream.h"

#include "checkpoint/codec.h"

uint64_t stream_rec_max(uint32_t type, uint32_t page_size)
{
	switch (type) {
	case STREAM_REC_HEADER:
		return sizeof(struct stream_header) + STREAM_CONFIG_MAX;
	case STREAM_REC_PAGES:
		return sizeof(struct stream_pages) +
		       (uint64_t)STREAM_PAGES_MAX * (sizeof(struct stream_page) + codec_out_max(page_size));
	case STREAM_REC_ZERO_EXTENT:
		return sizeof(struct stream_zero_extent);
	case STREAM_REC_CONTEXT:
		return STREAM_CONTEXT_MAX;
	case STREAM_REC_DEVICE:
		return STREAM_DEVICE_MAX;
	case STREAM_REC_ITER_END:
		return sizeof(struct stream_iter_end);
	case STREAM_REC_CKPT_BEGIN:
	case STREAM_REC_CKPT_COMMIT:
		return sizeof(struct stream_ckpt);
	case STREAM_REC_END:
		return sizeof(struct stream_end);
	case STREAM_REC_DOMAIN_CONFIG:
		return STREAM_DOMAIN_CONFIG_MAX;
	case STREAM_REC_POSTCOPY:
		return sizeof(struct stream_postcopy) + STREAM_POSTCOPY_FRAMES_MAX / 8;
	default:
		return 0;
	}
}

const char *stream_rec_name(uint32_t type)
{
	static const char *const n[STREAM_REC_TYPE_MAX] = {
		[STREAM_REC_HEADER] = "HEADER",		[STREAM_REC_PAGES] = "PAGES",
		[STREAM_REC_ZERO_EXTENT] = "ZERO_EXTENT", [STREAM_REC_CONTEXT] = "CONTEXT",
		[STREAM_REC_DEVICE] = "DEVICE",		[STREAM_REC_ITER_END] = "ITER_END",
		[STREAM_REC_CKPT_BEGIN] = "CKPT_BEGIN", [STREAM_REC_CKPT_COMMIT] = "CKPT_COMMIT",
		[STREAM_REC_END] = "END",
		[STREAM_REC_DOMAIN_CONFIG] = "DOMAIN_CONFIG",
		[STREAM_REC_POSTCOPY] = "POSTCOPY",
	};
	return type < STREAM_REC_TYPE_MAX && n[type] ? n[type] : "unknown";
}

const char *stream_enc_name(uint32_t enc)
{
	static const char *const n[STREAM_ENC_MAX] = { "zero", "raw", "lz4", "delta" };
	return enc < STREAM_ENC_MAX ? n[enc] : "unknown";
}
