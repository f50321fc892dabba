/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_certs.c — certificates made by transport/certs.c, used for real by
 * transport/tls.c: TLS 1.3 handshakes over loopback TCP, the client and the
 * server in two threads, that must succeed with the pool's certificates and
 * fail — with a sentence on both sides saying why — with another CA's, the
 * wrong name, an expired certificate, or none.
 *
 * What each end is told (the test prints them; ports vary):
 *
 *   server from another CA
 *     client: the certificate of server-a was not issued by the CA in DIR/ca.crt
 *             (unable to get local issuer certificate)
 *     server: 127.0.0.1:PORT refused this host's certificate: it was not issued
 *             by a CA the peer trusts (tlsv1 alert unknown ca)
 *   client from another CA
 *     client: server-a refused this host's certificate: it was not issued by a
 *             CA the peer trusts (tlsv1 alert unknown ca)
 *     server: the certificate of 127.0.0.1:PORT was not issued by the CA in
 *             DIR/ca.crt (unable to get local issuer certificate)
 *   asked for server-z, reached server-a
 *     client: server-z presented a certificate that does not name it (it names
 *             server-a, 127.0.0.1)
 *     server: 127.0.0.1:PORT refused this host's certificate: it does not name
 *             the host the peer asked for, or is otherwise unacceptable (sslv3
 *             alert bad certificate)
 *   expired client certificate
 *     client: server-a refused this host's certificate: it has expired, or is
 *             not valid yet, by the peer's clock (sslv3 alert certificate expired)
 *     server: the certificate of 127.0.0.1:PORT has expired
 *   expired server certificate
 *     client: the certificate of server-old expired on 2026-11-23 07:24:34 UTC
 *     server: 127.0.0.1:PORT refused this host's certificate: it has expired, or
 *             is not valid yet, by the peer's clock (sslv3 alert certificate expired)
 *   a client without a certificate
 *     client (OpenSSL's own): tlsv13 alert certificate required
 *     server: 127.0.0.1:PORT presented no certificate
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "transport/certs.h"
#include "transport/tls.h"

#define DAY 86400
#define TIMEOUT_MS 5000

static char dir[64]; /* the pool's files: ca.*, NAME.*; other/ holds a second CA's */
static time_t now;

/* ---- making the files ---- */

static void path_of(char *buf, size_t len, const char *sub, const char *name, const char *ext)
{
	snprintf(buf, len, "%s/%s%s.%s", dir, sub, name, ext);
}

/* NAME.crt / NAME.key under dir/sub, signed by the CA there. */
static void make_host(const char *sub, const char *name, const char *ip, time_t nb, time_t na)
{
	const char *ips[] = { ip };
	struct certs_host_req req = { name, ips, ip ? 1 : 0, nb, na };
	char ca_crt[256], ca_key[256], crt[256], key[256], err[256];
	struct certs_pair *ca, *p;

	path_of(ca_crt, sizeof ca_crt, sub, "ca", "crt");
	path_of(ca_key, sizeof ca_key, sub, "ca", "key");
	path_of(crt, sizeof crt, sub, name, "crt");
	path_of(key, sizeof key, sub, name, "key");
	assert_int_equal(certs_ca_load(ca_crt, ca_key, &ca, err, sizeof err), 0);
	assert_int_equal(certs_host_new(ca, &req, &p, err, sizeof err), 0);
	assert_int_equal(certs_pair_write(p, crt, key, false, err, sizeof err), 0);
	certs_pair_free(p);
	certs_pair_free(ca);
}

static void make_ca(const char *sub)
{
	char crt[256], key[256], err[256];
	struct certs_pair *ca;

	path_of(crt, sizeof crt, sub, "ca", "crt");
	path_of(key, sizeof key, sub, "ca", "key");
	assert_int_equal(certs_ca_new(NULL, now - DAY, now + 365 * DAY, &ca, err, sizeof err), 0);
	assert_int_equal(certs_pair_write(ca, crt, key, false, err, sizeof err), 0);
	certs_pair_free(ca);
}

static int setup(void **state)
{
	char other[80];

	(void)state;
	now = time(NULL);
	snprintf(dir, sizeof dir, "/tmp/ferry-certs-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(other, sizeof other, "%s/other", dir);
	if (mkdir(other, 0700))
		return -1;
	make_ca("");
	make_host("", "server-a", "127.0.0.1", now - DAY, now + 30 * DAY);
	make_host("", "client-b", NULL, now - DAY, now + 30 * DAY);
	make_host("", "client-old", NULL, now - 30 * DAY, now - DAY);
	make_host("", "server-old", "127.0.0.1", now - 30 * DAY, now - DAY);
	/* Another pool: same names, another CA. */
	make_ca("other/");
	make_host("other/", "server-a", "127.0.0.1", now - DAY, now + 30 * DAY);
	make_host("other/", "client-b", NULL, now - DAY, now + 30 * DAY);
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* A context trusting the CA in dir/ca_sub, presenting dir/sub/name.*. */
static struct tls_ctx *ctx_of(const char *ca_sub, const char *sub, const char *name)
{
	char ca[256], crt[256], key[256], err[256];
	struct tls_conf tc = { ca, crt, key };
	struct tls_ctx *t;

	path_of(ca, sizeof ca, ca_sub, "ca", "crt");
	path_of(crt, sizeof crt, sub, name, "crt");
	path_of(key, sizeof key, sub, name, "key");
	if (tls_ctx_new(&tc, &t, err, sizeof err))
		fail_msg("tls_ctx_new: %s", err);
	return t;
}

/* ---- one connection, two threads ---- */

/* One end of a connection and what happened to it. */
struct end {
	struct tls_ctx *ctx;
	const char *host; /* the client's: the name asked for; NULL for the server */
	int fd;
	int r;             /* the handshake's result */
	char err[256];     /* its sentence */
	int io;            /* the exchange after it: 0 or -errno */
	char io_err[256];  /* chan_error() of that */
	char peer_names[256];
	bool peer_is_client; /* server: chan_tls_peer_is(c, "client-b") */
	bool peer_is_server; /* server: chan_tls_peer_is(c, "server-a"), must not */
};

/* Handshake, then: the client sends "ping!" and reads "pong!"; the server
 * the other way round. */
static void *run_end(void *p)
{
	struct end *e = p;
	char buf[6] = "";
	struct iovec iov;
	struct chan *c;
	bool client = e->host != NULL;

	e->r = client ? chan_tls_connect(e->ctx, e->fd, e->host, TIMEOUT_MS, &c, e->err,
					 sizeof e->err)
		      : chan_tls_accept(e->ctx, e->fd, TIMEOUT_MS, &c, e->err, sizeof e->err);
	if (e->r) {
		close(e->fd);
		return NULL;
	}
	chan_tls_peer_names(c, e->peer_names, sizeof e->peer_names);
	e->peer_is_client = chan_tls_peer_is(c, "client-b");
	e->peer_is_server = chan_tls_peer_is(c, "server-a");
	iov = (struct iovec){ client ? "ping!" : "pong!", 5 };
	if (client && (e->io = chan_send(c, &iov, 1, TIMEOUT_MS)))
		goto out;
	if ((e->io = chan_recv(c, buf, 5, TIMEOUT_MS)))
		goto out;
	if (strcmp(buf, client ? "pong!" : "ping!"))
		e->io = -EBADMSG;
	else if (!client)
		e->io = chan_send(c, &iov, 1, TIMEOUT_MS);
out:
	if (e->io)
		snprintf(e->io_err, sizeof e->io_err, "%s", chan_error(c, e->io));
	chan_free(c);
	return NULL;
}

/* A connected pair of loopback TCP sockets: cli connects to srv. */
static void tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
	*cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*cli, (struct sockaddr *)&a, sizeof a), 0);
	*srv = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*srv >= 0);
	close(l);
}

