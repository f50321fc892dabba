/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.c — TLS 1.3 channels over OpenSSL; see tls.h.
 *
 * An SSL object may not be used by two threads at once, but a channel has a
 * sender and a receiver. So the socket is non-blocking, every SSL call runs
 * under the channel's lock, and a call that must wait (WANT_READ /
 * WANT_WRITE) drops the lock and poll()s: the other direction goes on
 * meanwhile. TLS has no writev: pieces that lie back to back in memory (the
 * raw pages of a record) go to SSL_write as one, and small ones are
 * gathered into 64 KiB first (a record each would cost more). Under SSL a
 * buffering BIO collects the records of a send (256 KiB), so that a write(2)
 * carries 16 of them, not one: a 1 GiB move through two ferryd made 184k
 * syscalls, now 60k.
 */
#include "transport/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/mtime.h"
#include "common/util.h"
#include "transport/sock.h"
#include "transport/tcp.h"

#define WBUF_SIZE 65536
#define OUTBUF_SIZE (256 * 1024)

struct tls_ctx {
	pthread_mutex_t lock; /* guards the rest: tls_ctx_reload replaces it */
	SSL_CTX *ctx;
	char ca[256]; /* the CA file, for messages */
	char names[256];
	time_t not_after;
};

struct tls_chan {
	struct chan c;
	pthread_mutex_t lock; /* guards ssl */
	SSL *ssl;
	struct tls_ctx *tx;   /* for the handshake's messages */
	bool client;          /* we connected */
	bool heard;           /* connecting: the peer's first byte was looked at */
	bool plain;           /* ... and it was not TLS (first_read) */
	bool done;            /* the handshake is complete */
	/* The sender's. */
	unsigned char *wbuf;
	size_t wlen;
};

static struct tls_chan *tc_of(struct chan *c)
{
	return (struct tls_chan *)c;
}

/* OpenSSL's first queued error in words, and clear the queue. */
static void ssl_errstr(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", why ? why : e ? "unknown TLS error" : "");
	ERR_clear_error();
}

static bool is_ip(const char *s)
{
	unsigned char b[16];

	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* ---- the certificate's names ---- */

static void cert_names(X509 *x, char *buf, size_t len)
{
	GENERAL_NAMES *gens = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char ip[INET6_ADDRSTRLEN] = "";
		const char *s = NULL;

		if (g->type == GEN_DNS) {
			s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
		} else if (g->type == GEN_IPADD) {
			int l = ASN1_STRING_length(g->d.iPAddress);

			if ((l == 4 || l == 16) &&
			    inet_ntop(l == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress),
				      ip, sizeof ip))
				s = ip;
		}
		if (s && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "", s);
	}
	GENERAL_NAMES_free(gens);
	if (!buf[0] && x)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
}

static time_t asn1_time(const ASN1_TIME *a)
{
	struct tm tm;

	if (!a || !ASN1_TIME_to_tm(a, &tm))
		return 0;
	return timegm(&tm);
}

/* ---- context ---- */

/* A context from the files into t (its lock untouched); on failure t
 * holds nothing. */
