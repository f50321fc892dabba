/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry migrate / jobs / status / cancel / resolve — live migration through
 * the local ferryd.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "api/api.h"
#include "migrate/precopy.h"
#include "session/wire.h"
#include "cli/client.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/progress.h"

static const char migrate_help[] =
	"usage: ferry migrate NAME HOST[:PORT] [options]\n"
	"       ferry migrate --resume JOB [HOST[:PORT]] [--json]\n"
	"\n"
	"Moves the running microVM NAME to the ferryd on HOST (port 7480 by default)\n"
	"by live pre-copy: memory is copied while the guest runs, then the guest is\n"
	"paused for a short stop-and-copy and resumed on HOST. If anything fails\n"
	"before the destination has the whole guest, it keeps running here.\n"
	"\n"
	"  --downtime-ms MS        the pause to aim for (default: ferryd's, 300)\n"
	"  --max-iters N           copy passes before the no-converge policy applies (30)\n"
	"  --bandwidth RATE        limit over all channels, bytes per second: 100M means\n"
	"                          100 MiB/s; at least 1M (default: none)\n"
	"  --on-no-converge P      stop (pause anyway), throttle (slow the guest down\n"
	"                          until it converges), abort (keep it here) or\n"
	"                          postcopy (switch over and send the rest after)\n"
	"  --resume JOB [HOST]     go on with a post-copy whose link failed (it retries\n"
	"                          by itself once a second; this tries now, at HOST if\n"
	"                          given: a new address of the same destination)\n"
	"  --postcopy              switch over after the first copy pass: the guest\n"
	"                          runs on HOST at once, and the memory it has not got\n"
	"                          yet follows, fetched first where it waits on it.\n"
	"                          Until the last page is there the guest lives on both\n"
	"                          hosts: if the link fails, both wait (the job shows\n"
	"                          postcopy-paused) and the move goes on once it is back;\n"
	"                          if either host or its ferryd dies meanwhile, the guest\n"
	"                          is lost. Refused for a protected VM (ferry protect)\n"
	"                          and on a backend without it (Xen)\n"
	"  --peer-timeout-ms MS    give up on a silent destination after MS (15000)\n"
	"  --channels N            connections to carry the guest, each with its own\n"
	"                          sending thread (default: ferryd's, the number of cores)\n"
	"  --wait                  follow the job to its end (the default)\n"
	"  --detach                print the job id and return at once\n"
	"  --json                  print the final job as one JSON object\n"
	"\n"
	"On a terminal, a progress line shows the pass and how far it is, the time\n"
	"left overall, the throughput, the expected downtime, what was sent and the\n"
	"dirty rate, as much as the terminal's width fits. Ctrl-C cancels the\n"
	"migration (unless it is past its point of no return). Exit status: 0 migrated,\n"
	"1 failed or cancelled (the guest runs here), 3 unresolved (see ferry resolve),\n"
	"4 lost (post-copy failed: no copy runs; the stale one here stays paused).\n";

static const char jobs_help[] = "usage: ferry jobs [--json]\n\nLists this host's migration jobs, "
				"newest first.\n";
static const char status_help[] =
	"usage: ferry status JOB|VM [--json]\n\nShows one job and its statistics: the job with "
	"that id, or the VM's\nactive job, else its newest.\n";
static const char cancel_help[] =
	"usage: ferry cancel JOB\n\nStops an outgoing migration and leaves the guest running "
	"here. Refused once\nGO was sent: the job then ends on its own or becomes unresolved.\n";
static const char resolve_help[] =
	"usage: ferry resolve JOB [--force source|destination] [--json]\n"
	"\n"
	"An unresolved job sent GO but heard no RUNNING: the guest is paused here and\n"
	"may or may not run on the destination. ferryd asks the destination once a\n"
	"second by itself; this asks now and waits up to 15 s for the answer.\n"
	"\n"
	"If the destination cannot answer (its host is gone), the operator decides:\n"
	"  --force source        the destination's copy is known dead: resume here\n"
	"  --force destination   the destination runs it: destroy the copy here\n"
	"Forcing the wrong side can leave two copies running, or none.\n";

#define RESOLVE_WAIT_MS 15000

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static double jnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return v ? json_number_value(v) : 0;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

/* Whether the job's state is s. */
static bool job_is(json_t *job, enum api_job_state s)
{
	return api_job_state_parse(jstr(job, "state")) == s;
}