/* Connect cli (asking for host) to srv; both contexts are freed. */
static void run_pair(struct tls_ctx *cli_ctx, const char *host, struct tls_ctx *srv_ctx,
		     struct end *cli, struct end *srv)
{
	pthread_t th;

	memset(cli, 0, sizeof *cli);
	memset(srv, 0, sizeof *srv);
	cli->ctx = cli_ctx;
	cli->host = host;
	srv->ctx = srv_ctx;
	tcp_pair(&cli->fd, &srv->fd);
	assert_int_equal(pthread_create(&th, NULL, run_end, srv), 0);
	run_end(cli);
	pthread_join(th, NULL);
	tls_ctx_free(cli_ctx);
	tls_ctx_free(srv_ctx);
}

/* The sentence a refused end of a connection got: its handshake's, or —
 * TLS 1.3 ends the client's handshake before the server has checked the
 * client's certificate — the one its first exchange failed with. */
static const char *why(const struct end *e)
{
	return e->r ? e->err : e->io_err;
}

static void show(const char *what, const struct end *cli, const struct end *srv)
{
	printf("    %s\n      client: %s\n      server: %s\n", what, why(cli), why(srv));
}

/* ---- the files themselves ---- */

static void test_files(void **state)
{
	char crt[256], key[256], err[256], serial[80];
	struct certs_info in;
	struct certs_pair *p;
	struct stat st;

	(void)state;
	path_of(crt, sizeof crt, "", "server-a", "crt");
	path_of(key, sizeof key, "", "server-a", "key");
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(crt, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	assert_int_equal(certs_inspect(crt, &in, err, sizeof err), 0);
	assert_string_equal(in.subject, "CN=server-a");
	assert_string_equal(in.issuer, "CN=" CERTS_CA_NAME);
	assert_int_equal(in.nr_names, 2);
	assert_string_equal(in.names[0], "server-a");
	assert_string_equal(in.names[1], "127.0.0.1");
	assert_false(in.is_ca);
	assert_int_equal(in.not_after, now + 30 * DAY);
	/* 128 random bits in hex: 32 digits, fewer when the first bytes happen to be 0. */
	assert_in_range(strlen(in.serial), 20, 32);
	snprintf(serial, sizeof serial, "%s", in.serial);

	path_of(crt, sizeof crt, "", "ca", "crt");
	assert_int_equal(certs_inspect(crt, &in, err, sizeof err), 0);
	assert_true(in.is_ca);
	assert_int_equal(in.nr_names, 0);
	assert_string_not_equal(in.serial, serial);

	/* Not overwritten unless forced; the error names the file. */
	path_of(key, sizeof key, "", "ca", "key");
	assert_int_equal(certs_ca_new("x", now, now + DAY, &p, err, sizeof err), 0);
	assert_int_equal(certs_pair_write(p, crt, key, false, err, sizeof err), -EEXIST);
	assert_non_null(strstr(err, crt));
	certs_pair_free(p);

	/* A host certificate is no CA; a key does not hold a certificate. */
	path_of(crt, sizeof crt, "", "server-a", "crt");
	path_of(key, sizeof key, "", "server-a", "key");
	assert_int_equal(certs_ca_load(crt, key, &p, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "is not a CA certificate"));
	assert_int_equal(certs_inspect(key, &in, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "holds no PEM certificate"));
}

/* Roles: a client certificate carries its role as its OU, for clientAuth
 * only, with no names; a host's has none (the role host); a role that is
 * not a client's is refused. */
static void test_roles(void **state)
{
	char ca_crt[256], ca_key[256], crt[256], key[256], err[256];
	struct certs_pair *ca, *p;
	struct certs_info in;
	enum certs_role r;

	(void)state;
	path_of(ca_crt, sizeof ca_crt, "", "ca", "crt");
	path_of(ca_key, sizeof ca_key, "", "ca", "key");
	assert_int_equal(certs_ca_load(ca_crt, ca_key, &ca, err, sizeof err), 0);
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "watcher" : "manager-1";

		r = k ? CERTS_ROLE_MONITOR : CERTS_ROLE_MANAGER;
		assert_int_equal(certs_client_new(ca, name, r, now - DAY, now + DAY, &p, err,
						  sizeof err), 0);
		path_of(crt, sizeof crt, "", name, "crt");
		path_of(key, sizeof key, "", name, "key");
		assert_int_equal(certs_pair_write(p, crt, key, true, err, sizeof err), 0);
		certs_pair_free(p);
		assert_int_equal(certs_inspect(crt, &in, err, sizeof err), 0);
		assert_int_equal(in.role, r);
		assert_int_equal(in.nr_names, 0);
		assert_false(in.is_ca);
		assert_non_null(strstr(in.subject, k ? "OU=ferry-monitor" : "OU=ferry-manager"));
	}
	path_of(crt, sizeof crt, "", "server-a", "crt");
	assert_int_equal(certs_inspect(crt, &in, err, sizeof err), 0);
	assert_int_equal(in.role, CERTS_ROLE_HOST);
	assert_int_equal(certs_client_new(ca, "h", CERTS_ROLE_HOST, now, now + DAY, &p, err,
					  sizeof err), -EINVAL);
	assert_int_equal(certs_client_new(ca, "bad name", CERTS_ROLE_MANAGER, now, now + DAY, &p,
					  err, sizeof err), -EINVAL);
	assert_int_equal(certs_client_role_parse("manager", &r), 0);
	assert_int_equal(r, CERTS_ROLE_MANAGER);
	assert_int_equal(certs_client_role_parse("host", &r), -EINVAL);
	assert_string_equal(certs_role_name(CERTS_ROLE_MONITOR), "monitor");
	certs_pair_free(ca);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(certs_dns_name_ok("host-a"));
	assert_true(certs_dns_name_ok("h1.rack2.example"));
	assert_false(certs_dns_name_ok(""));
	assert_false(certs_dns_name_ok("-a"));
	assert_false(certs_dns_name_ok("a-"));
	assert_false(certs_dns_name_ok("a..b"));
	assert_false(certs_dns_name_ok("a_b"));
	assert_false(certs_dns_name_ok("a/b"));
	assert_false(certs_dns_name_ok("10.0.0.1"));
	assert_true(certs_ip_ok("10.0.0.1"));
	assert_true(certs_ip_ok("fe80::1"));
	assert_false(certs_ip_ok("10.0.0.256"));
	assert_false(certs_ip_ok("host-a"));
}

