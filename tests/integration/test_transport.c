/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_transport.c — the links between two real ferryd (A and B) on
 * loopback: TLS with mutual authentication, every way a link is refused,
 * several channels per migration (one of them held back by a proxy so that
 * records arrive out of order across channels), and the bandwidth limit
 * over several channels.
 *
 *  1 refusals: a certificate from another CA, one that does not name the
 *    host asked for, an expired one (either side), a host not in allow-from,
 *    plaintext against TLS and TLS against plaintext: A's job fails with a
 *    clear reason, B's log says why, the guest runs on A as before, nothing
 *    is left on B
 *  1b a silent TCP connection, and a TLS one that never sends its HELLO, are
 *    dropped at the handshake deadline (--handshake-timeout-ms 500), not at
 *    the peer timeout (15 s); a migration then completes as ever
 *  2 ferry certs init / host / show make a PKI two daemons migrate with
 *  3 dirtier guests over 2 to 4 channels, one channel delayed by 20-50 ms,
 *    verify every time; channels agreed as the smaller offer
 *  4 --bandwidth over 2 channels: the throughput holds the limit
 *  5 SIGHUP: B's certificate is rotated while a (bandwidth-limited)
 *    migration into B runs: new handshakes see the new certificate at once,
 *    the migration under way completes; a changed live setting applies, one
 *    that needs a restart is said to; rotating back works the same way
 *
 * Environment as test_ferryd (FERRY_TEST_ROUNDS, FERRY_TEST_ONLY, ...).
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"

static struct td A, B;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

/* The whole of a file (caller frees); "" if it cannot be read. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (f) {
		fseek(f, 0, SEEK_END);
		len = (size_t)ftell(f);
		rewind(f);
		buf = calloc(1, len + 1);
		if (buf && fread(buf, 1, len, f) != len)
			buf[0] = '\0';
		fclose(f);
	}
	return buf ? buf : calloc(1, 1);
}

/* Write text as the file to (replaced whole). */
static void copy_file_text(const char *text, const char *to)
{
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	char *b = slurp(from);

	copy_file_text(b, to);
	free(b);
}

/* A PKI dir holding the group CA's certificate and a certificate for name
 * made by the group CA with the given IP and validity. */
static const char *pki_variant(const char *tag, const char *name, const char *ip, time_t nb,
			       time_t na)
{
	static char dirs[8][300];
	static unsigned next;
	char *d = dirs[next++ % 8], from[400], to[400];

	snprintf(d, sizeof dirs[0], "%s/pki-%s", td_base(), tag);
	assert_int_equal(mkdir_p(d, 0700), 0);
	td_make_cert(td_pki(), d, name, ip, nb, na);
	snprintf(from, sizeof from, "%s/ca.crt", td_pki());
	snprintf(to, sizeof to, "%s/ca.crt", d);
	copy_file(from, to);
	return d;
}

/* Restart d with its (changed) transport settings. */
static void restart(struct td *d)
{
	if (d->pid)
		td_term(d, 5000);
	td_start(d, NULL);
}

struct refusal {
	const char *what;
	const char *const *a_words; /* in A's job error (any of) */
	const char *const *b_words; /* in B's log (any of) */
};

/*
 * Migrate vm from A to B, which must fail with a reason naming one of
 * r->a_words, with B's log saying one of r->b_words; the guest must run on A
 * as before and nothing may be left on B.
 */