/*
 * Overall time left: the rest of this pass at the rate it is sent, and the
 * passes after it, each carrying what was dirtied during the one before —
 * a geometric series, rest / (rate - dirty rate). Unknown (< 0) while the
 * guest dirties as fast as the link carries, or the rate is not known.
 */
static double overall_eta(double rest, double rate, double dirty_rate)
{
	return rate > 0 && dirty_rate < rate ? rest / (rate - dirty_rate) : -1;
}

/* The progress line for one status snapshot: the VM, its phase, the pass
 * and how far it is, the overall ETA, the throughput, the expected
 * downtime, bytes sent and the dirty rate, as many as the terminal fits. */
static void draw(json_t *job, double *pos0, uint64_t *t0, bool tty)
{
	json_t *s = json_object_get(job, "stats");
	double pos = jnum(s, "iter_pos"), frames = jnum(s, "iter_frames"), frac;
	double ram = jnum(s, "ram_bytes"), rate = 0, eta = -1;
	const char *phase = jstr(s, "phase");
	uint64_t now = mono_ns();
	struct status_line l;
	char bar[40], b[32];

	if (!tty)
		return;
	frac = frames > 0 ? pos / frames : 0;
	if (pos < *pos0 || !*t0) {
		*pos0 = pos;
		*t0 = now;
	} else if (now > *t0 && pos > *pos0) {
		rate = (pos - *pos0) / ns_to_sec(now - *t0);
		eta = overall_eta(frames - pos, rate, jnum(s, "dirty_rate"));
	}
	status_line_init(&l, terminal_columns());
	status_line_add(&l, "%s %s", jstr(job, "vm"), phase);
	status_line_add(&l, "pass %d %s %3.0f%%", (int)jnum(s, "pass"),
			status_bar(bar, l.width >= 120 ? 20 : 10, frac), frac * 100);
	if (strcmp(phase, "iterating") == 0)
		status_line_add(&l, "ETA %s", eta >= 0 ? fmt_duration(eta, b, sizeof b) : "?");
	status_line_add(&l, "%s/s", fmt_bytes(jnum(s, "throughput"), b, sizeof b));
	status_line_add(&l, "downtime ~%.0f ms", jnum(s, "expected_downtime_ms"));
	status_line_add(&l, "sent %s (%.0f%% of RAM)", fmt_bytes(jnum(s, "bytes"), b, sizeof b),
			ram > 0 ? jnum(s, "bytes") / ram * 100 : 0.0);
	status_line_add(&l, "dirty %.0f p/s", jnum(s, "dirty_rate"));
	status_line_draw(&l);
}

static void summary(json_t *job)
{
	json_t *s = json_object_get(job, "stats"), *p = json_object_get(s, "pages");
	const char *state = jstr(job, "state");
	char b[32];

	if (job_is(job, API_JOB_COMPLETED)) {
		printf("%s: migrated to %s in %.2f s: downtime %.1f ms, %s on the wire, "
		       "%d dirty-log pass(es) after the first, %s/s\n"
		       "  over %.0f %s channel(s); pages: %.0f raw, %.0f lz4, %.0f delta, %.0f zero\n",
		       jstr(job, "vm"), jstr(job, "peer"), jnum(s, "total_ms") / 1000,
		       jnum(s, "downtime_ms"), fmt_bytes(jnum(s, "bytes"), b, sizeof b),
		       (int)jnum(s, "iterations"),
		       fmt_bytes(jnum(s, "throughput"), (char[32]){ 0 }, 32), jnum(job, "channels"),
		       jstr(job, "transport"), jnum(p, "raw"), jnum(p, "lz4"), jnum(p, "delta"),
		       jnum(s, "zero_pages"));
		if (jstr(job, "warning")[0])
			fprintf(stderr, "ferry: warning: %s: %s\n", jstr(job, "vm"),
				jstr(job, "warning"));
	} else if (job_is(job, API_JOB_UNRESOLVED)) {
		fprintf(stderr, "ferry: %s: UNRESOLVED: %s\n"
			"       ferryd keeps asking %s; `ferry resolve %s` to ask now\n",
			jstr(job, "vm"), jstr(job, "error"), jstr(job, "peer"), jstr(job, "id"));
	} else {
		fprintf(stderr, "ferry: %s: migration %s: %s\n       the guest keeps running "
			"on this host\n", jstr(job, "vm"), state, jstr(job, "error"));
	}
}

