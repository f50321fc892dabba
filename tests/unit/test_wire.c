/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_wire.c — the small parsers and tables around the engines: handshake
 * frames and HELLO (session/wire.c), control messages, the config file
 * (common/conf.c), HOST:PORT and names (common/util.c), control requests and
 * state names (api/api.c), domain URIs (hv/hv.c), channel kinds
 * (transport/chan.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/util.h"
#include "session/wire.h"
#include "api/api.h"
#include "hv/hv.h"
#include "transport/tcp.h"

static void test_frame_roundtrip(void **state)
{
	struct wire_hello h = { .op = WIRE_OP_MIGRATE }, back;
	json_t *o, *got;
	struct chan *c0, *c1;
	uint32_t version;
	char err[256];
	int sv[2];

	(void)state;
	snprintf(h.job, sizeof h.job, "0123456789ab");
	snprintf(h.name, sizeof h.name, "web-1.a_b");
	snprintf(h.config, sizeof h.config, "mem=268435456 vcpus=1 workload=idle");
	snprintf(h.from, sizeof h.from, "host-a");
	h.caps = WIRE_CAP_DELTA;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(chan_tcp_new(sv[0], &c0), 0);
	assert_int_equal(chan_tcp_new(sv[1], &c1), 0);
	h.channels = 3;
	h.peer_timeout_ms = 2000;
	o = wire_hello_json(&h);
	assert_non_null(o);
	assert_int_equal(wire_send_frame(c0, o), 0);
	json_decref(o);
	assert_int_equal(wire_recv_frame(c1, 1000, &version, &got, err, sizeof err), 0);
	assert_int_equal(version, WIRE_PROTO_VERSION);
	assert_int_equal(wire_hello_parse(got, &back, err, sizeof err), 0);
	assert_int_equal(back.op, WIRE_OP_MIGRATE);
	assert_string_equal(back.job, h.job);
	assert_string_equal(back.name, h.name);
	assert_string_equal(back.config, h.config);
	assert_string_equal(back.from, h.from);
	assert_int_equal(back.caps, WIRE_CAP_DELTA);
	assert_int_equal(back.channels, 3);
	assert_int_equal(back.peer_timeout_ms, 2000);
	json_decref(got);

	/* A restarted primary's protect HELLO: resync says so. */
	memset(&h, 0, sizeof h);
	h.op = WIRE_OP_PROTECT;
	snprintf(h.job, sizeof h.job, "0123456789ab");
	snprintf(h.name, sizeof h.name, "db1");
	h.channels = 2;
	h.heartbeat_ms = 400;
	h.epoch_ms = 25;
	h.fencing = h.resync = true;
	for (int k = 0; k < 2; k++) {
		o = wire_hello_json(&h);
		assert_int_equal(wire_send_frame(c0, o), 0);
		json_decref(o);
		assert_int_equal(wire_recv_frame(c1, 1000, &version, &got, err, sizeof err), 0);
		assert_int_equal(wire_hello_parse(got, &back, err, sizeof err), 0);
		assert_int_equal(back.op, WIRE_OP_PROTECT);
		assert_int_equal(back.heartbeat_ms, 400);
		assert_true(back.fencing);
		assert_int_equal(back.resync, h.resync);
		json_decref(got);
		h.resync = false; /* and a first pairing's, without it */
	}

	/* A further channel's HELLO. */
	memset(&h, 0, sizeof h);
	h.op = WIRE_OP_CHANNEL;
	snprintf(h.job, sizeof h.job, "0123456789ab");
	snprintf(h.token, sizeof h.token, "00112233445566778899aabbccddeeff");
	h.index = 2;
	o = wire_hello_json(&h);
	assert_int_equal(wire_send_frame(c0, o), 0);
	json_decref(o);
	assert_int_equal(wire_recv_frame(c1, 1000, &version, &got, err, sizeof err), 0);
	assert_int_equal(wire_hello_parse(got, &back, err, sizeof err), 0);
	assert_int_equal(back.op, WIRE_OP_CHANNEL);
	assert_int_equal(back.index, 2);
	assert_string_equal(back.token, h.token);
	json_decref(got);

	/* Nothing sent: a timeout, not a hang. */
	assert_int_equal(wire_recv_frame(c1, 50, &version, &got, err, sizeof err), -ETIMEDOUT);
	/* Not our protocol. */
	assert_int_equal(write(sv[0], "GET / HTTP/1.1\r\n\r\n", 18), 18);
	assert_int_equal(wire_recv_frame(c1, 1000, &version, &got, err, sizeof err), -EPROTO);
	assert_non_null(strstr(err, "does not speak"));
	chan_free(c0);
	chan_free(c1);
}

static void test_caps(void **state)
{
	json_t *a = json_loads("[\"delta\",\"zstd\",\"lz4\"]", 0, NULL), *back;
	uint32_t caps;

	(void)state;
	assert_int_equal(wire_caps_parse(a, &caps), 0);
	assert_int_equal(caps, WIRE_CAP_LZ4 | WIRE_CAP_DELTA); /* zstd: not known, ignored */
	json_decref(a);
	back = wire_caps_json(WIRE_CAP_DELTA);
	assert_int_equal(wire_caps_parse(back, &caps), 0);
	assert_int_equal(caps, WIRE_CAP_DELTA);
	json_decref(back);
	a = json_loads("[1]", 0, NULL);
	assert_int_equal(wire_caps_parse(a, &caps), -EINVAL);
	json_decref(a);
	assert_int_equal(wire_caps_from_text("lz4,delta", &caps), 0);
	assert_int_equal(caps, WIRE_CAPS_ALL);
	assert_int_equal(wire_caps_from_text("none", &caps), 0);
	assert_int_equal(caps, 0);
	assert_int_equal(wire_caps_from_text("delta", &caps), 0);
	assert_int_equal(caps, WIRE_CAP_DELTA);
	assert_int_equal(wire_caps_from_text("lz4,", &caps), -EINVAL);
	assert_int_equal(wire_caps_from_text("gzip", &caps), -EINVAL);
	assert_int_equal(wire_caps_from_text("", &caps), 0);
}

static void test_frame_header_limits(void **state)
{
	struct wire_frame_hdr h = { .magic = "FERRYMIG" };
	uint32_t v, len;

	(void)state;
	h.version = htole32(7);
	h.len = htole32(10);
	assert_int_equal(wire_frame_parse_hdr(&h, &v, &len), 0);
	assert_int_equal(v, 7);
	assert_int_equal(len, 10);
	h.len = 0;
	assert_int_equal(wire_frame_parse_hdr(&h, &v, &len), -EPROTO);
	h.len = htole32(WIRE_FRAME_MAX + 1);
	assert_int_equal(wire_frame_parse_hdr(&h, &v, &len), -EPROTO);
	h.len = htole32(WIRE_FRAME_MAX);
	assert_int_equal(wire_frame_parse_hdr(&h, &v, &len), 0);
	h.magic[7] = 'X';
	assert_int_equal(wire_frame_parse_hdr(&h, &v, &len), -EPROTO);
}

static void expect_hello_fails(const char *json, const char *needle)
{
	json_t *o = json_loads(json, JSON_ALLOW_NUL, NULL);
	struct wire_hello h;
	char err[256] = "";

	assert_non_null(o);
	assert_int_equal(wire_hello_parse(o, &h, err, sizeof err), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("hello %s: error \"%s\" lacks \"%s\"", json, err, needle);
	json_decref(o);
}

static void test_hello_rejects(void **state)
{
	(void)state;
	expect_hello_fails("{}", "op");
	expect_hello_fails("{\"op\":\"dance\",\"job\":\"a\"}", "unknown HELLO op");
	expect_hello_fails("{\"op\":\"migrate\"}", "job");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a/b\",\"name\":\"x\",\"config\":\"\"}",
			   "job id");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"config\":\"\"}", "name");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"../etc\",\"config\":\"\"}",
			   "not valid");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\",\"config\":1}",
			   "config");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\\u0000y\",\"config\":\"\"}",
			   "name");
	expect_hello_fails("{\"op\":\"resolve\",\"job\":\"-a\"}", "job id");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\",\"config\":\"\","
			   "\"channels\":0}", "channels");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\",\"config\":\"\","
			   "\"channels\":65}", "channels");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\",\"config\":\"\","
			   "\"channels\":\"2\"}", "channels");
	expect_hello_fails("{\"op\":\"migrate\",\"job\":\"a\",\"name\":\"x\",\"config\":\"\","
			   "\"peer_timeout_ms\":50}", "peer_timeout_ms");
	expect_hello_fails("{\"op\":\"channel\",\"job\":\"a\",\"index\":0,"
			   "\"token\":\"00112233445566778899aabbccddeeff\"}", "index");
	expect_hello_fails("{\"op\":\"channel\",\"job\":\"a\",\"index\":1}", "token");
	expect_hello_fails("{\"op\":\"protect\",\"job\":\"a\",\"name\":\"x\",\"config\":\"\","
			   "\"heartbeat_ms\":400,\"epoch_ms\":25,\"fencing\":true,\"resync\":1}",
			   "resync");
	expect_hello_fails("{\"op\":\"channel\",\"job\":\"a\",\"index\":1,\"token\":\"xyz\"}",
			   "token");
	expect_hello_fails("{\"op\":\"channel\",\"job\":\"a\",\"index\":64,"
			   "\"token\":\"00112233445566778899aabbccddeeff\"}", "index");
}

