/* SPDX-License-Identifier: Apache-2.0 */
/*
 * peers.h — ferryd's side of the peer sessions: the session configuration
 * built from the settings (TLS with the pool's certificates unless
 * insecure-plaintext), and the listener whose connections it hands to
 * the gate (gate.h), with the handlers that answer a checked HELLO.
 */
#ifndef FERRY_DAEMON_PEERS_H
#define FERRY_DAEMON_PEERS_H

/* Build D.peers from the settings; exits with a message if it cannot (no
 * certificates, say, and how to make them). */
void peers_setup(void);
/* SIGHUP: load the certificate, key and CA again from their files (a
 * rotation) for every handshake from now on; sessions under way keep
 * theirs. On failure the old ones stay, and it says why. 0 or -errno. */
int peers_reload_tls(void);
/* Listen on D.listen (ADDR:PORT) on the loop; exits if it cannot. */
void peers_listen(void);
/* Serve a greeted connection (on its own thread): what its HELLO asks. */
struct greet;
void peers_serve(struct greet *g);
/* Stop listening; close the connections still greeting. */
void peers_stop(void);
/* Free what peers_setup made, once no thread uses it. */
void peers_free(void);

#endif
