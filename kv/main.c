/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry-kv — a client of the microVM's kvstore guest, for tests, benchmarks
 * and operators (docs/kvstore.md).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "kv/kv.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} cmds[] = {
	{ "load", load_main, "run pipelined clients against a kvstore, writing a history" },
	{ "check", check_main, "read a kvstore back and check it against histories" },
	{ "echo", echo_main, "a trivial server of the protocol (the client's own limit)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry-kv COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-6s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n`ferry-kv COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ferry-kv %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "ferry-kv: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
