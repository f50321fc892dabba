/* SPDX-License-Identifier: Apache-2.0 */
/* opts.c — options and errors of every ferry command; see opts.h. */
#include "cli/opts.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "cli/client.h"

#define OPTS_MAX 40

enum { OPT_SOCKET = 0x7f00, OPT_RUN_DIR, OPT_LOG_LEVEL };

static const struct option global_opts[] = {
	{ "socket", required_argument, 0, OPT_SOCKET },
	{ "run-dir", required_argument, 0, OPT_RUN_DIR },
	{ "log-level", required_argument, 0, OPT_LOG_LEVEL },
};

static bool json_mode;
static const char *last_name = "";

void cli_scan_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			json_mode = true;
}

bool cli_json(void) { return json_mode; }

static void __attribute__((format(printf, 2, 0))) verror(const char *prefix, const char *fmt,
							  va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof msg, fmt, ap);
	if (json_mode) {
		json_t *o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);

		print_json(o);
		json_decref(o);
	} else {
		fprintf(stderr, "%s: %s\n", prefix, msg);
	}
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror("ferry", fmt, ap);
	va_end(ap);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (json_mode)
		cli_error("%s%s%s", cmd ? cmd : "", cmd ? ": " : "", msg);
	else
		fprintf(stderr, "ferry%s%s: %s\n(`ferry%s%s --help` for usage)\n", cmd ? " " : "",
			cmd ? cmd : "", msg, cmd ? " " : "", cmd ? cmd : "");
	return 2;
}

int cli_bad_value(const char *cmd, const char *val, const char *want)
{
	return cli_usage_error(cmd, "--%s: '%s' is not %s", last_name, val, want);
}

int cli_global(const char *name, const char *arg)
{
	enum log_level lvl;

	if (strcmp(name, "socket") == 0) {
		client_set_socket(arg);
	} else if (strcmp(name, "run-dir") == 0) {
		ferry_set_run_dir(arg);
	} else if (strcmp(name, "log-level") == 0) {
		if (log_parse_level(arg, &lvl)) {
			cli_usage_error(NULL, "--log-level: '%s' is not error, warn, info or debug",
					arg);
			return -1;
		}
		log_set_level(lvl);
	}
	return 0;
}

void cli_getopt_begin(void)
{
	optind = 0; /* glibc: start over, reading the option string afresh */
}

const char *cli_optname(void) { return last_name; }

int cli_getopt(const char *cmd, int argc, char **argv, const struct option *opts)
{
	static struct option all[OPTS_MAX];
	size_t n = 0;
	int c, li = -1;

	for (; opts[n].name && n < OPTS_MAX - ARRAY_SIZE(global_opts) - 1; n++)
		all[n] = opts[n];
	for (size_t g = 0; g < ARRAY_SIZE(global_opts); g++)
		all[n++] = global_opts[g];
	all[n] = (struct option){ 0, 0, 0, 0 };
	opterr = 0;
	/* ferry's own options end at the command's name ("+"); a command's
	 * may follow its operands. */
	c = getopt_long(argc, argv, cmd ? ":h" : "+:h", all, &li);
	last_name = li >= 0 ? all[li].name : "";
	switch (c) {
	case OPT_SOCKET:
	case OPT_RUN_DIR:
	case OPT_LOG_LEVEL:
		if (cli_global(last_name, optarg))
			return CLI_OPT_ERROR;
		return cli_getopt(cmd, argc, argv, opts);
	case ':':
		cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
		return CLI_OPT_ERROR;
	case '?':
		if (optopt)
			cli_usage_error(cmd, "unknown option '-%c'", optopt);
		else
			cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		return CLI_OPT_ERROR;
	default:
		return c;
	}
}
