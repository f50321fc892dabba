/*
 * d_incoming.c — incoming migration connections: the transport (TLS or
 * plaintext, as configured), the HELLO, the allow-from policy, a further
 * channel joining its job, and receiving a guest (DESIGN.md §6, §8).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "session/wire.h"
#include "tools/daemon.h"
#include "transport/tcp.h"

static void answer_resolve(struct chan *c, const struct wire_hello *h)
{
	const char *s = "unknown";
	struct job *j;
	json_t *o;

	pthread_mutex_lock(&D.lock);
	j = job_find(h->job);
	if (j && !j->out) {
		if (strcmp(j->in_state, "running") == 0)
			s = "running";
		else if (strcmp(j->in_state, "discarded") == 0)
			s = "discarded";
		else
			s = "pending";
	}
	pthread_mutex_unlock(&D.lock);
	log_info("job %s: %s asks what became of it: %s", h->job, h->from, s);
	if ((o = json_pack("{s:b, s:s}", "ok", 1, "state", s))) {
		wire_send_frame(c, o);
		json_decref(o);
	}
}

/* Equal strings, in time that does not depend on where they differ. */
static bool same_secret(const char *a, const char *b)
{
	size_t n = strlen(a);
	unsigned char d = n != strlen(b);

	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ (i < strlen(b) ? b[i] : 0));
	return !d;
}

/*
 * A further channel of an incoming job: hand c to the job if the job waits
 * for this one, the token is the job's, and it comes from the same host as
 * channel 0. Returns true if the job took c.
 */
static bool join_channel(struct chan *c, const struct wire_hello *h)
{
	char who[300], why[700] = "";
	struct timespec ts;
	struct job *j;
	json_t *o;
	bool taken = false;
	int r;

	peer_identity(c, who, sizeof who);
	ts = ns_to_ts(real_ns() + (uint64_t)D.peer_timeout_ms * NSEC_PER_MSEC);
	pthread_mutex_lock(&D.lock);
	j = job_find(h->job);
	/* The channel before this one may still be being answered (the source
	 * opens the next as soon as it has the answer): let it join first. */
	while (j && j->joining && !D.stopping &&
	       pthread_cond_timedwait(&j->wake, &D.lock, &ts) != ETIMEDOUT)
		;
	if (!j || j->out || !j->accepting)
		snprintf(why, sizeof why, "job %s does not wait for channels here", h->job);
	else if (strcmp(who, j->peer_id) != 0)
		snprintf(why, sizeof why, "channel 0 of job %s came from %s, this one from %s",
			 h->job, j->peer_id, who);
	else if (!same_secret(h->token, j->token))
		snprintf(why, sizeof why, "wrong token for job %s", h->job);
	else if (j->joining || h->index != j->nch || h->index >= j->channels)
		snprintf(why, sizeof why, "job %s expects channel %u, not %u", h->job, j->nch,
			 h->index);
	else
		j->joining = true; /* this index is ours while we answer */
	pthread_mutex_unlock(&D.lock);
	if (why[0]) {
		peer_refuse(c, "%s", why);
		return false;
	}
	/* Answer first, outside the lock (the peer may be slow to read): once
	 * the job has c, its thread owns it. */
	o = json_pack("{s:b}", "ok", 1);
	r = o ? wire_send_frame(c, o) : -ENOMEM;
	json_decref(o);
	pthread_mutex_lock(&D.lock);
	j->joining = false;
	if (!r && j->accepting) {
		j->ch[j->nch++] = c;
		taken = true;
	}
	pthread_cond_broadcast(&j->wake);
	pthread_mutex_unlock(&D.lock);
	return taken;
}

/* Wait until the source has opened every channel agreed, for up to the
 * peer timeout. 0 or -errno with err set. */
static int wait_channels(struct job *j, char *err, size_t errlen)
{
	struct timespec ts;
	int r = 0;

	ts = ns_to_ts(real_ns() + (uint64_t)D.peer_timeout_ms * NSEC_PER_MSEC);
	pthread_mutex_lock(&D.lock);
	for (unsigned had = j->nch; (j->nch < j->channels || j->joining) && !D.stopping &&
				    r != ETIMEDOUT;) {
		r = pthread_cond_timedwait(&j->wake, &D.lock, &ts);
		if (j->nch > had) {
			/* The source opens them one after another: each may take
			 * the peer timeout. */
			had = j->nch;
			r = 0;
			ts = ns_to_ts(real_ns() + (uint64_t)D.peer_timeout_ms * NSEC_PER_MSEC);
		}
	}
	j->accepting = false;
	if (j->nch < j->channels)
		snprintf(err, errlen, "%s: %u of %u channels came", D.stopping ? "shutting down"
			 : "the source did not open all its channels in time", j->nch, j->channels);
	r = j->nch < j->channels ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&D.lock);
	return r;
}

