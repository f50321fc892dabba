/* SPDX-License-Identifier: Apache-2.0 */
/*
 * greet.h — an incoming peer connection from accept() to its checked HELLO,
 * without a thread of its own: the listener's event loop drives it
 * (daemon/gate.c), so a connection that never says who it is costs a
 * socket and a few KiB, not a thread (DESIGN.md §8).
 *
 * Steps, each without blocking: the peer's first byte tells TLS from
 * plaintext (a mismatch is refused in plaintext, which either kind of ferry
 * peer can read); the TLS handshake (the peer's certificate must chain to
 * the pool's CA); the HELLO frame, read to its last byte and no further;
 * then the checks that need no thread: the protocol version, allow-from
 * and the certificate's role, and the HELLO's fields. What passes is served
 * on a thread (greet_serve); what fails is refused where the protocol
 * allows it, and says how it failed (enum greet_fault) so that the
 * listener can tell a stranger's abuse from a pool host's refusal.
 *
 * Not thread-safe: one greet belongs to one thread at a time (the loop's
 * until greet_step says GREET_DONE, then greet_serve's).
 */
#ifndef FERRY_SESSION_GREET_H
#define FERRY_SESSION_GREET_H

#include <stdbool.h>
#include <stddef.h>

#include "session/session.h"

enum greet_state { GREET_WAIT, GREET_DONE, GREET_FAILED };

enum greet_fault {
	GREET_OK,
	GREET_CLOSED,    /* the peer went away before its HELLO */
	GREET_HANDSHAKE, /* the TLS handshake failed: no or a foreign certificate */
	GREET_GARBAGE,   /* not the ferry protocol, or a malformed HELLO frame */
	GREET_MISMATCH,  /* plaintext at a TLS host, or TLS at a plaintext one */
	GREET_REFUSED,   /* a peer that spoke the protocol, told no (version,
			  * allow-from, role, HELLO fields) */
	GREET_NOMEM,
};

struct greet;

/* A connection accepted on fd (taken over: greet_free closes it). NULL if
 * out of memory (fd is still the caller's). */
struct greet *greet_new(const struct session_conf *sc, int fd);
/*
 * Advance as far as the bytes that have arrived allow: GREET_WAIT with the
 * poll events (POLLIN / POLLOUT) to wait for before the next step;
 * GREET_DONE: the HELLO passed the checks, hand g to greet_serve;
 * GREET_FAILED: greet_fault and greet_error say why (the peer was told
 * when it could be); greet_free it.
 */
enum greet_state greet_step(struct greet *g, short *events);
enum greet_fault greet_fault(const struct greet *g);
const char *greet_error(const struct greet *g);
/* Whether the peer proved to be a pool host that may send guests here (a
 * host's certificate from the pool's CA, allowed from; any peer that said a
 * valid HELLO when both run plaintext). */
bool greet_trusted(const struct greet *g);
/* Serve what the HELLO asks (on a thread of its own: a migration runs on
 * it) and free g. */
void greet_serve(struct greet *g, const struct session_handlers *hd);
/* Close and free (NULL is fine). */
void greet_free(struct greet *g);

/* Tell a connection nothing has been read from yet why it is refused, in
 * plaintext (both kinds of ferry peer read it), without blocking; retry:
 * the refusal is about load. The caller closes fd. */
void greet_refuse_fd(int fd, const char *why, bool retry);
/* A name for a fault, for logs and counters ("handshake", "garbage"...). */
const char *greet_fault_name(enum greet_fault f);

#endif
