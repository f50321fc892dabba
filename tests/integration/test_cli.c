/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_cli.c — the ferry command line against live ferryd, as an operator
 * meets it (issue 14's rough edges):
 *
 *  1 --version; global options in both forms and after the command; a bad
 *    value names the option and its range in one line, with no help dump;
 *    with --json, errors are one JSON object on stdout
 *  2 status by a VM's name; a missed downtime target is a warning in the
 *    result, the job and the log (a failpoint holds the guest paused 40 ms
 *    against a 5 ms target); downtime has one meaning: the destination's job
 *    gives none of its own, only its share (destination_resume_ms)
 *  3 finished jobs are pruned to --job-history while ferryd runs, their
 *    records too, and stay so across a restart; a guest whose migration
 *    failed is free to move again as soon as its job says it failed (its
 *    job's thread held back by a failpoint)
 *  4 bash completion (etc/bash-completion/ferry, run by bash) completes
 *    subcommands, options, and the VM names the local ferryd lists
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"

#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"


static struct td A, B;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

/* What the last td_cli on d wrote to stderr (caller frees). */
static char *cli_err(const struct td *d)
{
	char path[300], *buf = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof path, "%s/cli.err", d->dir);
	f = fopen(path, "re");
	assert_non_null(f);
	if (getdelim(&buf, &cap, '\0', f) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(f);
	return buf;
}

static unsigned lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Run ferry on A with the arguments of ap (up to 11, NULL-terminated, kept
 * in argv): its exit status, stdout and stderr (caller frees both). */
static int run(const char **argv, va_list ap, char **out, char **err)
{
	unsigned n = 0;
	int st;

	while (n < 11 && (argv[n] = va_arg(ap, const char *)))
		n++;
	argv[n] = NULL;
	st = td_cli(&A, out, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6],
		    argv[7], argv[8], argv[9], argv[10], NULL);
	*err = cli_err(&A);
	return st;
}

/* ferry ARGS must exit with status 2, print nothing on stdout, and say in
 * at most two lines of stderr each of the texts. */
static void expect_usage_error(const char *text1, const char *text2, ...)
{
	const char *argv[12];
	char *out, *err;
	va_list ap;
	int st;

	va_start(ap, text2);
	st = run(argv, ap, &out, &err);
	va_end(ap);
	if (st != 2 || out[0] || !strstr(err, text1) || (text2 && !strstr(err, text2)) ||
	    lines(err) > 2 || strstr(err, "usage:"))
		fail_msg("ferry %s %s ...: exit %d (want 2), stdout '%s', stderr '%s' (want one "
			 "error naming '%s'%s%s and no help)", argv[0], argv[1] ? argv[1] : "", st,
			 out, err, text1, text2 ? ", " : "", text2 ? text2 : "");
	free(out);
	free(err);
}

/* ferry ARGS --json must fail (status want) with one JSON object on
 * stdout, ok false, its error containing text, and nothing on stderr. */
static void expect_json_error(int want, const char *text, ...)
{
	const char *argv[12];
	char *out, *err;
	json_t *o;
	va_list ap;
	int st;

	va_start(ap, text);
	st = run(argv, ap, &out, &err);
	va_end(ap);
	o = json_loads(out, 0, NULL);
	if (st != want || !o || !json_is_false(json_object_get(o, "ok")) ||
	    !strstr(td_jstr(o, "error"), text) || err[0] || lines(out) != 1)
		fail_msg("ferry %s ... --json: exit %d (want %d), stdout '%s', stderr '%s' (want "
			 "one JSON error naming '%s')", argv[0], st, want, out, err, text);
	json_decref(o);
	free(out);
	free(err);
}

static void test_options_and_errors(void **state)
{
	char *out, sock_opt[320], want[64];
	int st;

	(void)state;
	td_test_begin("c1-options");
	td_init(&A, "A", PTO);
	td_start(&A, NULL);

	snprintf(want, sizeof want, "ferry %s\n", PACKAGE_VERSION);
	st = td_cli(&A, &out, "--version", NULL);
	if (st != 0 || strcmp(out, want) != 0)
		fail_msg("ferry --version: exit %d, '%s' (want '%s')", st, out, want);
	free(out);

	/* --socket=PATH before and after the command; the last one counts. */
	snprintf(sock_opt, sizeof sock_opt, "--socket=%s", A.sock);
	st = td_cli(&A, &out, sock_opt, "list", "--json", NULL);
	if (st != 0 || out[0] != '[')
		fail_msg("ferry --socket=PATH list: exit %d: %s", st, out);
	free(out);
	st = td_cli(&A, &out, "list", "--socket=/nonexistent/ferryd.sock", NULL);
	free(out);
	out = cli_err(&A);
	if (st != 1 || !strstr(out, "/nonexistent/ferryd.sock"))
		fail_msg("ferry list --socket=/nonexistent/...: exit %d, '%s'", st, out);
	free(out);
	st = td_cli(&A, &out, "list", "--log-level", "debug", "--run-dir=/tmp", NULL);
	if (st != 0)
		fail_msg("global options after the command: exit %d", st);
	free(out);

	expect_usage_error("--channels", "from 1 to 64", "migrate", "vm", "host-b", "--channels",
			   "100", NULL);
	expect_usage_error("--channels", "from 1 to 64", "migrate", "--channels=0", "vm", "h",
			   NULL);
	expect_usage_error("--downtime-ms", "needs a value", "migrate", "vm", "h",
			   "--downtime-ms", NULL);
	expect_usage_error("--bogus", NULL, "migrate", "--bogus", "vm", "h", NULL);
	expect_usage_error("--on-no-converge", "stop, throttle, abort or postcopy", "migrate", "vm", "h",
			   "--on-no-converge=never", NULL);
	expect_usage_error("--epoch-ms", "from 1 to 60000", "protect", "vm", "--peer", "h",
			   "--epoch-ms", "0", NULL);
	expect_usage_error("--vcpus", "from 1 to 64", "create", "vm", "--vcpus", "65", NULL);
	expect_usage_error("--log-level", "error, warn, info or debug", "--log-level=loud", "list",
			   NULL);
	expect_usage_error("unknown command", NULL, "frobnicate", NULL);
	expect_usage_error("expects", NULL, "migrate", "vm", NULL);

	expect_json_error(2, "--channels", "migrate", "vm", "h", "--channels", "100", "--json",
			  NULL);
	expect_json_error(1, "nosuch", "info", "nosuch", "--json", NULL);
	expect_json_error(1, "nosuch", "status", "nosuch", "--json", NULL);
	td_test_passed();
}

static void test_status_and_downtime(void **state)
{
	char dest[32], *out, *err;
	json_t *o, *s;
	int st;

	(void)state;
	td_test_begin("c2-status-downtime");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, "mig-src-before-go=sleep:40");
	td_start(&B, NULL);
	td_create(&A, "web1", "64M", 1, "idle");
	snprintf(dest, sizeof dest, "127.0.0.1:%u", B.port);
	st = td_cli(&A, &out, "migrate", "web1", dest, "--downtime-ms", "5", NULL);
	err = cli_err(&A);
	if (st != 0 || !strstr(err, "missed its target of 5 ms"))
		fail_msg("ferry migrate with a missed target: exit %d, stdout '%s', stderr '%s'", st,
			 out, err);
	free(out);
	free(err);
	if (!file_has(A.log, "missed its target of 5 ms"))
		fail_msg("ferryd did not log the missed target");

	/* By the VM's name, on both hosts. */
	st = td_cli(&A, &out, "status", "web1", "--json", NULL);
	o = json_loads(out, 0, NULL);
	s = json_object_get(o, "stats");
	if (st != 0 || !o || strcmp(td_jstr(o, "direction"), "out") != 0 ||
	    !json_is_true(json_object_get(s, "downtime_target_missed")) ||
	    td_jnum(o, "stats.downtime_ms") < 40 || !strstr(td_jstr(o, "warning"), "expected"))
		fail_msg("ferry status web1 on A: exit %d: %s", st, out);
	/* The expectation, in its parts: they add up to it, and the fixed
	 * cost alone (5 ms before any move has taught ferryd another) is
	 * over this target, so it was never going to be kept. */
	{
		double e = td_jnum(o, "stats.expected_downtime_ms"),
		       pg = td_jnum(o, "stats.expected_downtime_steps.last_pages_ms"),
		       fx = td_jnum(o, "stats.expected_downtime_steps.fixed_ms"),
		       rt = td_jnum(o, "stats.expected_downtime_steps.round_trips_ms");

		if (!(fx >= 5) || pg < 0 || rt < 0 || e < fx || e > pg + fx + rt + 0.01)
			fail_msg("expected downtime %.3f ms from last pages %.3f, fixed %.3f and "
				 "round trips %.3f: %s", e, pg, fx, rt, out);
	}
	json_decref(o);
	free(out);
	st = td_cli(&A, &out, "status", "web1", NULL);
	if (st != 0 || !strstr(out, "warning        the downtime") ||
	    !strstr(out, "expected dt") || !strstr(out, "round trips"))
		fail_msg("ferry status web1 on A: exit %d: %s", st, out);
	free(out);
	st = td_cli(&B, &out, "status", "web1", "--json", NULL);
	o = json_loads(out, 0, NULL);
	s = json_object_get(o, "stats");
	if (st != 0 || !o || strcmp(td_jstr(o, "direction"), "in") != 0 ||
	    !json_is_null(json_object_get(s, "downtime_ms")) ||
	    !(td_jnum(o, "stats.destination_resume_ms") > 0))
		fail_msg("ferry status web1 on B: the destination must give no downtime of its "
			 "own, only its share: exit %d: %s", st, out);
	json_decref(o);
	free(out);
	st = td_cli(&B, &out, "status", "web1", NULL);
	if (st != 0 || !strstr(out, "measured by the source"))
		fail_msg("ferry status web1 on B: exit %d: %s", st, out);
	free(out);
	td_destroy(&B, "web1");
	td_test_passed();
}

