/*
 * ferry — command-line tool. `ferry help` lists the subcommands.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "cli/client.h"
#include "cli/cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} cmds[] = {
	{ "create", create_main, "start a microVM owned by the local ferryd" },
	{ "list", list_main, "list the local ferryd's microVMs" },
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
	{ "certs", certs_main, "create the pool's TLS CA and host certificates, or show one" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry [--socket PATH] [--run-dir DIR] [--log-level LEVEL] COMMAND [ARGS]\n\n"
		   "Live migration and replication of virtual machines.\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n`ferry COMMAND --help` describes a command. Environment: FERRY_RUN_DIR "
		   "(default /run/ferry),\nFERRY_SOCKET (ferryd's control socket, default RUN_DIR/ferryd.sock), "
		   "FERRY_LOG\n(error|warn|info|debug). save, restore, dirtylog and certs work "
		   "without ferryd.\n");
}

int main(int argc, char **argv)
{
	enum log_level lvl = LOG_WARN;
	int i = 1;

	signal(SIGPIPE, SIG_IGN);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc) {
			ferry_set_run_dir(argv[++i]);
		} else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			client_set_socket(argv[++i]);
		} else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
			if (log_parse_level(argv[++i], &lvl)) {
				fprintf(stderr, "ferry: --log-level: error, warn, info or debug\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "ferry: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	log_init("ferry", lvl);
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t k = 0; k < ARRAY_SIZE(cmds); k++)
		if (strcmp(argv[i], cmds[k].name) == 0)
			return cmds[k].fn(argc - i, argv + i);
	fprintf(stderr, "ferry: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
