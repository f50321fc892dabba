/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_pool.c — a pool of six real ferryd (loopback ports) registered in a
 * real etcd, driven by `ferry pool` as an operator runs it:
 *
 *  1 the night and the morning: 24 microVMs of mixed sizes; `ferry pool
 *    drain H2`, then `consolidate --apply --power-down CMD`, then `spread`.
 *    After every phase every VM verifies and runs on exactly one host, etcd's
 *    record of where each VM runs matches what the hosts say, and the hosts
 *    the plan emptied are empty (and were powered down: CMD wrote their
 *    names). Throughout, a sampler asks every host for its capacity every
 *    50 ms: no host's committed RAM ever exceeds what it offers.
 *    Then `ferry pool watch --once` applies the policy: below its low mark it
 *    consolidates, above its high mark it spreads.
 *  2 etcd stopped (SIGSTOP) while a consolidation runs: the manager stops
 *    cleanly after the moves under way, says why, and nothing is lost (every
 *    VM verifies on exactly one host); the hosts work on and say they are
 *    not in the record (the host op's pool); with etcd back, the hosts
 *    register again and the same command finishes the work.
 *  3 a host killed (SIGKILL) while being drained: the drain stops and says
 *    which move failed; the migrations it had under way end as the engine's
 *    rules say (each VM runs on one host: the source's copies are adopted
 *    again when it restarts); the pool's record drops the dead host when
 *    its lease ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/etcd.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "transport/certs.h"

#define NHOSTS 6
#define NVMS 24
#define HOST_MEM "512M"
#define HOST_MEM_BYTES (512ull << 20)
#define POOL_PTO 5000

static struct td H[NHOSTS];
static struct te E;
static char api_addr[NHOSTS][32];
static pid_t manager;      /* a `ferry pool` run in the background */
static char manager_out[300];

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	if (manager > 0) {
		kill(manager, SIGKILL);
		waitpid(manager, NULL, 0);
		manager = 0;
	}
	if (E.pid > 0)
		kill(E.pid, SIGCONT);
	te_stop(&E);
	return td_test_end();
}

static int group_setup(void **state)
{
	int r = td_group_setup(state);
	char name[8];

	for (int i = 0; i < NHOSTS; i++) {
		snprintf(name, sizeof name, "H%d", i + 1);
		td_init(&H[i], name, POOL_PTO);
	}
	td_make_client(td_pki(), "mgr", CERTS_ROLE_MANAGER);
	return r;
}

/* Start host i registered in etcd with its API, offering 512 MiB, 4 CPUs. */
static void start_host(int i)
{
	struct td *d = &H[i];
	unsigned k = 0;

	snprintf(api_addr[i], sizeof api_addr[i], "127.0.0.1:%u", td_free_port());
	d->extra_args[k++] = "--coord";
	d->extra_args[k++] = E.url;
	d->extra_args[k++] = "--api-listen";
	d->extra_args[k++] = api_addr[i];
	d->extra_args[k++] = "--host-mem";
	d->extra_args[k++] = HOST_MEM;
	d->extra_args[k++] = "--host-cpus";
	d->extra_args[k++] = "4";
	d->extra_args[k++] = "--pool-ttl";
	d->extra_args[k++] = "3";
	d->extra_args[k] = NULL;
	td_start(d, NULL);
}

static void start_pool(void)
{
	char name[8];

	te_start(&E, td_base(), "127.0.0.1", NULL);
	for (int i = 0; i < NHOSTS; i++) {
		snprintf(name, sizeof name, "H%d", i + 1);
		td_init(&H[i], name, POOL_PTO);
		start_host(i);
	}
}

static int host_of(const char *name)
{
	return name[0] == 'H' ? atoi(name + 1) - 1 : -1;
}

/* ferry pool ARGS... (NULL-terminated) with the pool's etcd and the
 * manager's certificate: its exit status and output (caller frees). */
static int pool_cmd(char **out, const char *a1, const char *a2, const char *a3, const char *a4,
		    const char *a5, const char *a6)
{
	return td_cli(&H[0], out, "pool", a1, "--coord", E.url, "--pki-dir", td_pki(), "--client",
		      "mgr", "--json", a2, a3, a4, a5, a6, NULL);
}

