/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rdma.h — RDMA channels (librdmacm, libibverbs; DESIGN.md §8), built when
 * rdma-core is present (HAVE_RDMA). The protocol — slots, credits, checks —
 * is transport/rdma_proto.h; transport/rdma.c is the only file that
 * includes the verbs headers.
 *
 * A channel is one reliable-connected queue pair. Each side's receive ring
 * (16 slots of 256 KiB) is registered for remote writes and named in the
 * connection's private data; data travels as RDMA WRITE WITH IMMEDIATE into
 * the peer's ring, is checked there before it is read, and never lands in
 * guest memory. Credits, CLOSE and ERROR travel as small SEND messages.
 *
 * RDMA carries no encryption or peer authentication: use it only between
 * hosts on a trusted fabric.
 *
 * Without an RDMA device every entry point fails with -ENODEV and "no RDMA
 * device" in err. Freeing a channel without chan_close_send() first is an
 * abrupt end for the peer (-ECONNRESET), not a clean one.
 */
#ifndef FERRY_TRANSPORT_RDMA_H
#define FERRY_TRANSPORT_RDMA_H

#include <stddef.h>

#include "transport/chan.h"

/* Connect to "HOST[:PORT]" (defport if none) within timeout_ms (0: no
 * bound). 0 and *out, or -errno with a sentence in err. */
int chan_rdma_connect(const char *hostport, unsigned defport, int timeout_ms, struct chan **out,
		      char *err, size_t errlen);

struct chan_rdma_listener; /* opaque; one accepting thread at a time */

/* Listen on "ADDR[:PORT]" (defport if none). 0 and *out, or -errno with err. */
int chan_rdma_listen(const char *hostport, unsigned defport, struct chan_rdma_listener **out,
		     char *err, size_t errlen);
/* A descriptor that is readable when a connection request may be waiting
 * (for an event loop); chan_rdma_accept() is what takes it. */
int chan_rdma_listener_fd(const struct chan_rdma_listener *l);
/*
 * Take the next connection request and complete it within timeout_ms (0: no
 * bound). A peer that does not speak ferry's RDMA protocol is rejected and
 * reported (-EPROTO). 0 and *out, or -errno with err.
 */
int chan_rdma_accept(struct chan_rdma_listener *l, int timeout_ms, struct chan **out, char *err,
		     size_t errlen);
/* Stop listening; NULL is fine. */
void chan_rdma_listener_free(struct chan_rdma_listener *l);

#endif
