/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_nic.c — a kvstore microVM serving real TCP clients through its
 * virtual NIC (mvm/nic.c), without a daemon: requests and replies, output
 * held per epoch and released in order, a retry after a reconnect applied
 * once, malformed and hostile clients (oversized keys, garbage, half
 * requests, a client that never reads) answered or cut off while the
 * others go on, and the store's own verify after all of it.
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "kv/proto.h"

#define CONFIG "mem=64M vcpus=1 workload=kvstore:conns=16,ring=16K,clients=64"

/* A listening socket on 127.0.0.1, any port. */
static int listener(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A guest serving on a fresh port. */
static struct hv_domain *serving(const char *name, uint16_t *port)
{
	struct hv_domain *d = h_launch(name, CONFIG, false);

	assert_int_equal(hv_net_attach(d, listener(port)), 0);
	return d;
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void send_req(int fd, enum kv_op op, uint64_t client, uint64_t seq, const char *key,
		     const void *val, size_t vlen)
{
	uint8_t buf[KV_MSG_MAX];

	send_all(fd, buf, kv_req_make(buf, op, client, seq, key, key ? strlen(key) : 0, val, vlen));
}

/* Read one reply within timeout_ms: 0 and *rep (its value in val), -ETIMEDOUT,
 * or -ECONNRESET when the connection ended. */
static int read_rep(int fd, struct kv_rep *rep, uint8_t *val, int timeout_ms)
{
	static uint8_t buf[KV_MSG_MAX];
	size_t have = 0, used;
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char err[128];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = kv_rep_parse(buf, have, rep, &used, err, sizeof err);
		ssize_t n;

		if (r == 0) {
			assert_int_equal(used, have); /* one reply at a time: nothing after */
			memcpy(val, rep->val, rep->val_len);
			rep->val = val;
			return 0;
		}
		if (r != -EAGAIN)
			fail_msg("malformed reply: %s", err);
		if (mono_ns() >= until)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((until - mono_ns()) / NSEC_PER_MSEC) + 1) <= 0)
			continue;
		/* Exactly what the header says, never the next reply's bytes. */
		n = recv(fd, buf + have, have < 32 ? 32 - have
			 : 32 + le32toh(((struct kv_rep_hdr *)(void *)buf)->val_len) - have, 0);
		if (n <= 0)
			return -ECONNRESET;
		have += (size_t)n;
	}
}

static void hello(int fd, uint64_t client, uint64_t base)
{
	struct kv_rep rep;
	uint8_t val[KV_VAL_MAX];
	uint32_t w = htole32(16);

	send_req(fd, KV_HELLO, client, base, NULL, &w, 4);
	assert_int_equal(read_rep(fd, &rep, val, 5000), 0);
	assert_int_equal(rep.status, KV_OK);
}

/* One request, its reply. */
static struct kv_rep call(int fd, enum kv_op op, uint64_t client, uint64_t seq, const char *key,
			  const char *val, uint8_t *out)
{
	struct kv_rep rep;

	send_req(fd, op, client, seq, key, val, val ? strlen(val) : 0);
	assert_int_equal(read_rep(fd, &rep, out, 5000), 0);
	assert_int_equal(rep.seq, seq);
	return rep;
}

static void verify_ok(struct hv_domain *d)
{
	struct mvm_verify v;

	assert_int_equal(hv_mvm_verify(d, &v), 0);
	if (v.why != MVM_VERIFY_OK)
		fail_msg("verify: %s", v.msg);
}

static void test_serves(void **state)
{
	uint8_t val[KV_VAL_MAX];
	struct kv_rep r;
	uint16_t port;
	struct hv_domain *d = serving("kv1", &port);
	int fd = connect_to(port);

	(void)state;
	hello(fd, 11, 1);
	r = call(fd, KV_PUT, 11, 1, "k1", "v1", val);
	assert_int_equal(r.status, KV_OK);
	r = call(fd, KV_GET, 11, 2, "k1", NULL, val);
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.val_len, 2);
	assert_memory_equal(val, "v1", 2);
	r = call(fd, KV_APPEND, 11, 3, "k1", "++", val);
	assert_int_equal(r.aux, 4);
	close(fd);
	verify_ok(d);
	h_destroy(d);
}

/* Replies of a held epoch never reach the client; releasing delivers every
 * byte in order, epoch by epoch. */