/* The same in the background, its output into manager_out. */
static void pool_spawn(const char *a1, const char *a2, const char *a3, const char *a4,
		       const char *a5)
{
	const char *argv[24] = { td_ferry_path(), "pool", a1, "--coord", E.url, "--pki-dir",
				 td_pki(), "--client", "mgr", "--json", a2, a3, a4, a5, NULL };
	posix_spawn_file_actions_t fa;
	extern char **environ;

	snprintf(manager_out, sizeof manager_out, "%s/manager.out", td_base());
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, manager_out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	assert_int_equal(posix_spawn(&manager, argv[0], &fa, NULL, (char *const *)argv, environ),
			 0);
	posix_spawn_file_actions_destroy(&fa);
	h_track_pid(manager);
}

/* What the background run has written (caller frees). */
static char *manager_text(void)
{
	FILE *f = fopen(manager_out, "re");
	char *buf = calloc(1, 1 << 16);
	size_t n;

	assert_non_null(buf);
	if (f) {
		n = fread(buf, 1, (1 << 16) - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
	return buf;
}

/* Wait until the background run's output holds text. */
static void manager_wait_for(const char *text, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;;) {
		char *t = manager_text();
		bool hit = strstr(t, text) != NULL;

		if (hit) {
			free(t);
			return;
		}
		if (mono_ns() > until)
			fail_msg("the manager did not say \"%s\" within %d ms: %s", text, timeout_ms,
				 t);
		free(t);
		usleep(20 * 1000);
	}
}

/* Its exit status, once it exits (asserts within timeout_ms). */
static int manager_exit(int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	int st;

	while (waitpid(manager, &st, WNOHANG) != manager) {
		if (mono_ns() > until) {
			char *t = manager_text();

			fail_msg("the manager did not exit within %d ms: %s", timeout_ms, t);
		}
		usleep(20 * 1000);
	}
	manager = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- what is true of the pool ---- */

/* Every VM runs on exactly one host, verifies there, and etcd records it
 * there; returns the hosts' VM counts into count[]. */
static void check_pool_hosts(const char *phase, unsigned count[NHOSTS], unsigned nvms,
			     bool etcd)
{
	char *where[NVMS + 8] = { 0 }, key[128];
	unsigned total = 0;

	for (int i = 0; i < NHOSTS; i++) {
		json_t *o = td_ok(&H[i], "{s:s}", "op", "list"), *v;
		size_t k;

		count[i] = 0;
		json_array_foreach(json_object_get(o, "vms"), k, v) {
			const char *name = td_jstr(v, "name");
			int n = atoi(name + 1);

			if (strcmp(td_jstr(v, "state"), "running"))
				fail_msg("%s: %s on %s is %s", phase, name, H[i].name,
					 td_jstr(v, "state"));
			assert_true(n >= 0 && n < NVMS + 8);
			if (where[n])
				fail_msg("%s: %s runs on %s and on %s", phase, name, where[n],
					 H[i].name);
			where[n] = H[i].name;
			count[i]++;
			total++;
			td_verify_ok(&H[i], name);
		}
		json_decref(o);
	}
	if (total != nvms)
		fail_msg("%s: %u VMs run, want %u", phase, total, nvms);
	/* etcd says the same, once the registries have caught up. */
	for (unsigned n = 0; etcd && n < NVMS + 8; n++) {
		uint64_t until = mono_ns() + 10 * NSEC_PER_SEC;

		if (!where[n])
			continue;
		snprintf(key, sizeof key, "/ferry/pool/vms/v%u", n);
		for (;;) {
			char *val = te_get(&E, key), want[64];
			bool ok;

			snprintf(want, sizeof want, "\"host\":\"%s\"", where[n]);
			ok = val && strstr(val, want);
			if (ok || mono_ns() > until) {
				if (!ok)
					fail_msg("%s: etcd records v%u as %s, it runs on %s", phase, n,
						 val ? val : "(absent)", where[n]);
				free(val);
				break;
			}
			free(val);
			usleep(100 * 1000);
		}
	}
}

static void check_pool(const char *phase, unsigned count[NHOSTS], unsigned nvms)
{
	check_pool_hosts(phase, count, nvms, true);
}

/* A sampler of every host's committed RAM against what it offers. */
static struct {
	pthread_t t;
	volatile bool stop;
	unsigned samples;
	char over[300];
	int fds[NHOSTS];
} S;

static void *sampler(void *arg)
{
	(void)arg;
	while (!S.stop) {
		for (int i = 0; i < NHOSTS; i++) {
			char *line;
			json_t *o, *h;

			if (S.fds[i] < 0)
				continue;
			line = td_raw_call(S.fds[i], "{\"op\":\"host\"}", 13, 2000);
			o = line ? json_loads(line, 0, NULL) : NULL;
			h = json_object_get(o, "host");
			if (h && json_integer_value(json_object_get(h, "mem_committed")) >
					 json_integer_value(json_object_get(h, "mem_total")) &&
			    !S.over[0])
				snprintf(S.over, sizeof S.over, "H%d: %.250s", i + 1, line);
			S.samples += h != NULL;
			json_decref(o);
			free(line);
		}
		usleep(50 * 1000);
	}
	return NULL;
}

static void sampler_start(void)
{
	memset(&S, 0, sizeof S);
	for (int i = 0; i < NHOSTS; i++)
		S.fds[i] = H[i].pid ? td_connect(&H[i]) : -1;
	assert_int_equal(pthread_create(&S.t, NULL, sampler, NULL), 0);
}

static void sampler_stop(void)
{
	S.stop = true;
	pthread_join(S.t, NULL);
	for (int i = 0; i < NHOSTS; i++)
		if (S.fds[i] >= 0)
			close(S.fds[i]);
	if (S.over[0])
		fail_msg("a host's committed RAM exceeded what it offers: %s", S.over);
	assert_true(S.samples > 0);
}

/* 24 VMs of mixed sizes, 4 per host. */
static void create_vms(void)
{
	static const char *const sizes[] = { "32M", "48M", "64M", "96M" };
	char name[16];

	for (int n = 0; n < NVMS; n++) {
		snprintf(name, sizeof name, "v%d", n);
		td_create(&H[n % NHOSTS], name, sizes[(n / NHOSTS) % 4], 1 + (n % 2), "fill");
	}
}

/* Say what a phase did (the test's log). */
static void tell(const char *phase, json_t *res)
{
	fprintf(stderr, "%s: %d moved, %d failed, %d waves; %u samples of the hosts' RAM\n", phase,
		(int)json_integer_value(json_object_get(res, "moved")),
		(int)json_integer_value(json_object_get(res, "failed")),
		(int)json_integer_value(json_object_get(res, "waves_done")), S.samples);
}

/* The last JSON line of out that has member key (caller decrefs). */
static json_t *last_with(const char *out, const char *key)
{
	json_t *found = NULL;
	const char *p = out;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_t *o = json_loadb(p, len, 0, NULL);

		if (o && json_object_get(o, key)) {
			json_decref(found);
			found = o;
		} else {
			json_decref(o);
		}
		p = nl ? nl + 1 : NULL;
	}
	return found;
}

static void test_night_and_morning(void **state)
{
	char *out = NULL, cmd[600], powered[400], buf[400] = "";
	unsigned count[NHOSTS];
	json_t *plan, *res;
	FILE *f;
	int st;

	(void)state;
	if (!te_available())
		fail_msg("etcd is not installed (scripts/setup installs etcd-server)");
	td_test_begin("night-and-morning");
	start_pool();
	create_vms();
	check_pool("created", count, NVMS);

	/* status: six hosts, 24 VMs. */
	st = pool_cmd(&out, "status", NULL, NULL, NULL, NULL, NULL);
	plan = json_loads(out, 0, NULL);
	if (st || json_array_size(json_object_get(plan, "hosts")) != NHOSTS ||
	    json_array_size(json_object_get(plan, "vms")) != NVMS)
		fail_msg("ferry pool status: %d %s", st, out);
	json_decref(plan);
	free(out);

	/* Drain H2. */
	sampler_start();
	st = pool_cmd(&out, "drain", "H2", "--parallel", "3", NULL, NULL);
	sampler_stop();
	res = last_with(out, "moved");
	if (st || !res || !json_is_true(json_object_get(res, "ok")))
		fail_msg("ferry pool drain H2: exit %d: %s", st, out);
	tell("drain H2", res);
	json_decref(res);
	free(out);
	check_pool("drained H2", count, NVMS);
	assert_int_equal(count[1], 0);

	/* Consolidate: the plan, then carried out, emptied hosts powered down. */
	st = pool_cmd(&out, "consolidate", NULL, NULL, NULL, NULL, NULL);
	plan = last_with(out, "emptied");
	if (st || !plan || json_is_true(json_object_get(plan, "apply")))
		fail_msg("ferry pool consolidate (a plan): exit %d: %s", st, out);
	json_decref(plan);
	free(out);
	snprintf(powered, sizeof powered, "%s/powered-down", td_base());
	unlink(powered);
	snprintf(cmd, sizeof cmd, "echo >> %s", powered);
	sampler_start();
	st = pool_cmd(&out, "consolidate", "--apply", "--power-down", cmd, NULL, NULL);
	sampler_stop();
	plan = last_with(out, "emptied");
	res = last_with(out, "moved");
	if (st || !plan || !res || !json_is_true(json_object_get(res, "ok")))
		fail_msg("ferry pool consolidate --apply: exit %d: %s", st, out);
	tell("consolidate", res);
	{
		char *e = json_dumps(json_object_get(plan, "emptied"), JSON_COMPACT);

		fprintf(stderr, "consolidate: emptied %s\n", e ? e : "?");
		free(e);
	}
	check_pool("consolidated", count, NVMS);
	{
		json_t *h;
		size_t k;
		unsigned used = 0;

		for (int i = 0; i < NHOSTS; i++)
			used += count[i] > 0;
		/* 24 VMs of 1536 MiB in all, hosts of 512 MiB kept 90 % full: 4. */
		if (used > 4)
			fail_msg("consolidated onto %u hosts, want at most 4: %s", used, out);
		json_array_foreach(json_object_get(plan, "emptied"), k, h) {
			int i = host_of(json_string_value(h));

			assert_true(i >= 0 && i < NHOSTS);
			if (count[i])
				fail_msg("the plan empties %s, but it holds %u VMs", H[i].name,
					 count[i]);
		}
		/* The power-down command ran once for each of them. */
		f = fopen(powered, "re");
		assert_non_null(f);
		k = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[k] = '\0';
		for (k = 0; json_array_get(json_object_get(plan, "emptied"), k); k++)
			if (!strstr(buf, json_string_value(json_array_get(
					      json_object_get(plan, "emptied"), k))))
				fail_msg("%s was not powered down: %s", json_string_value(
						 json_array_get(json_object_get(plan, "emptied"), k)), buf);
		if (json_array_size(json_object_get(plan, "emptied")) < 2)
			fail_msg("consolidation emptied fewer than two hosts: %s", out);
	}
	json_decref(plan);
	json_decref(res);
	free(out);

	/* Morning: spread over every host again. */
	sampler_start();
	st = pool_cmd(&out, "spread", "--parallel", "3", NULL, NULL, NULL);
	sampler_stop();
	res = last_with(out, "moved");
	if (st || !res || !json_is_true(json_object_get(res, "ok")))
		fail_msg("ferry pool spread: exit %d: %s", st, out);
	tell("spread", res);
	json_decref(res);
	free(out);
	check_pool("spread", count, NVMS);
	for (int i = 0; i < NHOSTS; i++)
		if (!count[i])
			fail_msg("after spread %s holds no VM", H[i].name);

	/* The policy on its own: below the low mark, it consolidates; above the
	 * high mark, it spreads. */
	st = pool_cmd(&out, "watch", "--once", "--low", "0.9", "--high", "0.95");
	if (st || !strstr(out, "consolidating") || !(res = last_with(out, "moved")) ||
	    !json_is_true(json_object_get(res, "ok")))
		fail_msg("ferry pool watch --once --low 0.9: exit %d: %s", st, out);
	json_decref(res);
	free(out);
	check_pool("watch, low", count, NVMS);
	st = pool_cmd(&out, "watch", "--once", "--low", "0.05", "--high", "0.1");
	if (st || !strstr(out, "spreading"))
		fail_msg("ferry pool watch --once --high 0.1: exit %d: %s", st, out);
	free(out);
	check_pool("watch, high", count, NVMS);
	for (int i = 0; i < NHOSTS; i++)
		if (!count[i])
			fail_msg("after watch spread %s holds no VM", H[i].name);
	td_test_passed();
}

/* The last line of text (in place). */
static const char *last_line(char *text)
{
	size_t n = strlen(text);
	char *p;

	while (n && text[n - 1] == '\n')
		text[--n] = '\0';
	p = strrchr(text, '\n');
	return p ? p + 1 : text;
}

/* Whether etcd lists host name in the pool. */
static bool listed(const char *name)
{
	char key[128], *v;

	snprintf(key, sizeof key, "/ferry/pool/hosts/%.40s", name);
	v = te_get(&E, key);
	free(v);
	return v != NULL;
}

/* Wait up to 10 s until d's host op says it is (not) in the pool's record;
 * not in it, it says why. */
static void expect_registered(struct td *d, bool want)
{
	for (int k = 0;; k++) {
		json_t *o = td_ok(d, "{s:s}", "op", "host");
		json_t *p = json_object_get(json_object_get(o, "host"), "pool");
		bool reg = json_is_true(json_object_get(p, "registered"));
		const char *why = json_string_value(json_object_get(p, "error"));

		if (reg == want && (want || (why && *why))) {
			if (!want)
				fprintf(stderr, "%s, etcd stopped: %s\n", d->name, why);
			json_decref(o);
			return;
		}
		json_decref(o);
		if (k == 100)
			fail_msg("%s does not say it is %sin the pool's record", d->name,
				 want ? "" : "not ");
		usleep(100 * 1000);
	}
}

static void test_etcd_stopped(void **state)
{
	unsigned count[NHOSTS];
	char *out;
	int st;

	(void)state;
	td_test_begin("etcd-stopped");
	start_pool();
	create_vms();
	check_pool("created", count, NVMS);
	/* One move at a time, so that etcd stops between two waves. */
	pool_spawn("consolidate", "--apply", "--parallel", "1", NULL);
	manager_wait_for(": done", 60000);
	kill(E.pid, SIGSTOP);
	st = manager_exit(60000);
	out = manager_text();
	fprintf(stderr, "etcd stopped: the manager exited %d: %s\n", st, last_line(out));
	if (st == 0 || !strstr(out, "etcd") || !strstr(out, "run it again"))
		fail_msg("with etcd stopped the manager should stop and say so: exit %d: %s", st,
			 out);
	free(out);
	/* Nothing lost: every VM runs on one host and verifies; the hosts work
	 * on and say that they are not in the record. */
	check_pool_hosts("etcd stopped", count, NVMS, false);
	expect_registered(&H[0], false);
	/* etcd back: the hosts are in the record again, the run finishes. */
	kill(E.pid, SIGCONT);
	for (int i = 0; i < NHOSTS; i++)
		for (int k = 0; !listed(H[i].name); k++) {
			if (k == 100)
				fail_msg("%s is not in etcd's record 10 s after etcd came back",
					 H[i].name);
			usleep(100 * 1000);
		}
	expect_registered(&H[0], true);
	check_pool("etcd back", count, NVMS);
	st = pool_cmd(&out, "consolidate", "--apply", NULL, NULL, NULL, NULL);
	if (st)
		fail_msg("ferry pool consolidate --apply, again: exit %d: %s", st, out);
	free(out);
	check_pool("consolidated", count, NVMS);
	{
		unsigned used = 0;

		for (int i = 0; i < NHOSTS; i++)
			used += count[i] > 0;
		if (used > 4)
			fail_msg("consolidated onto %u hosts, want at most 4", used);
	}
	td_test_passed();
}

static void test_host_killed(void **state)
{
	unsigned count[NHOSTS];
	char *out;
	int st;

	(void)state;
	td_test_begin("host-killed");
	start_pool();
	create_vms();
	check_pool("created", count, NVMS);
	pool_spawn("drain", "H3", "--parallel", "1", NULL);
	manager_wait_for("started", 60000);
	td_kill(&H[2]);
	st = manager_exit(120000);
	out = manager_text();
	fprintf(stderr, "H3 killed: the manager exited %d: %s\n", st, last_line(out));
	if (st == 0 || !strstr(out, "run it again"))
		fail_msg("with the host it drains dead the manager should stop and say so: exit "
			 "%d: %s", st, out);
	free(out);
	/* The record drops H3 when its lease ends (pool-ttl 3 s). */
	for (int k = 0; listed("H3"); k++) {
		if (k == 100)
			fail_msg("H3 is still in etcd's record 10 s after it died");
		usleep(100 * 1000);
	}
	st = pool_cmd(&out, "status", NULL, NULL, NULL, NULL, NULL);
	assert_int_equal(st, 0);
	assert_null(strstr(out, "\"name\":\"H3\""));
	free(out);
	/* H3 back: its guests were never lost (runtimes outlive ferryd), the
	 * migration under way ended by the engine's rules: each VM on one host. */
	start_host(2);
	check_pool("H3 back", count, NVMS);
	td_test_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_night_and_morning, teardown),
		cmocka_unit_test_teardown(test_etcd_stopped, teardown),
		cmocka_unit_test_teardown(test_host_killed, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, td_group_teardown);
}
