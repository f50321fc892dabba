/*
 * d_link.c — ferryd's links to other hosts: TLS with mutual authentication
 * by default (transport/link.h), the allow-from policy for incoming guests,
 * and the HELLO exchange every connection starts with.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "tools/daemon.h"

/* The TLS files: explicit settings, else PKI_DIR/ca.crt, HOSTNAME.crt, .key. */
static void tls_paths(void)
{
	if (!D.tls_ca[0])
		snprintf(D.tls_ca, sizeof D.tls_ca, "%.200s/ca.crt", D.pki_dir);
	if (!D.tls_cert[0])
		snprintf(D.tls_cert, sizeof D.tls_cert, "%.100s/%.100s.crt", D.pki_dir, D.hostname);
	if (!D.tls_key[0])
		snprintf(D.tls_key, sizeof D.tls_key, "%.100s/%.100s.key", D.pki_dir, D.hostname);
}

void link_setup(void)
{
	struct tls_conf tc;
	char err[512], names[256];
	time_t until;

	D.link.timeout_ms = D.peer_timeout_ms;
	if (D.plaintext) {
		log_warn("insecure-plaintext: migration traffic (whole guest memories) is neither "
			 "encrypted nor authenticated, and any host that reaches port %s may send "
			 "guests; use it only on a trusted network", D.listen);
		return;
	}
	tls_paths();
	tc = (struct tls_conf){ D.tls_ca, D.tls_cert, D.tls_key };
	if (tls_ctx_new(&tc, &D.link.tls, err, sizeof err))
		fatal("TLS: %s (create them with `ferry certs init` and `ferry certs host %s`, "
		      "or run with insecure-plaintext on a trusted network)", err, D.hostname);
	tls_ctx_identity(D.link.tls, names, sizeof names, &until);
	if (until && until < time(NULL))
		log_warn("TLS: this host's certificate %s expired: peers will refuse it", D.tls_cert);
	else if (until && until < time(NULL) + 30 * 86400)
		log_warn("TLS: this host's certificate %s expires within 30 days", D.tls_cert);
	log_info("TLS: this host is %s (%s); peers must chain to %s; guests accepted from %s",
		 names, D.tls_cert, D.tls_ca, strcmp(D.allow_from, "*") ? D.allow_from
					      : "any host with a certificate from that CA");
}

int peer_open(const char *peer, int timeout_ms, struct chan **out, char *err, size_t errlen)
{
	struct link_conf lc = D.link;

	lc.timeout_ms = timeout_ms;
	return link_connect(&lc, peer, WIRE_DEFAULT_PORT, out, err, errlen);
}

int peer_hello(struct chan *c, const struct wire_hello *h, int timeout_ms, json_t **reply,
	       char *err, size_t errlen)
{
	json_t *o = wire_hello_json(h);
	const char *why = NULL;
	uint32_t version;
	int ok = 0, r;
	char e[300];

	if (!o)
		return -ENOMEM;
	r = wire_send_frame(c, o);
	json_decref(o);
	if (r) {
		snprintf(err, errlen, "sending HELLO: %s", chan_error(c, r));
		return r;
	}
	if ((r = wire_recv_frame(c, timeout_ms, &version, reply, e, sizeof e))) {
		snprintf(err, errlen, "handshake: %s", e);
		return r;
	}
	if (json_unpack(*reply, "{s:b, s?s}", "ok", &ok, "error", &why) || !ok) {
		snprintf(err, errlen, "refused by %s: %s", h->op == WIRE_OP_RESOLVE ? "the peer"
			 : "the destination", why ? why : "no reason given");
		r = -EPERM;
	} else if (version != WIRE_PROTO_VERSION) {
		snprintf(err, errlen, "the destination speaks migration protocol %u, this host %d",
			 version, WIRE_PROTO_VERSION);
		r = -EPROTO;
	}
	if (r) {
		json_decref(*reply);
		*reply = NULL;
	}
	return r;
}

void peer_refuse(struct chan *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_warn("incoming from %s: refused: %s", c->peer, msg);
	if ((o = json_pack("{s:b, s:s}", "ok", 0, "error", msg))) {
		wire_send_frame(c, o);
		json_decref(o);
	}
}

void peer_identity(const struct chan *c, char *buf, size_t len)
{
	const char *colon;

	chan_tls_peer_names(c, buf, len);
	if (buf[0])
		return;
	/* Plaintext: the address without the port. */
	colon = strrchr(c->peer, ':');
	snprintf(buf, len, "%.*s", colon ? (int)(colon - c->peer) : (int)strlen(c->peer), c->peer);
}

bool peer_allowed(const struct chan *c, char *why, size_t len)
{
	const char *s = D.allow_from;

	if (D.plaintext || strcmp(D.allow_from, "*") == 0)
		return true;
	while (*s) {
		size_t n = strcspn(s, ", ");
		char name[256];

		if (n && n < sizeof name) {
			memcpy(name, s, n);
			name[n] = '\0';
			if (chan_tls_peer_is(c, name))
				return true;
		}
		s += n;
		s += strspn(s, ", ");
	}
	snprintf(why, len, "%s is not allowed to send guests to %s (allow-from: %s)", c->peer,
		 D.hostname, D.allow_from);
	return false;
}