static int build(const struct tls_conf *tc, struct tls_ctx *t, char *err, size_t errlen)
{
	STACK_OF(X509_NAME) *cas;
	char why[200];
	X509 *x;

#define BAD(...) \
	do { \
		ssl_errstr(why, sizeof why); \
		snprintf(err, errlen, __VA_ARGS__); \
		goto fail; \
	} while (0)
	if (!(t->ctx = SSL_CTX_new(TLS_method())))
		BAD("out of memory");
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
	/* AES-128-GCM first: as strong as needed here and the fastest with AES-NI. */
	SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
				 "TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	/* A peer that closes without close_notify is an end of data like any
	 * other: the stream and the messages on it carry their own ends. */
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* With read-ahead (on after the handshake), one recv() takes in many
	 * records, not one. */
	SSL_CTX_set_default_read_buffer_len(t->ctx, 256 * 1024);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* OpenSSL 3 says "unknown TLS error" for a file it cannot open. */
	for (const char *const *f = (const char *const[]){ tc->ca, tc->cert, tc->key, NULL }; *f;
	     f++) {
		if (access(*f, R_OK) != 0) {
			int e = errno;

			snprintf(err, errlen, "%s: %s", *f, strerror(e));
			SSL_CTX_free(t->ctx);
			t->ctx = NULL;
			return -e;
		}
	}
	if (SSL_CTX_load_verify_locations(t->ctx, tc->ca, NULL) != 1)
		BAD("CA certificate %s: %s", tc->ca, why[0] ? why : "cannot be read");
	if ((cas = SSL_load_client_CA_file(tc->ca)))
		SSL_CTX_set_client_CA_list(t->ctx, cas);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, tc->cert) != 1)
		BAD("certificate %s: %s", tc->cert, why[0] ? why : "cannot be read");
	if (SSL_CTX_use_PrivateKey_file(t->ctx, tc->key, SSL_FILETYPE_PEM) != 1)
		BAD("private key %s: %s", tc->key, why[0] ? why : "cannot be read");
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		BAD("private key %s does not belong to the certificate %s", tc->key, tc->cert);
#undef BAD
	snprintf(t->ca, sizeof t->ca, "%s", tc->ca);
	x = SSL_CTX_get0_certificate(t->ctx);
	cert_names(x, t->names, sizeof t->names);
	t->not_after = asn1_time(X509_get0_notAfter(x));
	return 0;
fail:
	SSL_CTX_free(t->ctx);
	t->ctx = NULL;
	return -EINVAL;
}

int tls_ctx_new(const struct tls_conf *tc, struct tls_ctx **out, char *err, size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof *t);
	int r;

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = build(tc, t, err, errlen))) {
		free(t);
		return r;
	}
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

int tls_ctx_reload(struct tls_ctx *t, const struct tls_conf *tc, char *err, size_t errlen)
{
	struct tls_ctx fresh = { 0 };
	SSL_CTX *old;
	int r;

	if ((r = build(tc, &fresh, err, errlen)))
		return r;
	pthread_mutex_lock(&t->lock);
	old = t->ctx;
	t->ctx = fresh.ctx;
	memcpy(t->ca, fresh.ca, sizeof t->ca);
	memcpy(t->names, fresh.names, sizeof t->names);
	t->not_after = fresh.not_after;
	pthread_mutex_unlock(&t->lock);
	/* Channels made from it hold their own references (SSL_new). */
	SSL_CTX_free(old);
	return 0;
}

void tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void tls_ctx_identity(struct tls_ctx *t, char *names, size_t len, time_t *not_after)
{
	pthread_mutex_lock(&t->lock);
	snprintf(names, len, "%s", t->names);
	if (not_after)
		*not_after = t->not_after;
	pthread_mutex_unlock(&t->lock);
}

/* ---- refusals in words ---- */

/* What a TLS alert about this host's certificate means, or NULL. */
static const char *alert_meaning(const char *why)
{
	static const struct {
		const char *alert, *means;
	} tab[] = {
		{ "unknown ca", "it was not issued by a CA the peer trusts" },
		{ "certificate expired", "it has expired, or is not valid yet, by the peer's clock" },
		{ "certificate required", "none was presented" },
		{ "bad certificate", "it does not name the host the peer asked for, or is otherwise "
				     "unacceptable" },
		{ "unsupported certificate", "it is not meant for TLS (key usage)" },
		{ "certificate revoked", "it has been revoked" },
	};

	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (strstr(why, tab[i].alert))
			return tab[i].means;
	return NULL;
}

/* A TLS alert peer sent (why: OpenSSL's reason, "... alert ...") in words. */
static void alert_error(const char *peer, const char *why, char *err, size_t errlen)
{
	const char *means = alert_meaning(why);

	if (means)
		snprintf(err, errlen, "%s refused this host's certificate: %s (%s)", peer, means, why);
	else
		snprintf(err, errlen, "%s ended the connection with a TLS alert (%s)", peer, why);
}

/* ---- I/O ---- */

/*
 * The failure of an SSL call after the handshake into c->err. In TLS 1.3 a
 * server checks the client's certificate after the client's handshake has
 * ended, so its refusal reaches the client only here, as an alert.
 */
static void io_error(struct tls_chan *t)
{
	char why[200];

	ssl_errstr(why, sizeof why);
	if (strstr(why, "alert"))
		alert_error(t->c.peer, why, t->c.err, sizeof t->c.err);
	else
		snprintf(t->c.err, sizeof t->c.err, "%s", why);
}