static void expect_refused(const struct refusal *r, const char *vm, bool print)
{
	char *id = td_migrate(&A, vm, B.port, NULL), *log;
	json_t *job = td_wait_job(&A, id, NULL, 30000);
	uint64_t until = mono_ns() + 3 * NSEC_PER_SEC;
	bool b_said;

	if (strcmp(td_jstr(job, "state"), "failed") != 0)
		fail_msg("%s: the migration should fail, it is %s: %s", r->what,
			 td_jstr(job, "state"), dumps(job));
	if (!contains_any(td_jstr(job, "error"), r->a_words))
		fail_msg("%s: A's error does not say why: \"%s\"", r->what, td_jstr(job, "error"));
	/* B logs its side of it as it happens. */
	do {
		log = slurp(B.log);
		b_said = contains_any(log, r->b_words);
		if (!b_said)
			h_sleep_ms(50);
		free(b_said ? NULL : log);
	} while (!b_said && mono_ns() < until);
	if (!b_said)
		fail_msg("%s: B's log (%s) does not say why (none of \"%s\", ...)", r->what, B.log,
			 r->b_words[0]);
	if (print) {
		/* B's line: the last line naming one of the words. */
		char *line = NULL;

		for (char *p = strtok(log, "\n"); p; p = strtok(NULL, "\n"))
			if (contains_any(p, r->b_words))
				line = p;
		print_message("%-32s A: %s\n%-32s B: %s\n", r->what, td_jstr(job, "error"), "",
			      line ? line : "?");
	}
	free(log);
	json_decref(job);
	assert_intact(&A, vm, true);
	assert_absent(&B, vm, 5000);
	free(id);
}

/* 1. Every way a link between two hosts is refused. */
static void test_refusals(void **state)
{
	static const char *const w_ca[] = { "not issued by", "unknown ca",
					    "unable to get local issuer", NULL };
	static const char *const w_name[] = { "does not name", NULL };
	static const char *const w_bad[] = { "bad certificate", "does not name", "refused", NULL };
	static const char *const w_exp[] = { "expired", NULL };
	static const char *const w_allow[] = { "not allowed", NULL };
	static const char *const w_plain_a[] = { "accepts only TLS", NULL };
	static const char *const w_plain_b[] = { "spoke plaintext", NULL };
	static const char *const w_tls_a[] = { "closed the connection during the TLS handshake",
					       "plaintext", NULL };
	static const char *const w_tls_b[] = { "started TLS", NULL };
	unsigned rounds = h_rounds(20) > 1 ? 2 : 1;
	time_t now = time(NULL);
	char ca2[300];
	const char *p_ca2, *p_name, *p_exp_a, *p_exp_b;

	(void)state;
	td_test_begin("x01-refusals");
	/* The variants: B from another CA (which it also trusts alone), B
	 * naming 127.0.0.9 only, A and B expired yesterday. */
	snprintf(ca2, sizeof ca2, "%s/pki-ca2", td_base());
	td_make_ca(ca2);
	p_ca2 = ca2;
	td_make_cert(ca2, ca2, "B", "127.0.0.1", now - 3600, now + 86400);
	p_name = pki_variant("name", "B", "127.0.0.9", now - 3600, now + 86400);
	p_exp_a = pki_variant("exp-a", "A", "127.0.0.1", now - 10 * 86400, now - 86400);
	p_exp_b = pki_variant("exp-b", "B", "127.0.0.1", now - 10 * 86400, now - 86400);
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
	for (unsigned r = 0; r < rounds; r++) {
		const struct {
			struct refusal rf;
			const char *a_pki, *b_pki, *b_allow;
			bool a_plain, b_plain;
		} cases[] = {
			{ { "B's certificate from another CA", w_ca, w_ca }, NULL, p_ca2, NULL, false,
			  false },
			{ { "B's certificate names 127.0.0.9", w_name, w_bad }, NULL, p_name, NULL,
			  false, false },
			{ { "A's certificate expired", w_exp, w_exp }, p_exp_a, NULL, NULL, false,
			  false },
			{ { "B's certificate expired", w_exp, w_exp }, NULL, p_exp_b, NULL, false,
			  false },
			{ { "A not in B's allow-from", w_allow, w_allow }, NULL, NULL, "C,D", false,
			  false },
			{ { "plaintext A, TLS B", w_plain_a, w_plain_b }, NULL, NULL, NULL, true,
			  false },
			{ { "TLS A, plaintext B", w_tls_a, w_tls_b }, NULL, NULL, NULL, false, true },
		};

		for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
			A.pki_dir = cases[k].a_pki;
			A.plaintext = cases[k].a_plain;
			B.pki_dir = cases[k].b_pki;
			B.plaintext = cases[k].b_plain;
			B.allow_from = cases[k].b_allow;
			restart(&A);
			restart(&B);
			td_create(&A, "x1", MEM, 1, "dirtier:ws=16M,rate=8");
			td_wait_running(&A, "x1", 5000);
			expect_refused(&cases[k].rf, "x1", r == 0);
			td_destroy(&A, "x1");
		}
		/* And with everything right again, it moves. */
		A.pki_dir = B.pki_dir = NULL;
		A.plaintext = B.plaintext = false;
		B.allow_from = "A";
		restart(&A);
		restart(&B);
		td_create(&A, "x1", MEM, 1, "dirtier:ws=16M,rate=8");
		td_wait_running(&A, "x1", 5000);
		json_decref(move_ok(&A, &B, "x1"));
		td_destroy(&B, "x1");
		B.allow_from = NULL;
		td_assert_quiet(&A);
		td_assert_quiet(&B);
	}
	passed();
}