static void test_msgs(void **state)
{
	uint32_t type;
	uint64_t arg;
	int sv[2];
	char buf[64];
	struct chan *c0, *c1;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(chan_tcp_new(sv[0], &c0), 0);
	assert_int_equal(chan_tcp_new(sv[1], &c1), 0);
	assert_int_equal(wire_send_msg(c0, WIRE_RUNNING, 12345), 0);
	assert_int_equal(wire_read_msg(c1, &type, &arg), 0);
	assert_int_equal(type, WIRE_RUNNING);
	assert_int_equal(arg, 12345);
	wire_send_abort(c0, EBADMSG, "checksum mismatch");
	assert_int_equal(wire_read_msg(c1, &type, &arg), 0);
	assert_int_equal(type, WIRE_ABORT);
	assert_int_equal(arg >> 32, EBADMSG);
	assert_int_equal(arg & 0xffffffff, 17);
	assert_int_equal(read(sv[1], buf, 17), 17);
	assert_memory_equal(buf, "checksum mismatch", 17);
	/* Bad magic, bad type. */
	memset(buf, 0, 16);
	assert_int_equal(wire_msg_parse(buf, &type, &arg), -EPROTO);
	memcpy(buf, "FMIG", 4);
	buf[4] = 9;
	assert_int_equal(wire_msg_parse(buf, &type, &arg), -EPROTO);
	chan_free(c0);
	assert_int_equal(wire_read_msg(c1, &type, &arg), -ECONNRESET);
	chan_free(c1);
}