/*
 * The connection was reset or ended under an SSL call. If the peer said why
 * first, its alert may still wait in the socket's receive queue: a TLS 1.3
 * server refuses a client's certificate after the client's handshake has
 * ended, then closes, and the client's next write fails on the reset.
 * Peek (so that no data is taken from the receiver) to put it in c->err.
 */
static void reset_reason(struct tls_chan *t)
{
	size_t n;
	char b;

	ERR_clear_error();
	if (!SSL_peek_ex(t->ssl, &b, 1, &n) && SSL_get_error(t->ssl, 0) == SSL_ERROR_SSL)
		io_error(t);
	ERR_clear_error();
}

/*
 * Run one SSL call (write if wr) under the lock until it moves some bytes,
 * waiting outside the lock until deadline. 0 and *done, or -errno (c->err
 * says more for TLS failures).
 */
static int tls_io(struct tls_chan *t, bool wr, void *buf, size_t len, size_t *done,
		  uint64_t deadline)
{
	for (;;) {
		int ok, e, r, sys_errno;

		pthread_mutex_lock(&t->lock);
		ERR_clear_error();
		ok = wr ? SSL_write_ex(t->ssl, buf, len, done) : SSL_read_ex(t->ssl, buf, len, done);
		e = ok ? SSL_ERROR_NONE : SSL_get_error(t->ssl, 0);
		sys_errno = errno;
		if (e == SSL_ERROR_SSL)
			io_error(t);
		else if (e == SSL_ERROR_SYSCALL)
			reset_reason(t);
		pthread_mutex_unlock(&t->lock);
		switch (e) {
		case SSL_ERROR_NONE:
			return 0;
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			if ((r = sock_wait(t->c.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					   deadline)))
				return r;
			continue;
		case SSL_ERROR_ZERO_RETURN: /* close_notify: a clean end */
			return wr ? -EPIPE : -ENODATA;
		case SSL_ERROR_SYSCALL:
			if (sys_errno == EPIPE || sys_errno == ECONNRESET || sys_errno == 0)
				return wr ? -EPIPE : -ECONNRESET;
			return -sys_errno;
		default:
			return -EPROTO;
		}
	}
}

/*
 * Hand what the buffering BIO under SSL holds to the socket, waiting for
 * room until deadline. 0 or -errno.
 */
static int flush_out(struct tls_chan *t, uint64_t deadline)
{
	for (;;) {
		BIO *b;
		int ok, r;

		pthread_mutex_lock(&t->lock);
		b = SSL_get_wbio(t->ssl);
		ERR_clear_error();
		errno = 0;
		ok = BIO_flush(b) > 0;
		r = ok ? 0 : BIO_should_retry(b) ? -EAGAIN : errno ? -errno : -EPIPE;
		if (r && r != -EAGAIN)
			reset_reason(t); /* the peer may have said why (an alert) */
		pthread_mutex_unlock(&t->lock);
		if (r != -EAGAIN)
			return r == -ECONNRESET ? -EPIPE : r;
		if ((r = sock_wait(t->c.fd, POLLOUT, deadline)))
			return r;
	}
}

static int flush_wbuf(struct tls_chan *t, uint64_t deadline)
{
	size_t off = 0, n;
	int r;

	while (off < t->wlen) {
		if ((r = tls_io(t, true, t->wbuf + off, t->wlen - off, &n, deadline)))
			return r;
		off += n;
	}
	t->wlen = 0;
	return 0;
}

