/* SPDX-License-Identifier: Apache-2.0 */
/*
 * abuser.h — a stranger at a migration port, for the listener tests: a
 * process (in a network namespace of the test's, from an address of its
 * choosing) that holds idle connections and re-opens each one as soon as
 * it is closed, sends random bytes on others, and attempts TLS handshakes
 * with a certificate from another CA, until it is stopped.
 */
#ifndef FERRY_TESTS_ABUSER_H
#define FERRY_TESTS_ABUSER_H

#include <stdint.h>
#include <sys/types.h>

struct abuser_conf {
	const char *netns;    /* run in this namespace (NULL: this one) */
	const char *src;      /* bind connections to this address (NULL: any) */
	const char *dst;      /* the listener's address */
	uint16_t port;
	unsigned idle;        /* connections held idle */
	unsigned garbage;     /* connections sending random bytes, one after another */
	unsigned tls;         /* TLS handshakes with tls_pki's certificate, likewise */
	const char *tls_pki;  /* a directory with ca.crt, NAME.crt, NAME.key */
	const char *tls_name;
};

struct abuser_stats {
	unsigned long idle, garbage, tls; /* connections opened, by kind */
};

/* Start it (a child process, tracked by the harness): the pid. */
pid_t abuser_start(const struct abuser_conf *c);
/* Stop it and read what it did. */
void abuser_stop(pid_t pid, struct abuser_stats *out);
/* Stop every one still running (a test's teardown, after a failure). */
void abuser_stop_all(void);

#endif