/* ---- (a) the pool's certificates ---- */

static void test_mutual_ok(void **state)
{
	struct end cli, srv;

	(void)state;
	run_pair(ctx_of("", "", "client-b"), "server-a", ctx_of("", "", "server-a"), &cli, &srv);
	assert_int_equal(cli.r, 0);
	assert_int_equal(srv.r, 0);
	assert_int_equal(cli.io, 0);
	assert_int_equal(srv.io, 0);
	assert_true(srv.peer_is_client);
	assert_false(srv.peer_is_server);
	assert_string_equal(srv.peer_names, "client-b");
	assert_string_equal(cli.peer_names, "server-a, 127.0.0.1");

	/* By address: the certificate's IP SAN is what is checked. */
	run_pair(ctx_of("", "", "client-b"), "127.0.0.1", ctx_of("", "", "server-a"), &cli, &srv);
	assert_int_equal(cli.r, 0);
	assert_int_equal(srv.r, 0);
	assert_int_equal(cli.io, 0);
	assert_int_equal(srv.io, 0);
}

/* ---- (b) another CA's certificates ---- */

static void test_wrong_ca(void **state)
{
	struct end cli, srv;

	(void)state;
	/* The server's certificate is another CA's: the client refuses it. */
	run_pair(ctx_of("", "", "client-b"), "server-a", ctx_of("", "other/", "server-a"), &cli,
		 &srv);
	show("server from another CA", &cli, &srv);
	assert_int_equal(cli.r, -ECONNREFUSED);
	assert_int_not_equal(srv.r, 0);
	assert_non_null(strstr(cli.err, "the certificate of server-a was not issued by the "
				      "CA in "));
	assert_non_null(strstr(cli.err, dir));
	assert_non_null(strstr(srv.err, "refused this host's certificate: it was not issued by a "
				      "CA the peer trusts"));

	/* The client's certificate is another CA's: the server refuses it. */
	run_pair(ctx_of("", "other/", "client-b"), "server-a", ctx_of("", "", "server-a"), &cli,
		 &srv);
	show("client from another CA", &cli, &srv);
	assert_int_equal(srv.r, -ECONNREFUSED);
	assert_non_null(strstr(srv.err, "the certificate of 127.0.0.1:"));
	assert_non_null(strstr(srv.err, "was not issued by the CA in "));
	assert_non_null(strstr(why(&cli), "server-a refused this host's certificate: it was not "
				      "issued by a CA the peer trusts"));
}

