/* SPDX-License-Identifier: Apache-2.0 */
/* peers.c — the session configuration and the peer listener; see peers.h. */
#include "daemon/peers.h"

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/gate.h"
#include "daemon/job.h"
#include "daemon/migration.h"
#include "daemon/protection.h"
#include "session/greet.h"
#include "transport/tls.h"

static struct evconnlistener *listener;

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

/* Who this host is, and whether its certificate is about to expire. */
static void say_identity(void)
{
	char names[256];
	time_t until;

	tls_ctx_identity(D.peers.link.tls, names, sizeof names, &until);
	if (until && until < time(NULL))
		log_warn("TLS: this host's certificate %s expired: peers will refuse it", D.tls_cert);
	else if (until && until < time(NULL) + 30 * 86400)
		log_warn("TLS: this host's certificate %s expires within 30 days", D.tls_cert);
	log_info("TLS: this host is %s (%s); peers must chain to %s; guests accepted from %s",
		 names, D.tls_cert, D.tls_ca, strcmp(D.allow_from, "*") ? D.allow_from
					      : "any host with a certificate from that CA");
}

void peers_setup(void)
{
	struct tls_conf tc;
	char err[512];

	D.peers = (struct session_conf){ .link = { NULL, D.peer_timeout_ms }, .host = D.hostname,
					 .allow_from = D.allow_from, .caps = D.caps,
					 .channels = D.channels,
					 .peer_timeout_ms = D.peer_timeout_ms,
					 .handshake_timeout_ms = D.handshake_timeout_ms };
	if (D.plaintext) {
		log_warn("insecure-plaintext: migration traffic (whole guest memories) is neither "
			 "encrypted nor authenticated, and any host that reaches port %s may send "
			 "guests; use it only on a trusted network", D.listen);
		return;
	}
	tls_paths();
	tc = (struct tls_conf){ D.tls_ca, D.tls_cert, D.tls_key };
	if (tls_ctx_new(&tc, &D.peers.link.tls, err, sizeof err))
		fatal("TLS: %s (create them with `ferry certs init` and `ferry certs host %s`, "
		      "or run with insecure-plaintext on a trusted network)", err, D.hostname);
	say_identity();
}

int peers_reload_tls(void)
{
	struct tls_conf tc = { D.tls_ca, D.tls_cert, D.tls_key };
	char err[512];
	int r;

	if (D.plaintext)
		return 0;
	if ((r = tls_ctx_reload(D.peers.link.tls, &tc, err, sizeof err))) {
		log_error("TLS: reload: %s; the certificates loaded before stay in use", err);
		return r;
	}
	log_info("TLS: reloaded %s, %s and %s", D.tls_cert, D.tls_key, D.tls_ca);
	say_identity();
	return 0;
}


/* ---- the listener ---- */

/* What a peer asking about a job hears. */
static const char *resolve(void *ctx, const char *job)
{
	(void)ctx;
	return job_peer_state(job);
}

/* A peer opens a session: the engine its HELLO asks for takes it. */
static void open_session(void *ctx, struct session *s, const struct wire_hello *h)
{
	static const struct {
		enum wire_op op;
		void (*open)(void *ctx, struct session *s, const struct wire_hello *h);
	} engines[] = { { WIRE_OP_MIGRATE, migrate_in_open }, { WIRE_OP_PROTECT, standby_open } };

	for (size_t i = 0; i < ARRAY_SIZE(engines); i++)
		if (engines[i].op == h->op) {
			engines[i].open(ctx, s, h);
			return;
		}
	session_refuse(s, "%s does not serve this request", D.hostname);
	session_free(s);
}

static const struct session_handlers handlers = { NULL, resolve, open_session };

void peers_serve(struct greet *g)
{
	greet_serve(g, &handlers);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	(void)l, (void)arg;
	gate_accept(fd, sa, len);
}

void peers_listen(void)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICHOST }, *ai;
	char host[256], port[16];
	int r;

	if (parse_host_port(D.listen, WIRE_DEFAULT_PORT, host, sizeof host, port, sizeof port))
		fatal("listen: \"%s\" is not ADDR:PORT", D.listen);
	if ((r = getaddrinfo(host, port, &hints, &ai)))
		fatal("listen: %s: %s", D.listen, gai_strerror(r));
	listener = evconnlistener_new_bind(D.base, on_accept, NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
						   LEV_OPT_REUSEABLE,
					   1024, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (!listener)
		fatal("cannot listen on %s: %s", D.listen, strerror(errno));
}

void peers_stop(void)
{
	if (listener)
		evconnlistener_free(listener);
	listener = NULL;
	gate_stop();
}

void peers_free(void)
{
	tls_ctx_free(D.peers.link.tls);
	D.peers.link.tls = NULL;
}
