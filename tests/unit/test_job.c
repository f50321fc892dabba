/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_job.c — ferryd's job state machine (daemon/job.c), without a daemon:
 * every allowed transition is made, and refused on every forbidden one; the
 * journal holds exactly the transitions made (and nothing for a refused one
 * or one whose journal write failed); exactly the points of DESIGN.md §6 are
 * durable; records read back as they were written. The slot files the
 * records live in (daemon/journal.c): a torn write loses only itself, a
 * record that outgrows its slot is kept, an older version's JSON record is
 * read and replaced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/core.h"
#include "daemon/job.h"
#include "daemon/journal.h"
#include "daemon/migration.h"

static char base[] = "/tmp/ferry-test-job.XXXXXX";

/* What the listener saw. */
static struct {
	unsigned n;
	enum job_state from[64], to[64];
} heard;

static void listener(void *ctx, struct job *j, enum job_state from)
{
	(void)ctx;
	heard.from[heard.n % 64] = from;
	heard.to[heard.n % 64] = j->state;
	heard.n++;
}

/* The refusals log errors by design: keep them off the test's output. */
static int saved_stderr = -1;

static void quiet(bool on)
{
	if (on) {
		int null = open("/dev/null", O_WRONLY);

		saved_stderr = dup(2);
		dup2(null, 2);
		close(null);
	} else if (saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
}

static int group_setup(void **state)
{
	char err[256];

	(void)state;
	log_init("test", LOG_ERROR);
	if (!mkdtemp(base))
		return -1;
	snprintf(D.state_dir, sizeof D.state_dir, "%s", base);
	if (journal_open(D.state_dir, err, sizeof err))
		return -1;
	job_kind_register(JOB_MIGRATE_OUT, &migrate_out_kind);
	job_kind_register(JOB_MIGRATE_IN, &migrate_in_kind);
	job_listen(listener, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[300];

	(void)state;
	while (D.jobs) {
		struct job *j = D.jobs;

		D.jobs = j->next;
		job_free(j);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	return system(cmd) == 0 ? 0 : -1;
}

/* The stages of job id's record, in order, into st; how many (-1: none). */
static int journal_of(const char *id, enum job_state *st, int max)
{
	char path[512];
	json_t *o, *h, *e;
	size_t i;
	int n = 0;

	snprintf(path, sizeof path, "%s/jobs/%s.rec", base, id);
	if (!(o = journal_load(path)))
		return -1;
	h = json_object_get(o, "history");
	json_array_foreach(h, i, e) {
		const char *name = json_string_value(json_object_get(e, "stage"));
		int k;

		for (k = 0; k < JOB_STATE_MAX && strcmp(job_state_name(k), name); k++)
			;
		assert_true(k < JOB_STATE_MAX);
		assert_true(n < max);
		st[n++] = (enum job_state)k;
	}
	assert_string_equal(json_string_value(json_object_get(o, "stage")),
			    job_state_name(n ? st[n - 1] : JOB_NEW));
	json_decref(o);
	return n;
}

/* A path of allowed transitions from NEW to s (breadth first), into p;
 * its length, or -1 if s cannot be reached. */
static int path_to(enum job_state s, enum job_state *p)
{
	int prev[JOB_STATE_MAX], queue[JOB_STATE_MAX], head = 0, tail = 0, n = 0;

	for (int i = 0; i < JOB_STATE_MAX; i++)
		prev[i] = -2;
	prev[JOB_NEW] = -1;
	queue[tail++] = JOB_NEW;
	while (head < tail) {
		int u = queue[head++];

		for (int v = 0; v < JOB_STATE_MAX; v++)
			if (prev[v] == -2 && job_transition_ok(u, v)) {
				prev[v] = u;
				queue[tail++] = v;
			}
	}
	if (prev[s] == -2)
		return -1;
	for (int v = (int)s; v != JOB_NEW; v = prev[v])
		n++;
	for (int v = (int)s, i = n - 1; v != JOB_NEW; v = prev[v], i--)
		p[i] = (enum job_state)v;
	return n;
}

/* A listed job of the kind that makes state s, walked to s along path. */
static struct job *job_at(enum job_state s, enum job_state *made, int *nmade)
{
	enum job_state p[JOB_STATE_MAX];
	int n = path_to(s, p);
	bool in = false;
	struct job *j;

	assert_true(n >= 0);
	for (int i = 0; i < n; i++)
		in |= p[i] == JOB_RECEIVING;
	j = job_new(in ? JOB_MIGRATE_IN : JOB_MIGRATE_OUT, NULL);
	assert_non_null(j);
	snprintf(j->vm, sizeof j->vm, "vm");
	snprintf(j->peer, sizeof j->peer, "peer");
	pthread_mutex_lock(&D.lock);
	job_link(j);
	pthread_mutex_unlock(&D.lock);
	*nmade = 0;
	for (int i = 0; i < n; i++) {
		assert_int_equal(job_set_state(j, p[i], "on the way"), 0);
		made[(*nmade)++] = p[i];
	}
	assert_int_equal(j->state, s);
	return j;
}

/* After the transitions made, the record holds exactly them — up to the
 * last one that is journaled (a later unjournaled one is not written). */
static void check_journal(const struct job *j, const enum job_state *made, int nmade)
{
	enum job_state got[JOB_HISTORY_MAX];
	int last = -1, n;
	bool durable;

	for (int i = 0; i < nmade; i++)
		if (job_state_journaled(made[i], &durable))
			last = i;
	n = journal_of(j->id, got, JOB_HISTORY_MAX);
	if (last < 0) {
		assert_int_equal(n, -1);
		return;
	}
	assert_int_equal(n, last + 1);
	for (int i = 0; i <= last; i++)
		assert_int_equal(got[i], made[i]);
}

/* Every allowed transition, from a job brought to its source state. */
static void test_allowed(void **state)
{
	unsigned edges = 0;

	(void)state;
	for (int from = 0; from < JOB_STATE_MAX; from++)
		for (int to = 0; to < JOB_STATE_MAX; to++) {
			enum job_state made[JOB_STATE_MAX + 1];
			unsigned before;
			struct job *j;
			int n;

			if (!job_transition_ok(from, to) || path_to(from, made) < 0)
				continue;
			j = job_at(from, made, &n);
			before = heard.n;
			assert_int_equal(job_set_state(j, to, "why"), 0);
			made[n++] = to;
			assert_int_equal(j->state, to);
			assert_int_equal(j->seq, n);
			assert_int_equal(j->nhist, n);
			/* The listener heard it, after it was made. */
			assert_int_equal(heard.n, before + 1);
			assert_int_equal(heard.from[before % 64], from);
			assert_int_equal(heard.to[before % 64], to);
			check_journal(j, made, n);
			if (job_state_final(to))
				assert_true(j->ended > 0);
			edges++;
		}
	print_message("%u allowed transitions made\n", edges);
	assert_true(edges >= 20);
}

/* Every forbidden transition is refused: nothing changes, nothing is
 * written, nobody is told. */
static void test_forbidden(void **state)
{
	unsigned refused = 0;

	(void)state;
	for (int from = 0; from < JOB_STATE_MAX; from++) {
		enum job_state made[JOB_STATE_MAX + 1];
		struct job *j;
		int n;

		if (path_to(from, made) < 0)
			continue;
		j = job_at(from, made, &n);
		for (int to = 0; to < JOB_STATE_MAX; to++) {
			enum job_state got[JOB_HISTORY_MAX], again[JOB_HISTORY_MAX];
			unsigned before = heard.n, seq = j->seq;
			int m, r;

			if (job_transition_ok(from, to))
				continue;
			m = journal_of(j->id, got, JOB_HISTORY_MAX);
			quiet(true);
			r = job_set_state(j, to, "no");
			quiet(false);
			assert_int_equal(r, -EPERM);
			assert_int_equal(j->state, from);
			assert_int_equal(j->seq, seq);
			assert_int_equal(heard.n, before);
			assert_int_equal(journal_of(j->id, again, JOB_HISTORY_MAX), m);
			if (m > 0)
				assert_memory_equal(got, again, sizeof got[0] * (size_t)m);
			refused++;
		}
		check_journal(j, made, n);
	}
	print_message("%u forbidden transitions refused\n", refused);
	/* Nothing comes back from an end. */
	for (int s = JOB_COMPLETED; s < JOB_STATE_MAX; s++)
		for (int to = 0; to < JOB_STATE_MAX; to++)
			assert_false(job_transition_ok(s, to));
}

/* Durable exactly where DESIGN.md §6 says: the source's commit (before the
 * stop-and-copy's pause), before resuming, entering post-copy (from it on a
 * failure loses the guest, and a restarted ferryd must know); READY and
 * RUNNING (inside the downtime) not durable, RUNNING not written at all. */
static void test_durable_points(void **state)
{
	(void)state;
	for (int s = 0; s < JOB_STATE_MAX; s++) {
		bool durable, journaled = job_state_journaled(s, &durable);

		/* DESIGN.md §6's points, and a standby's takeover (from it on, its
		 * copy may run). */
		assert_int_equal(durable, s == JOB_COMMITTED || s == JOB_RESUMING ||
					  s == JOB_TAKING_OVER || s == JOB_POSTCOPY);
		assert_int_equal(journaled, s != JOB_NEW && s != JOB_RUNNING);
	}
}

/* A journal write that fails leaves the job as it was. */
static void test_journal_failure(void **state)
{
	char saved[sizeof D.state_dir];
	enum job_state made[JOB_STATE_MAX];
	struct job *j;
	int n;

	(void)state;
	j = job_at(JOB_SENDING, made, &n);
	memcpy(saved, D.state_dir, sizeof saved);
	snprintf(D.state_dir, sizeof D.state_dir, "%s/nowhere", base);
	quiet(true); /* the expected write error */
	assert_true(job_set_state(j, JOB_COMMITTED, NULL) < 0);
	quiet(false);
	memcpy(D.state_dir, saved, sizeof saved);
	assert_int_equal(j->state, JOB_SENDING);
	assert_false(j->go);
	check_journal(j, made, n);
	assert_int_equal(job_set_state(j, JOB_COMMITTED, NULL), 0);
	assert_true(j->go);
}

/* The API's names for each state, and what a peer asking hears. */
static void test_names(void **state)
{
	enum job_state made[JOB_STATE_MAX];
	struct job *j;
	int n;

	(void)state;
	assert_string_equal(job_state_api(JOB_SENDING), "active");
	assert_string_equal(job_state_api(JOB_RUNNING), "completed");
	assert_string_equal(job_state_api(JOB_UNRESOLVED), "unresolved");
	assert_string_equal(job_state_api(JOB_RESUME_FAILED), "failed");
	j = job_at(JOB_READY, made, &n);
	assert_string_equal(job_peer_state(j->id), "pending");
	assert_int_equal(job_set_state(j, JOB_FAILED, "discarded"), 0);
	assert_string_equal(job_peer_state(j->id), "discarded");
	assert_string_equal(j->error, "discarded");
	assert_string_equal(job_peer_state("nosuchjob"), "unknown");
}

/* Finished jobs read back from the journal as they were. */
static void test_reload(void **state)
{
	enum job_state made[JOB_STATE_MAX];
	char id[JOB_ID_LEN];
	struct job *j, *k;
	int n;

	(void)state;
	j = job_at(JOB_UNRESOLVED, made, &n);
	assert_int_equal(job_set_state(j, JOB_FAILED, "resolved by the operator"), 0);
	snprintf(id, sizeof id, "%s", j->id);
	/* Forget the list; read the journal back. */
	pthread_mutex_lock(&D.lock);
	while (D.jobs) {
		k = D.jobs;
		D.jobs = k->next;
		job_free(k);
	}
	pthread_mutex_unlock(&D.lock);
	jobs_recover();
	pthread_mutex_lock(&D.lock);
	k = job_find(id);
	assert_non_null(k);
	assert_int_equal(k->kind, JOB_MIGRATE_OUT);
	assert_int_equal(k->state, JOB_FAILED);
	assert_true(k->go);
	assert_string_equal(k->error, "resolved by the operator");
	assert_int_equal(k->nhist, 4);
	assert_int_equal(k->history[0].state, JOB_SENDING);
	assert_int_equal(k->history[1].state, JOB_COMMITTED);
	assert_int_equal(k->history[2].state, JOB_UNRESOLVED);
	assert_int_equal(k->history[3].state, JOB_FAILED);
	pthread_mutex_unlock(&D.lock);
}

/* ---- slot files ---- */

static json_t *rec_n(int n, size_t pad)
{
	char *s = calloc(1, pad + 1);
	json_t *o;

	memset(s, 'x', pad);
	o = json_pack("{s:i, s:s}", "n", n, "pad", s);
	free(s);
	return o;
}

static int n_of(const char *path)
{
	json_t *o = journal_load(path);
	int n = o ? (int)json_integer_value(json_object_get(o, "n")) : -1;

	json_decref(o);
	return n;
}

static off_t size_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Spoil one byte of the text of the slot holding the newest record. */
static void tear_newest(const char *path)
{
	off_t half = size_of(path) / 2;
	int fd = open(path, O_RDWR);
	uint64_t s0, s1;
	char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &s0, 8, 16), 8);
	assert_int_equal(pread(fd, &s1, 8, half + 16), 8);
	off_t at = (le64toh(s1) > le64toh(s0) ? half : 0) + 40;
	assert_int_equal(pread(fd, &c, 1, at), 1);
	c ^= 0x20;
	assert_int_equal(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

static void put(const char *dir, const char *name, int n, size_t pad, bool durable)
{
	json_t *o = rec_n(n, pad);

	assert_int_equal(journal_slots_write(dir, name, o, durable), 0);
	json_decref(o);
}

static void test_slots(void **state)
{
	char dir[300], path[400];
	off_t small;

	(void)state;
	snprintf(dir, sizeof dir, "%s/slots", base);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/r.rec", dir);
	assert_int_equal(n_of(path), -1);
	put(dir, "r.rec", 1, 10, false);
	small = size_of(path);
	assert_int_equal(small, 2 * 16384); /* created whole: both slots */
	put(dir, "r.rec", 2, 10, true);
	put(dir, "r.rec", 3, 10, false);
	assert_int_equal(n_of(path), 3);
	assert_int_equal(size_of(path), small); /* written in place */

	/* A torn newest record: the one before it is read... */
	tear_newest(path);
	assert_int_equal(n_of(path), 2);
	/* ...and the next write goes where the torn one was, keeping it. */
	put(dir, "r.rec", 4, 10, true);
	assert_int_equal(n_of(path), 4);
	tear_newest(path);
	assert_int_equal(n_of(path), 2);
	put(dir, "r.rec", 5, 10, true);
	tear_newest(path);
	assert_int_equal(n_of(path), 2);

	/* Both torn: nothing; a write then makes the file anew. */
	put(dir, "r.rec", 6, 10, true);
	tear_newest(path);
	{
		int fd = open(path, O_RDWR);
		char c = 0;

		assert_int_equal(pwrite(fd, &c, 1, 40), 1);
		assert_int_equal(pwrite(fd, &c, 1, small / 2 + 40), 1);
		close(fd);
	}
	assert_int_equal(n_of(path), -1);
	put(dir, "r.rec", 7, 10, true);
	assert_int_equal(n_of(path), 7);

	/* A record larger than its slot: the file is made again, larger. */
	put(dir, "r.rec", 8, 40000, true);
	assert_int_equal(n_of(path), 8);
	assert_true(size_of(path) > small);
	put(dir, "r.rec", 9, 10, true);
	assert_int_equal(n_of(path), 9);

	/* A JSON record of an older version reads as it is. */
	{
		json_t *o = rec_n(10, 3);

		snprintf(path, sizeof path, "%s/old.json", dir);
		assert_int_equal(journal_write(dir, "old.json", o, true), 0);
		json_decref(o);
		assert_int_equal(n_of(path), 10);
	}
	assert_null(journal_parse("FERRYREC", 8));
	assert_null(journal_parse("", 0));
}

static void forget_jobs(void)
{
	pthread_mutex_lock(&D.lock);
	while (D.jobs) {
		struct job *k = D.jobs;

		D.jobs = k->next;
		job_free(k);
	}
	pthread_mutex_unlock(&D.lock);
}

static const char *error_of(const char *id)
{
	static char e[sizeof ((struct job *)0)->error];
	struct job *k;

	pthread_mutex_lock(&D.lock);
	k = job_find(id);
	snprintf(e, sizeof e, "%s", k ? k->error : "(no such job)");
	pthread_mutex_unlock(&D.lock);
	return e;
}

/* A job recorded by an older version (ID.json) is recovered as it is; once
 * an ID.rec stands beside it, that is the record and the .json goes. */
static void test_legacy_record(void **state)
{
	enum job_state made[JOB_STATE_MAX];
	char id[JOB_ID_LEN], rec[400], old[400], dir[300];
	struct job *j;
	json_t *o;
	int n;

	(void)state;
	j = job_at(JOB_UNRESOLVED, made, &n);
	assert_int_equal(job_set_state(j, JOB_FAILED, "new"), 0);
	snprintf(id, sizeof id, "%s", j->id);
	snprintf(dir, sizeof dir, "%s/jobs", base);
	snprintf(rec, sizeof rec, "%s/%s.rec", dir, id);
	snprintf(old, sizeof old, "%s/%s.json", dir, id);
	o = journal_load(rec);
	assert_non_null(o);
	json_object_set_new(o, "error", json_string("legacy"));
	assert_int_equal(journal_write(dir, strrchr(old, '/') + 1, o, true), 0);
	assert_int_equal(unlink(rec), 0);
	forget_jobs();
	quiet(true); /* other tests' jobs, recovered without a daemon */
	jobs_recover();
	quiet(false);
	assert_string_equal(error_of(id), "legacy");
	assert_true(size_of(old) > 0);

	json_object_set_new(o, "error", json_string("new"));
	assert_int_equal(journal_slots_write(dir, strrchr(rec, '/') + 1, o, true), 0);
	json_decref(o);
	forget_jobs();
	quiet(true);
	jobs_recover();
	quiet(false);
	assert_string_equal(error_of(id), "new");
	assert_int_equal(size_of(old), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed),	    cmocka_unit_test(test_forbidden),
		cmocka_unit_test(test_durable_points), cmocka_unit_test(test_journal_failure),
		cmocka_unit_test(test_names),	    cmocka_unit_test(test_reload),
		cmocka_unit_test(test_slots),	    cmocka_unit_test(test_legacy_record),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