static void test_output_gating(void **state)
{
	uint8_t val[KV_VAL_MAX];
	struct kv_rep r;
	uint16_t port;
	struct hv_domain *d = serving("kv2", &port);
	int fd = connect_to(port);

	(void)state;
	hello(fd, 22, 1);
	assert_int_equal(hv_output(d, HV_OUTPUT_HOLD, 1), 0);
	for (uint64_t s = 1; s <= 10; s++)
		send_req(fd, KV_APPEND, 22, s, "log", "a", 1);
	h_sleep_ms(200); /* served, but held */
	assert_int_equal(read_rep(fd, &r, val, 300), -ETIMEDOUT);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_MARK, 2), 0);
	assert_int_equal(hv_unpause(d), 0);
	for (uint64_t s = 11; s <= 20; s++)
		send_req(fd, KV_APPEND, 22, s, "log", "b", 1);
	h_sleep_ms(200);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_MARK, 3), 0);
	assert_int_equal(hv_unpause(d), 0);
	assert_int_equal(read_rep(fd, &r, val, 300), -ETIMEDOUT);
	/* Epoch 1 goes: exactly its ten replies, in order. */
	assert_int_equal(hv_output(d, HV_OUTPUT_RELEASE, 1), 0);
	for (uint64_t s = 1; s <= 10; s++) {
		assert_int_equal(read_rep(fd, &r, val, 5000), 0);
		assert_int_equal(r.seq, s);
		assert_int_equal(r.aux, s);
	}
	assert_int_equal(read_rep(fd, &r, val, 300), -ETIMEDOUT);
	/* A release out of order is refused. */
	assert_int_not_equal(hv_output(d, HV_OUTPUT_RELEASE, 3), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_RELEASE, 2), 0);
	for (uint64_t s = 11; s <= 20; s++) {
		assert_int_equal(read_rep(fd, &r, val, 5000), 0);
		assert_int_equal(r.seq, s);
	}
	/* A new pairing (the primary's daemon restarted) holds again while
	 * held: epoch 3's replies and those after stay held, now as the new
	 * pairing's epoch 0, until its epoch 1 goes. */
	for (uint64_t s = 21; s <= 25; s++)
		send_req(fd, KV_APPEND, 22, s, "log", "c", 1);
	h_sleep_ms(200);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_HOLD, 1), 0);
	assert_int_equal(hv_unpause(d), 0);
	assert_int_equal(read_rep(fd, &r, val, 300), -ETIMEDOUT);
	for (uint64_t s = 26; s <= 27; s++)
		send_req(fd, KV_APPEND, 22, s, "log", "d", 1);
	h_sleep_ms(200);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_MARK, 2), 0);
	assert_int_equal(hv_unpause(d), 0);
	assert_int_equal(read_rep(fd, &r, val, 300), -ETIMEDOUT);
	assert_int_equal(hv_output(d, HV_OUTPUT_RELEASE, 1), 0);
	for (uint64_t s = 21; s <= 27; s++) {
		assert_int_equal(read_rep(fd, &r, val, 5000), 0);
		assert_int_equal(r.seq, s);
	}
	/* A MARK while paused goes with the unpause; a RELEASE before it (an
	 * epoch acknowledged while the guest is still paused) sends it first. */
	for (uint64_t s = 28; s <= 29; s++)
		send_req(fd, KV_APPEND, 22, s, "log", "e", 1);
	h_sleep_ms(200);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_MARK, 3), 0);
	assert_int_equal(hv_output(d, HV_OUTPUT_RELEASE, 2), 0);
	assert_int_equal(hv_unpause(d), 0);
	for (uint64_t s = 28; s <= 29; s++) {
		assert_int_equal(read_rep(fd, &r, val, 5000), 0);
		assert_int_equal(r.seq, s);
	}
	/* Open: what comes now goes at once. */
	assert_int_equal(hv_output(d, HV_OUTPUT_OPEN, 0), 0);
	r = call(fd, KV_GET, 22, 30, "log", NULL, val);
	assert_int_equal(r.val_len, 29);
	close(fd);
	verify_ok(d);
	h_destroy(d);
}

/* A retry after a reconnect is answered from the record, applied once. */
static void test_retry_once(void **state)
{
	uint8_t val[KV_VAL_MAX];
	struct kv_rep r;
	uint16_t port;
	struct hv_domain *d = serving("kv3", &port);
	int fd = connect_to(port);

	(void)state;
	hello(fd, 33, 1);
	call(fd, KV_APPEND, 33, 1, "q", "x", val);
	/* Seq 2 goes out, the connection breaks before the client reads. */
	send_req(fd, KV_APPEND, 33, 2, "q", "y", 1);
	h_sleep_ms(100);
	close(fd);
	fd = connect_to(port);
	hello(fd, 33, 2);
	r = call(fd, KV_APPEND, 33, 2, "q", "y", val);
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.aux, 2);
	r = call(fd, KV_GET, 33, 3, "q", NULL, val);
	assert_int_equal(r.val_len, 2);
	assert_memory_equal(val, "xy", 2);
	close(fd);
	verify_ok(d);
	h_destroy(d);
}

/* Hostile clients get an error or a closed connection; the guest and its
 * other clients go on. */
