/* SPDX-License-Identifier: Apache-2.0 */
/*
 * link.h — opening a channel between two hosts the way their configuration
 * says: TLS with mutual authentication (the default), or plain TCP when both
 * sides were started with insecure-plaintext. A mismatch is refused at once,
 * with a sentence, before anything else is said.
 */
#ifndef FERRY_TRANSPORT_LINK_H
#define FERRY_TRANSPORT_LINK_H

#include <stddef.h>

#include "transport/chan.h"
#include "transport/tls.h"

struct link_conf {
	struct tls_ctx *tls; /* NULL: plaintext */
	int timeout_ms;      /* connect and handshake; also the channel's timeout */
};

/* Connect to "HOST[:PORT]" (defport if none); with TLS the peer's
 * certificate must name HOST. 0 and *out, or -errno with err set; a TLS
 * peer that answered in plaintext (a refusal in its own protocol) is
 * -EPROTONOSUPPORT with *out a plaintext channel to read its answer from
 * (the caller frees it). */
int link_connect(const struct link_conf *lc, const char *hostport, unsigned defport,
		 struct chan **out, char *err, size_t errlen);

/*
 * Take an accepted socket. With TLS, a peer that starts in plaintext gets
 * -EPROTONOSUPPORT and fd stays the caller's (to answer in plaintext why, and
 * close); without TLS, a peer that starts a TLS handshake is refused
 * (-EPROTONOSUPPORT, fd is the caller's too). Any other failure: -errno, err
 * set, fd the caller's. On success *out owns fd.
 */
int link_accept(const struct link_conf *lc, int fd, struct chan **out, char *err,
		size_t errlen);

/*
 * The same without blocking, for a listener that runs an event loop: once
 * the peer's first byte has arrived (peeked, not read), begin gives a
 * channel (fd is its own from then on) or refuses as link_accept does; step
 * then advances a TLS handshake: 0 when done, -EAGAIN with the poll events
 * to wait for, or -errno with err set (-ECONNRESET: the peer went away).
 * A plaintext channel is done at once.
 */
int link_accept_begin(const struct link_conf *lc, int fd, unsigned char first,
		      struct chan **out, char *err, size_t errlen);
int link_accept_step(struct chan *c, short *events, char *err, size_t errlen);

#endif
