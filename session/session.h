/* SPDX-License-Identifier: Apache-2.0 */
/*
 * session.h — the peer session every engine runs on (DESIGN.md §2, §6–§8):
 * one job's set of channels between two hosts, opened and checked the same
 * way for a migration today and a replication pair next.
 *
 *  - Opening (session.c): the connecting side opens channel 0 over
 *    transport/link (TLS unless both hosts run plaintext), says HELLO with
 *    the codecs and the number of channels it offers, reads the answer (the
 *    agreed codecs and channels, and a token), then opens each further
 *    channel with a "channel" HELLO carrying the token. The accepting side
 *    (greet.h, then session_serve_hello) checks the protocol version and
 *    allow-from before it reads what is asked, joins further channels to the session waiting for
 *    them (same job, same token, same peer, in order), answers "resolve"
 *    HELLOs through a handler, and hands a new session to the handler of
 *    its op.
 *  - Liveness (live.c): one side reads the other's control messages on
 *    channel 0 in a monitor thread that fails the session when the peer goes
 *    silent for the peer timeout or says ABORT; the other side sends
 *    HEARTBEATs (a quarter of the timeout apart) and notes every byte it
 *    receives, so that silence on all channels at once is a dead peer.
 *    ABORT with a reason is the last word a side says.
 *
 * Ownership: a session owns its channels and frees them with itself. The
 * engine given a session uses s->ch[0..s->n) (one sending and one receiving
 * thread per channel); anyone may call session_shutdown at any time.
 */
#ifndef FERRY_SESSION_SESSION_H
#define FERRY_SESSION_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "session/wire.h"
#include "transport/link.h"

struct session_conf {
	struct link_conf link;  /* how peers are reached and accepted */
	const char *host;       /* this host's name: in HELLOs and refusals */
	const char *allow_from; /* "*", or the host names that may open
				 * sessions here (TLS only: plaintext peers
				 * cannot be told apart) */
	uint32_t caps;          /* codecs offered, and accepted */
	unsigned channels;      /* most channels accepted for one session */
	int peer_timeout_ms;    /* silence that counts as a dead peer */
	int handshake_timeout_ms; /* accepting: a connection's TLS handshake and
				   * HELLO must be done within this (0: the
				   * peer timeout); the peer timeout guards the
				   * session after it */
};

struct session_mon;

struct session {
	/* Fixed once the handshake is done. */
	const struct session_conf *conf;
	bool out;                  /* we connected */
	char job[40];              /* the job id both sides know it by */
	char peer[300];            /* out: HOST[:PORT] asked for; in: the name the
				    * peer gave */
	char peer_id[300];         /* who is at the other end: its certificate's
				    * names (TLS), else its address */
	uint32_t caps;             /* agreed */
	unsigned want;             /* channels agreed */
	int timeout_ms;            /* the peer timeout in force */
	const char *role;          /* what messages call the peer ("the
				    * destination"); default "the peer" */
	char token[WIRE_TOKEN_LEN + 1]; /* in: what further channels must bring */

	/* Under lock (n also under the registry's lock while listed). */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* a channel joined; the session shut */
	struct chan *ch[WIRE_CHANNELS_MAX];
	unsigned n;                /* channels so far: ch[0..n) */
	bool shut;                 /* session_shutdown was called (read atomically) */

	/* The registry's (session.c: sessions waiting for channels), under
	 * its lock. */
	bool accepting;            /* in: listed for further channels */
	bool joining;              /* in: a further channel is being answered */
	unsigned joiners;          /* joining threads that hold it */

	/* Liveness (live.c). */
	pthread_mutex_t wlock;     /* orders every write to channel 0 */
	bool aborted;              /* under wlock: ABORT went out, nothing follows */
	uint64_t last_rx;          /* mono ns of the last byte on any channel (atomic) */
	struct session_mon *mon;   /* the monitor, while it runs */
	/* Set before session_monitor_start: called on the monitor's thread for
	 * every message but ABORT, after waiters were told (replication
	 * releases output on an acknowledgement at once). */
	void (*on_msg)(void *ctx, uint32_t type, uint64_t arg);
	void *on_msg_ctx;
	pthread_t hb;              /* the heartbeat thread, while hb_on */
	bool hb_on, hb_stop;       /* hb_stop under lock */
};

/* ---- the connecting side ---- */

/* A session to peer ("HOST[:PORT]") for job, not connected yet: register it
 * where a cancel can reach it, then session_connect. 0 or -ENOMEM. */
int session_new(const struct session_conf *sc, const char *peer, const char *job,
		struct session **out);
/*
 * Open channel 0, say h (its op and what the op needs: name, config; the
 * session fills in job, from, caps, the channels to offer and the peer
 * timeout), read the answer and open the further channels agreed. *answer
 * is the peer's answer (the caller decrefs it; may be NULL). 0, -ECANCELED
 * after session_shutdown, or -errno with err set.
 */