/* Write len bytes at p straight through TLS (no gathering copy). */
static int write_direct(struct tls_chan *t, const unsigned char *p, size_t len, uint64_t deadline)
{
	size_t n;
	int r;

	while (len) {
		if ((r = tls_io(t, true, (void *)p, len, &n, deadline)))
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * Pieces that follow each other in memory are one run (raw pages read
 * into one buffer are); a run of DIRECT_MIN or more goes to SSL_write as it
 * is, smaller ones are gathered first.
 */
#define DIRECT_MIN (16 * 1024)

static int tls_send(struct chan *c, const struct iovec *iov, int n, int timeout_ms)
{
	struct tls_chan *t = tc_of(c);
	uint64_t deadline = sock_deadline(c, timeout_ms);
	int r;

	if (timeout_ms == 0)
		deadline = mono_ns() + 50 * NSEC_PER_MSEC; /* best effort: a short wait at most */
	for (int i = 0; i < n;) {
		const unsigned char *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		for (i++; i < n && (const unsigned char *)iov[i].iov_base == p + left; i++)
			left += iov[i].iov_len;
		if (left >= DIRECT_MIN) {
			if ((r = flush_wbuf(t, deadline)) || (r = write_direct(t, p, left, deadline)))
				return r;
			continue;
		}
		while (left) {
			size_t k = MIN(left, WBUF_SIZE - t->wlen);

			memcpy(t->wbuf + t->wlen, p, k);
			t->wlen += k;
			p += k;
			left -= k;
			if (t->wlen == WBUF_SIZE && (r = flush_wbuf(t, deadline)))
				return r;
		}
	}
	if ((r = flush_wbuf(t, deadline)))
		return r;
	return flush_out(t, deadline);
}

static int tls_recv(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	struct tls_chan *t = tc_of(c);
	uint64_t deadline = sock_deadline(c, timeout_ms);
	size_t got = 0, n;
	int r;

	while (got < len) {
		if ((r = tls_io(t, false, (char *)buf + got, len - got, &n, deadline)))
			return r == -ENODATA && got ? -ECONNRESET : r;
		got += n;
	}
	return 0;
}

static ssize_t tls_recv_some(struct chan *c, void *buf, size_t len, int timeout_ms)
{
	size_t n;
	int r = tls_io(tc_of(c), false, buf, len, &n, sock_deadline(c, timeout_ms));

	return r == -ENODATA ? 0 : r ? r : (ssize_t)n;
}

static int tls_wait_in(struct chan *c, int wake_fd, int timeout_ms)
{
	struct tls_chan *t = tc_of(c);
	bool pending;

	pthread_mutex_lock(&t->lock);
	pending = SSL_has_pending(t->ssl);
	pthread_mutex_unlock(&t->lock);
	return sock_wait_in(c->fd, pending, wake_fd, timeout_ms);
}

static void tls_drain(struct chan *c, int timeout_ms)
{
	sock_drain(c->fd, timeout_ms);
}

static void tls_close_send(struct chan *c)
{
	struct tls_chan *t = tc_of(c);

	pthread_mutex_lock(&t->lock);
	SSL_shutdown(t->ssl); /* close_notify, best effort: the socket is non-blocking */
	BIO_flush(SSL_get_wbio(t->ssl));
	pthread_mutex_unlock(&t->lock);
	shutdown(c->fd, SHUT_WR);
}

static void tls_shutdown(struct chan *c)
{
	shutdown(c->fd, SHUT_RDWR); /* wakes every poll(); the SSL calls then fail */
}

static void tls_free(struct chan *c)
{
	struct tls_chan *t = tc_of(c);

	SSL_free(t->ssl);
	close(c->fd);
	pthread_mutex_destroy(&t->lock);
	free(t->wbuf);
	free(t);
}

static const struct chan_ops tls_ops = {
	.kind = "tls",
	.send = tls_send,
	.recv = tls_recv,
	.recv_some = tls_recv_some,
	.wait_in = tls_wait_in,
	.drain = tls_drain,
	.close_send = tls_close_send,
	.shutdown = tls_shutdown,
	.free = tls_free,
};

/* ---- handshakes ---- */

/* The certificate the peer sent, even one that failed verification: a
 * client keeps the chain it received (a server does not: NULL there). */
static X509 *peer_leaf(SSL *ssl, bool client)
{
	STACK_OF(X509) *chain;
	X509 *x = SSL_get0_peer_certificate(ssl);

	if (x || !client)
		return x;
	chain = SSL_get_peer_cert_chain(ssl);
	return chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

static void fmt_time(const ASN1_TIME *a, char *buf, size_t len)
{
	time_t t = asn1_time(a);
	struct tm tm;

	if (!t || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "?");
}

/* Why this host refused the certificate peer presented (verify result v). */
static void verify_error(struct tls_ctx *tx, SSL *ssl, long v, const char *peer,
			 bool client, char *err, size_t errlen)
{
	const char *what = X509_verify_cert_error_string(v);
	X509 *x = peer_leaf(ssl, client);
	char names[120], when[40];

	switch (v) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		cert_names(x, names, sizeof names);
		snprintf(err, errlen, "%s presented a certificate that does not name it (it names %s)",
			 peer, names[0] ? names : "no host");
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		if (!x) {
			snprintf(err, errlen, "the certificate of %s %s", peer,
				 v == X509_V_ERR_CERT_HAS_EXPIRED ? "has expired"
				 : "is not valid yet (are the clocks in step?)");
		} else if (v == X509_V_ERR_CERT_HAS_EXPIRED) {
			fmt_time(X509_get0_notAfter(x), when, sizeof when);
			snprintf(err, errlen, "the certificate of %s expired on %s", peer, when);
		} else {
			fmt_time(X509_get0_notBefore(x), when, sizeof when);
			snprintf(err, errlen, "the certificate of %s is not valid until %s (are the "
				 "clocks in step?)", peer, when);
		}
		break;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		pthread_mutex_lock(&tx->lock);
		snprintf(err, errlen, "the certificate of %s was not issued by the CA in %s (%s)", peer,
			 tx->ca, what);
		pthread_mutex_unlock(&tx->lock);
		break;
	default:
		snprintf(err, errlen, "the certificate of %s was refused: %s", peer, what);
	}
}

/* Why a handshake failed, in words an operator can act on. */
static void handshake_error(struct tls_ctx *tx, SSL *ssl, int e, const char *peer,
			    bool client, char *err, size_t errlen)
{
	long v = SSL_get_verify_result(ssl);
	char why[200];

	ssl_errstr(why, sizeof why);
	if (v != X509_V_OK && v != X509_V_ERR_APPLICATION_VERIFICATION) {
		verify_error(tx, ssl, v, peer, client, err, errlen);
	} else if (strstr(why, "alert")) {
		alert_error(peer, why, err, errlen);
	} else if (strstr(why, "peer did not return a certificate")) {
		snprintf(err, errlen, "%s presented no certificate", peer);
	} else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN || !why[0] ||
		   strstr(why, "unexpected eof")) {
		snprintf(err, errlen, "%s closed the connection during the TLS handshake%s", peer,
			 client ? " (does it accept only plaintext, or not this host?)" : "");
	} else {
		snprintf(err, errlen, "TLS handshake with %s failed: %s%s", peer, why,
			 strstr(why, "wrong version number") || strstr(why, "packet length")
				 ? " (the peer does not speak TLS)" : "");
	}
}

/*
 * A server says something before TLS's first record only to refuse in its
 * own protocol (a listener that is full, a host that runs plaintext): a TLS
 * record from a server starts with 0x16 (handshake) or 0x15 (alert). So a
 * connecting channel reads through a filter that peeks at the server's first
 * byte before OpenSSL may take anything: if it is neither, nothing is read
 * (OpenSSL is told to retry) and the channel knows the answer is plaintext,
 * left whole in the socket for the caller.
 */
static int first_read(BIO *b, char *buf, size_t len, size_t *got)
{
	struct tls_chan *t = BIO_get_data(b);
	int r;

	BIO_clear_retry_flags(b);
	if (!t->heard) {
		unsigned char c;
		ssize_t n;

		do
			n = recv(t->c.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			BIO_set_retry_read(b);
			return 0;
		}
		t->heard = true; /* or the end: the socket BIO will say */
		if (n == 1 && c != 0x16 && c != 0x15) {
			t->plain = true;
			BIO_set_retry_read(b);
			return 0;
		}
	}
	r = BIO_read_ex(BIO_next(b), buf, len, got);
	BIO_copy_next_retry(b);
	return r;
}

static long first_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return BIO_next(b) ? BIO_ctrl(BIO_next(b), cmd, num, ptr) : 0;
}

