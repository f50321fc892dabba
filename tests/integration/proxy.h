/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy.h — a TCP forwarder for integration tests, between a migration's
 * source and its destination on loopback: it passes every connection on
 * to 127.0.0.1:dst_port and, if asked, flips one byte of what the source
 * sends (the connecting side's direction) to model a corrupting link, or
 * holds what the source sends on one connection back for a while, so that
 * one channel of a migration lags behind the others.
 */
#ifndef FERRY_TESTS_PROXY_H
#define FERRY_TESTS_PROXY_H

#include <stdbool.h>
#include <stdint.h>

struct proxy;

/*
 * Listen on an ephemeral port of 127.0.0.1 and forward to dst_port from a
 * thread of its own. flip_at > 0: in each connection, the byte at offset
 * flip_at (counted from 0) of the connecting side's direction is XORed
 * with 0x5a. NULL on failure (errno set).
 */
struct proxy *proxy_start(uint16_t dst_port, uint64_t flip_at);
struct proxy_opts {
	uint64_t flip_at;  /* > 0: flip the byte at this offset of the source's direction */
	int flip_conn;     /* in the connection accepted as number flip_conn (0 first); -1 all */
	unsigned delay_ms; /* pass the source's bytes on delay_ms after they arrived */
	int delay_conn;    /* on connection number delay_conn; -1 all */
};
struct proxy *proxy_start_opts(uint16_t dst_port, const struct proxy_opts *o);
uint16_t proxy_port(const struct proxy *p);
/* Connections accepted, bytes forwarded towards the destination, bytes
 * flipped so far. */
unsigned proxy_connections(const struct proxy *p);
uint64_t proxy_bytes_up(const struct proxy *p);
unsigned proxy_flips(const struct proxy *p);
/* Cut the link (cut true): from now on nothing passes either way on the
 * connections it has (silently: their peers find out by their own
 * timeouts), and new ones are accepted and reset. Mend it (false): those
 * connections are reset, new ones pass again. */
void proxy_cut(struct proxy *p, bool cut);
/* Stop the thread, close every connection (with a reset), free p. */
void proxy_stop(struct proxy *p);

#endif
