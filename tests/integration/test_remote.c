/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_remote.c — ferryd's remote API (HTTPS, mutual TLS, api-listen) as a
 * pool manager meets it, through libcurl:
 *
 *  1 the OpenAPI description (docs/ferryd-api.json) walked against a live
 *    daemon: every documented path and method is called and nothing else;
 *    each answer's status is one the description lists for it, its body is
 *    JSON of the documented shape (the schema's required members, one level
 *    into referenced objects), every error is JSON with a sentence and a
 *    kind; the event stream carries the migration's job events; /metrics
 *    passes `promtool check metrics`
 *  2 refusals, each with a JSON reason and nothing done: no client
 *    certificate, a certificate of another CA, a host's certificate, a
 *    monitor's certificate on a POST and a DELETE (its GET works); a
 *    manager's certificate on the migration port (not a host); malformed
 *    JSON, unknown fields, a field the path gives, an oversized body, a
 *    wrong method (405 and Allow), an unknown path
 *  3 Idempotency-Key: a retried POST starts one migration, also after a
 *    restart of ferryd and after ferryd died between starting the job and
 *    keeping the key's answer (a failpoint); the same key with another body
 *    is 422; a retry while the first is being answered is 409 (a failpoint
 *    holds the first); another caller's same key is its own
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "session/session.h"
#include "transport/certs.h"
#include "transport/tls.h"

static struct td A, B;
static uint16_t api_port;
static long call_timeout_ms = 30000;
static char other_dir[300];

struct res {
	long status;
	char *body;
	size_t len;
	char ctype[128];
	char headers[4096];
	json_t *json; /* the body, if it is JSON */
};

static void res_free(struct res *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct res *r = arg;
	char *b = realloc(r->body, r->len + size * n + 1);

	if (!b)
		return 0;
	memcpy(b + r->len, p, size * n);
	r->len += size * n;
	b[r->len] = '\0';
	r->body = b;
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct res *r = arg;
	size_t have = strlen(r->headers);

	if (have + size * n < sizeof r->headers) {
		memcpy(r->headers + have, p, size * n);
		r->headers[have + size * n] = '\0';
	}
	return size * n;
}

/* Set a client certificate: who is "mgr", "mon", "A" (a host's), "evil"
 * (another CA's manager), or NULL (none). */
static void client_cert(CURL *c, const char *who)
{
	static char crt[400], key[400];
	const char *dir = who && strcmp(who, "evil") == 0 ? other_dir : td_pki();

	if (!who)
		return;
	snprintf(crt, sizeof crt, "%s/%s.crt", dir, who);
	snprintf(key, sizeof key, "%s/%s.key", dir, who);
	curl_easy_setopt(c, CURLOPT_SSLCERT, crt);
	curl_easy_setopt(c, CURLOPT_SSLKEY, key);
}

/* One request to A's API: curl's verdict (any thread). */
static CURLcode perform(struct res *r, const char *method, const char *path, const char *body,
			const char *who, const char *idem_key)
{
	char url[512], ca[400], kh[400];
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();
	char *ct = NULL;
	CURLcode e;

	assert_non_null(c);
	memset(r, 0, sizeof *r);
	snprintf(url, sizeof url, "https://127.0.0.1:%u%s", api_port, path);
	snprintf(ca, sizeof ca, "%s/ca.crt", td_pki());
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, call_timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	client_cert(c, who);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		h = curl_slist_append(h, "Content-Type: application/json");
	}
	if (idem_key) {
		snprintf(kh, sizeof kh, "Idempotency-Key: %s", idem_key);
		h = curl_slist_append(h, kh);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	e = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
	if (r->body && strncmp(r->ctype, "application/json", 16) == 0)
		r->json = json_loads(r->body, 0, NULL);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return e;
}

/* The same on the test's thread, asserting that an answer came. */
static void call(struct res *r, const char *method, const char *path, const char *body,
		 const char *who, const char *idem_key)
{
	CURLcode e = perform(r, method, path, body, who, idem_key);

	if (e != CURLE_OK)
		fail_msg("%s %s as %s: %s", method, path, who ? who : "nobody",
			 curl_easy_strerror(e));
}

/* An error answer: status want, JSON {"error": sentence, "kind"}, the
 * sentence containing text (if not NULL). */
