/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctl.c — the runtime's control socket: one thread, poll(2) over the
 * listening socket, the incoming link and a few clients.
 *
 * Every request goes through mvm_req_parse() first; a malformed one gets an
 * error reply and changes nothing. One client at a time owns the domain
 * (HELLO); others may only ask INFO and PING.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "mvm/runtime.h"

#define MAX_CLIENTS 8

struct client {
	int fd;
	bool owner;
	bool link;   /* the incoming runtime's link to its creator */
	bool broken; /* a reply could not be sent: drop the client */
};

/* One reply packet; fds (if any) ride along with it. */
static int send_reply(struct client *cl, const struct mvm_req *req, int status, const void *body,
		      size_t len, const int *fds, int nfds)
{
	struct mvm_rep_hdr h = {
		.magic = htole32(MVM_REP_MAGIC),
		.version = htole16(MVM_PROTO_VERSION),
		.type = htole16((uint16_t)req->type),
		.seq = htole32(req->seq),
		.status = (int32_t)htole32((uint32_t)status),
		.body_len = htole32((uint32_t)len),
	};
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)body, len } };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (nfds) {
		struct cmsghdr *c;
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	/* Never block: a client that does not read its replies is dropped. */
	if (sendmsg(cl->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		cl->broken = true;
		return -errno;
	}
	return 0;
}

static int send_error(struct client *cl, const struct mvm_req *req, int status, const char *text)
{
	return send_reply(cl, req, status, text, strlen(text) + 1, NULL, 0);
}

static void fill_info(struct mvm *m, struct mvm_info *i)
{
	memset(i, 0, sizeof *i);
	i->page_size = htole32((uint32_t)m->page_size);
	i->nr_vcpus = htole32(m->nr_vcpus);
	i->nr_frames = htole64(m->nr_frames);
	i->paused = htole32(m->paused);
	i->logdirty = htole32(m->logdirty);
	i->pid = (int32_t)htole32((uint32_t)getpid());
	i->incoming = htole32(m->incoming);
	i->halted = htole32(mvm_halted(m));
	i->throttle = htole32(atomic_load(&m->throttle));
	i->steps = htole64(mvm_total_steps(m));
	snprintf(i->name, sizeof i->name, "%s", m->name);
	snprintf(i->config, sizeof i->config, "%s", m->config_text);
	for (unsigned k = 0; k < m->nr_vcpus; k++) {
		uint64_t g = __atomic_load_n(&m->vcpus[k].regs.max_gap_ns, __ATOMIC_RELAXED);
		uint64_t rg = __atomic_load_n(&m->vcpus[k].regs.resume_gap_ns, __ATOMIC_RELAXED);

		if (g > le64toh(i->max_gap_ns))
			i->max_gap_ns = htole64(g);
		if (rg > le64toh(i->resume_gap_ns))
			i->resume_gap_ns = htole64(rg);
	}
}

static int read_ram(void *ctx, uint64_t frame, uint64_t count, void *buf)
{
	struct mvm *m = ctx;

	/* pread, not the mapping: reading a hole through the mapping would
	 * allocate it. */
	return pio_full(m->memfd, buf, count * m->page_size, (off_t)(frame * m->page_size), false);
}

static void get_context(struct mvm *m, struct mvm_context *c)
{
	memset(c, 0, sizeof *c);
	c->nr_vcpus = m->nr_vcpus;
	c->guest_ns = mvm_guest_ns(m);
	c->real_ns = real_ns();
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		c->regs[i] = m->vcpus[i].regs;
}

static int set_context(struct mvm *m, const void *blob, size_t len, char *err, size_t errlen)
{
	struct mvm_context c;
	uint64_t rnow, gnow;
	int r = mvm_ctx_decode(blob, len, m->nr_vcpus, &c, err, errlen);

	if (r)
		return r;
	r = wl_check_regs(&m->cfg.wl, m->nr_vcpus, c.regs, err, errlen);
	if (r)
		return r;
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		m->vcpus[i].regs = c.regs[i];
	/* Guest time resumes where it was plus the real time that passed. */
	rnow = real_ns();
	gnow = c.guest_ns + (rnow > c.real_ns ? rnow - c.real_ns : 0);
	atomic_store(&m->clock_offset, (int64_t)gnow - (int64_t)mono_ns());
	return 0;
}

static int read_bytes(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct mvm *m = ctx;

	return pio_full(m->memfd, buf, len, (off_t)off, false);
}

/* A kvstore guest's verify: the store's own integrity (kvstore.h). */
static int verify_store(struct mvm *m, struct mvm_verify *v)
{
	uint64_t checked;
	int r;

	memset(v, 0, sizeof *v);
	r = kv_verify(&m->kv.l, read_bytes, m, &checked, v->msg, sizeof v->msg);
	if (r)
		return r;
	v->pages_checked = m->nr_frames;
	v->pages_written = checked; /* entries checked */
	if (v->msg[0]) {
		v->why = MVM_VERIFY_CORRUPT;
	} else {
		v->why = MVM_VERIFY_OK;
		snprintf(v->msg, sizeof v->msg, "store sound: %" PRIu64 " entries checked", checked);
	}
	return 0;
}

static void nic_info(struct mvm *m, struct mvm_nic_info *ni)
{
	struct nic_stats ns;
	struct kv_stats ks;

	nic_stats(m->nic, &ns);
	kv_stats(&m->kv, &ks);
	*ni = (struct mvm_nic_info){
		.incarnation = htole64(ns.incarnation), .open = htole64(ns.open),
		.accepted = htole64(ns.accepted), .refused = htole64(ns.refused),
		.rx_bytes = htole64(ns.rx_bytes), .tx_bytes = htole64(ns.tx_bytes),
		.held_bytes = htole64(ns.held_bytes), .epoch = htole64(ns.epoch),
		.released = htole64(ns.released), .gated = htole32(ns.gated),
		.entries = htole64(ks.entries), .clients = htole64(ks.clients),
		.requests = htole64(ks.requests), .applied = htole64(ks.applied),
		.retries = htole64(ks.retries_answered), .evictions = htole64(ks.evictions),
		.arena_used = htole64(ks.arena_used),
	};
}

/* Handle one validated request (*fd: the descriptor it brought, or -1; a
 * handler that keeps it sets *fd to -1, else the caller closes it).
 * Returns 1 if the runtime should exit. */
static int handle(struct mvm *m, struct client *cl, struct client *clients,
		  const struct mvm_req *req, int *fd)
{
	char err[256] = "";
	int r = 0;

	if (req->type != MVM_HELLO && req->type != MVM_INFO && req->type != MVM_PING &&
	    !cl->owner) {
		send_error(cl, req, -EPERM, "not the owner of this domain: send hello first");
		return 0;
	}
	switch (req->type) {
	case MVM_HELLO:
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i].fd >= 0 && clients[i].owner && &clients[i] != cl) {
				send_error(cl, req, -EBUSY, "domain is already open by another owner");
				return 0;
			}
		cl->owner = true;
		/* fall through */
	case MVM_INFO: {
		struct mvm_info info;
		fill_info(m, &info);
		send_reply(cl, req, 0, &info, sizeof info, NULL, 0);
		return 0;
	}
	case MVM_PING:
		break;
	case MVM_GET_FDS: {
		struct mvm_fds f = { .ram_base = htole64((uintptr_t)m->ram),
				     .ram_size = htole64(m->cfg.mem) };
		int fds[2] = { m->memfd, m->pagemap };
		send_reply(cl, req, 0, &f, sizeof f, fds, 2);
		return 0;
	}
	case MVM_PAUSE: {
		/* The context comes with it: a checkpoint needs both, and a
		 * round trip fewer is most of a millisecond on a busy host. */
		static char blob[MVM_CONTEXT_MAX];
		struct mvm_context c;

		if (!m->paused)
			m->pause_t0 = mono_ns(); /* the guest stops from here */
		mvm_pause(m);
		get_context(m, &c);
		send_reply(cl, req, 0, blob, mvm_ctx_encode(&c, blob), NULL, 0);
		return 0;
	}
	case MVM_UNPAUSE:
		if (req->body_len) {
			/* The next epoch's output mark first: taken while every
			 * writer is parked, as a separate MVM_OUTPUT would be. */
			struct mvm_output o;

			if (req->body_len == sizeof o)
				memcpy(&o, req->body, sizeof o);
			if (req->body_len != sizeof o || o.reserved ||
			    le32toh(o.op) != MVM_OUTPUT_MARK || !m->nic ||
			    nic_gate(m->nic, NIC_GATE_MARK, le64toh(o.epoch))) {
				send_error(cl, req, -EINVAL, "unpause: the output mark is refused "
					   "(not a MARK, no network, or an epoch out of order)");
				return 0;
			}
		}
		/* fall through */
	case MVM_COMMIT:
		if (m->incoming) {
			m->incoming = false;
			/* A new host: connections of the old one are gone. Every
			 * writer is parked (an incoming guest never ran here). */
			if (m->nic)
				nic_new_host(m->nic);
			log_info("%s: committed; the incoming guest %s", m->name,
				 req->type == MVM_UNPAUSE ? "runs" : "stays paused");
		}
		if (req->type == MVM_UNPAUSE) {
			/* The pause before this one, whole: the guest is stopped
			 * until its writers run again, which this reply does not
			 * wait for. */
			struct mvm_u64 gap = { htole64(atomic_exchange(&m->last_gap, 0)) };

			mvm_unpause(m);
			send_reply(cl, req, 0, &gap, sizeof gap, NULL, 0);
			return 0;
		}
		break;
	case MVM_THROTTLE: {
		struct mvm_u32 v;
		memcpy(&v, req->body, sizeof v);
		if (le32toh(v.v) > 99 || v.reserved) {
			r = -EINVAL;
			snprintf(err, sizeof err, "throttle must be 0..99 percent");
		} else {
			mvm_throttle(m, le32toh(v.v));
		}
		break;
	}
	case MVM_LOGDIRTY: {
		struct mvm_u32 v;
		memcpy(&v, req->body, sizeof v);
		if (le32toh(v.v) > 1 || v.reserved) {
			r = -EINVAL;
			snprintf(err, sizeof err, "logdirty takes 0 or 1");
		} else if ((r = mvm_ram_logdirty(m, le32toh(v.v))) < 0) {
			snprintf(err, sizeof err, "write-protect failed: %s", strerror(-r));
		}
		break;
	}
	case MVM_GET_CONTEXT: {
		static char blob[MVM_CONTEXT_MAX];
		struct mvm_context c;
		if (!m->paused) {
			send_error(cl, req, -EBUSY, "context can only be saved while paused");
			return 0;
		}
		get_context(m, &c);
		send_reply(cl, req, 0, blob, mvm_ctx_encode(&c, blob), NULL, 0);
		return 0;
	}
	case MVM_SET_CONTEXT:
		if (!m->paused) {
			r = -EBUSY;
			snprintf(err, sizeof err, "context can only be loaded while paused");
		} else {
			r = set_context(m, req->body, req->body_len, err, sizeof err);
		}
		break;
	case MVM_VERIFY: {
		struct mvm_verify v;
		struct mvm_vcpu_regs regs[MVM_VCPUS_MAX];
		bool was = m->paused;

		mvm_pause(m);
		for (unsigned i = 0; i < m->nr_vcpus; i++)
			regs[i] = m->vcpus[i].regs;
		if (m->nic)
			r = verify_store(m, &v);
		else
			r = wl_verify(&m->cfg.wl, m->nr_vcpus, regs, m->nr_frames, m->page_size,
				      read_ram, m, &v);
		if (!was)
			mvm_unpause(m);
		if (r) {
			snprintf(err, sizeof err, "reading guest RAM: %s", strerror(-r));
			break;
		}
		if (v.why != MVM_VERIFY_OK)
			log_warn("%s: verify: %s", m->name, v.msg);
		v.why = htole32(v.why);
		v.frame = htole64(v.frame);
		v.expected_gen = htole64(v.expected_gen);
		v.found_gen = htole64(v.found_gen);
		v.pages_checked = htole64(v.pages_checked);
		v.pages_written = htole64(v.pages_written);
		send_reply(cl, req, 0, &v, sizeof v, NULL, 0);
		return 0;
	}
	case MVM_NET_ATTACH:
		if (!m->nic) {
			r = -EOPNOTSUPP;
			snprintf(err, sizeof err, "this guest has no network (a kvstore workload has)");
		} else if ((r = nic_listen(m->nic, *fd, m->paused))) {
			snprintf(err, sizeof err, "not a listening TCP socket");
		} else {
			log_info("%s: nic: %s", m->name, *fd >= 0 ? "listening on the service address"
				 : "no longer listening");
			*fd = -1; /* the NIC's now */
		}
		break;
	case MVM_OUTPUT: {
		struct mvm_output o;

		memcpy(&o, req->body, sizeof o);
		if (!m->nic) {
			r = -EOPNOTSUPP;
			snprintf(err, sizeof err, "this guest has no network output to gate");
		} else if (o.reserved || le32toh(o.op) < MVM_OUTPUT_HOLD ||
			   le32toh(o.op) > MVM_OUTPUT_OPEN ||
			   (r = nic_gate(m->nic, (enum nic_gate_op)le32toh(o.op), le64toh(o.epoch)))) {
			r = -EINVAL;
			snprintf(err, sizeof err, "output: bad operation or epoch out of order");
		}
		break;
	}
	case MVM_NIC_INFO: {
		struct mvm_nic_info ni;

		if (!m->nic) {
			send_error(cl, req, -EOPNOTSUPP, "this guest has no network");
			return 0;
		}
		nic_info(m, &ni);
		send_reply(cl, req, 0, &ni, sizeof ni, NULL, 0);
		return 0;
	}
	case MVM_GET_UFFD: {
		struct mvm_u32 f = { htole32(m->uffd_kernel ? MVM_UFFD_KERNEL : 0), 0 };

		send_reply(cl, req, 0, &f, sizeof f, &m->uffd, 1);
		return 0;
	}
	case MVM_QUIT:
		send_reply(cl, req, 0, NULL, 0, NULL, 0);
		log_info("%s: quit requested", m->name);
		return 1;
	default:
		r = -EOPNOTSUPP;
		snprintf(err, sizeof err, "unhandled request");
	}
	if (r)
		send_error(cl, req, r, err);
	else
		send_reply(cl, req, 0, NULL, 0, NULL, 0);
	return 0;
}