static unsigned records(const struct td *d)
{
	char dir[320];
	struct dirent *e;
	unsigned n = 0;
	DIR *dp;

	snprintf(dir, sizeof dir, "%s/jobs", d->state_dir);
	assert_non_null(dp = opendir(dir));
	while ((e = readdir(dp)))
		n += strstr(e->d_name, ".rec") != NULL;
	closedir(dp);
	return n;
}

static void test_job_history(void **state)
{
	static const char *const args[] = { "--job-history", "10", NULL };
	uint16_t nobody = td_free_port();
	json_t *r;
	size_t n;

	(void)state;
	td_test_begin("c3-job-history");
	td_init(&A, "A", PTO);
	memcpy(A.extra_args, args, sizeof args);
	td_start(&A, NULL);
	td_create(&A, "web1", "64M", 1, "idle");
	/* Nobody listens there: each migration fails at once and the guest
	 * stays, free again by the time its job says it failed, so that the
	 * next migrate is accepted at once (td_migrate asserts it is). */
	for (int i = 0; i < 14; i++) {
		char *id = td_migrate(&A, "web1", nobody, NULL);

		json_decref(td_wait_job(&A, id, "failed", 20000));
		free(id);
	}
	r = td_ok(&A, "{s:s}", "op", "jobs");
	n = json_array_size(json_object_get(r, "jobs"));
	json_decref(r);
	if (n > 11 || records(&A) > 11)
		fail_msg("--job-history 10: %zu jobs listed, %u records kept after 14", n,
			 records(&A));
	assert_int_not_equal(td_term(&A, 5000), -1);
	td_start(&A, NULL);
	r = td_ok(&A, "{s:s}", "op", "jobs");
	n = json_array_size(json_object_get(r, "jobs"));
	json_decref(r);
	if (n > 10 || n < 9)
		fail_msg("after a restart: %zu jobs listed (want 10)", n);
	td_destroy(&A, "web1");
	assert_int_not_equal(td_term(&A, 5000), -1);

	/* The thread of an ended job lingers 500 ms: the guest is free anyway. */
	td_start(&A, "mig-src-ended=sleep:500");
	td_create(&A, "web2", "64M", 1, "idle");
	for (int i = 0; i < 2; i++) {
		char *id = td_migrate(&A, "web2", nobody, NULL);

		json_decref(td_wait_job(&A, id, "failed", 20000));
		free(id);
	}
	h_sleep_ms(600);
	td_destroy(&A, "web2");
	td_test_passed();
}