static void test_malformed(void **state)
{
	uint8_t val[KV_VAL_MAX], junk[600];
	char bigkey[KV_KEY_MAX + 2];
	struct kv_req_hdr h;
	struct kv_rep r;
	uint16_t port;
	struct hv_domain *d = serving("kv4", &port);
	int good = connect_to(port), fd, mute;
	uint64_t seq = 1;

	(void)state;
	hello(good, 44, 1);
	/* An oversized key: a BAD_REQUEST answer, then the end. */
	fd = connect_to(port);
	memset(bigkey, 'k', sizeof bigkey - 1);
	bigkey[sizeof bigkey - 1] = '\0';
	kv_req_hdr_make(&h, KV_PUT, 1, 1, strlen(bigkey), 1);
	send_all(fd, &h, sizeof h);
	assert_int_equal(read_rep(fd, &r, val, 5000), 0);
	assert_int_equal(r.status, KV_BAD_REQUEST);
	assert_int_equal(read_rep(fd, &r, val, 5000), -ECONNRESET);
	close(fd);
	/* Garbage framing. */
	fd = connect_to(port);
	memset(junk, 0x41, sizeof junk);
	send_all(fd, "GET / HTTP/1.1\r\n\r\n", 18);
	assert_int_equal(read_rep(fd, &r, val, 5000), 0);
	assert_int_equal(r.status, KV_BAD_REQUEST);
	close(fd);
	/* Half a request, then the client leaves. */
	fd = connect_to(port);
	kv_req_hdr_make(&h, KV_PUT, 2, 1, 3, 1000);
	send_all(fd, &h, sizeof h);
	send_all(fd, junk, 100);
	close(fd);
	/* A client that never reads: it fills its ring, and only its own. */
	mute = connect_to(port);
	hello(mute, 45, 1);
	call(good, KV_PUT, 44, seq++, "big", (char[]){ [0 ... 3998] = 'b', [3999] = 0 }, val);
	for (int i = 1; i <= 200; i++)
		send_req(mute, KV_GET, 45, (uint64_t)i + 1, "big", NULL, 0);
	h_sleep_ms(300);
	for (int i = 0; i < 20; i++) {
		r = call(good, KV_GET, 44, seq++, "big", NULL, val);
		assert_int_equal(r.val_len, 3999);
	}
	close(mute);
	close(good);
	/* Still serving, still sound. */
	fd = connect_to(port);
	hello(fd, 46, 1);
	r = call(fd, KV_GET, 46, 1, "big", NULL, val);
	assert_int_equal(r.status, KV_OK);
	close(fd);
	verify_ok(d);
	h_destroy(d);
}

/* Connections that hold their slot without letting the guest serve them
 * (half a request; a client that never reads) are closed after stall=MS,
 * and their slots serve new clients again. */
static void test_stalled(void **state)
{
	struct hv_domain *d = h_launch("kv5", "mem=64M vcpus=1 workload=kvstore:conns=2,ring=8K,"
				       "clients=16,stall=500", false);
	uint8_t val[KV_VAL_MAX], buf[64];
	struct kv_req_hdr h;
	struct kv_rep r;
	uint16_t port;
	int half, mute, fd, small = 4096;

	(void)state;
	assert_int_equal(hv_net_attach(d, listener(&port)), 0);
	half = connect_to(port);
	kv_req_hdr_make(&h, KV_PUT, 2, 1, 3, 1000);
	send_all(half, &h, sizeof h);
	send_all(half, "abc", 3);
	/* A client with a small receive buffer asking for far more than the
	 * socket buffers between it and the guest hold, never reading. */
	mute = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(mute, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		assert_int_equal(connect(mute, (struct sockaddr *)&sa, sizeof sa), 0);
	}
	hello(mute, 51, 1);
	call(mute, KV_PUT, 51, 2, "big", (char[]){ [0 ... 3998] = 'b', [3999] = 0 }, val);
	for (uint64_t i = 3; i < 3003; i++) {
		size_t n = kv_req_make(buf, KV_GET, 51, i, "big", 3, NULL, 0);

		if (send(mute, buf, n, MSG_DONTWAIT) != (ssize_t)n)
			break;
	}
	/* Both slots are held: a third client is turned away. */
	h_sleep_ms(100);
	fd = connect_to(port);
	assert_int_equal(read_rep(fd, &r, val, 5000), -ECONNRESET);
	close(fd);
	/* After the stall time both are cut off, and the slots serve again. */
	assert_int_equal(read_rep(half, &r, val, 5000), -ECONNRESET);
	h_sleep_ms(300);
	fd = connect_to(port);
	hello(fd, 52, 1);
	r = call(fd, KV_GET, 52, 2, "big", NULL, val);
	assert_int_equal(r.val_len, 3999);
	close(fd);
	close(half);
	close(mute);
	verify_ok(d);
	h_destroy(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serves),
		cmocka_unit_test(test_output_gating),
		cmocka_unit_test(test_retry_once),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_stalled),
	};

	return cmocka_run_group_tests_name("nic", tests, h_group_setup, h_group_teardown);
}
