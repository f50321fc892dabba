/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xen_restore.h — an incoming Xen domain, built by the toolstack's own
 * restore from a stream that ferry writes as it receives.
 *
 * A domain made with libxl_domain_create_new is already built (firmware,
 * special pages, HVM params, xenstore, a started QEMU), and overwriting its
 * RAM would leave that inconsistent. The public way in is the one `xl
 * migrate-receive` takes: libxl_domain_create_restore, fed a libxl v2
 * stream (docs/specs/libxl-migration-stream.pandoc) whose LIBXC_CONTEXT
 * holds a libxc v2 stream, image format 3 (docs/specs/libxc-migration-
 * stream.pandoc). ferry translates its own records into that stream as they
 * arrive and writes it into a pipe that libxl reads on a thread of ours:
 *
 *   libxl header, LIBXC_CONTEXT,
 *     libxc image header, domain header (HVM), X86_CPUID_POLICY,
 *     X86_MSR_POLICY, STATIC_DATA_END          xen_restore_start
 *     PAGE_DATA*                               xen_restore_pages
 *     X86_TSC_INFO, HVM_CONTEXT, HVM_PARAMS, END
 *   EMULATOR_CONTEXT (QEMU upstream), END      xen_restore_finish
 *
 * libxl then completes the domain, paused, and returns its domid.
 */
#ifndef FERRY_HV_XEN_RESTORE_H
#define FERRY_HV_XEN_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include <libxl.h>

struct xen_restore;

/*
 * Start libxl's restore of cfg (taken over: disposed at xen_restore_free)
 * on a thread, and write the stream's start; dconf is the checked domain
 * config blob (its CPU policy records go into the stream's static data).
 * xen_version as xc_version(XENVER_version) gives it.
 */
int xen_restore_start(libxl_ctx *ctx, libxl_domain_config *cfg, const void *dconf,
		      size_t dconf_len, int xen_version, struct xen_restore **out);
/* n pages (4096 bytes each) as one or more PAGE_DATA records. */
int xen_restore_pages(struct xen_restore *rs, const uint64_t *frames, size_t n,
		      const void *const *bufs);
/*
 * The context blob (checked) ends the stream; wait for libxl to finish.
 * 0 and *domid (the domain, paused), or -EIO with libxl's error logged.
 */
int xen_restore_finish(struct xen_restore *rs, const void *ctx, size_t len, uint32_t *domid);
/* End the stream early, if not finished: libxl fails the restore and
 * destroys what it built. Waits for the thread. NULL is fine. */
void xen_restore_free(struct xen_restore *rs);

#endif