/* What bash completes for the words (the last one being completed), with
 * etc/bash-completion/ferry loaded and this build's ferry on the PATH,
 * talking to A (caller frees). */
static char *complete(const char *words)
{
	char comp[400], bin[300], cmd[2048], *out = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *p;

	td_src_path("etc/bash-completion/ferry", comp, sizeof comp);
	snprintf(bin, sizeof bin, "%s", td_ferry_path());
	*strrchr(bin, '/') = '\0';
	snprintf(cmd, sizeof cmd,
		 "PATH='%s':\"$PATH\" FERRY_SOCKET='%s' bash --norc -c '. \"%s\"; "
		 "COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _ferry; "
		 "printf \"%%s \" \"${COMPREPLY[@]}\"' 2>&1",
		 bin, A.sock, comp, words);
	assert_non_null(p = popen(cmd, "r"));
	n = getdelim(&out, &cap, '\0', p);
	pclose(p);
	if (n < 0) {
		free(out);
		out = strdup("");
	}
	return out;
}

static void expect_completion(const char *words, const char *want, const char *not)
{
	char *got = complete(words);

	if ((want && !strstr(got, want)) || (not && strstr(got, not)))
		fail_msg("completing (%s): '%s' (want '%s'%s%s)", words, got, want ? want : "",
			 not ? ", not " : "", not ? not : "");
	free(got);
}