static void expect_error(struct res *r, long want, const char *text, const char *what)
{
	const char *msg = r->json ? td_jstr(r->json, "error") : "";

	if (r->status != want || !r->json || strlen(msg) < 10 ||
	    !json_is_string(json_object_get(r->json, "kind")) || (text && !strstr(msg, text)))
		fail_msg("%s: %ld %s (want %ld, a JSON error%s%s)", what, r->status,
			 r->body ? r->body : "(no body)", want, text ? " naming " : "",
			 text ? text : "");
	res_free(r);
}

static int group_setup(void **state)
{
	int r = td_group_setup(state);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	td_init(&A, "A", 5000);
	td_init(&B, "B", 5000);
	td_make_client(td_pki(), "mgr", CERTS_ROLE_MANAGER);
	td_make_client(td_pki(), "mon", CERTS_ROLE_MONITOR);
	snprintf(other_dir, sizeof other_dir, "%s/other-ca", td_base());
	td_make_ca(other_dir);
	td_make_client(other_dir, "evil", CERTS_ROLE_MANAGER);
	return r;
}

static int group_teardown(void **state)
{
	curl_global_cleanup();
	return td_group_teardown(state);
}

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

/* A with the API on api_port, and B (a destination). */
static void start_pair(const char *failpoints_a)
{
	static char listen[32];

	td_init(&A, "A", 5000);
	td_init(&B, "B", 5000);
	api_port = td_free_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%u", api_port);
	A.extra_args[0] = "--api-listen";
	A.extra_args[1] = listen;
	A.extra_args[2] = NULL;
	td_start(&A, failpoints_a);
	td_start(&B, NULL);
}

static void restart_a(const char *failpoints)
{
	if (A.pid)
		td_term(&A, 10000);
	td_start(&A, failpoints);
}

/* ---- 1: the description, walked ---- */

static json_t *api_doc;

/* A schema, its $ref followed. */
static json_t *resolve(json_t *s)
{
	const char *ref = json_string_value(json_object_get(s, "$ref"));
	json_t *o = api_doc;
	char buf[256], *save = NULL;

	if (!ref)
		return s;
	assert_true(strncmp(ref, "#/", 2) == 0);
	snprintf(buf, sizeof buf, "%s", ref + 2);
	for (char *k = strtok_r(buf, "/", &save); k && o; k = strtok_r(NULL, "/", &save))
		o = json_object_get(o, k);
	if (!o)
		fail_msg("the description refers to %s, which it does not hold", ref);
	return o;
}

/* Members the schema requires are in v; one level into objects it names. */
static void check_shape(json_t *schema, json_t *v, const char *what, int depth)
{
	json_t *s = resolve(schema), *req = json_object_get(s, "required"), *k;
	json_t *props = json_object_get(s, "properties");
	size_t i;

	if (!json_is_object(v))
		fail_msg("%s: not a JSON object", what);
	json_array_foreach(req, i, k) {
		const char *name = json_string_value(k);
		json_t *sub = json_object_get(v, name);

		if (!sub)
			fail_msg("%s: no \"%s\", which the description requires", what, name);
		if (depth < 2 && json_is_object(sub) && json_object_get(props, name))
			check_shape(json_object_get(props, name), sub, what, depth + 1);
		if (depth < 2 && json_is_array(sub) && json_object_get(props, name)) {
			json_t *items = json_object_get(resolve(json_object_get(props, name)), "items");
			json_t *e;
			size_t j;

			json_array_foreach(sub, j, e)
				if (items && json_object_get(resolve(items), "required"))
					check_shape(items, e, what, depth + 1);
		}
	}
}

static char walked[32][64];
static unsigned nwalked;

/* Call METHOD on the documented path tmpl (with {name}/{id} filled in as
 * path) and check the answer against the description. */