struct kv {
	char out[512];
};

static int collect(void *ctx, const char *k, const char *v, char *err, size_t errlen)
{
	struct kv *c = ctx;

	if (strcmp(k, "refuse") == 0) {
		snprintf(err, errlen, "not wanted");
		return -EINVAL;
	}
	snprintf(c->out + strlen(c->out), sizeof c->out - strlen(c->out), "[%s=%s]", k, v);
	return 0;
}

static void test_conf(void **state)
{
	const char *text = "# comment\n\nlisten = 0.0.0.0:7480\n  state-dir=/var/lib/ferry  # x\n"
			   "empty =\r\nlast=1";
	struct kv c = { "" };
	char err[256] = "";

	(void)state;
	assert_int_equal(conf_parse(text, strlen(text), collect, &c, err, sizeof err), 0);
	assert_string_equal(c.out, "[listen=0.0.0.0:7480][state-dir=/var/lib/ferry][empty=][last=1]");
	assert_int_not_equal(conf_parse("a b\n", 4, collect, &c, err, sizeof err), 0);
	assert_non_null(strstr(err, "line 1"));
	assert_int_not_equal(conf_parse("x=1\nKey = 2\n", 12, collect, &c, err, sizeof err), 0);
	assert_non_null(strstr(err, "line 2"));
	assert_int_not_equal(conf_parse("= 2\n", 4, collect, &c, err, sizeof err), 0);
	assert_int_not_equal(conf_parse("a=\0b\n", 5, collect, &c, err, sizeof err), 0);
	assert_non_null(strstr(err, "NUL"));
	assert_int_equal(conf_parse("refuse = 1\n", 11, collect, &c, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "not wanted"));
}