/* An incoming migration on channel c (its HELLO h is checked): claim the
 * name, answer, gather the channels, receive. */
static void receive_guest(struct chan *c, const struct wire_hello *h)
{
	struct hv_domain *d = NULL;
	struct job *j = NULL;
	struct vm *v = NULL;
	unsigned char rnd[WIRE_TOKEN_LEN / 2];
	char err[600];
	json_t *o;
	int r;

	pthread_mutex_lock(&D.lock);
	if (D.stopping) {
		pthread_mutex_unlock(&D.lock);
		peer_refuse(c, "ferryd on %s is shutting down", D.hostname);
		goto out;
	}
	if (vm_name_taken(h->name)) {
		pthread_mutex_unlock(&D.lock);
		peer_refuse(c, "a microVM named %s already exists on %s", h->name, D.hostname);
		goto out;
	}
	if (job_find(h->job)) {
		pthread_mutex_unlock(&D.lock);
		peer_refuse(c, "job %s is already known on %s", h->job, D.hostname);
		goto out;
	}
	if (D.incoming >= D.max_incoming) {
		pthread_mutex_unlock(&D.lock);
		peer_refuse(c, "%s already receives %u migrations (max-incoming)", D.hostname,
			    D.incoming);
		goto out;
	}
	pthread_mutex_unlock(&D.lock);
	if (!(j = job_new(false, h->job)) || !(v = vm_new(h->name)) ||
	    getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
		peer_refuse(c, "out of resources");
		if (v)
			vm_put(v);
		free(j);
		j = NULL;
		goto out;
	}
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(j->token + 2 * i, 3, "%02x", rnd[i]);
	snprintf(j->vm, sizeof j->vm, "%s", h->name);
	snprintf(j->peer, sizeof j->peer, "%s", h->from[0] ? h->from : "?");
	peer_identity(c, j->peer_id, sizeof j->peer_id);
	snprintf(j->in_state, sizeof j->in_state, "receiving");
	j->st.phase = MIG_PH_SETUP;
	j->running = true;
	j->channels = MIN(h->channels, D.channels);
	j->accepting = j->channels > 1;
	j->ch[0] = c;
	j->nch = 1;
	/* The source gives up after its own timeout: heartbeat for the
	 * smaller of the two. */
	j->opts.peer_timeout_ms = h->peer_timeout_ms ? MIN(D.peer_timeout_ms,
							   (int)h->peer_timeout_ms)
						     : D.peer_timeout_ms;
	j->opts.hooks = (struct migrate_hooks){ j, on_progress, on_journal, on_resumed };
	snprintf(v->config, sizeof v->config, "%s", h->config);
	v->busy = "incoming";
	snprintf(v->job, sizeof v->job, "%s", j->id);
	v->paused = true;
	pthread_mutex_lock(&D.lock);
	/* Checked again, with the claim: another connection may have taken
	 * the name or the job id meanwhile. */
	if (job_find(h->job) || D.incoming >= D.max_incoming || vm_add_locked(v)) {
		pthread_mutex_unlock(&D.lock);
		peer_refuse(c, "%s or job %s is already taken on %s", h->name, h->job, D.hostname);
		vm_put(v);
		free(j);
		j = NULL;
		v = NULL;
		goto out;
	}
	D.incoming++;
	job_link(j);
	pthread_mutex_unlock(&D.lock);
	job_save(j);
	j->caps = h->caps & D.caps;
	o = json_pack("{s:b, s:s, s:o, s:i}", "ok", 1, "host", D.hostname, "caps",
		      wire_caps_json(j->caps), "channels", (int)j->channels);
	if (o && j->channels > 1)
		json_object_set_new(o, "token", json_string(j->token));
	r = o ? wire_send_frame(c, o) : -ENOMEM;
	json_decref(o);
	if (r) {
		snprintf(err, sizeof err, "answering HELLO: %s", chan_error(c, r));
	} else if (!(r = wait_channels(j, err, sizeof err))) {
		snprintf(j->transport, sizeof j->transport, "%s", chan_kind(c));
		log_info("job %s: receiving %s from %s over %u %s channel%s", j->id, h->name,
			 j->peer, j->channels, chan_kind(c), j->channels > 1 ? "s" : "");
		r = migrate_recv(j->ch, j->channels, h->name, &j->opts, &d, err, sizeof err);
	}
	pthread_mutex_lock(&D.lock);
	D.incoming--;
	pthread_mutex_unlock(&D.lock);
	job_free_chans(j);
	c = NULL;
	if (!r) {
		/* on_resumed handed the guest over; now make it durable. */
		job_finish(j, JOB_COMPLETED, "");
	} else {
		/* Nothing runs here: the engine destroyed the half-made guest,
		 * or (a failed resume) closed it, and an uncommitted runtime
		 * ends when its handle closes. */
		pthread_mutex_lock(&D.lock);
		/* "discarded" tells the source it may resume: only when no copy
		 * can run here. */
		snprintf(j->in_state, sizeof j->in_state, "%s",
			 r == -EINPROGRESS ? "resume-failed" : "discarded");
		v->dead = true;
		pthread_mutex_unlock(&D.lock);
		job_finish(j, JOB_FAILED, err);
		vm_unbusy(v); /* dead: removed on the loop */
	}
	vm_put(v);
out:
	chan_free(c);
}

