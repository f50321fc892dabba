/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_daemon_state.c — ferryd's ownership of its state directory and the
 * way it reads its settings, with real daemons and guests:
 *
 *  1 a second ferryd started on a state directory that a running ferryd
 *    owns stops at once, having read and changed nothing: the first keeps
 *    managing its guests, whose records stay (also with the same control
 *    socket, the case an operator meets by starting ferryd twice);
 *  2 a recorded guest that another process holds is not forgotten at
 *    start-up: its record stays, and the next start adopts it;
 *  3 the config file named by -c FILE, --conf FILE or --config FILE is the
 *    one read;
 *  4 a guest that runs in ferryd's run directory without its record is
 *    reported at start-up (hv_list) and left alone.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "common/util.h"
#include "hv/hv.h"

static struct td A, A2;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* A2 on A's state and run directories: it must stop at once, having read
 * and changed nothing. */
static void second_stops(bool same_socket)
{
	char rec[600];
	int st;

	td_init(&A2, same_socket ? "A3" : "A2", PTO);
	snprintf(A2.state_dir, sizeof A2.state_dir, "%s", A.state_dir);
	snprintf(A2.run_dir, sizeof A2.run_dir, "%s", A.run_dir);
	if (same_socket)
		snprintf(A2.sock, sizeof A2.sock, "%s", A.sock);
	st = td_run_to_exit(&A2, 10000);
	if (!WIFEXITED(st) || WEXITSTATUS(st) == 0)
		fail_msg("the second ferryd should have failed at start-up (status 0x%x)", st);
	if (!file_has(A2.log, "in use by another ferryd"))
		fail_msg("the second ferryd did not say why it stopped");
	if (file_has(A2.log, "adopted") || file_has(A2.log, "forgetting") ||
	    file_has(A2.log, "refused"))
		fail_msg("the second ferryd touched the guests before it stopped");
	snprintf(rec, sizeof rec, "%s/vms/w1.json", A.state_dir);
	if (!exists(rec))
		fail_msg("the guest's record is gone: %s", rec);
}

static void test_second_daemon(void **state)
{
	(void)state;
	td_test_begin("s1-second-daemon");
	td_init(&A, "A", PTO);
	td_start(&A, NULL);
	td_create(&A, "w1", MEM, 1, "dirtier:ws=16M,rate=16");
	td_wait_running(&A, "w1", 5000);
	second_stops(false);
	second_stops(true);
	/* A still manages its guest, and a restart of A adopts it. */
	td_wait_running(&A, "w1", 5000);
	td_verify_ok(&A, "w1");
	assert_int_not_equal(td_term(&A, 5000), -1);
	td_start(&A, NULL);
	td_wait_running(&A, "w1", 5000);
	td_verify_ok(&A, "w1");
	td_destroy(&A, "w1");
	td_assert_quiet(&A);
	td_test_passed();
}

/* A recorded guest held by someone else is kept, not forgotten. */
static void test_held_guest_kept(void **state)
{
	char rec[600], uri[HV_URI_MAX];
	struct hv_domain *d;

	(void)state;
	td_test_begin("s2-held-guest");
	td_init(&A, "A", PTO);
	td_start(&A, NULL);
	td_create(&A, "w2", MEM, 1, "dirtier:ws=16M,rate=16");
	assert_int_not_equal(td_term(&A, 5000), -1);
	/* Hold the guest ourselves across A's restart. */
	ferry_set_run_dir(A.run_dir);
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, "w2"), 0);
	assert_int_equal(hv_open(uri, &d), 0);
	td_start(&A, NULL);
	snprintf(rec, sizeof rec, "%s/vms/w2.json", A.state_dir);
	if (!exists(rec))
		fail_msg("a held guest's record was forgotten");
	if (!file_has(A.log, "cannot be adopted"))
		fail_msg("ferryd did not say it could not adopt the held guest");
	if (td_listed(&A, "w2", NULL))
		fail_msg("a guest ferryd could not open is listed");
	hv_close(d);
	/* Let go: the next start adopts it. */
	assert_int_not_equal(td_term(&A, 5000), -1);
	td_start(&A, NULL);
	td_wait_running(&A, "w2", 5000);
	td_destroy(&A, "w2");
	td_assert_quiet(&A);
	td_test_passed();
}

static void test_config_flags(void **state)
{
	static const char *const flags[] = { "-c", "--conf", "--config" };
	char conf[600], host[32];
	FILE *f;

	(void)state;
	td_test_begin("s3-config-flags");
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		json_t *r;

		td_init(&A, "A", PTO);
		snprintf(conf, sizeof conf, "%s/ferryd-%zu.conf", A.dir, i);
		snprintf(host, sizeof host, "from-config-%zu", i);
		f = fopen(conf, "we");
		assert_non_null(f);
		fprintf(f, "# read through %s\nhostname = %s\n", flags[i], host);
		fclose(f);
		A.config = conf;
		A.config_flag = flags[i];
		A.hostname_from_config = true;
		A.plaintext = true; /* no certificate names the configured host */
		td_start(&A, NULL);
		r = td_ok(&A, "{s:s}", "op", "version");
		if (strcmp(td_jstr(r, "host"), host) != 0)
			fail_msg("ferryd %s %s: host is %s, not %s from the file", flags[i], conf,
				 td_jstr(r, "host"), host);
		json_decref(r);
		assert_int_not_equal(td_term(&A, 5000), -1);
	}
	td_test_passed();
}

