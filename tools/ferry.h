/*
 * ferry.h — the ferry command line: one file per subcommand, each a
 * <verb>_main(argc, argv) dispatched from the table in ferry.c.
 */
#ifndef FERRY_TOOLS_FERRY_H
#define FERRY_TOOLS_FERRY_H

int dirtylog_main(int argc, char **argv);
int save_main(int argc, char **argv);
int restore_main(int argc, char **argv);

#endif
