/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xen_blob.h — the Xen backend's two blobs, and how they are framed.
 *
 * The Xen backend hands the engines two opaque blobs: the domain config
 * (hv_ops.domain_config, the stream's DOMAIN_CONFIG record) and the context
 * (hv_ops.save_context, the stream's CONTEXT record). Both are a sequence of
 * records framed exactly as libxc's own migration stream frames its records
 * (tools/libs/guest/xg_sr_stream_format.h, struct xc_sr_rhdr):
 *
 *   record = u32 type, u32 length, body (length bytes), zero padding to 8
 *
 * little-endian. Types below 0x46000000 are libxc's own record types, whose
 * bodies are passed to the destination's libxc restore unchanged; the two
 * types from 0x46000000 ('F') are ferry's. What each blob may hold:
 *
 *   domain config: LIBXL_CONFIG (exactly one: the libxl domain configuration
 *                  as JSON, libxl_domain_config_to_json), X86_CPUID_POLICY
 *                  and X86_MSR_POLICY (at most one each)
 *   context:       X86_TSC_INFO, HVM_CONTEXT (exactly one), HVM_PARAMS (at
 *                  most one each), EMULATOR (QEMU's device state, at most one)
 *
 * docs/xen.md tells the whole story. The parser is fuzzed (fuzz_xen_blob).
 */
#ifndef FERRY_HV_XEN_BLOB_H
#define FERRY_HV_XEN_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* libxc's record types that ferry carries (xg_sr_stream_format.h). */
#define XREC_X86_TSC_INFO 0x00000008u
#define XREC_HVM_CONTEXT 0x00000009u
#define XREC_HVM_PARAMS 0x0000000au
#define XREC_X86_CPUID_POLICY 0x00000011u
#define XREC_X86_MSR_POLICY 0x00000012u
/* ferry's own. */
#define XREC_LIBXL_CONFIG 0x46000001u
#define XREC_EMULATOR 0x46000002u

#define XEN_BLOB_MAX (1u << 20)

struct xen_rec {
	uint32_t type;
	uint32_t len;
	const void *body;
};

enum xen_blob_kind { XEN_BLOB_DOMAIN_CONFIG, XEN_BLOB_CONTEXT };

/* The next record at *off: 1 and *rec (off moves past it), 0 at the end,
 * -EINVAL if the framing is broken (a length past the end, padding that
 * is not zero). */
int xen_blob_next(const void *blob, size_t len, size_t *off, struct xen_rec *rec);

/*
 * Check a whole blob of kind: its framing, which types it may hold and how
 * often, and the fixed sizes (X86_TSC_INFO is 24 bytes; HVM_PARAMS is a
 * count and as many 16-byte entries; a LIBXL_CONFIG is text ending in one
 * NUL). 0, or -EINVAL with a sentence in err.
 */
int xen_blob_check(enum xen_blob_kind kind, const void *blob, size_t len, char *err,
		   size_t errlen);

/* The first record of type in a (checked) blob, or NULL. */
const struct xen_rec *xen_blob_find(const void *blob, size_t len, uint32_t type,
				    struct xen_rec *rec);

/* A growing blob. */
struct xen_buf {
	uint8_t *p;
	size_t len, cap;
};
/* Append one record; -ENOMEM, -E2BIG past XEN_BLOB_MAX. */
int xen_buf_add(struct xen_buf *b, uint32_t type, const void *body, size_t len);
void xen_buf_free(struct xen_buf *b);

#endif