static void test_unowned_reported(void **state)
{
	struct hv_spec spec = { 64 << 20, 1, "idle", NULL };
	char uri[HV_URI_MAX], err[256];
	struct hv_domain *d;

	(void)state;
	td_test_begin("s4-unowned");
	td_init(&A, "A", PTO);
	ferry_set_run_dir(A.run_dir);
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, "stray"), 0);
	assert_int_equal(hv_launch(uri, &spec, 0, &d, err, sizeof err), 0);
	td_start(&A, NULL);
	if (!file_has(A.log, "stray: runs on this host but is not recorded here"))
		fail_msg("ferryd did not report a guest it does not own");
	if (td_listed(&A, "stray", NULL))
		fail_msg("ferryd took a guest it has no record of");
	assert_int_equal(hv_destroy(d), 0);
	hv_close(d);
	td_test_passed();
}


/*
 * Under journald (JOURNAL_STREAM names ferryd's stderr, as systemd sets it),
 * every line starts with its syslog priority, and carries no "ferryd[PID]"
 * tag (journald adds one). (A runtime writes its own log file in the run
 * directory, not to this stream.)
 */
static void test_journal_priorities(void **state)
{
	char env[64], line[1024];
	bool info = false, warn = false;
	struct stat st;
	FILE *f;

	(void)state;
	td_test_begin("s5-journal");
	td_init(&A, "A", PTO);
	f = fopen(A.log, "we");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(stat(A.log, &st), 0);
	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	A.plaintext = true; /* which ferryd warns about */
	td_start(&A, NULL);
	unsetenv("JOURNAL_STREAM");
	td_create(&A, "j1", "64M", 1, "idle");
	td_destroy(&A, "j1");
	assert_int_not_equal(td_term(&A, 5000), -1);
	f = fopen(A.log, "re");
	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "==== test", 9))
			continue; /* the harness's own markers */
		if (line[0] != '<' || line[1] < '0' || line[1] > '7' || line[2] != '>')
			fail_msg("a line without a syslog priority: %s", line);
		if (strstr(line, "ferryd["))
			fail_msg("ferryd tagged its own line under journald: %s", line);
		info |= line[1] == '6';
		warn |= line[1] == '4' && strstr(line, "plaintext");
	}
	fclose(f);
	if (!info || !warn)
		fail_msg("expected info lines at <6> (%d) and the plaintext warning at <4> (%d)", info,
			 warn);
	td_test_passed();
}


/* One datagram from fd within timeout_ms into buf ("" if none). */
static void notify_read(int fd, char *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, timeout_ms) == 1 && (n = recv(fd, buf, len - 1, 0)) > 0)
		buf[n] = '\0';
}

/*
 * systemd's Type=notify, without systemd: NOTIFY_SOCKET names a datagram
 * socket of the test's. ferryd says READY=1 once it listens, RELOADING=1
 * then READY=1 around a SIGHUP (and stays up), STOPPING=1 at SIGTERM.
 */
static void test_sd_notify(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[512];
	int fd;

	(void)state;
#ifndef HAVE_SYSTEMD
	skip(); /* built without libsystemd: ferryd cannot notify */
#endif
	td_test_begin("s6-sd-notify");
	td_init(&A, "A", PTO);
	assert_true((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "%.90s/notify.sock", A.dir) <
		    sizeof sa.sun_path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	td_start(&A, NULL);
	unsetenv("NOTIFY_SOCKET");
	notify_read(fd, buf, sizeof buf, 5000);
	if (!strstr(buf, "READY=1"))
		fail_msg("no READY=1 from ferryd: '%s'", buf);
	assert_int_equal(kill(A.pid, SIGHUP), 0);
	notify_read(fd, buf, sizeof buf, 5000);
	if (!strstr(buf, "RELOADING=1") || !strstr(buf, "MONOTONIC_USEC="))
		fail_msg("SIGHUP: no RELOADING=1 with MONOTONIC_USEC: '%s'", buf);
	notify_read(fd, buf, sizeof buf, 5000);
	if (!strstr(buf, "READY=1"))
		fail_msg("SIGHUP: no READY=1 after the reload: '%s'", buf);
	/* Still serving. */
	json_decref(td_ok(&A, "{s:s}", "op", "version"));
	assert_int_not_equal(td_term(&A, 5000), -1);
	notify_read(fd, buf, sizeof buf, 5000);
	if (!strstr(buf, "STOPPING=1"))
		fail_msg("SIGTERM: no STOPPING=1: '%s'", buf);
	close(fd);
	td_test_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_second_daemon, teardown),
		cmocka_unit_test_teardown(test_held_guest_kept, teardown),
		cmocka_unit_test_teardown(test_config_flags, teardown),
		cmocka_unit_test_teardown(test_unowned_reported, teardown),
		cmocka_unit_test_teardown(test_journal_priorities, teardown),
		cmocka_unit_test_teardown(test_sd_notify, teardown),
	};

	if (getenv("FERRY_TEST_ONLY"))
		cmocka_set_test_filter(getenv("FERRY_TEST_ONLY"));
	return cmocka_run_group_tests_name("ferryd-state", tests, td_group_setup,
					   td_group_teardown);
}