/* ---- (c) the wrong name ---- */

static void test_name_mismatch(void **state)
{
	struct end cli, srv;

	(void)state;
	run_pair(ctx_of("", "", "client-b"), "server-z", ctx_of("", "", "server-a"), &cli, &srv);
	show("asked for server-z, reached server-a", &cli, &srv);
	assert_int_equal(cli.r, -ECONNREFUSED);
	assert_int_not_equal(srv.r, 0);
	assert_non_null(strstr(cli.err, "server-z presented a certificate that does not name it "
				      "(it names server-a, 127.0.0.1)"));
	assert_non_null(strstr(srv.err, "refused this host's certificate: it does not name the "
				      "host the peer asked for"));

	/* An address the certificate does not list. */
	run_pair(ctx_of("", "", "client-b"), "127.0.0.2", ctx_of("", "", "server-a"), &cli, &srv);
	show("asked for 127.0.0.2, reached server-a (127.0.0.1)", &cli, &srv);
	assert_int_equal(cli.r, -ECONNREFUSED);
	assert_non_null(strstr(cli.err, "127.0.0.2 presented a certificate that does not name it"));
}

/* ---- (d) expired certificates ---- */

static void test_expired(void **state)
{
	struct end cli, srv;

	(void)state;
	run_pair(ctx_of("", "", "client-old"), "server-a", ctx_of("", "", "server-a"), &cli, &srv);
	show("expired client certificate", &cli, &srv);
	assert_int_equal(srv.r, -ECONNREFUSED);
	assert_non_null(strstr(srv.err, "the certificate of 127.0.0.1:"));
	assert_non_null(strstr(srv.err, " has expired"));
	assert_non_null(strstr(why(&cli), "server-a refused this host's certificate: it has "
				      "expired"));

	run_pair(ctx_of("", "", "client-b"), "server-old", ctx_of("", "", "server-old"), &cli,
		 &srv);
	show("expired server certificate", &cli, &srv);
	assert_int_equal(cli.r, -ECONNREFUSED);
	assert_non_null(strstr(cli.err, "the certificate of server-old expired on "));
	assert_non_null(strstr(srv.err, "refused this host's certificate: it has expired"));
}

