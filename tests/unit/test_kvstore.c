/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_kvstore.c — the kvstore guest's store (mvm/kvstore.c) and its wire
 * protocol (kv/proto.c), in memory: operations, at-most-once retries within
 * a client's window, refusals, eviction, and the store's own verifier
 * catching damage.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/proto.h"
#include "mvm/kvstore.h"
#include "mvm/workload.h"

#define MEM (32u << 20)

struct t {
	struct kv_store s;
	struct kv_conn conn;
	uint8_t out[KV_MSG_MAX];
	struct kv_rep rep;
};

static int mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct kv_store *s = ctx;

	if (off + len > s->size)
		return -EIO;
	memcpy(buf, s->ram + off, len);
	return 0;
}

static void setup_store(struct t *t, const char *spec)
{
	struct wl_config w;
	char err[128];

	memset(t, 0, sizeof *t);
	assert_int_equal(wl_parse(spec, MEM / 4096, 4096, &w, err, sizeof err), 0);
	t->s.ram = calloc(1, MEM);
	t->s.size = MEM;
	assert_non_null(t->s.ram);
	assert_int_equal(kv_layout_of(&w, MEM, &t->s.l, err, sizeof err), 0);
	kv_init(&t->s);
}

/* One request through kv_handle; the reply parsed into t->rep. */
static enum kv_status req(struct t *t, enum kv_op op, uint64_t client, uint64_t seq,
			  const char *key, const void *val, size_t vlen)
{
	uint8_t buf[KV_MSG_MAX];
	struct kv_req rq;
	size_t used, n, len = kv_req_make(buf, op, client, seq, key, key ? strlen(key) : 0, val, vlen);
	char err[128];

	assert_int_equal(kv_req_parse(buf, len, &rq, &used, err, sizeof err), 0);
	n = kv_handle(&t->s, &t->conn, &rq, t->out);
	assert_int_equal(kv_rep_parse(t->out, n, &t->rep, &used, err, sizeof err), 0);
	assert_int_equal(used, n);
	assert_int_equal(t->rep.seq, seq);
	return t->rep.status;
}

static enum kv_status hello(struct t *t, uint64_t client, uint64_t base, uint32_t window)
{
	uint32_t w = htole32(window);

	return req(t, KV_HELLO, client, base, NULL, &w, 4);
}

static void verify_ok(struct t *t)
{
	char why[256];
	uint64_t n;

	assert_int_equal(kv_verify(&t->s.l, mem_read, &t->s, &n, why, sizeof why), 0);
	if (why[0])
		fail_msg("verify: %s", why);
}

static void test_ops(void **state)
{
	struct t t;
	char big[KV_VAL_MAX + 1];

	(void)state;
	setup_store(&t, "kvstore:conns=4,ring=8K,clients=16");
	assert_int_equal(req(&t, KV_PUT, 7, 1, "a", "x", 1), KV_UNKNOWN_CLIENT);
	assert_int_equal(hello(&t, 7, 1, 8), KV_OK);
	assert_int_equal(t.rep.aux, 8);
	assert_int_equal(req(&t, KV_GET, 7, 1, "a", NULL, 0), KV_NOT_FOUND);
	assert_int_equal(req(&t, KV_PUT, 7, 2, "a", "hello", 5), KV_OK);
	assert_int_equal(req(&t, KV_GET, 7, 3, "a", NULL, 0), KV_OK);
	assert_int_equal(t.rep.val_len, 5);
	assert_memory_equal(t.rep.val, "hello", 5);
	assert_int_equal(req(&t, KV_APPEND, 7, 4, "a", " world", 6), KV_OK);
	assert_int_equal(t.rep.aux, 11);
	assert_int_equal(req(&t, KV_GET, 7, 5, "a", NULL, 0), KV_OK);
	assert_memory_equal(t.rep.val, "hello world", 11);
	/* Grow across size classes. */
	memset(big, 'z', sizeof big);
	assert_int_equal(req(&t, KV_PUT, 7, 6, "a", big, 3000), KV_OK);
	assert_int_equal(req(&t, KV_APPEND, 7, 7, "a", big, 1096), KV_OK);
	assert_int_equal(t.rep.aux, KV_VAL_MAX);
	assert_int_equal(req(&t, KV_APPEND, 7, 8, "a", "!", 1), KV_TOO_BIG);
	assert_int_equal(req(&t, KV_APPEND, 7, 9, "new", "1", 1), KV_OK);
	assert_int_equal(req(&t, KV_DELETE, 7, 10, "a", NULL, 0), KV_OK);
	assert_int_equal(req(&t, KV_DELETE, 7, 11, "a", NULL, 0), KV_NOT_FOUND);
	assert_int_equal(req(&t, KV_GET, 7, 12, "a", NULL, 0), KV_NOT_FOUND);
	verify_ok(&t);
	free(t.s.ram);
}

