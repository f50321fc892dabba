/* SPDX-License-Identifier: Apache-2.0 */
/*
 * remote.h — ferryd's remote API (docs/ferryd.md "Remote API",
 * docs/ferryd-api.json): HTTPS and JSON on D.api_listen, for a pool manager
 * across the network. Mutual TLS with the pool's CA (the migration
 * listener's certificate and key); a caller is authorised by the role its
 * certificate carries (transport/certs.h): a manager may do everything, a
 * monitor may only read, a host is refused (403) — hosts migrate to each
 * other on the migration port, they do not drive each other.
 */
#ifndef FERRY_DAEMON_REMOTE_H
#define FERRY_DAEMON_REMOTE_H

#define API_DEFAULT_PORT 7490
#define REMOTE_FOLLOWERS_MAX 64 /* event streams open at once */

/* Listen on D.api_listen if it is set; exits if it cannot, or if ferryd
 * runs without TLS (a caller without a certificate has no role). */
void remote_listen(void);
/* Stop: close the event streams and the listener. Requests still on a task
 * thread are answered to nobody. */
void remote_stop(void);

#endif