static BIO_METHOD *first_method;

static void first_method_make(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "ferry first byte");

	if (m && (!BIO_meth_set_read_ex(m, first_read) || !BIO_meth_set_ctrl(m, first_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	first_method = m;
}

/* Put the filter in front of t's read side (connecting channels). */
static int watch_first_byte(struct tls_chan *t)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	BIO *f, *sock = SSL_get_rbio(t->ssl);

	pthread_once(&once, first_method_make);
	if (!first_method || !(f = BIO_new(first_method)))
		return -ENOMEM;
	if (!BIO_up_ref(sock)) {
		BIO_free(f);
		return -ENOMEM;
	}
	BIO_set_data(f, t);
	BIO_set_init(f, 1);
	SSL_set0_rbio(t->ssl, BIO_push(f, sock));
	return 0;
}

/* A channel over fd, its handshake not begun: as the connecting side when
 * host is set (the name its peer's certificate must carry), else as the
 * accepting side. fd is t's from here on (tls_free closes it). */
static int chan_new(struct tls_ctx *tx, int fd, const char *host, struct tls_chan **out,
		    char *err, size_t errlen)
{
	struct tls_chan *t = calloc(1, sizeof *t);
	int r;

	if (t && (t->wbuf = malloc(WBUF_SIZE))) {
		pthread_mutex_lock(&tx->lock);
		t->ssl = SSL_new(tx->ctx);
		pthread_mutex_unlock(&tx->lock);
	}
	if (!t || !t->wbuf || !t->ssl) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	if ((r = chan_init(&t->c, &tls_ops))) {
		snprintf(err, errlen, "the tls channel kind is incomplete");
		goto fail;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->tx = tx;
	t->c.fd = fd;
	if ((r = sock_prepare(fd))) {
		snprintf(err, errlen, "%s", strerror(-r));
		goto fail;
	}
	SSL_set_fd(t->ssl, fd);
	if (host) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);

		if (is_ip(host)) {
			X509_VERIFY_PARAM_set1_ip_asc(vp, host);
		} else {
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			X509_VERIFY_PARAM_set1_host(vp, host, 0);
			SSL_set_tlsext_host_name(t->ssl, host);
		}
		SSL_set_connect_state(t->ssl);
		snprintf(t->c.peer, sizeof t->c.peer, "%s", host);
		t->client = true;
		if ((r = watch_first_byte(t))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	} else {
		SSL_set_accept_state(t->ssl);
		sock_peer_name(fd, t->c.peer, sizeof t->c.peer);
	}
	*out = t;
	return 0;
fail:
	if (t) {
		SSL_free(t->ssl);
		free(t->wbuf);
		if (t->c.ops)
			pthread_mutex_destroy(&t->lock);
		free(t);
	}
	return r;
}

/* The handshake is done: read whole records at a time from here on, and
 * write them out many at a time (with one write(2) per 16 KiB record,
 * syscalls were a large part of what TLS cost over plaintext; tls_send
 * flushes before it returns, so what it was given is with the kernel, as
 * with tcp). An accepted channel's peer is named by its certificate. */
static int handshaken(struct tls_chan *t, char *err, size_t errlen)
{
	BIO *buf = BIO_new(BIO_f_buffer()), *sock = SSL_get_wbio(t->ssl);

	SSL_set_read_ahead(t->ssl, 1);
	if (!buf || !BIO_set_write_buffer_size(buf, OUTBUF_SIZE) || !BIO_up_ref(sock)) {
		BIO_free(buf);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	SSL_set0_wbio(t->ssl, BIO_push(buf, sock));
	if (!t->client) {
		char names[120], addr[64];

		snprintf(addr, sizeof addr, "%.63s", t->c.peer);
		cert_names(SSL_get0_peer_certificate(t->ssl), names, sizeof names);
		snprintf(t->c.peer, sizeof t->c.peer, "%s (%s)", names, addr);
	}
	t->done = true;
	return 0;
}

static int handshake_step(struct tls_chan *t, short *events, char *err, size_t errlen)
{
	int ok, e;

	ERR_clear_error();
	ok = SSL_do_handshake(t->ssl);
	if (ok == 1)
		return handshaken(t, err, errlen);
	e = SSL_get_error(t->ssl, ok);
	if (t->plain) {
		snprintf(err, errlen, "%s answered in plaintext", t->c.peer);
		return -EPROTONOSUPPORT;
	}
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		return -EAGAIN;
	}
	handshake_error(t->tx, t->ssl, e, t->c.peer, t->client, err, errlen);
	/* A peer that only went away may be tried again; a refusal may not. */
	return e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ? -ECONNRESET : -ECONNREFUSED;
}

/* Free a channel that never finished its handshake, leaving fd open. */
static void abandon(struct tls_chan *t)
{
	SSL_free(t->ssl);
	pthread_mutex_destroy(&t->lock);
	free(t->wbuf);
	free(t);
}

static int handshake(struct tls_ctx *tx, int fd, const char *host, int timeout_ms,
		     struct chan **out, char *err, size_t errlen)
{
	uint64_t deadline = mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 15000) * NSEC_PER_MSEC;
	struct tls_chan *t;
	short ev;
	int r;

	if ((r = chan_new(tx, fd, host, &t, err, errlen)))
		return r;
	while ((r = handshake_step(t, &ev, err, errlen)) == -EAGAIN)
		if (sock_wait(fd, ev, deadline)) {
			snprintf(err, errlen, "the TLS handshake with %s timed out", t->c.peer);
			r = -ETIMEDOUT;
			break;
		}
	if (r) {
		abandon(t);
		return r;
	}
	*out = &t->c;
	return 0;
}