/* A retry within the window is answered from the record, never applied
 * twice; below the window it is TOO_OLD; a forgotten client is refused. */
static void test_dedup(void **state)
{
	struct kv_stats st;
	struct t t;

	(void)state;
	setup_store(&t, "kvstore:conns=4,ring=8K,clients=16");
	assert_int_equal(hello(&t, 9, 1, 4), KV_OK);
	assert_int_equal(req(&t, KV_APPEND, 9, 1, "log", "A", 1), KV_OK);
	assert_int_equal(req(&t, KV_APPEND, 9, 2, "log", "B", 1), KV_OK);
	/* The connection broke; the client reconnects and retries seq 2. */
	memset(&t.conn, 0, sizeof t.conn);
	assert_int_equal(hello(&t, 9, 2, 4), KV_OK);
	assert_int_equal(req(&t, KV_APPEND, 9, 2, "log", "B", 1), KV_OK);
	assert_int_equal(t.rep.aux, 2);
	assert_int_equal(req(&t, KV_GET, 9, 3, "log", NULL, 0), KV_OK);
	assert_int_equal(t.rep.val_len, 2);
	assert_memory_equal(t.rep.val, "AB", 2);
	kv_stats(&t.s, &st);
	assert_int_equal(st.retries_answered, 1);
	/* Move the window on: seq 2 falls out of it. */
	for (uint64_t s = 4; s <= 8; s++)
		assert_int_equal(req(&t, KV_PUT, 9, s, "k", "v", 1), KV_OK);
	assert_int_equal(req(&t, KV_APPEND, 9, 2, "log", "B", 1), KV_TOO_OLD);
	assert_int_equal(req(&t, KV_GET, 9, 9, "log", NULL, 0), KV_OK);
	assert_int_equal(t.rep.val_len, 2);
	/* A client the store never heard of that says it sent before. */
	memset(&t.conn, 0, sizeof t.conn);
	assert_int_equal(hello(&t, 77, 5, 4), KV_UNKNOWN_CLIENT);
	verify_ok(&t);
	free(t.s.ram);
}

/* A full client table evicts the idlest; its later return is refused. */
static void test_eviction(void **state)
{
	struct kv_stats st;
	struct t t;

	(void)state;
	setup_store(&t, "kvstore:conns=4,ring=8K,clients=16");
	for (uint64_t c = 1; c <= 17; c++) {
		memset(&t.conn, 0, sizeof t.conn);
		assert_int_equal(hello(&t, c, 1, 2), KV_OK);
		assert_int_equal(req(&t, KV_PUT, c, 1, "x", "y", 1), KV_OK);
	}
	kv_stats(&t.s, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.clients, 16);
	memset(&t.conn, 0, sizeof t.conn);
	assert_int_equal(hello(&t, 1, 2, 2), KV_UNKNOWN_CLIENT);
	verify_ok(&t);
	free(t.s.ram);
}

