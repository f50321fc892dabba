/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protect.c — `ferry protect` and `ferry unprotect`: pair a running microVM
 * with a standby on another host, and end that (docs/replication.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/client.h"
#include "common/util.h"
#include "replicate/replicate.h"
#include "session/wire.h"

static const char protect_help[] =
	"usage: ferry protect NAME --peer HOST[:PORT] [options]\n"
	"\n"
	"Keeps a hot standby of the running microVM NAME on the ferryd at HOST: after\n"
	"an initial sync, every epoch the guest's dirty memory is copied there, and\n"
	"its network output is held until the standby has the epoch. When this host\n"
	"is lost, the standby resumes the guest from the last complete epoch and\n"
	"takes over its service address; no client loses a reply it was given.\n"
	"\n"
	"  --peer HOST[:PORT]      the standby's host (port 7480 by default)\n"
	"  --epoch-ms N            epoch length (default 25)\n"
	"  --heartbeat-ms N        silence that counts as a lost peer (default 400;\n"
	"                          at least two epochs)\n"
	"  --channels N            connections for the epochs (default: ferryd's)\n"
	"  --unsafe-no-fencing     protect with heartbeats alone: a network split can\n"
	"                          then run the guest on both hosts (without it, both\n"
	"                          ferryd need a coordination service: coord = etcd)\n"
	"  --detach                print the job id and return at once\n"
	"  --json                  print the job as one JSON object\n"
	"\n"
	"Without --detach it returns once the pair is protected (exit 0) or the sync\n"
	"failed (exit 1). `ferry status JOB` shows the epochs; `ferry unprotect NAME`\n"
	"ends the pairing.\n";

static const char takeover_help[] =
	"usage: ferry takeover NAME --force\n"
	"\n"
	"Runs the held standby copy of NAME on this host although etcd did not give\n"
	"it the VM (its primary was lost while this copy was not in sync, or etcd\n"
	"could not be asked). The copy resumes at the last epoch it applied whole:\n"
	"every write acknowledged to clients after it fell out of sync is LOST. Make\n"
	"sure the old primary is really gone first.\n";

static const char unprotect_help[] =
	"usage: ferry unprotect NAME\n"
	"\n"
	"Ends the protection of NAME: the standby discards its copy and the guest runs\n"
	"on here unprotected (on the standby's host: discards the standby there).\n";

/* Wait until the job is past its sync: its JSON, or NULL. */
static json_t *wait_synced(int fd, const char *id)
{
	for (;;) {
		json_t *r = client_call(fd, json_pack("{s:s, s:s, s:i}", "op", "status", "job", id,
						     "wait_ms", 1000));
		json_t *job;
		const char *st;

		if (!client_ok(r))
			return NULL;
		job = json_incref(json_object_get(r, "job"));
		json_decref(r);
		st = json_string_value(json_object_get(job, "state"));
		if (!st || strcmp(st, "active") != 0 ||
		    strcmp(json_string_value(json_object_get(job, "stage")) ?: "", "syncing") != 0)
			return job;
		json_decref(job);
	}
}

int protect_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "peer", required_argument, 0, 'p' },
		{ "epoch-ms", required_argument, 0, 'e' },
		{ "heartbeat-ms", required_argument, 0, 'b' },
		{ "channels", required_argument, 0, 'c' },
		{ "unsafe-no-fencing", no_argument, 0, 'U' },
		{ "detach", no_argument, 0, 'D' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	json_t *req = json_object(), *r, *job;
	bool json = false, detach = false, peer = false;
	const char *want = "";
	char range[48];
	uint64_t n;
	int c, fd, st;

	cli_getopt_begin();
	while ((c = cli_getopt("protect", argc, argv, opts)) != -1) {
		switch (c) {
		case 'p':
			json_object_set_new(req, "peer", json_string(optarg));
			peer = true;
			break;
		case 'e':
			want = "a number of ms from 1 to 60000";
			if (parse_u64(optarg, 1, 60000, &n))
				goto bad;
			json_object_set_new(req, "epoch_ms", json_integer((json_int_t)n));
			break;
		case 'b':
			want = "a number of ms from 20 to 600000";
			if (parse_u64(optarg, 20, 600000, &n))
				goto bad;
			json_object_set_new(req, "heartbeat_ms", json_integer((json_int_t)n));
			break;
		case 'c':
			snprintf(range, sizeof range, "an integer from 1 to %d", WIRE_CHANNELS_MAX);
			want = range;
			if (parse_u64(optarg, 1, WIRE_CHANNELS_MAX, &n))
				goto bad;
			json_object_set_new(req, "channels", json_integer((json_int_t)n));
			break;
		case 'U': json_object_set_new(req, "unsafe_no_fencing", json_true()); break;
		case 'D': detach = true; break;
		case 'j': json = true; break;
		case 'h':
			fputs(protect_help, stdout);
			json_decref(req);
			return 0;
		default:
			json_decref(req);
			return 2; /* reported */
		}
	}
	if (argc - optind != 1 || !peer) {
		json_decref(req);
		return cli_usage_error("protect", argc - optind != 1 ? "expects one VM's NAME"
								  : "--peer HOST is required");
	}
	json_object_set_new(req, "op", json_string("protect"));
	json_object_set_new(req, "name", json_string(argv[optind]));
	if ((fd = client_open()) < 0) {
		json_decref(req);
		return 1;
	}
	r = client_call(fd, req);
	if (!client_ok(r)) {
		client_close(fd);
		return 1;
	}
	if (detach) {
		if (json)
			print_json(r);
		else
			printf("%s\n", json_string_value(json_object_get(r, "job")));
		json_decref(r);
		client_close(fd);
		return 0;
	}
	job = wait_synced(fd, json_string_value(json_object_get(r, "job")));
	json_decref(r);
	client_close(fd);
	if (!job)
		return 1;
	st = strcmp(json_string_value(json_object_get(job, "stage")) ?: "", "protected") ? 1 : 0;
	if (json)
		print_json(job);
	else if (!st)
		printf("%s is protected by %s (job %s)\n", argv[optind],
		       json_string_value(json_object_get(job, "peer")),
		       json_string_value(json_object_get(job, "id")));
	else
		cli_error("protect: %s", json_string_value(json_object_get(job, "error")) ?: "failed");
	json_decref(job);
	return st;
bad:
	json_decref(req);
	return cli_bad_value("protect", optarg, want);
}

