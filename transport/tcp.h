/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcp.h — plain TCP channels, and the TCP connect every kind over TCP
 * (tcp, tls) starts from.
 */
#ifndef FERRY_TRANSPORT_TCP_H
#define FERRY_TRANSPORT_TCP_H

#include <stddef.h>

#include "transport/chan.h"

/*
 * Plain TCP over a connected socket (taken over: freed with the channel).
 * Sets TCP_NODELAY: the last records of a stream and the commit messages are
 * small, and each would otherwise wait for the ACK of the one before.
 */
int chan_tcp_new(int fd, struct chan **out);

/*
 * Connect a TCP socket to "HOST[:PORT]" (defport if none) within
 * timeout_ms, trying each address. *host gets HOST (for certificate checks).
 * 0 and a blocking, CLOEXEC socket in *fd, or -errno with err set.
 */
int tcp_connect(const char *hostport, unsigned defport, int timeout_ms, int *fd, char *host,
		size_t hostlen, char *err, size_t errlen);

/* "ADDR:PORT" of a connected socket's peer into buf. */
void sock_peer_name(int fd, char *buf, size_t len);

#endif