static void test_host_port(void **state)
{
	char h[64], p[8];

	(void)state;
	assert_int_equal(parse_host_port("host-b", 7480, h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "host-b");
	assert_string_equal(p, "7480");
	assert_int_equal(parse_host_port("10.0.0.2:9000", 7480, h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "10.0.0.2");
	assert_string_equal(p, "9000");
	assert_int_equal(parse_host_port("[::1]:9", 7480, h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "::1");
	assert_string_equal(p, "9");
	assert_int_equal(parse_host_port("[fe80::1]", 7480, h, sizeof h, p, sizeof p), 0);
	assert_string_equal(p, "7480");
	assert_int_equal(parse_host_port("::1", 7480, h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(parse_host_port("h:0", 7480, h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(parse_host_port("h:65536", 7480, h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(parse_host_port(":80", 7480, h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(parse_host_port("[::1", 7480, h, sizeof h, p, sizeof p), -EINVAL);
}

static void expect_api(const char *json, int want, const char *needle)
{
	json_t *o = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	const struct api_op *op = NULL;
	char err[256] = "";
	int r;

	assert_non_null(o);
	r = api_check(o, &op, err, sizeof err);
	if (r != want || (needle && !strstr(err, needle)))
		fail_msg("%s: got %d \"%s\", want %d \"%s\"", json, r, err, want, needle);
	json_decref(o);
}

static void test_api_check(void **state)
{
	(void)state;
	expect_api("{\"op\":\"list\"}", 0, NULL);
	expect_api("{\"op\":\"create\",\"name\":\"a\",\"mem\":\"1G\",\"vcpus\":2}", 0, NULL);
	expect_api("{\"op\":\"create\",\"name\":\"a\",\"mem\":268435456}", 0, NULL);
	expect_api("[1]", -EINVAL, "JSON object");
	expect_api("{}", -EINVAL, "\"op\"");
	expect_api("{\"op\":7}", -EINVAL, "\"op\"");
	expect_api("{\"op\":\"fly\"}", -EINVAL, "unknown op");
	expect_api("{\"op\":\"migrate\",\"name\":\"a\"}", -EINVAL, "\"dest\" is required");
	expect_api("{\"op\":\"migrate\",\"name\":\"a\",\"dest\":\"b\",\"downtime_ms\":\"5\"}", -EINVAL,
		   "must be an integer");
	expect_api("{\"op\":\"create\",\"name\":\"a\",\"mem\":-1}", -EINVAL, "size");
	expect_api("{\"op\":\"list\",\"verbose\":true}", -EINVAL, "unknown member");
	expect_api("{\"op\":\"status\",\"job\":\"a\\u0000b\"}", -EINVAL, "string");
}

/* status waits (on a task thread) only when asked to; the API's state
 * names round-trip. */
static void test_api_names(void **state)
{
	const struct api_op *op;
	char err[128];
	json_t *a = json_loads("{\"op\":\"status\",\"job\":\"x\"}", 0, NULL);
	json_t *b = json_loads("{\"op\":\"status\",\"job\":\"x\",\"wait_ms\":500}", 0, NULL);

	(void)state;
	assert_int_equal(api_check(a, &op, err, sizeof err), 0);
	assert_false(api_slow(op, a));
	assert_int_equal(api_check(b, &op, err, sizeof err), 0);
	assert_true(api_slow(op, b));
	json_decref(a);
	json_decref(b);
	for (int s = 0; s < API_JOB_STATE_MAX; s++)
		assert_int_equal(api_job_state_parse(api_job_state_name(s)), s);
	assert_int_equal(api_job_state_parse("teleported"), API_JOB_STATE_MAX);
}

/* Domain URIs: the default backend, names checked, lengths bounded. */
static void test_hv_uri(void **state)
{
	char uri[HV_URI_MAX], small[8];

	(void)state;
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, "web1"), 0);
	assert_string_equal(uri, "mvm:web1");
	assert_string_equal(hv_default_backend(), "mvm");
	assert_string_equal(hv_uri_name(uri), "web1");
	assert_string_equal(hv_uri_name("plain"), "plain");
	assert_int_equal(hv_uri(uri, sizeof uri, "mvm", "db-1.a_b"), 0);
	assert_int_equal(hv_uri(uri, sizeof uri, "hyperv", "web1"), -EINVAL);
#ifdef HAVE_XEN
	assert_int_equal(hv_uri(uri, sizeof uri, "xen", "web1"), 0);
	assert_string_equal(uri, "xen:web1");
#else
	assert_int_equal(hv_uri(uri, sizeof uri, "xen", "web1"), -EINVAL);
#endif
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, "-bad"), -EINVAL);
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, "../x"), -EINVAL);
	assert_int_equal(hv_uri(uri, sizeof uri, NULL, ""), -EINVAL);
	assert_int_equal(hv_uri(small, sizeof small, NULL, "longname"), -ENAMETOOLONG);
	assert_true(name_ok("a", 2));
	assert_false(name_ok("ab", 2));
	assert_false(name_ok(".a", 8));
	assert_false(name_ok("a b", 8));
}

/* A channel kind must define every op: an incomplete table is refused. */
static ssize_t no_recv_some(struct chan *c, void *b, size_t n, int t)
{
	(void)c, (void)b, (void)n, (void)t;
	return -EIO;
}

static void test_chan_kind_complete(void **state)
{
	struct chan_ops ops = { .kind = "half", .recv_some = no_recv_some };
	struct chan c = { 0 };
	struct chan *t;
	int sv[2];

	(void)state;
	assert_int_equal(chan_init(&c, &ops), -ENOSYS);
	assert_null(c.ops);
	/* The real kinds are complete: TCP drains through its own op. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(chan_tcp_new(sv[0], &t), 0);
	assert_non_null(t->ops->drain);
	assert_int_equal(write(sv[1], "bye", 3), 3);
	close(sv[1]);
	chan_drain(t, 1000); /* reads to the end, returns at once */
	chan_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_roundtrip), cmocka_unit_test(test_frame_header_limits),
		cmocka_unit_test(test_hello_rejects),	cmocka_unit_test(test_msgs),
		cmocka_unit_test(test_conf),		cmocka_unit_test(test_host_port),
		cmocka_unit_test(test_api_check),	cmocka_unit_test(test_caps),
		cmocka_unit_test(test_api_names),	cmocka_unit_test(test_hv_uri),
		cmocka_unit_test(test_chan_kind_complete),
	};

	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
