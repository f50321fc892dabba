/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gate.h — who may wait at the migration port, and for how long (docs/
 * ferryd.md, "The migration listener"). Every accepted connection is
 * greeted on the event loop (session/greet.h): TLS handshake and HELLO
 * without a thread, within handshake-timeout-ms; only a checked HELLO gets
 * a thread. Before that the gate spends budgets:
 *
 *  - at most max-pending connections before their HELLO in all, and
 *    max-pending-per-source from one address;
 *  - the last quarter of max-pending is kept for pool hosts, and from half
 *    of it on a stranger's connection is dropped early, with a chance that
 *    grows to certainty at three quarters (OpenSSH's MaxStartups);
 *  - an address whose connections fail 5 times within a minute (a failed
 *    handshake, bytes that are not the protocol, silence until the
 *    deadline) is penalised for source-penalty-s, doubled at each repeat up
 *    to 16 times (OpenSSH's PerSourcePenalties): its connections are
 *    refused at once, and the ones it had waiting are closed;
 *  - pool hosts (addresses in pool-addresses, and those that have said a
 *    checked HELLO here) are never penalised or dropped early: only the
 *    per-source and overall limits hold for them.
 *
 * A refused connection is told why in plaintext before it is closed
 * (load: "retry"), which a ferry source reads and retries on. Failures are
 * logged once per address per 10 s and penalties once each, with counts.
 * Loop thread only, but gate_json (any thread).
 */
#ifndef FERRY_DAEMON_GATE_H
#define FERRY_DAEMON_GATE_H

#include <jansson.h>
#include <stddef.h>

struct sockaddr;

/* An accepted connection on the migration port (fd taken over). */
void gate_accept(int fd, const struct sockaddr *sa, int salen);
/* Close every connection still waiting for its HELLO (shutdown). */
void gate_stop(void);

/* The listener's counters and state, for the host's JSON:
 * {"pending": n, "penalised": n, "accepted": n, "served": n,
 *  "refused": {"busy": n, "source": n, "early": n, "penalised": n},
 *  "failed": {"handshake": n, "garbage": n, "mismatch": n, "timeout": n,
 *  "closed": n, "refused": n}, "penalties": n}. */
json_t *gate_json(void);

#endif