/* 2. ferry certs makes a PKI that two daemons use. */
static void test_certs_cli(void **state)
{
	char dir[300], crt[320], *out = NULL;
	json_t *o, *job;

	(void)state;
	td_test_begin("x02-certs-cli");
	snprintf(dir, sizeof dir, "%s/x02-certs-cli/pki", td_base());
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	assert_int_equal(td_cli(&A, NULL, "certs", "init", "--dir", dir, NULL), 0);
	/* Not twice without --force. */
	assert_int_not_equal(td_cli(&A, NULL, "certs", "init", "--dir", dir, NULL), 0);
	assert_int_equal(td_cli(&A, NULL, "certs", "host", "A", "--ip", "127.0.0.1", "--dir", dir,
				NULL), 0);
	assert_int_equal(td_cli(&A, NULL, "certs", "host", "B", "--ip", "127.0.0.1", "--dir", dir,
				NULL), 0);
	snprintf(crt, sizeof crt, "%s/B.crt", dir);
	assert_int_equal(td_cli(&A, &out, "certs", "show", crt, "--json", NULL), 0);
	o = json_loads(out, 0, NULL);
	if (!o || !strstr(out, "127.0.0.1") || !strstr(out, "\"B\""))
		fail_msg("ferry certs show --json: %s", out);
	json_decref(o);
	free(out);
	A.pki_dir = B.pki_dir = dir;
	td_start(&A, NULL);
	td_start(&B, NULL);
	td_create(&A, "x2", MEM, 1, "dirtier:ws=16M,rate=8");
	td_wait_running(&A, "x2", 5000);
	job = move_ok(&A, &B, "x2");
	if (strcmp(td_jstr(job, "transport"), "tls") != 0)
		fail_msg("the job should say transport tls: %s", dumps(job));
	json_decref(job);
	td_destroy(&B, "x2");
	passed();
}

/* How long until the other end closes fd (ms; -1 if not within limit). */
static int ms_until_closed(int fd, int limit_ms)
{
	uint64_t t0 = mono_ns();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b[64];

	while (poll(&p, 1, limit_ms) == 1) {
		ssize_t n = read(fd, b, sizeof b);

		if (n <= 0)
			return (int)((mono_ns() - t0) / NSEC_PER_MSEC);
	}
	return -1;
}

/* 2b. A connection that says nothing is dropped at the handshake's
 * deadline, not the peer timeout's (15 s here); a TLS connection that
 * never sends its HELLO too; migrations are untouched by it. */
