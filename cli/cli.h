/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry.h — the ferry command line: one file per subcommand, each a
 * <verb>_main(argc, argv) dispatched from the table in ferry.c.
 */
#ifndef FERRY_CLI_CLI_H
#define FERRY_CLI_CLI_H

int dirtylog_main(int argc, char **argv);
int save_main(int argc, char **argv);
int restore_main(int argc, char **argv);
int create_main(int argc, char **argv);
int list_main(int argc, char **argv);
int host_cmd_main(int argc, char **argv);
int info_main(int argc, char **argv);
int adopt_main(int argc, char **argv);
int destroy_main(int argc, char **argv);
int verify_main(int argc, char **argv);
int migrate_main(int argc, char **argv);
int jobs_main(int argc, char **argv);
int status_main(int argc, char **argv);
int cancel_main(int argc, char **argv);
int resolve_main(int argc, char **argv);
int certs_main(int argc, char **argv);
int pool_main(int argc, char **argv);
int protect_main(int argc, char **argv);
int unprotect_main(int argc, char **argv);
int takeover_main(int argc, char **argv);

#endif