static void walk(struct res *r, const char *method, const char *tmpl, const char *path,
		 const char *body)
{
	char lower[8], what[160];
	json_t *op, *resp;
	char code[8];

	for (unsigned i = 0; i < sizeof lower; i++)
		if (!(lower[i] = (char)(method[i] >= 'A' && method[i] <= 'Z' ? method[i] + 32
									 : method[i])))
			break;
	snprintf(what, sizeof what, "%s %s", method, path);
	op = json_object_get(json_object_get(json_object_get(api_doc, "paths"), tmpl), lower);
	if (!op)
		fail_msg("%s %s is not in docs/ferryd-api.json", method, tmpl);
	snprintf(walked[nwalked++], sizeof walked[0], "%s %s", lower, tmpl);
	call(r, method, path, body, "mgr", NULL);
	snprintf(code, sizeof code, "%ld", r->status);
	resp = json_object_get(json_object_get(op, "responses"), code);
	if (!resp)
		fail_msg("%s: %ld, which the description does not list: %s", what, r->status,
			 r->body ? r->body : "");
	resp = resolve(resp);
	if (json_object_get(json_object_get(resp, "content"), "application/json")) {
		json_t *schema = json_object_get(json_object_get(json_object_get(resp, "content"),
								  "application/json"), "schema");

		if (!r->json)
			fail_msg("%s: %ld, not JSON (%s): %s", what, r->status, r->ctype,
				 r->body ? r->body : "");
		check_shape(schema, r->json, what, 0);
		if (r->status >= 400 && strlen(td_jstr(r->json, "error")) < 10)
			fail_msg("%s: an error without a sentence: %s", what, r->body);
	}
}

/* ferryd's events, read on a thread until the wanted text came. */
struct follow {
	pthread_t t;
	struct res r;
	const char *want;
	bool seen;
};

static size_t follow_body(char *p, size_t size, size_t n, void *arg)
{
	struct follow *f = arg;

	on_body(p, size, n, &f->r);
	if (f->r.body && strstr(f->r.body, f->want)) {
		f->seen = true;
		return 0; /* enough: end the transfer */
	}
	return size * n;
}

static void *follow_main(void *arg)
{
	struct follow *f = arg;
	char url[128], ca[400];
	CURL *c = curl_easy_init();
	char *ct = NULL;

	snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/events", api_port);
	snprintf(ca, sizeof ca, "%s/ca.crt", td_pki());
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, follow_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	client_cert(c, "mon");
	curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->r.status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(f->r.ctype, sizeof f->r.ctype, "%s", ct ? ct : "");
	curl_easy_cleanup(c);
	return NULL;
}

