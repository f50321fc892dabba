/* SPDX-License-Identifier: Apache-2.0 */
/*
 * opts.h — how every ferry command reads its options and reports errors.
 *
 * One parser: each command's options go through cli_getopt, which also
 * takes the global options (--socket, --run-dir, --log-level) wherever they
 * appear, in both forms (--socket PATH and --socket=PATH), as ferry's main
 * does before the command name.
 *
 * One line per error, naming the option and what it accepts
 * ("ferry migrate: --channels: '100' is not an integer from 1 to 16"), then
 * where the help is; exit status 2 for a usage error. With --json anywhere
 * on the command line, errors are printed as one JSON object on standard
 * output instead, {"ok":false,"error":"..."}, so that a script reads one
 * kind of output.
 */
#ifndef FERRY_CLI_OPTS_H
#define FERRY_CLI_OPTS_H

#include <getopt.h>
#include <stdbool.h>

#define CLI_OPT_ERROR 0x7ffe /* cli_getopt: an error was reported */

/* Before any command runs: note --json anywhere in argv (up to "--"). */
void cli_scan_json(int argc, char **argv);
bool cli_json(void);

/*
 * getopt_long over opts (a command's, "help" among them) and the global
 * options. Returns the option's val, -1 at the end of the options (optind
 * is the first operand), or CLI_OPT_ERROR after reporting an unknown
 * option, a missing value or a bad global value. cmd: "migrate",
 * "certs host"; NULL for ferry's own options, which end at the first
 * operand (the command). Call cli_getopt_begin first.
 */
void cli_getopt_begin(void);
int cli_getopt(const char *cmd, int argc, char **argv, const struct option *opts);
/* The long name of the option cli_getopt returned last ("channels"). */
const char *cli_optname(void);

/* A global option (from main): 0, or -1 after reporting a bad value. */
int cli_global(const char *name, const char *arg);

/* "ferry CMD: --OPT: 'VAL' is not WANT" (want: "an integer from 1 to 16"),
 * for the option cli_getopt returned last. Returns 2. */
int cli_bad_value(const char *cmd, const char *val, const char *want);
/* "ferry CMD: <what>" and where the help is (cmd NULL: ferry's own).
 * Returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An error that is not about usage: "ferry: <what>" on stderr, or the JSON
 * object on stdout under --json. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
