/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.h — the ferry CLI's side of ferryd's control socket: one JSON
 * request and reply per line (docs/ferryd.md).
 */
#ifndef FERRY_CLI_CLIENT_H
#define FERRY_CLI_CLIENT_H

#include <stdbool.h>

#include <jansson.h>

/* The socket: set by --socket, else $FERRY_SOCKET, else RUN_DIR/ferryd.sock. */
void client_set_socket(const char *path);
const char *client_socket(void);

/* Connect; prints a clear error and returns -1 if ferryd is not there. */
int client_open(void);
void client_close(int fd);
/*
 * Send req (stolen) and return the reply object; NULL after printing an
 * error if the daemon could not be reached. A reply with "ok": false is
 * returned as it is; client_ok() prints its error.
 */
json_t *client_call(int fd, json_t *req);
/* One call on a fresh connection. */
json_t *client_call1(json_t *req);
/* True if reply is ok; else prints "ferry: <error>" and decrefs it. */
bool client_ok(json_t *reply);
/* Print o as one line of JSON on stdout. */
void print_json(json_t *o);

/* Human units. */
const char *fmt_bytes(double b, char *buf, size_t len);

#endif