int chan_tls_connect(struct tls_ctx *t, int fd, const char *host, int timeout_ms,
		     struct chan **out, char *err, size_t errlen)
{
	return handshake(t, fd, host, timeout_ms, out, err, errlen);
}

int chan_tls_accept(struct tls_ctx *t, int fd, int timeout_ms, struct chan **out, char *err,
		    size_t errlen)
{
	return handshake(t, fd, NULL, timeout_ms, out, err, errlen);
}

int chan_tls_accept_begin(struct tls_ctx *t, int fd, struct chan **out, char *err,
			  size_t errlen)
{
	struct tls_chan *c;
	int r = chan_new(t, fd, NULL, &c, err, errlen);

	if (!r)
		*out = &c->c;
	return r;
}

int chan_tls_accept_step(struct chan *c, short *events, char *err, size_t errlen)
{
	struct tls_chan *t = tc_of(c);

	if (c->ops != &tls_ops || t->client)
		return -EINVAL;
	return t->done ? 0 : handshake_step(t, events, err, errlen);
}

bool chan_tls_peer_is(const struct chan *c, const char *name)
{
	X509 *x;

	if (c->ops != &tls_ops)
		return false;
	x = SSL_get0_peer_certificate(((const struct tls_chan *)c)->ssl);
	if (!x)
		return false;
	if (is_ip(name))
		return X509_check_ip_asc(x, name, 0) == 1;
	return X509_check_host(x, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

enum certs_role chan_tls_peer_role(const struct chan *c)
{
	X509 *x;

	if (c->ops != &tls_ops)
		return CERTS_ROLE_HOST;
	x = SSL_get0_peer_certificate(((const struct tls_chan *)c)->ssl);
	return x ? certs_role_of(x) : CERTS_ROLE_UNKNOWN;
}

static int verify_later(int ok, X509_STORE_CTX *x)
{
	(void)ok, (void)x;
	return 1;
}

SSL *tls_ctx_ssl_new(struct tls_ctx *t)
{
	SSL *ssl;

	pthread_mutex_lock(&t->lock);
	ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->lock);
	if (ssl) {
		SSL_set_accept_state(ssl);
		/* Verified all the same; tls_ssl_peer reads the verdict. */
		SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_later);
	}
	return ssl;
}

int tls_ssl_peer(SSL *ssl, struct tls_peer *out)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	long v;

	memset(out, 0, sizeof *out);
	if (!x)
		return -ENOENT;
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out->cn,
				  (int)sizeof out->cn);
	cert_names(x, out->names, sizeof out->names);
	if ((v = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(out->why, sizeof out->why, "%s", X509_verify_cert_error_string(v));
		ERR_clear_error();
		return -EACCES;
	}
	if (X509_digest(x, EVP_sha256(), md, &mdlen))
		for (unsigned int i = 0; i < mdlen && 2 * i + 2 < sizeof out->sha256; i++)
			snprintf(out->sha256 + 2 * i, 3, "%02x", md[i]);
	out->role = certs_role_of(x);
	ERR_clear_error();
	return 0;
}

void chan_tls_peer_names(const struct chan *c, char *buf, size_t len)
{
	buf[0] = '\0';
	if (c->ops == &tls_ops && len)
		cert_names(SSL_get0_peer_certificate(((const struct tls_chan *)c)->ssl), buf, len);
}