static void test_handshake_deadline(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct chan *c;
	json_t *job;
	char *id, b;
	int fd, ms;

	(void)state;
	td_test_begin("x02b-handshake-deadline");
	td_init(&A, "A", 15000);
	td_init(&B, "B", 15000);
	B.extra_args[0] = "--handshake-timeout-ms";
	B.extra_args[1] = "500";
	B.extra_args[2] = NULL;
	td_start(&A, NULL);
	td_start(&B, NULL);
	/* Plain TCP, silent. */
	sa.sin_port = htons(B.port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ms = ms_until_closed(fd, 10000);
	close(fd);
	print_message("a silent connection was closed after %d ms\n", ms);
	if (ms < 400 || ms > 5000)
		fail_msg("a silent connection was closed after %d ms, want about 500", ms);
	/* TLS done, no HELLO: the same deadline. */
	c = td_peer_open(B.port, false);
	{
		uint64_t t0 = mono_ns();
		int r = chan_recv(c, &b, 1, 10000);

		ms = (int)((mono_ns() - t0) / NSEC_PER_MSEC);
		print_message("a TLS connection without a HELLO was closed after %d ms (%d)\n", ms,
			      r);
		if (r == 0 || ms > 5000)
			fail_msg("a TLS connection without a HELLO: %d after %d ms, want closed at "
				 "about 500", r, ms);
	}
	chan_free(c);
	/* A migration carries on as ever. */
	td_create(&A, "x2b", MEM, 1, "dirtier:ws=64M,rate=32");
	td_wait_running(&A, "x2b", 5000);
	id = td_migrate(&A, "x2b", B.port, NULL);
	job = td_wait_job(&A, id, NULL, 60000);
	if (strcmp(td_jstr(job, "state"), "completed") != 0)
		fail_msg("a migration with a 500 ms handshake deadline: %s", dumps(job));
	json_decref(job);
	free(id);
	td_verify_ok(&B, "x2b");
	td_test_passed();
}

/* 3. Several channels, one of them late. */
static void test_channels(void **state)
{
	unsigned rounds = h_rounds(20);
	int fa = 0, fb = 0;

	(void)state;
	td_test_begin("x03-channels");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	A.channels = B.channels = 4;
	td_start(&A, NULL);
	td_start(&B, NULL);
	for (unsigned r = 0; r < rounds; r++) {
		unsigned n = 2 + r % 3, late = (r / 3) % n, delay = 20 + 10 * (r % 4);
		struct proxy_opts po = { .delay_ms = delay, .delay_conn = (int)late,
					 .flip_conn = -1 };
		struct proxy *px = proxy_start_opts(B.port, &po);
		json_t *job, *bj;
		char *id;

		assert_non_null(px);
		td_create(&A, "x3", MEM, 2, "dirtier:ws=128M,rate=64");
		td_wait_running(&A, "x3", 5000);
		h_sleep_ms(500); /* let it populate part of its working set */
		/* A target it cannot meet: several passes, each ended on every
		 * channel, the late one's markers behind the others'. */
		id = td_migrate(&A, "x3", proxy_port(px), "s:i, s:i, s:i", "channels", (int)n,
				"downtime_ms", 1, "max_iters", 3);
		job = td_wait_job(&A, id, NULL, 60000);
		if (strcmp(td_jstr(job, "state"), "completed") != 0)
			fail_msg("round %u: %u channels, channel %u %u ms late: %s", r, n, late, delay,
				 dumps(job));
		if (td_jnum(job, "channels") != n || proxy_connections(px) != n)
			fail_msg("round %u: %u channels asked, the job says %.0f, the proxy saw %u",
				 r, n, td_jnum(job, "channels"), proxy_connections(px));
		wait_dest_running(&A, &B, "x3", job);
		td_verify_ok(&B, "x3");
		bj = td_job(&B, id);
		if (td_jnum(bj, "channels") != n || strcmp(td_jstr(bj, "state"), "completed"))
			fail_msg("round %u: B's side: %s", r, dumps(bj));
		if (r < 3)
			print_message("%u channels, channel %u %u ms late: %.0f passes, %.1f MiB, "
				      "downtime %.1f ms, verify ok\n", n, late, delay,
				      td_jnum(job, "stats.iterations") + 1,
				      td_jnum(job, "stats.bytes") / (1 << 20),
				      td_jnum(job, "stats.downtime_ms"));
		json_decref(bj);
		json_decref(job);
		proxy_stop(px);
		free(id);
		/* And back, directly. */
		id = td_migrate(&B, "x3", A.port, "s:i", "channels", (int)n);
		job = td_wait_job(&B, id, NULL, 60000);
		if (strcmp(td_jstr(job, "state"), "completed") != 0)
			fail_msg("round %u: back over %u channels: %s", r, n, dumps(job));
		wait_dest_running(&B, &A, "x3", job);
		td_verify_ok(&A, "x3");
		json_decref(job);
		free(id);
		td_destroy(&A, "x3");
		td_assert_quiet(&A);
		td_assert_quiet(&B);
		if (r == 0) {
			fa = fds_of(&A);
			fb = fds_of(&B);
		}
	}
	td_fd_record("channels", &A, fa, fds_of(&A));
	td_fd_record("channels", &B, fb, fds_of(&B));
	/* The destination's setting bounds what is agreed. */
	td_term(&B, 5000);
	B.channels = 3;
	td_start(&B, NULL);
	td_create(&A, "x3", MEM, 1, "dirtier:ws=16M,rate=8");
	td_wait_running(&A, "x3", 5000);
	{
		char *id = td_migrate(&A, "x3", B.port, "s:i", "channels", 8);
		json_t *job = td_wait_job(&A, id, NULL, 60000);

		if (strcmp(td_jstr(job, "state"), "completed") || td_jnum(job, "channels") != 3)
			fail_msg("8 channels offered to a host that takes 3: %s", dumps(job));
		json_decref(job);
		free(id);
	}
	td_verify_ok(&B, "x3");
	td_destroy(&B, "x3");
	td_check_fd_records(2);
	passed();
}

/* 4. --bandwidth holds over several channels. */
static void test_bandwidth(void **state)
{
	const double limit = 24 << 20;
	double worst_hi = 0, worst_lo = INFINITY;
	unsigned rounds = h_rounds(20) > 1 ? 3 : 1;

	(void)state;
	td_test_begin("x04-bandwidth");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	A.channels = B.channels = 2;
	td_start(&A, NULL);
	td_start(&B, NULL);
	for (unsigned r = 0; r < rounds; r++) {
		char *id;
		json_t *job;
		double tp;

		td_create(&A, "x4", MEM, 1, "fill:ws=64M");
		wait_filled(&A, "x4", 16384);
		id = td_migrate(&A, "x4", B.port, "s:I, s:i", "bandwidth", (json_int_t)limit,
				"channels", 2);
		job = td_wait_job(&A, id, NULL, 60000);
		if (strcmp(td_jstr(job, "state"), "completed") != 0)
			fail_msg("bandwidth-limited migration: %s", dumps(job));
		tp = td_jnum(job, "stats.throughput");
		worst_hi = MAX(worst_hi, tp / limit);
		worst_lo = MIN(worst_lo, tp / limit);
		/* 64 MiB at 24 MiB/s: ~2.7 s, so the first second's burst is
		 * part of the average; the unit test checks every window. */
		if (tp > limit * 1.05 || tp < limit * 0.80)
			fail_msg("round %u: throughput %.1f MiB/s at a limit of %.1f MiB/s", r,
				 tp / (1 << 20), limit / (1 << 20));
		json_decref(job);
		free(id);
		td_verify_ok(&B, "x4");
		td_destroy(&B, "x4");
	}
	print_message("throughput at a 24 MiB/s limit over 2 channels: %.3f to %.3f of it\n",
		      worst_lo, worst_hi);
	passed();
}


/* A TLS connection to 127.0.0.1:port as the test host T, asking for
 * 127.0.0.1: 0, or -errno with the reason in err. */
static int try_connect(uint16_t port, char *err, size_t errlen)
{
	struct chan *c;
	int r = td_peer_try_open(port, false, &c, err, errlen);

	if (!r)
		chan_free(c);
	return r;
}

/* Wait until d's log has text at least n times. */
static void wait_log(const struct td *d, const char *text, unsigned n)
{
	for (int i = 0; i < 500; i++) {
		char *b = slurp(d->log);
		unsigned k = 0;

		for (const char *p = b; (p = strstr(p, text)); p++)
			k++;
		free(b);
		if (k >= n)
			return;
		h_sleep_ms(10);
	}
	fail_msg("%s's log never said '%s' %u times", d->name, text, n);
}

static void test_reload(void **state)
{
	const time_t now = time(NULL);
	char crt[300], key[300], conf[300], err[400], *old_crt, *old_key;
	const char *rot;
	json_t *job;
	char *id;
	FILE *f;

	(void)state;
	td_test_begin("x05-reload");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	snprintf(conf, sizeof conf, "%s/ferryd.conf", B.dir);
	assert_non_null(f = fopen(conf, "we"));
	fprintf(f, "downtime-ms = 300\n");
	fclose(f);
	B.config = conf;
	td_start(&A, NULL);
	td_start(&B, NULL);
	snprintf(crt, sizeof crt, "%s/B.crt", td_pki());
	snprintf(key, sizeof key, "%s/B.key", td_pki());
	old_crt = slurp(crt);
	old_key = slurp(key);
	assert_int_equal(try_connect(B.port, err, sizeof err), 0);

	td_create(&A, "x5", MEM, 1, "fill:ws=64M");
	wait_filled(&A, "x5", 16384);
	/* 64 MiB at 24 MiB/s: under way for ~2.7 s. */
	id = td_migrate(&A, "x5", B.port, "s:I", "bandwidth", (json_int_t)(24 << 20));
	h_sleep_ms(500);

	/* Rotate B's certificate to one that names 127.0.0.9 instead; change a
	 * live setting and one that waits for a restart. */
	rot = pki_variant("rotated", "B", "127.0.0.9", now - 60, now + 86400);
	snprintf(err, sizeof err, "%s/B.crt", rot);
	copy_file(err, crt);
	snprintf(err, sizeof err, "%s/B.key", rot);
	copy_file(err, key);
	assert_non_null(f = fopen(conf, "we"));
	fprintf(f, "downtime-ms = 123\nlisten = 127.0.0.1:1\n");
	fclose(f);
	assert_int_equal(kill(B.pid, SIGHUP), 0);
	wait_log(&B, "TLS: reloaded", 1);
	if (try_connect(B.port, err, sizeof err) == 0 || !strstr(err, "127.0.0.1"))
		fail_msg("after the rotation a new handshake with B must see the new certificate "
			 "(which does not name 127.0.0.1): %s", err);
	if (!file_has(B.log, "listen = 127.0.0.1:1 takes effect at the next restart") ||
	    !file_has(B.log, "settings applied, 1 for the next restart, 0 refused"))
		fail_msg("B's log does not say what the reload applied");

	job = td_wait_job(&A, id, NULL, 60000);
	if (strcmp(td_jstr(job, "state"), "completed") != 0)
		fail_msg("the migration under way when B reloaded: %s", dumps(job));
	if (td_jnum(job, "stats.total_ms") < 1000)
		fail_msg("the migration was over before the reload (%.0f ms): nothing was shown",
			 td_jnum(job, "stats.total_ms"));
	json_decref(job);
	free(id);
	td_verify_ok(&B, "x5");

	/* The live setting: B's next migration's default target. */
	id = td_migrate(&B, "x5", A.port, NULL);
	job = td_wait_job(&B, id, NULL, 60000);
	if (td_jnum(job, "options.downtime_ms") != 123)
		fail_msg("downtime-ms reloaded as 123, the job runs with %.0f: %s",
			 td_jnum(job, "options.downtime_ms"), dumps(job));
	json_decref(job);
	free(id);

	/* Back to the old certificate, the same way. */
	copy_file_text(old_crt, crt);
	copy_file_text(old_key, key);
	assert_int_equal(kill(B.pid, SIGHUP), 0);
	wait_log(&B, "TLS: reloaded", 2);
	if (try_connect(B.port, err, sizeof err))
		fail_msg("after rotating back: %s", err);
	free(old_crt);
	free(old_key);
	td_destroy(&A, "x5");
	if (B.pid <= 0 || kill(B.pid, 0))
		fail_msg("B did not survive its reloads");
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_refusals, teardown),
		cmocka_unit_test_teardown(test_handshake_deadline, teardown),
		cmocka_unit_test_teardown(test_certs_cli, teardown),
		cmocka_unit_test_teardown(test_channels, teardown),
		cmocka_unit_test_teardown(test_bandwidth, teardown),
		cmocka_unit_test_teardown(test_reload, teardown),
	};
	const char *only = getenv("FERRY_TEST_ONLY");

	if (only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests_name("transport", tests, td_group_setup, td_group_teardown);
}