/* Receive and answer one packet. Returns -1 if the client is gone, 1 to
 * exit the runtime, 0 otherwise. */
static int serve_one(struct mvm *m, struct client *cl, struct client *clients, short revents)
{
	static char buf[MVM_MSG_MAX];
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { buf, sizeof buf };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			      .msg_controllen = sizeof cm.buf };
	struct mvm_req req;
	char err[160];
	int nfds = 0, r, fd = -1;
	ssize_t n = recvmsg(cl->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	size_t len;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	/* SEQPACKET delivers empty packets too: 0 is the end only on a hangup. */
	if (n == 0 && (revents & (POLLHUP | POLLRDHUP | POLLERR)))
		return -1;
	/* Keep the first descriptor that came along (NET_ATTACH's), close the
	 * rest; the parser judges whether any was expected. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int got;
				memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
				if (fd < 0)
					fd = got;
				else
					close(got);
			}
			nfds += k;
		}
	if (msg.msg_flags & MSG_CTRUNC)
		nfds = nfds ? nfds : 1;
	len = msg.msg_flags & MSG_TRUNC ? MVM_MSG_MAX + 1 : (size_t)n;
	r = mvm_req_parse(buf, len, nfds, &req, err, sizeof err);
	if (r) {
		log_warn("%s: rejected request: %s", m->name, err);
		send_error(cl, &req, r, err);
		if (fd >= 0)
			close(fd);
		return cl->broken ? -1 : 0;
	}
	r = handle(m, cl, clients, &req, &fd);
	if (fd >= 0)
		close(fd);
	return r == 1 ? 1 : cl->broken ? -1 : 0;
}

int mvm_serve(struct mvm *m, int listen_fd, int link_fd)
{
	struct client clients[MAX_CLIENTS];
	sigset_t mask;
	int sfd;

	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i] = (struct client){ .fd = -1 };
	if (link_fd >= 0)
		clients[0] = (struct client){ .fd = link_fd, .owner = true, .link = true };

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return -errno;

	for (;;) {
		struct pollfd pfd[MAX_CLIENTS + 2];
		int map[MAX_CLIENTS + 2], n = 0;

		pfd[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		map[n++] = -2;
		pfd[n] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		map[n++] = -1;
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i].fd >= 0) {
				pfd[n] = (struct pollfd){ .fd = clients[i].fd,
							  .events = POLLIN | POLLRDHUP };
				map[n++] = i;
			}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int k = 0; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (map[k] == -2) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof si) == sizeof si) {
					log_info("%s: signal %u, exiting", m->name, si.ssi_signo);
					return 0;
				}
			} else if (map[k] == -1) {
				int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), i;
				if (fd < 0) {
					if (errno == EMFILE || errno == ENFILE) {
						/* Out of fds: back off instead of spinning. */
						log_warn("%s: accept: %s", m->name, strerror(errno));
						mono_sleep_ns(100 * NSEC_PER_MSEC);
					}
					continue;
				}
				for (i = 0; i < MAX_CLIENTS && clients[i].fd >= 0; i++)
					;
				if (i == MAX_CLIENTS) {
					/* Full: make room by dropping the oldest client that
					 * is not the owner, so idle lookers cannot lock the
					 * owner out. */
					for (i = 0; i < MAX_CLIENTS; i++)
						if (!clients[i].owner && !clients[i].link)
							break;
					if (i == MAX_CLIENTS) {
						close(fd);
						continue;
					}
					log_warn("%s: too many control connections; dropping an idle one",
						 m->name);
					close(clients[i].fd);
					/* Keep this round's poll results aligned with the table. */
					for (int q = k + 1; q < n; q++)
						if (map[q] == i)
							pfd[q].revents = 0;
				}
				clients[i] = (struct client){ .fd = fd };
			} else {
				struct client *cl = &clients[map[k]];
				int r;

				if (cl->fd != pfd[k].fd)
					continue; /* replaced earlier in this round */
				r = serve_one(m, cl, clients, pfd[k].revents);

				if (r == 1)
					return 0;
				if (r < 0) {
					bool link = cl->link;
					close(cl->fd);
					*cl = (struct client){ .fd = -1 };
					if (link && m->incoming) {
						log_warn("%s: control link closed before commit; "
							 "discarding the incoming guest", m->name);
						return 0;
					}
				}
			}
		}
	}
}