static int exit_status(json_t *job)
{
	const json_t *stage = json_object_get(job, "stage");

	if (json_is_string(stage) && strcmp(json_string_value(stage), "lost") == 0)
		return 4; /* post-copy failed: no copy runs */
	return job_is(job, API_JOB_COMPLETED) ? 0 : job_is(job, API_JOB_UNRESOLVED) ? 3 : 1;
}

/* Poll the job until it is no longer active; returns the final job. */
static json_t *follow(int fd, const char *id, bool cancel_on_int)
{
	bool tty = isatty(STDERR_FILENO), cancelled = false;
	double pos0 = 0;
	uint64_t t0 = 0;
	json_t *job = NULL;

	for (;;) {
		json_t *r = client_call(fd, json_pack("{s:s, s:s}", "op", "status", "job", id));

		if (!client_ok(r))
			return NULL;
		json_decref(job);
		job = json_incref(json_object_get(r, "job"));
		json_decref(r);
		if (!job_is(job, API_JOB_ACTIVE))
			break;
		draw(job, &pos0, &t0, tty);
		if (interrupted && cancel_on_int && !cancelled) {
			r = client_call(fd, json_pack("{s:s, s:s}", "op", "cancel", "job", id));
			if (tty)
				status_line_clear();
			if (client_ok(r)) {
				fprintf(stderr, "ferry: cancelling job %s\n", id);
				json_decref(r);
			}
			cancelled = true;
		}
		usleep(tty ? 100000 : 200000);
	}
	if (tty)
		status_line_clear();
	return job;
}

int migrate_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "downtime-ms", required_argument, 0, 'd' },
		{ "max-iters", required_argument, 0, 'i' },
		{ "bandwidth", required_argument, 0, 'b' },
		{ "on-no-converge", required_argument, 0, 'p' },
		{ "peer-timeout-ms", required_argument, 0, 't' },
		{ "channels", required_argument, 0, 'c' },
		{ "postcopy", no_argument, 0, 'P' },
		{ "resume", required_argument, 0, 'R' },
		{ "wait", no_argument, 0, 'W' },
		{ "detach", no_argument, 0, 'D' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	json_t *req = json_object(), *r, *job;
	bool json = false, detach = false;
	const char *resume = NULL;
	enum noconv_policy pol;
	const char *id, *want;
	char range[48];
	uint64_t n;
	int c, fd, st;

	cli_getopt_begin();
	while ((c = cli_getopt("migrate", argc, argv, opts)) != -1) {
		switch (c) {
		case 'd':
			if (parse_u64(optarg, 1, 3600000, &n)) {
				want = "a number of ms from 1 to 3600000";
				goto bad;
			}
			json_object_set_new(req, "downtime_ms", json_integer((json_int_t)n));
			break;
		case 'i':
			if (parse_u64(optarg, 1, 1000, &n)) {
				want = "an integer from 1 to 1000";
				goto bad;
			}
			json_object_set_new(req, "max_iters", json_integer((json_int_t)n));
			break;
		case 'b':
			if (parse_size(optarg, UINT64_MAX / 2, &n) || n < (1u << 20)) {
				want = "a rate of at least 1M (bytes per second; K, M, G suffixes)";
				goto bad;
			}
			json_object_set_new(req, "bandwidth", json_integer((json_int_t)n));
			break;
		case 'p':
			if (mig_policy_parse(optarg, &pol)) {
				want = MIG_POLICY_NAMES;
				goto bad;
			}
			json_object_set_new(req, "on_no_converge", json_string(optarg));
			break;
		case 't':
			if (parse_u64(optarg, 100, 3600000, &n)) {
				want = "a number of ms from 100 to 3600000";
				goto bad;
			}
			json_object_set_new(req, "peer_timeout_ms", json_integer((json_int_t)n));
			break;
		case 'c':
			if (parse_u64(optarg, 1, WIRE_CHANNELS_MAX, &n)) {
				snprintf(range, sizeof range, "an integer from 1 to %d",
					 WIRE_CHANNELS_MAX);
				want = range;
				goto bad;
			}
			json_object_set_new(req, "channels", json_integer((json_int_t)n));
			break;
		case 'P': json_object_set_new(req, "postcopy", json_true()); break;
		case 'R': resume = optarg; break;
		case 'W': detach = false; break;
		case 'D': detach = true; break;
		case 'j': json = true; break;
		case 'h':
			fputs(migrate_help, stdout);
			json_decref(req);
			return 0;
		default:
			json_decref(req);
			return 2; /* reported */
		}
	}
	if (resume && argc - optind > 1) {
		json_decref(req);
		return cli_usage_error("migrate", "--resume JOB takes at most a new HOST[:PORT]");
	}
	if (!resume && argc - optind != 2) {
		json_decref(req);
		return cli_usage_error("migrate", "expects a VM's NAME and the destination HOST[:PORT]");
	}
	if (resume) {
		/* A paused post-copy: its options are set; a new address may be. */
		json_decref(req);
		req = json_pack("{s:s, s:s}", "op", "resume", "job", resume);
		if (argc - optind == 1)
			json_object_set_new(req, "dest", json_string(argv[optind]));
	} else {
		json_object_set_new(req, "op", json_string("migrate"));
		json_object_set_new(req, "name", json_string(argv[optind]));
		json_object_set_new(req, "dest", json_string(argv[optind + 1]));
	}
	if ((fd = client_open()) < 0) {
		json_decref(req);
		return 1;
	}
	r = client_call(fd, req);
	if (!client_ok(r)) {
		client_close(fd);
		return 1;
	}
	id = resume ? resume : jstr(r, "job");
	if (detach) {
		if (json)
			print_json(r);
		else
			printf("%s\n", id);
		json_decref(r);
		client_close(fd);
		return 0;
	}
	/* Ctrl-C cancels a migration; never a resumed post-copy (that would
	 * give the guest up). */
	if (!resume)
		signal(SIGINT, on_sigint);
	job = follow(fd, id, !resume);
	json_decref(r);
	client_close(fd);
	if (!job)
		return 1;
	if (json)
		print_json(job);
	else
		summary(job);
	st = exit_status(job);
	json_decref(job);
	return st;
bad:
	json_decref(req);
	return cli_bad_value("migrate", optarg, want);
}