/* Many keys, deletes and rewrites; then damage that verify must name. */
static void test_verify_catches(void **state)
{
	struct t t;
	char key[32], why[256];
	uint64_t n, *b;

	(void)state;
	setup_store(&t, "kvstore:conns=4,ring=8K,clients=16");
	assert_int_equal(hello(&t, 5, 1, 16), KV_OK);
	for (uint64_t i = 1; i <= 2000; i++) {
		snprintf(key, sizeof key, "key-%llu", (unsigned long long)(i % 700));
		assert_int_equal(req(&t, i % 5 == 0 ? KV_DELETE : KV_PUT, 5, i, key, key,
				     i % 5 == 0 ? 0 : strlen(key)) <= KV_NOT_FOUND, 1);
	}
	verify_ok(&t);
	assert_int_equal(kv_verify(&t.s.l, mem_read, &t.s, &n, why, sizeof why), 0);
	assert_true(n > 400);
	/* Flip a byte of some entry's value. */
	t.s.ram[t.s.l.arena_off + 40] ^= 1;
	assert_int_equal(kv_verify(&t.s.l, mem_read, &t.s, &n, why, sizeof why), 0);
	assert_non_null(strstr(why, "checksum"));
	t.s.ram[t.s.l.arena_off + 40] ^= 1;
	verify_ok(&t);
	/* Lose a bucket. */
	b = (uint64_t *)(void *)(t.s.ram + t.s.l.index_off);
	for (uint64_t i = 0; i < t.s.l.buckets; i++)
		if (b[i] > 1) {
			b[i] = 0;
			break;
		}
	assert_int_equal(kv_verify(&t.s.l, mem_read, &t.s, &n, why, sizeof why), 0);
	assert_true(why[0]);
	free(t.s.ram);
}

static void expect_parse(const void *buf, size_t len, int want, const char *needle)
{
	struct kv_req rq;
	char err[128] = "";
	size_t used;
	int r = kv_req_parse(buf, len, &rq, &used, err, sizeof err);

	if (r != want || (needle && !strstr(err, needle)))
		fail_msg("parse: got %d \"%s\", want %d \"%s\"", r, err, want, needle);
}

static void test_parse(void **state)
{
	uint8_t buf[KV_MSG_MAX + 64] = { 0 };
	struct kv_req_hdr h;

	(void)state;
	expect_parse("KVQ", 3, -EAGAIN, NULL);
	expect_parse("GET / HTTP/1.1\r\n", 16, -EPROTO, "magic");
	kv_req_hdr_make(&h, KV_PUT, 1, 1, KV_KEY_MAX + 1, 1);
	memcpy(buf, &h, sizeof h);
	expect_parse(buf, sizeof h, -EPROTO, "key");
	kv_req_hdr_make(&h, KV_PUT, 1, 1, 4, KV_VAL_MAX + 1);
	memcpy(buf, &h, sizeof h);
	expect_parse(buf, sizeof h, -EPROTO, "value");
	kv_req_hdr_make(&h, KV_GET, 1, 1, 0, 0);
	memcpy(buf, &h, sizeof h);
	expect_parse(buf, sizeof h, -EPROTO, "key");
	kv_req_hdr_make(&h, KV_PUT, 1, 0, 1, 1);
	memcpy(buf, &h, sizeof h);
	expect_parse(buf, sizeof h + 2, -EPROTO, "sequence");
	kv_req_hdr_make(&h, KV_PUT, 1, 1, 3, 100);
	memcpy(buf, &h, sizeof h);
	expect_parse(buf, sizeof h + 50, -EAGAIN, NULL); /* half a request */
	expect_parse(buf, sizeof h + 103, 0, NULL);
	buf[5] = 1; /* flags */
	expect_parse(buf, sizeof h + 103, -EPROTO, "reserved");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops),	     cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_eviction), cmocka_unit_test(test_verify_catches),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests_name("kvstore", tests, NULL, NULL);
}
