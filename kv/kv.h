/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kv.h — ferry-kv, the kvstore client (docs/kvstore.md): one file per
 * subcommand, dispatched from main.c.
 */
#ifndef FERRY_KV_KV_H
#define FERRY_KV_KV_H

int load_main(int argc, char **argv);
int check_main(int argc, char **argv);
int echo_main(int argc, char **argv);

#endif