static int job_opts(const char *cmd, int argc, char **argv, const char *help, bool *json,
		    const char **force)
{
	static const struct option opts[] = {
		{ "json", no_argument, 0, 'j' },
		{ "force", required_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;

	cli_getopt_begin();
	while ((c = cli_getopt(cmd, argc, argv, opts)) != -1) {
		if (c == 'j') {
			*json = true;
		} else if (c == 'f' && force) {
			if (strcmp(optarg, "source") && strcmp(optarg, "destination")) {
				cli_bad_value(cmd, optarg, "source or destination");
				return -1;
			}
			*force = optarg;
		} else if (c == 'h') {
			fputs(help, stdout);
			return -2;
		} else {
			if (c != CLI_OPT_ERROR)
				cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	return optind;
}

int jobs_main(int argc, char **argv)
{
	bool json = false;
	int i = job_opts("jobs", argc, argv, jobs_help, &json, NULL);
	json_t *r, *job;
	size_t k;

	if (i < 0)
		return i == -2 ? 0 : 2;
	r = client_call1(json_pack("{s:s}", "op", "jobs"));
	if (!client_ok(r))
		return 1;
	if (json) {
		print_json(json_object_get(r, "jobs"));
	} else {
		printf("%-13s %-3s %-16s %-22s %-10s %-13s %s\n", "JOB", "DIR", "VM", "PEER",
		       "STATE", "PHASE", "DOWNTIME / ERROR");
		json_array_foreach(json_object_get(r, "jobs"), k, job) {
			json_t *s = json_object_get(job, "stats");
			char d[32];

			if (json_is_null(json_object_get(s, "downtime_ms")))
				snprintf(d, sizeof d, "resumed in %.1f ms",
					 jnum(s, "destination_resume_ms"));
			else
				snprintf(d, sizeof d, "%.1f ms%s", jnum(s, "downtime_ms"),
					 json_is_true(json_object_get(s, "downtime_target_missed"))
						 ? " (target missed)" : "");
			printf("%-13s %-3s %-16s %-22s %-10s %-13s %s\n", jstr(job, "id"),
			       jstr(job, "direction"), jstr(job, "vm"), jstr(job, "peer"),
			       jstr(job, "state"), jstr(job, "phase"),
			       jstr(job, "error")[0] ? jstr(job, "error")
			       : job_is(job, API_JOB_COMPLETED) ? d : "");
		}
	}
	json_decref(r);
	return 0;
}

static void print_job(json_t *job)
{
	json_t *s = json_object_get(job, "stats"), *p = json_object_get(s, "pages"), *t;
	char b[32];

	printf("job            %s\n", jstr(job, "id"));
	printf("direction      %s\n", jstr(job, "direction"));
	printf("vm             %s\n", jstr(job, "vm"));
	printf("peer           %s\n", jstr(job, "peer"));
	if (jstr(job, "transport")[0])
		printf("transport      %s, %.0f channel(s)\n", jstr(job, "transport"),
		       jnum(job, "channels"));
	printf("state          %s\n", jstr(job, "state"));
	if (jstr(job, "error")[0])
		printf("error          %s\n", jstr(job, "error"));
	printf("phase          %s\n", jstr(s, "phase"));
	printf("setup time     %.1f ms\n", jnum(s, "setup_ms"));
	printf("total time     %.1f ms\n", jnum(s, "total_ms"));
	if (json_is_null(json_object_get(s, "downtime_ms")))
		printf("downtime       measured by the source (its job); resumed here in %.1f ms\n",
		       jnum(s, "destination_resume_ms"));
	else
		printf("downtime       %.1f ms%s\n", jnum(s, "downtime_ms"),
		       json_is_true(json_object_get(s, "downtime_target_missed"))
			       ? " (MISSED the target)" : "");
	if ((t = json_object_get(s, "downtime_steps")))
		printf("  its steps    pause %.1f, harvest %.1f, last pages %.1f, context %.1f, "
		       "address released %.1f, READY %.1f, GO to running %.1f (resume there %.1f) ms\n",
		       jnum(t, "pause_ms"), jnum(t, "final_harvest_ms"), jnum(t, "last_pages_ms"),
		       jnum(t, "context_ms"), jnum(t, "release_ms"), jnum(t, "ready_ms"),
		       jnum(t, "go_to_running_ms"), jnum(t, "destination_resume_ms"));
	if ((t = json_object_get(s, "expected_downtime_steps")))
		printf("expected dt    %.1f ms: last pages %.1f, fixed %.1f, round trips %.1f "
		       "(RTT %.2f) ms\n", jnum(s, "expected_downtime_ms"), jnum(t, "last_pages_ms"),
		       jnum(t, "fixed_ms"), jnum(t, "round_trips_ms"), jnum(t, "rtt_ms"));
	else
		printf("expected dt    %.1f ms\n", jnum(s, "expected_downtime_ms"));
	if (jstr(job, "warning")[0])
		printf("warning        %s\n", jstr(job, "warning"));
	printf("on the wire    %s\n", fmt_bytes(jnum(s, "bytes"), b, sizeof b));
	printf("guest RAM      %s\n", fmt_bytes(jnum(s, "ram_bytes"), b, sizeof b));
	printf("pages          %.0f raw, %.0f lz4, %.0f delta, %.0f zero\n", jnum(p, "raw"),
	       jnum(p, "lz4"), jnum(p, "delta"), jnum(s, "zero_pages"));
	printf("iterations     %.0f after the first pass\n", jnum(s, "iterations"));
	if ((t = json_object_get(s, "passes")) && json_array_size(t)) {
		size_t i;
		json_t *q;

		printf("  pass      pages      bytes        ms  dirty/s  exp. dt ms\n");
		json_array_foreach(t, i, q)
			printf("  %4.0f%s %9.0f %10s %9.1f %8.0f %11.1f\n", jnum(q, "pass"),
			       json_is_true(json_object_get(q, "final")) ? "*" : " ", jnum(q, "pages"),
			       fmt_bytes(jnum(q, "bytes"), b, sizeof b), jnum(q, "ms"),
			       jnum(q, "dirty_rate"), jnum(q, "expected_downtime_ms"));
	}
	printf("dirty rate     %.0f pages/s\n", jnum(s, "dirty_rate"));
	printf("throughput     %s/s\n", fmt_bytes(jnum(s, "throughput"), b, sizeof b));
	printf("throttle       %.0f%%\n", jnum(s, "throttle"));
	if ((s = json_object_get(job, "replication"))) {
		printf("replication    %s, epoch %.0f (acknowledged %.0f)\n", jstr(s, "state"),
		       jnum(s, "epoch"), jnum(s, "acked"));
		printf("epochs         %.0f, %.1f/s of %.0f ms; heartbeat %.0f ms\n", jnum(s, "epochs"),
		       jnum(s, "epochs_per_s"), jnum(s, "epoch_ms"), jnum(s, "heartbeat_ms"));
		printf("pause          p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", jnum(s, "pause_p50_ms"),
		       jnum(s, "pause_p99_ms"), jnum(s, "pause_max_ms"));
		printf("per epoch      %s, %.0f dirty pages\n",
		       fmt_bytes(jnum(s, "bytes_per_epoch"), b, sizeof b),
		       jnum(s, "dirty_pages_per_epoch"));
		printf("output delay   %.2f ms; last commit %.0f ms ago\n", jnum(s, "output_delay_ms"),
		       jnum(s, "since_commit_ms"));
		printf("staging        %s", fmt_bytes(jnum(s, "staging_bytes"), b, sizeof b));
		printf(" of %s\n", fmt_bytes(jnum(s, "staging_max"), b, sizeof b));
		printf("fencing        %s\n", json_is_true(json_object_get(s, "fencing"))
						? "etcd" : "none (unsafe: heartbeats alone)");
	}
	if ((s = json_object_get(job, "fence"))) {
		printf("lease          %s (token %.0f)%s\n",
		       json_is_true(json_object_get(s, "lease_valid")) ? "valid" : "NOT valid",
		       jnum(s, "token"), json_is_true(json_object_get(s, "in_sync"))
						 ? "; the backup is named in sync" : "");
	}
}

/* ferry status / cancel: one JOB operand, one request. */
static json_t *job_call(int argc, char **argv, const char *op, const char *help, bool *json,
			int *status)
{
	int i = job_opts(op, argc, argv, help, json, NULL);
	json_t *r;

	*status = i == -2 ? 0 : 2;
	if (i < 0)
		return NULL;
	if (argc - i != 1) {
		cli_usage_error(op, "expects one JOB%s", strcmp(op, "status") ? "" : " or VM");
		return NULL;
	}
	r = client_call1(json_pack("{s:s, s:s}", "op", op, "job", argv[i]));
	*status = 1;
	return client_ok(r) ? r : NULL;
}

int status_main(int argc, char **argv)
{
	bool json = false;
	int st;
	json_t *r = job_call(argc, argv, "status", status_help, &json, &st);

	if (!r)
		return st;
	if (json)
		print_json(json_object_get(r, "job"));
	else
		print_job(json_object_get(r, "job"));
	json_decref(r);
	return 0;
}

int cancel_main(int argc, char **argv)
{
	bool json = false;
	int st;
	json_t *r = job_call(argc, argv, "cancel", cancel_help, &json, &st);

	if (!r)
		return st;
	printf("cancelling job %s; the guest keeps running here\n", argv[argc - 1]);
	json_decref(r);
	return 0;
}

int resolve_main(int argc, char **argv)
{
	bool json = false;
	const char *force = NULL;
	int i = job_opts("resolve", argc, argv, resolve_help, &json, &force), fd, st;
	json_t *req, *r, *job = NULL;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (argc - i != 1)
		return cli_usage_error("resolve", "expects one JOB");
	req = json_pack("{s:s, s:s}", "op", "resolve", "job", argv[i]);
	if (force)
		json_object_set_new(req, "force", json_string(force));
	if ((fd = client_open()) < 0) {
		json_decref(req);
		return 1;
	}
	r = client_call(fd, req);
	if (!client_ok(r)) {
		client_close(fd);
		return 1;
	}
	json_decref(r);
	/* ferryd answers each status once the job has changed, or when the
	 * time left runs out. */
	for (uint64_t end = mono_ns() + RESOLVE_WAIT_MS * NSEC_PER_MSEC;;) {
		uint64_t now = mono_ns();
		int ms = now < end ? (int)((end - now) / NSEC_PER_MSEC) : 0;

		r = client_call(fd, json_pack("{s:s, s:s, s:i}", "op", "status", "job", argv[i],
					      "wait_ms", ms));
		if (!client_ok(r))
			break;
		json_decref(job);
		job = json_incref(json_object_get(r, "job"));
		json_decref(r);
		if (!job_is(job, API_JOB_UNRESOLVED) || !ms)
			break;
	}
	client_close(fd);
	if (!job)
		return 1;
	if (json)
		print_json(job);
	else if (job_is(job, API_JOB_UNRESOLVED))
		fprintf(stderr, "ferry: job %s is still unresolved: the destination did not answer."
			"\n       ferryd keeps asking; --force source|destination decides now.\n",
			argv[i]);
	else
		printf("job %s resolved: %s%s%s\n", argv[i], jstr(job, "state"),
		       jstr(job, "error")[0] ? ": " : "", jstr(job, "error"));
	st = exit_status(job);
	json_decref(job);
	return st;
}