/* NAME [--force]: the operand's index, -1 (exit 2, reported), -2 (help). */
static int name_opts(int argc, char **argv, const char *help, bool *force)
{
	static const struct option opts[] = {
		{ "force", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;

	cli_getopt_begin();
	while ((c = cli_getopt(argv[0], argc, argv, opts)) != -1) {
		if (c == 'h') {
			fputs(help, stdout);
			return -2;
		}
		if (c != 'f' || !force) {
			if (c == 'f')
				cli_usage_error(argv[0], "unknown option '--force'");
			return -1;
		}
		*force = true;
	}
	if (argc - optind != 1) {
		cli_usage_error(argv[0], "expects one VM's NAME");
		return -1;
	}
	return optind;
}

int unprotect_main(int argc, char **argv)
{
	int i = name_opts(argc, argv, unprotect_help, NULL);
	json_t *r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	r = client_call1(json_pack("{s:s, s:s}", "op", "unprotect", "name", argv[i]));
	if (!client_ok(r))
		return 1;
	json_decref(r);
	return 0;
}

int takeover_main(int argc, char **argv)
{
	bool force = false;
	int i = name_opts(argc, argv, takeover_help, &force);
	json_t *r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (!force)
		return cli_usage_error("takeover", "runs a copy that may lack acknowledged writes "
				       "only with --force");
	r = client_call1(json_pack("{s:s, s:s, s:b}", "op", "takeover", "name", argv[i], "force", 1));
	if (!client_ok(r))
		return 1;
	fprintf(stderr, "ferry takeover: %s\n", json_string_value(json_object_get(r, "warning")));
	json_decref(r);
	return 0;
}