static void test_completion(void **state)
{
	(void)state;
	td_test_begin("c4-completion");
	td_init(&A, "A", PTO);
	td_start(&A, NULL);
	td_create(&A, "web1", "64M", 1, "idle");
	td_create(&A, "db7", "64M", 1, "idle");
	expect_completion("ferry mig", "migrate ", NULL);
	expect_completion("ferry pro", "protect ", NULL);
	expect_completion("ferry \"\"", "unprotect ", NULL);
	expect_completion("ferry info \"\"", "web1 ", NULL);
	expect_completion("ferry info \"\"", "db7 ", NULL);
	expect_completion("ferry migrate w", "web1 ", "db7");
	expect_completion("ferry migrate web1 \"\"", NULL, "web1");
	expect_completion("ferry migrate web1 --down", "--downtime-ms ", NULL);
	expect_completion("ferry migrate web1 --on-no-converge \"\"", "throttle ", NULL);
	expect_completion("ferry certs \"\"", "host ", NULL);
	td_destroy(&A, "web1");
	td_destroy(&A, "db7");
	td_test_passed();
}

static void write_conf(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/*
 * runtime-user: a user that does not exist refuses guests with a reason
 * naming it (and the way out); a reload to one that does lets them start,
 * as that user.
 */
static void test_runtime_user(void **state)
{
	struct passwd *pw = getpwnam("ferry-mvm");
	char conf[300];
	json_t *r = NULL, *v;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_non_null(pw);
	td_test_begin("c5-runtime-user");
	td_init(&A, "A", PTO);
	snprintf(conf, sizeof conf, "%s/ferryd.conf", A.dir);
	write_conf(conf, "runtime-user = nosuch-ferry-user\n");
	A.config = conf;
	td_start(&A, NULL);
	r = td_err(&A, "{s:s, s:s, s:s, s:i, s:s}", "op", "create", "name", "web1", "mem", "64M",
		   "vcpus", 1, "workload", "idle");
	if (!strstr(td_errstr(r), "runtime user nosuch-ferry-user: no such user") ||
	    !strstr(td_errstr(r), "runtime-user in ferryd.conf"))
		fail_msg("create with a missing runtime user: '%s'", td_errstr(r));
	json_decref(r);
	write_conf(conf, "runtime-user = ferry-mvm\n");
	assert_int_equal(kill(A.pid, SIGHUP), 0);
	for (int i = 0; i < 500; i++, h_sleep_ms(10)) {
		r = td_call(&A, "{s:s, s:s, s:s, s:i, s:s}", "op", "create", "name", "web1", "mem",
			    "64M", "vcpus", 1, "workload", "idle");
		if (json_is_true(json_object_get(r, "ok")))
			break;
		json_decref(r);
		r = NULL;
	}
	if (!r)
		fail_msg("after the reload to ferry-mvm the guest still does not start");
	json_decref(r);
	td_runtimes(A.run_dir, "web1", NULL, 0); /* remember its PID */
	assert_non_null(v = td_info(&A, "web1"));
	{
		char uid[64], want[64];

		h_proc_status((pid_t)td_jnum(v, "pid"), NULL, "Uid", uid, sizeof uid);
		snprintf(want, sizeof want, "%u %u %u %u", pw->pw_uid, pw->pw_uid, pw->pw_uid,
			 pw->pw_uid);
		assert_string_equal(uid, want);
	}
	json_decref(v);
	td_destroy(&A, "web1");
	td_test_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_options_and_errors, teardown),
		cmocka_unit_test_teardown(test_status_and_downtime, teardown),
		cmocka_unit_test_teardown(test_job_history, teardown),
		cmocka_unit_test_teardown(test_completion, teardown),
		cmocka_unit_test_teardown(test_runtime_user, teardown),
	};

	return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
