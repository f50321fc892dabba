/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sock.h — socket helpers the channel kinds share (transport/ only).
 * Channel sockets are non-blocking; every wait is a poll() to a deadline.
 */
#ifndef FERRY_TRANSPORT_SOCK_H
#define FERRY_TRANSPORT_SOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/chan.h"

/* The deadline (mono ns) of a wait: UINT64_MAX none, 0 do not wait. */
uint64_t sock_deadline(const struct chan *c, int timeout_ms);
/* poll fd for events until deadline: 0 ready, -ETIMEDOUT, -errno. */
int sock_wait(int fd, short events, uint64_t deadline);
/* chan_ops.wait_in over a socket; pending: data already buffered above it. */
int sock_wait_in(int fd, bool pending, int wake_fd, int timeout_ms);
/* Non-blocking and TCP_NODELAY. 0 or -errno. */
int sock_prepare(int fd);
/* chan_ops.drain over a socket: read and drop raw bytes (a failed TLS
 * session reads nothing any more, its socket still does). */
void sock_drain(int fd, int timeout_ms);

#endif
