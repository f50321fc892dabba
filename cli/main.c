/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry — command-line tool. `ferry help` lists the subcommands.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "cli/client.h"
#include "cli/cli.h"
#include "cli/opts.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} cmds[] = {
	{ "create", create_main, "start a microVM owned by the local ferryd" },
	{ "adopt", adopt_main, "bring a domain started without ferryd (xen:NAME) under it" },
	{ "list", list_main, "list the local ferryd's microVMs" },
	{ "host", host_cmd_main, "show this host: capacity, pool record, migration port" },
	{ "info", info_main, "show one microVM" },
	{ "destroy", destroy_main, "end a microVM" },
	{ "verify", verify_main, "check every page of a microVM against its workload" },
	{ "migrate", migrate_main, "live-migrate a microVM to another host's ferryd" },
	{ "jobs", jobs_main, "list migration jobs" },
	{ "status", status_main, "show one job and its statistics" },
	{ "cancel", cancel_main, "cancel an outgoing migration" },
	{ "protect", protect_main, "keep a hot standby of a microVM on another host" },
	{ "unprotect", unprotect_main, "end a microVM's protection" },
	{ "takeover", takeover_main, "run a held standby copy anyway (loses what it lacks)" },
	{ "resolve", resolve_main, "settle a migration left unresolved after its point of no return" },
	{ "save", save_main, "save a running microVM to a file (then stop it, or --keep-running)" },
	{ "restore", restore_main, "start a microVM from a file written by save" },
	{ "dirtylog", dirtylog_main,
	  "run a microVM and compare its kernel dirty log with the workload's prediction" },
	{ "certs", certs_main, "create the pool's TLS certificates (CA, hosts, managers), or show one" },
	{ "pool", pool_main, "the pool manager: status, where, drain, consolidate, spread, watch" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry [--socket PATH] [--run-dir DIR] [--log-level LEVEL] COMMAND [ARGS]\n"
		   "       ferry --version\n\n"
		   "Live migration and replication of virtual machines.\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n`ferry COMMAND --help` describes a command. The options above may also follow\n"
		   "the command, and any option takes its value as --opt VALUE or --opt=VALUE.\n"
		   "With --json, a command prints JSON, its errors too. Environment: FERRY_RUN_DIR\n"
		   "(default /run/ferry), FERRY_SOCKET (ferryd's control socket, default\n"
		   "RUN_DIR/ferryd.sock), FERRY_LOG (error|warn|info|debug). save, restore,\n"
		   "dirtylog, certs and pool work without a local ferryd.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, 'V' },
		{ 0, 0, 0, 0 },
	};
	int c;

	signal(SIGPIPE, SIG_IGN);
	log_init("ferry", LOG_WARN);
	cli_scan_json(argc, argv);
	/* Options before the command; "+": stop at the command's name. */
	cli_getopt_begin();
	while ((c = cli_getopt(NULL, argc, argv, opts)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ferry %s\n", PACKAGE_VERSION);
			return 0;
		default:
			return 2; /* reported */
		}
	}
	if (optind == argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[optind], "version") == 0) {
		printf("ferry %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t k = 0; k < ARRAY_SIZE(cmds); k++)
		if (strcmp(argv[optind], cmds[k].name) == 0) {
			int i = optind;

			return cmds[k].fn(argc - i, argv + i);
		}
	return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
}