/* ---- (e) no certificate at all ---- */

/* Another program's TLS client (ferry's always has a certificate): trusts
 * the pool's CA, presents nothing. The reason it was refused into err. */
static void *bare_client(void *p)
{
	struct end *e = p;
	char ca[256], b[8];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	path_of(ca, sizeof ca, "", "ca", "crt");
	SSL_CTX_load_verify_locations(ctx, ca, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, e->fd);
	e->r = SSL_connect(ssl) == 1 ? 0 : -EPROTO;
	/* TLS 1.3: the refusal comes after the client's handshake. */
	if (!e->r && SSL_read(ssl, b, sizeof b) <= 0)
		e->io = -EPROTO;
	snprintf(e->err, sizeof e->err, "%s", ERR_reason_error_string(ERR_get_error()));
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(e->fd);
	return NULL;
}

static void test_no_client_cert(void **state)
{
	struct end cli = { 0 }, srv = { .ctx = ctx_of("", "", "server-a") };
	pthread_t th;

	(void)state;
	tcp_pair(&cli.fd, &srv.fd);
	assert_int_equal(pthread_create(&th, NULL, bare_client, &cli), 0);
	run_end(&srv);
	pthread_join(th, NULL);
	tls_ctx_free(srv.ctx);
	printf("    a client without a certificate\n      client (OpenSSL): %s\n      server: %s\n",
	       cli.err, srv.err);
	assert_int_equal(srv.r, -ECONNREFUSED);
	assert_non_null(strstr(srv.err, "presented no certificate"));
	assert_true(cli.r || cli.io);
	assert_non_null(strstr(cli.err, "certificate required"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),	      cmocka_unit_test(test_names),
		cmocka_unit_test(test_mutual_ok),     cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_name_mismatch), cmocka_unit_test(test_expired),
		cmocka_unit_test(test_no_client_cert), cmocka_unit_test(test_roles),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
