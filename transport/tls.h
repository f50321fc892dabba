/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.h — TLS 1.3 channels (OpenSSL) with mutual certificate authentication
 * (DESIGN.md §8): both sides present a certificate from the pool's CA; the
 * connecting side checks that the peer's certificate names the host it asked
 * for (a DNS or an IP subject alternative name); the accepting side learns
 * who connected and its caller decides whether that host is allowed.
 *
 * Only TLS 1.3; no session tickets or resumption; the handshake completes
 * before the caller says anything, so nothing is negotiable outside it.
 */
#ifndef FERRY_TRANSPORT_TLS_H
#define FERRY_TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "transport/certs.h"
#include "transport/chan.h"

struct tls_conf {
	const char *ca;   /* PEM: the CA certificate(s) peers must chain to */
	const char *cert; /* PEM: this host's certificate (and intermediates) */
	const char *key;  /* PEM: its private key */
};

struct tls_ctx; /* opaque; shared by any number of threads */

/* Load and check the files (the key must match the certificate). 0, or
 * -errno / -EINVAL with a sentence naming the file in err. */
int tls_ctx_new(const struct tls_conf *tc, struct tls_ctx **out, char *err, size_t errlen);
/* Load the files again (a rotated certificate, key or CA) and use them for
 * every handshake from now on; channels already made keep theirs. On
 * failure (as tls_ctx_new), t stays as it was. Any thread. */
int tls_ctx_reload(struct tls_ctx *t, const struct tls_conf *tc, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *t);

/* This host's certificate: its names ("host-a, 127.0.0.2") and its end of
 * validity (0 if unknown). */
void tls_ctx_identity(struct tls_ctx *t, char *names, size_t len, time_t *not_after);

/*
 * Handshake as the connecting side over a connected socket, within
 * timeout_ms; host is the name or address that was asked for, which the
 * peer's certificate must name. 0 and *out (which owns fd from then on), or
 * -errno with a sentence in err (the caller still owns and closes fd).
 */
int chan_tls_connect(struct tls_ctx *t, int fd, const char *host, int timeout_ms,
		     struct chan **out, char *err, size_t errlen);
/* The same as the accepting side. */
int chan_tls_accept(struct tls_ctx *t, int fd, int timeout_ms, struct chan **out, char *err,
		    size_t errlen);

/*
 * The accepting side's handshake, for a caller that runs its own event loop:
 * begin makes the channel (fd is its own from then on: chan_free closes it;
 * on failure fd stays the caller's); step advances the handshake without
 * blocking: 0 once it is complete, -EAGAIN and the poll events to wait for
 * (POLLIN or POLLOUT) before the next step, or -errno with err set
 * (-ECONNRESET: the peer went away; -ECONNREFUSED: a certificate or protocol
 * failure). chan_tls_connect instead fails with -EPROTONOSUPPORT, fd left
 * unread, when the server answers in plaintext (a refusal in its own
 * protocol).
 */
int chan_tls_accept_begin(struct tls_ctx *t, int fd, struct chan **out, char *err,
			  size_t errlen);
int chan_tls_accept_step(struct chan *c, short *events, char *err, size_t errlen);

/* Whether c is a TLS channel whose peer certificate names name (a host name,
 * or an IP address in text form). */
bool chan_tls_peer_is(const struct chan *c, const char *name);
/* The peer certificate's names, comma separated ("" if none / not TLS). */
void chan_tls_peer_names(const struct chan *c, char *buf, size_t len);
/* The role the peer's certificate carries (certs.h); CERTS_ROLE_HOST for a
 * channel that is not TLS (plaintext has no identity to judge). */
enum certs_role chan_tls_peer_role(const struct chan *c);

/*
 * For servers that run OpenSSL themselves (the remote API, over libevent):
 * a new SSL (OpenSSL's SSL *) made from t's current context (TLS 1.3, the
 * pool's CA) in server mode; NULL if out of memory. The caller owns it. It
 * asks the client for a certificate but completes the handshake whatever it
 * presents, so that the server can answer a refusal in its own protocol:
 * the server must ask tls_ssl_peer before it does anything for the client.
 */
struct ssl_st;
struct ssl_st *tls_ctx_ssl_new(struct tls_ctx *t);

/* Who is on the other end of a handshaken SSL. */
struct tls_peer {
	char cn[256];           /* the subject's CN */
	char names[256];        /* the SANs, comma separated, else the CN */
	char sha256[65];        /* the certificate's fingerprint, lowercase hex */
	enum certs_role role;
	char why[160];          /* on -EACCES: why it is not the pool's */
};
/* 0 and *out for a certificate that chains to the pool's CA; -ENOENT if the
 * peer presented none; -EACCES (why set, cn too) if it does not chain. */
int tls_ssl_peer(struct ssl_st *ssl, struct tls_peer *out);

#endif