int session_connect(struct session *s, struct wire_hello *h, unsigned channels,
		    json_t **answer, char *err, size_t errlen);
/* Ask peer what became of job there: "running", "discarded", "pending" or
 * "unknown" into state; -errno if it cannot be asked. */
int session_ask(const struct session_conf *sc, const char *peer, const char *job,
		char *state, size_t len);

/* ---- the accepting side ---- */

struct session_handlers {
	void *ctx;
	/* What became of job here, for a peer that asks: "running",
	 * "discarded", "pending" or "unknown". */
	const char *(*resolve)(void *ctx, const char *job);
	/* A peer opens a session for h->op (migrate): the handler owns s (and
	 * frees it) and runs the job on this thread. It answers with
	 * session_answer, or session_refuse. */
	void (*open)(void *ctx, struct session *s, const struct wire_hello *h);
};

/* Serve a connection whose HELLO h was read and checked (greet.h: the
 * listener does that without a thread), on a thread of its own: what h asks
 * (resolve, join a waiting session, or open one through hd). Takes over c. */
void session_serve_hello(const struct session_conf *sc, struct chan *c,
			 const struct wire_hello *h, const struct session_handlers *hd);
/*
 * Say yes to the session's opener (the agreed codecs and channels, and the
 * token), then wait for its further channels, each for up to the peer
 * timeout. 0 once all have joined, or -errno with err set.
 */
int session_answer(struct session *s, char *err, size_t errlen);
/* Say no, with a reason (logged too). */
void session_refuse(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same on a channel that has no session yet. */
void session_refuse_chan(struct chan *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* End every wait for channels now (daemon shutdown); new sessions still
 * work. */
void session_stop_waits(void);

/* ---- both sides ---- */

/* The channels' kind: "tls" or "tcp". */
const char *session_kind(const struct session *s);
/* Shut every channel (blocked calls fail at once) and add none after. Any
 * thread, any time. */
void session_shutdown(struct session *s);
/* Stop its threads, free its channels and it. NULL is fine. */
void session_free(struct session *s);
/* A session over channels connected by other means (tests, benchmarks):
 * takes them over. 0 or -ENOMEM. */
int session_wrap(struct chan *const *ch, unsigned n, int timeout_ms, struct session **out);

/* ---- liveness (live.c) ---- */

/* Read the peer's control messages on channel 0 in a thread of its own; it
 * fails the session (shutting it) on silence, ABORT, a malformed message or
 * the end of the connection. 0 or -errno. */
int session_monitor_start(struct session *s);
void session_monitor_stop(struct session *s);
/* Wait for a message of type (WIRE_READY, ...): 0 and its argument, or the
 * failure. */
int session_wait_msg(struct session *s, uint32_t type, uint64_t *arg);
/* Wait until a message of type has come with an argument of at least min. */
int session_wait_arg(struct session *s, uint32_t type, uint64_t min);
/* Whether the monitor has failed the session: 0, or the failure and why. */
int session_failed(struct session *s, char *why, size_t len);
/* The monitor's verdict after a failed send or receive: the failure (and
 * why, in words) if it knows one within grace_ms, else 0. */
int session_failure(struct session *s, int grace_ms, char *why, size_t len);

/* Send HEARTBEATs on channel 0 every quarter of the peer timeout. */
int session_heartbeat_start(struct session *s);
void session_heartbeat_stop(struct session *s);
/* Send a control message on channel 0, in order with the heartbeats;
 * -ECONNABORTED once ABORT went out. */
int session_send_msg(struct session *s, uint32_t type, uint64_t arg);
/* Read one control message on channel 0 within timeout_ms. */
int session_read_msg(struct session *s, int timeout_ms, uint32_t *type, uint64_t *arg);
/* Tell the peer why we give up (once; best effort, never blocking): from
 * then on nothing more is said. */
void session_send_abort(struct session *s, int e, const char *why);
/* Give up: ABORT, shut the channels but 0, end sending on 0 and read what
 * is still coming for a moment, so that the reason is read before the
 * connection goes. */
void session_abort(struct session *s, int e, const char *why);
/*
 * Read exactly len bytes from channel c of s, noting every arrival. The
 * peer counts as silent (-ETIMEDOUT, *silent set) only when no channel of s
 * had a byte for timeout_ms: a channel may rightly idle while another
 * carries its part. -ECANCELED once stop(ctx) returns true (checked every
 * 50 ms while waiting); -ENODATA if the peer closed before the first byte,
 * -ECONNRESET in the middle.
 */
int session_recv(struct session *s, struct chan *c, void *buf, size_t len, int timeout_ms,
		 bool (*stop)(void *ctx), void *ctx, bool *silent);
/* Bytes arrived on some channel now (a receiver calls it). */
void session_note_rx(struct session *s);
/* How long no channel has received anything, in ns. */
uint64_t session_quiet_ns(const struct session *s);

#endif