/* A plaintext ferry peer at a TLS-only host: say why in its own terms. */
static void refuse_plaintext(int fd, const char *why)
{
	struct chan *c;

	log_warn("incoming: refused: %s", why);
	if (chan_tcp_new(fd, &c)) {
		close(fd);
		return;
	}
	chan_set_timeout(c, 1000);
	peer_refuse(c, "%s accepts only TLS connections; this host connected in plaintext "
		    "(insecure-plaintext is set on one side only)", D.hostname);
	chan_close_send(c);
	chan_drain(c, 1000);
	chan_free(c);
}

/* The connection has said its HELLO (or failed to): no longer counted
 * against MAX_GREETING. */
static void greeted(void)
{
	pthread_mutex_lock(&D.lock);
	D.greeting--;
	pthread_mutex_unlock(&D.lock);
}

static void *in_main(void *p)
{
	int fd = (int)(intptr_t)p;
	bool greeting = true;
	struct chan *c = NULL;
	struct wire_hello h;
	json_t *o = NULL;
	uint32_t version;
	char err[600];
	int r;

	if ((r = link_accept(&D.link, fd, &c, err, sizeof err))) {
		if (r == -EPROTONOSUPPORT && D.link.tls) {
			refuse_plaintext(fd, err);
		} else {
			log_warn("incoming: refused: %s", err);
			close(fd);
		}
		goto out;
	}
	r = wire_recv_frame(c, D.peer_timeout_ms, &version, &o, err, sizeof err);
	greeted();
	greeting = false;
	if (r) {
		log_warn("incoming from %s: %s", c->peer, err);
		goto out;
	}
	if (version != WIRE_PROTO_VERSION) {
		peer_refuse(c, "migration protocol version %u is not supported: this host speaks "
			    "version %d", version, WIRE_PROTO_VERSION);
		goto out;
	}
	if (!peer_allowed(c, err, sizeof err)) {
		peer_refuse(c, "%s", err);
		goto out;
	}
	if (wire_hello_parse(o, &h, err, sizeof err)) {
		peer_refuse(c, "%s", err);
		goto out;
	}
	if (h.op == WIRE_OP_RESOLVE) {
		answer_resolve(c, &h);
	} else if (h.op == WIRE_OP_CHANNEL) {
		if (join_channel(c, &h))
			c = NULL; /* the job's now */
	} else {
		receive_guest(c, &h);
		c = NULL;
	}
out:
	if (greeting)
		greeted();
	json_decref(o);
	chan_free(c);
	thread_done();
	return NULL;
}

/*
 * Connections that have not said who they are yet (TLS handshake, HELLO)
 * each hold a thread for up to twice the peer timeout: anyone who reaches
 * the port could otherwise make ferryd start threads without end.
 */
#define MAX_GREETING 64

void job_accept(int fd)
{
	bool full;

	pthread_mutex_lock(&D.lock);
	full = D.greeting >= MAX_GREETING;
	if (!full)
		D.greeting++;
	pthread_mutex_unlock(&D.lock);
	if (full) {
		log_warn("incoming: refused a connection: %d others have not said HELLO yet",
			 MAX_GREETING);
		close(fd);
		return;
	}
	if (spawn_thread(in_main, (void *)(intptr_t)fd)) {
		log_error("incoming: cannot start a thread");
		greeted();
		close(fd);
	}
}