/* promtool check metrics on text: its exit status, its words in out. */
static int promtool(const char *text, char *out, size_t len)
{
	char path[300], cmd[700];
	FILE *f;
	size_t n;
	int st;

	snprintf(path, sizeof path, "%s/metrics.txt", td_base());
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Wait for job id on A to end (the API's wait_ms). */
static void wait_job_api(const char *id)
{
	uint64_t until = mono_ns() + 30 * NSEC_PER_SEC;
	char path[128];
	struct res r;

	snprintf(path, sizeof path, "/v1/jobs/%s?wait_ms=2000", id);
	for (;;) {
		call(&r, "GET", path, NULL, "mon", NULL);
		assert_int_equal(r.status, 200);
		if (strcmp(td_jstr(json_object_get(r.json, "job"), "state"), "active") != 0) {
			res_free(&r);
			return;
		}
		res_free(&r);
		if (mono_ns() > until)
			fail_msg("job %s still active after 30 s", id);
	}
}

static void test_walk(void **state)
{
	char path[300], body[300], dest[64], job[64], prot[64], out[4096];
	struct follow f = { .want = "\"stage\":\"completed\"" };
	json_t *m;
	const char *key;
	struct res r;
	int st;

	(void)state;
	td_test_begin("walk");
	api_doc = json_load_file(td_src_path("docs/ferryd-api.json", path, sizeof path), 0, NULL);
	assert_non_null(api_doc);
	nwalked = 0;
	start_pair(NULL);
	snprintf(dest, sizeof dest, "127.0.0.1:%u", B.port);

	walk(&r, "GET", "/v1/version", "/v1/version", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	walk(&r, "GET", "/v1/host", "/v1/host", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(td_jnum(json_object_get(r.json, "host"), "vms"), 0);
	res_free(&r);
	walk(&r, "POST", "/v1/vms", "/v1/vms",
	     "{\"name\":\"w1\",\"mem\":\"64M\",\"vcpus\":1,\"workload\":\"idle\"}");
	assert_int_equal(r.status, 201);
	res_free(&r);
	walk(&r, "GET", "/v1/vms", "/v1/vms", NULL);
	assert_int_equal(json_array_size(json_object_get(r.json, "vms")), 1);
	res_free(&r);
	walk(&r, "GET", "/v1/vms/{name}", "/v1/vms/w1", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	walk(&r, "POST", "/v1/vms/{name}/verify", "/v1/vms/w1/verify", NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(r.json, "verified")));
	res_free(&r);

	/* Protection, then its end, before the VM moves. */
	snprintf(body, sizeof body, "{\"peer\":\"%s\",\"epoch_ms\":100,\"unsafe_no_fencing\":true}",
		 dest);
	walk(&r, "POST", "/v1/vms/{name}/protect", "/v1/vms/w1/protect", body);
	assert_int_equal(r.status, 202);
	snprintf(prot, sizeof prot, "%s", td_jstr(r.json, "job"));
	assert_non_null(strstr(r.headers, "Location: /v1/jobs/"));
	res_free(&r);
	/* Protected once the pair has synced. */
	for (int i = 0; i < 100; i++) {
		json_t *j = td_job(&A, prot);
		bool synced = !strcmp(td_jstr(j, "stage"), "protected");

		json_decref(j);
		if (synced)
			break;
		usleep(100 * 1000);
	}
	walk(&r, "POST", "/v1/vms/{name}/unprotect", "/v1/vms/w1/unprotect", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	wait_job_api(prot);
	for (int i = 0; td_listed(&B, "w1", NULL); i++) {
		if (i == 100)
			fail_msg("B still holds the standby copy of w1 10 s after unprotect");
		usleep(100 * 1000);
	}

	/* A migration, followed on the event stream. */
	assert_int_equal(pthread_create(&f.t, NULL, follow_main, &f), 0);
	usleep(300 * 1000);
	snprintf(body, sizeof body, "{\"dest\":\"%s\",\"downtime_ms\":300}", dest);
	walk(&r, "POST", "/v1/vms/{name}/migrate", "/v1/vms/w1/migrate", body);
	assert_int_equal(r.status, 202);
	snprintf(job, sizeof job, "%s", td_jstr(r.json, "job"));
	res_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s?wait_ms=20000", job);
	walk(&r, "GET", "/v1/jobs/{id}", path, NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	wait_job_api(job);
	pthread_join(f.t, NULL);
	if (!f.seen || f.r.status != 200 || strncmp(f.r.ctype, "text/event-stream", 17))
		fail_msg("the event stream (%ld, %s) did not carry the completed job: %s",
			 f.r.status, f.r.ctype, f.r.body ? f.r.body : "");
	assert_non_null(strstr(f.r.body, "event: job"));
	assert_non_null(strstr(f.r.body, "id: "));
	res_free(&f.r);
	walk(&r, "GET", "/v1/events", "/v1/events?x=1", NULL); /* a query: refused, JSON */
	assert_int_equal(r.status, 400);
	res_free(&r);
	walk(&r, "GET", "/v1/jobs", "/v1/jobs", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/cancel", job);
	walk(&r, "POST", "/v1/jobs/{id}/cancel", path, NULL);
	assert_int_equal(r.status, 409); /* it has ended */
	res_free(&r);
	/* Resume and resolve: the control ops (test_ferryd drives them through a
	 * post-copy and an unresolved job); here, that the paths reach them. */
	snprintf(path, sizeof path, "/v1/jobs/%s/resume", job);
	walk(&r, "POST", "/v1/jobs/{id}/resume", path, NULL);
	assert_int_equal(r.status, 409); /* it is not a post-copy */
	res_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/resolve", job);
	walk(&r, "POST", "/v1/jobs/{id}/resolve", path, "{\"force\":\"both\"}");
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "not source or destination"));
	res_free(&r);
	walk(&r, "POST", "/v1/jobs/{id}/resolve", path, "{}");
	assert_int_equal(r.status, 409); /* it is not unresolved */
	res_free(&r);
	walk(&r, "POST", "/v1/jobs/{id}/resolve", "/v1/jobs/nosuchjob/resolve", NULL);
	assert_int_equal(r.status, 404);
	res_free(&r);
	walk(&r, "DELETE", "/v1/vms/{name}", "/v1/vms/w1", NULL);
	assert_int_equal(r.status, 404); /* it runs on B now */
	res_free(&r);
	td_create(&A, "w2", "64M", 1, "idle");
	walk(&r, "DELETE", "/v1/vms/{name}", "/v1/vms/w2", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);

	walk(&r, "GET", "/metrics", "/metrics", NULL);
	assert_int_equal(r.status, 200);
	assert_true(strncmp(r.ctype, "text/plain", 10) == 0);
	assert_non_null(strstr(r.body, "ferry_migrations_total{direction=\"out\",result="
				"\"completed\"} 1\n"));
	assert_non_null(strstr(r.body, "ferry_migration_downtime_seconds_count{direction=\"out\"} 1\n"));
	if ((st = promtool(r.body, out, sizeof out)) != 0)
		fail_msg("promtool check metrics: exit %d: %s%s", st, out,
			 st == 127 ? " (scripts/setup installs prometheus for promtool)" : "");
	res_free(&r);

	/* Every documented operation was called. */
	json_object_foreach(json_object_get(api_doc, "paths"), key, m) {
		const char *meth;
		json_t *o;

		json_object_foreach(m, meth, o) {
			char want[64];
			bool hit = false;

			snprintf(want, sizeof want, "%s %s", meth, key);
			for (unsigned i = 0; i < nwalked; i++)
				hit |= strcmp(walked[i], want) == 0;
			if (!hit)
				fail_msg("%s is documented but was not walked", want);
		}
	}
	json_decref(api_doc);
	api_doc = NULL;
	td_test_passed();
}

/* ---- 2: refusals ---- */

/* A manager's certificate on A's migration port: refused, not a host. */
static void expect_migration_refused(void)
{
	char crt[400], key[400], ca[400], peer[32], err[512] = "";
	struct tls_conf tc = { ca, crt, key };
	struct session_conf sc = { .host = "mgr", .allow_from = "*", .channels = 1,
				   .peer_timeout_ms = 5000 };
	struct wire_hello h = { .op = WIRE_OP_MIGRATE, .name = "m1",
				.config = "mem=67108864 vcpus=1 workload=idle" };
	struct session *s;
	json_t *answer = NULL;
	int r;

	snprintf(ca, sizeof ca, "%s/ca.crt", td_pki());
	snprintf(crt, sizeof crt, "%s/mgr.crt", td_pki());
	snprintf(key, sizeof key, "%s/mgr.key", td_pki());
	if (tls_ctx_new(&tc, &sc.link.tls, err, sizeof err))
		fail_msg("%s", err);
	sc.link.timeout_ms = 5000;
	snprintf(peer, sizeof peer, "127.0.0.1:%u", A.port);
	assert_int_equal(session_new(&sc, peer, "0123456789ab", &s), 0);
	r = session_connect(s, &h, 1, &answer, err, sizeof err);
	json_decref(answer);
	session_free(s);
	tls_ctx_free(sc.link.tls);
	if (r == 0 || !strstr(err, "manager certificate, not a host's"))
		fail_msg("a manager's certificate on the migration port: %d '%s' (want refused "
			 "as not a host's)", r, err);
	assert_false(td_listed(&A, "m1", NULL));
}

static void test_refusals(void **state)
{
	char big[100 * 1024 + 64];
	struct res r;

	(void)state;
	td_test_begin("refusals");
	start_pair(NULL);
	td_create(&A, "r1", "64M", 1, "idle");

	call(&r, "GET", "/v1/vms", NULL, NULL, NULL);
	expect_error(&r, 403, "no client certificate", "no certificate");
	call(&r, "GET", "/v1/vms", NULL, "evil", NULL);
	expect_error(&r, 403, "not from this pool's CA", "another CA's certificate");
	call(&r, "DELETE", "/v1/vms/r1", NULL, "A", NULL);
	expect_error(&r, 403, "host's certificate", "a host's certificate");
	call(&r, "DELETE", "/v1/vms/r1", NULL, "mon", NULL);
	expect_error(&r, 403, "monitor", "a monitor's DELETE");
	call(&r, "POST", "/v1/vms", "{\"name\":\"x1\"}", "mon", NULL);
	expect_error(&r, 403, "monitor", "a monitor's POST");
	call(&r, "GET", "/v1/vms/r1", NULL, "mon", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	expect_migration_refused();

	call(&r, "POST", "/v1/vms", "{\"name\":", "mgr", NULL);
	expect_error(&r, 400, "malformed JSON", "malformed JSON");
	call(&r, "POST", "/v1/vms", "[1,2]", "mgr", NULL);
	expect_error(&r, 400, "JSON object", "an array");
	call(&r, "POST", "/v1/vms", "{\"name\":\"x2\",\"colour\":\"red\"}", "mgr", NULL);
	expect_error(&r, 400, "colour", "an unknown field");
	call(&r, "POST", "/v1/vms/r1/migrate", "{\"dest\":\"b\",\"name\":\"r2\"}", "mgr", NULL);
	expect_error(&r, 400, "in the path", "a field the path gives");
	call(&r, "POST", "/v1/vms/r1/migrate", "{\"dest\":\"b\",\"idempotency\":\"x\"}", "mgr", NULL);
	expect_error(&r, 400, "idempotency", "the key as a field");
	call(&r, "POST", "/v1/vms", "{\"name\":\"x3\",\"vcpus\":\"two\"}", "mgr", NULL);
	expect_error(&r, 400, "vcpus", "a field of the wrong type");
	memset(big, ' ', sizeof big);
	memcpy(big, "{\"name\":\"x4\"}", 13);
	big[sizeof big - 1] = '\0';
	call(&r, "POST", "/v1/vms", big, "mgr", NULL);
	expect_error(&r, 413, "64 KiB", "an oversized body");
	call(&r, "PUT", "/v1/vms/r1", "{}", "mgr", NULL);
	if (!strstr(r.headers, "Allow: GET, DELETE"))
		fail_msg("405 without Allow: %s", r.headers);
	expect_error(&r, 405, NULL, "PUT");
	call(&r, "GET", "/v1/nothing", NULL, "mgr", NULL);
	expect_error(&r, 404, NULL, "an unknown path");
	call(&r, "GET", "/v1/vms/no%2Fsuch", NULL, "mgr", NULL);
	expect_error(&r, 404, NULL, "an encoded slash");
	call(&r, "GET", "/v1/vms/nosuch", NULL, "mgr", NULL);
	expect_error(&r, 404, "no VM named nosuch", "no such VM");
	call(&r, "POST", "/v1/vms", "{\"name\":\"r1\",\"mem\":\"64M\",\"workload\":\"idle\"}", "mgr",
	     NULL);
	expect_error(&r, 409, "already exists", "a name taken");
	call(&r, "POST", "/v1/vms/r1/migrate", "{\"dest\":\"b\"}", "mgr", "bad key\x01");
	expect_error(&r, 400, "Idempotency-Key", "a key that is not printable");

	/* Nothing was done: one VM, running, no job. */
	call(&r, "GET", "/v1/host", NULL, "mgr", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(td_jnum(json_object_get(r.json, "host"), "vms"), 1);
	assert_int_equal(td_jnum(json_object_get(r.json, "host"), "jobs_active"), 0);
	res_free(&r);
	td_verify_ok(&A, "r1");
	td_test_passed();
}

/* ---- 3: Idempotency-Key ---- */

/* How many migrate-in jobs B has had for vm. */
static unsigned incoming_jobs(const char *vm)
{
	json_t *o = td_ok(&B, "{s:s}", "op", "jobs"), *j;
	unsigned n = 0;
	size_t i;

	json_array_foreach(json_object_get(o, "jobs"), i, j)
		n += !strcmp(td_jstr(j, "vm"), vm) && !strcmp(td_jstr(j, "kind"), "migrate-in");
	json_decref(o);
	return n;
}

struct bg_call {
	pthread_t t;
	struct res r;
	CURLcode e;
	const char *method, *path, *body, *key;
};

static void *bg_main(void *arg)
{
	struct bg_call *b = arg;

	b->e = perform(&b->r, b->method, b->path, b->body, "mgr", b->key);
	return NULL;
}

static void test_idempotency(void **state)
{
	char body[200], other[200], job[64], job3[64];
	struct bg_call bg;
	struct res r;

	(void)state;
	td_test_begin("idempotency");
	start_pair(NULL);
	td_create(&A, "i1", "64M", 1, "idle");
	snprintf(body, sizeof body, "{\"dest\":\"127.0.0.1:%u\"}", B.port);
	snprintf(other, sizeof other, "{\"dest\":\"127.0.0.1:%u\",\"downtime_ms\":50}", B.port);

	/* A retry gets the first answer; the VM moved once. */
	call(&r, "POST", "/v1/vms/i1/migrate", body, "mgr", "k-move-1");
	assert_int_equal(r.status, 202);
	snprintf(job, sizeof job, "%s", td_jstr(r.json, "job"));
	res_free(&r);
	call(&r, "POST", "/v1/vms/i1/migrate", body, "mgr", "k-move-1");
	assert_int_equal(r.status, 202);
	assert_string_equal(td_jstr(r.json, "job"), job);
	assert_non_null(strstr(r.headers, "Idempotent-Replayed: true"));
	res_free(&r);
	json_decref(td_wait_job(&A, job, "completed", 30000));
	call(&r, "POST", "/v1/vms/i1/migrate", body, "mgr", "k-move-1");
	assert_int_equal(r.status, 202);
	assert_string_equal(td_jstr(r.json, "job"), job);
	res_free(&r);
	/* The same key for another body; the same key of another caller. */
	call(&r, "POST", "/v1/vms/i1/migrate", other, "mgr", "k-move-1");
	expect_error(&r, 422, "another request", "the key with another body");

	/* After a restart: the kept answer. */
	restart_a(NULL);
	call(&r, "POST", "/v1/vms/i1/migrate", body, "mgr", "k-move-1");
	assert_int_equal(r.status, 202);
	assert_string_equal(td_jstr(r.json, "job"), job);
	res_free(&r);
	assert_int_equal(incoming_jobs("i1"), 1);

	/* ferryd dies after starting the job, before keeping the answer: the
	 * job's own record answers the retry, and nothing starts twice. */
	restart_a("api-answer=exit");
	td_create(&A, "i3", "64M", 1, "idle");
	if (perform(&r, "POST", "/v1/vms/i3/migrate", body, "mgr", "k-move-3") == CURLE_OK)
		fail_msg("ferryd answered (%ld %s) where its failpoint should have ended it",
			 r.status, r.body ? r.body : "");
	res_free(&r);
	for (int i = 0, st; !td_exited(&A, &st); i++) {
		if (i == 100)
			fail_msg("ferryd did not exit at its failpoint");
		usleep(100 * 1000);
	}
	restart_a(NULL);
	call(&r, "POST", "/v1/vms/i3/migrate", body, "mgr", "k-move-3");
	assert_int_equal(r.status, 202);
	snprintf(job3, sizeof job3, "%s", td_jstr(r.json, "job"));
	res_free(&r);
	json_decref(td_wait_job(&A, job3, NULL, 30000));
	assert_true(incoming_jobs("i3") <= 1);
	call(&r, "POST", "/v1/vms/i3/migrate", body, "mgr", "k-move-3");
	assert_string_equal(td_jstr(r.json, "job"), job3);
	res_free(&r);

	/* A retry while the first is still being answered: 409. */
	td_create(&A, "i2", "64M", 1, "idle"); /* before: the failpoint fires once */
	restart_a("api-task=sleep:1500");
	bg = (struct bg_call){ .method = "POST", .path = "/v1/vms/i2/verify", .key = "k-verify" };
	assert_int_equal(pthread_create(&bg.t, NULL, bg_main, &bg), 0);
	usleep(500 * 1000);
	call(&r, "POST", "/v1/vms/i2/verify", NULL, "mgr", "k-verify");
	expect_error(&r, 409, "still being answered", "a retry while the first runs");
	pthread_join(bg.t, NULL);
	assert_int_equal(bg.e, CURLE_OK);
	assert_int_equal(bg.r.status, 200);
	res_free(&bg.r);
	/* A caller that gives up while its request is on a thread: the answer
	 * goes to nobody, and ferryd goes on (its request freed: ASan). */
	call_timeout_ms = 300;
	assert_int_equal(perform(&r, "POST", "/v1/vms/i2/verify", NULL, "mgr", NULL),
			 CURLE_OPERATION_TIMEDOUT);
	call_timeout_ms = 30000;
	res_free(&r);
	usleep(1600 * 1000);
	call(&r, "GET", "/v1/vms/i2", NULL, "mon", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	call(&r, "POST", "/v1/vms/i2/verify", NULL, "mgr", "k-verify");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "Idempotent-Replayed: true"));
	res_free(&r);
	td_test_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_walk, teardown),
		cmocka_unit_test_teardown(test_refusals, teardown),
		cmocka_unit_test_teardown(test_idempotency, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
