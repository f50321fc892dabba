/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_xen_blob.c — libFuzzer target for the Xen backend's blobs
 * (hv/xen_blob.c): the domain config and the context arrive from a peer in
 * a stream's DOMAIN_CONFIG and CONTEXT records and are checked before
 * anything reaches libxl. The first byte picks the kind.
 *
 * Whatever arrives, the check must end with 0 or -EINVAL and a sentence;
 * a blob that passes must frame into records that lie inside it, and
 * writing those records again must give the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hv/xen_blob.h"
#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum xen_blob_kind kind;
	char err[256] = "";
	struct xen_buf again = { 0 };
	struct xen_rec r;
	size_t off = 0;
	int e;

	if (size < 1)
		return 0;
	kind = data[0] & 1 ? XEN_BLOB_CONTEXT : XEN_BLOB_DOMAIN_CONFIG;
	data++, size--;
	e = xen_blob_check(kind, data, size, err, sizeof err);
	CHECK(e == 0 || (e == -EINVAL && err[0]));
	if (e)
		return 0;
	while ((e = xen_blob_next(data, size, &off, &r)) > 0) {
		const uint8_t *b = r.body;

		CHECK(b >= data && b + r.len <= data + size);
		CHECK(xen_buf_add(&again, r.type, r.body, r.len) == 0);
	}
	CHECK(e == 0 && off == size);
	CHECK(again.len == size && (!size || memcmp(again.p, data, size) == 0));
	xen_buf_free(&again);
	return 0;
}
