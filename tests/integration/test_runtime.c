/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_runtime.c — the ferry-mvm runtime: verify catches what it must,
 * workloads are deterministic across save/restore, the control socket
 * survives malformed requests, ownership and the incoming mode, and the
 * runtime's confinement.
 */
#include "tests/integration/harness.h"

#include <endian.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "mvm/config.h"
#include "mvm/name.h"
#include "mvm/proto.h"
#include "mvm/workload.h"

#define PS 4096

static void verify_ok(struct hv_domain *d)
{
	struct mvm_verify v;

	assert_int_equal(hv_mvm_verify(d, &v), 0);
	if (v.why != MVM_VERIFY_OK)
		fail_msg("verify: %s", v.msg);
}

/* A frame the guest wrote at least twice, and its generation. */
static uint64_t pick_written(struct hv_domain *d, uint64_t *gen)
{
	uint64_t nr, f;
	char *ram = h_ram_read(d, &nr);

	for (f = 0; f < nr; f++) {
		*gen = wl_page_gen(ram + f * PS, f);
		if (*gen >= 2)
			break;
	}
	free(ram);
	assert_true(f < nr);
	return f;
}

static void put_page(struct hv_domain *d, uint64_t f, const void *page)
{
	const void *bufs[1] = { page };
	assert_int_equal(hv_write_pages(d, &f, 1, bufs), 0);
}

static void get_page(struct hv_domain *d, uint64_t f, void *page)
{
	void *bufs[1] = { page };
	assert_int_equal(hv_read_pages(d, &f, 1, bufs), 0);
}

static void expect_bad(struct hv_domain *d, unsigned why, uint64_t frame)
{
	struct mvm_verify v;

	assert_int_equal(hv_mvm_verify(d, &v), 0);
	if (v.why != why || v.frame != frame)
		fail_msg("expected %s at frame %lu, verify said %s: %s", wl_why_name(why),
			 (unsigned long)frame, wl_why_name(v.why), v.msg);
}

/* verify catches a corrupted, a stale, a torn and a lost page (all changed
 * behind the runtime's back, through the memfd) and passes once repaired. */
static void test_verify_catches(void **state)
{
	const char *cfg = "mem=8M vcpus=2 workload=dirtier:ws=256K,rate=max,steps=2000";
	struct hv_domain *d = h_launch("victim", cfg, false);
	uint64_t f, gen = 0, seed;
	unsigned char good[PS], bad[PS];

	(void)state;
	h_wait_halted(d, 20000);
	verify_ok(d);
	f = pick_written(d, &gen);
	get_page(d, f, good);
	memcpy(&seed, good + 24, sizeof seed);

	memcpy(bad, good, PS);
	bad[1000] ^= 0x40; /* corrupt */
	put_page(d, f, bad);
	expect_bad(d, MVM_VERIFY_CORRUPT, f);

	wl_page_fill(bad, PS, seed, f, gen - 1); /* stale */
	put_page(d, f, bad);
	expect_bad(d, MVM_VERIFY_STALE, f);

	memcpy(bad, good, PS / 2); /* torn: first half new, second half old */
	put_page(d, f, bad);
	expect_bad(d, MVM_VERIFY_TORN, f);

	memset(bad, 0, PS); /* lost */
	put_page(d, f, bad);
	expect_bad(d, MVM_VERIFY_LOST, f);

	put_page(d, f, good);
	verify_ok(d);
	h_destroy(d);
}

/* Copy all of a paused domain's RAM and context into a new incoming domain. */
static struct hv_domain *move(struct hv_domain *src, const char *uri)
{
	struct hv_domain *dst;
	struct hv_info info;
	struct bitmap pop;
	uint64_t f;
	void *blob;
	size_t len;
	char page[PS];
	const void *bufs[1] = { page };

	assert_int_equal(hv_info(src, &info), 0);
	assert_int_equal(hv_create(uri, info.config, NULL, 0, &dst), 0);
	assert_int_equal(bitmap_init(&pop, info.nr_frames), 0);
	assert_true(hv_populated(src, &pop) >= 0);
	bitmap_for_each_set(f, &pop) {
		void *rb[1] = { page };
		assert_int_equal(hv_read_pages(src, &f, 1, rb), 0);
		assert_int_equal(hv_write_pages(dst, &f, 1, bufs), 0);
	}
	bitmap_free(&pop);
	assert_int_equal(hv_save_context(src, &blob, &len), 0);
	assert_int_equal(hv_load_context(dst, blob, len), 0);
	free(blob);
	return dst;
}

/* N steps straight through, and N steps with a save/restore into a second
 * runtime at step k, give the same RAM; verify passes there. */
static void test_determinism(void **state)
{
	const char *cfg = "mem=32M vcpus=2 workload=dirtier:ws=24M,rate=64,steps=12000";
	unsigned rounds = h_rounds(20) / 4 + 1;

	(void)state;
	struct hv_domain *a = h_launch("straight", cfg, false);
	h_wait_halted(a, 60000);
	uint64_t want = h_ram_hash(a);
	verify_ok(a);
	h_destroy(a);

	for (unsigned r = 0; r < rounds; r++) {
		struct hv_domain *b = h_launch("moved", cfg, false), *c;
		struct hv_mvm_stats st;
		struct hv_info info;

		h_sleep_ms(100 + (unsigned)(random() % 400));
		h_wait_steps(b, 1, 10000);
		assert_int_equal(hv_pause(b), 0);
		assert_int_equal(hv_mvm_stats(b, &st), 0);
		assert_true(st.steps > 0 && st.steps < 24000); /* k is mid-way */
		c = move(b, "mvm:moved-2");
		h_destroy(b);
		assert_int_equal(hv_info(c, &info), 0);
		h_track_pid(info.pid);
		assert_int_equal(hv_unpause(c), 0); /* commit */
		h_wait_halted(c, 60000);
		assert_true(h_ram_hash(c) == want);
		verify_ok(c);
		h_destroy(c);
	}
}

/* Raw control connection, to send what hv/mvm.c never would. */
static int raw_connect(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(mvm_socket_path(name, sa.sun_path, sizeof sa.sun_path, false), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

/* Send a packet (optionally with an fd) and return the reply's status. */
static int raw_rpc(int fd, const void *pkt, size_t len, int pass_fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { (void *)pkt, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	static char rep[MVM_MSG_MAX];
	struct mvm_rep_hdr h;
	ssize_t n;

	if (pass_fd >= 0) {
		m.msg_control = cm.b;
		m.msg_controllen = sizeof cm.b;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	assert_true(sendmsg(fd, &m, MSG_NOSIGNAL) == (ssize_t)len);
	n = recv(fd, rep, sizeof rep, 0);
	assert_true(n >= (ssize_t)sizeof h);
	memcpy(&h, rep, sizeof h);
	assert_int_equal(le32toh(h.magic), MVM_REP_MAGIC);
	return (int32_t)le32toh((uint32_t)h.status);
}

static size_t mkreq(void *buf, unsigned type, uint32_t body_len, size_t actual_body)
{
	struct mvm_req_hdr h = { .magic = htole32(MVM_REQ_MAGIC),
				 .version = htole16(MVM_PROTO_VERSION),
				 .type = htole16((uint16_t)type), .seq = htole32(7),
				 .body_len = htole32(body_len) };
	memcpy(buf, &h, sizeof h);
	memset((char *)buf + sizeof h, 0, actual_body);
	return sizeof h + actual_body;
}

/* Malformed requests get an error reply; the runtime keeps running and its
 * owner keeps working. */
static void test_malformed_requests(void **state)
{
	struct hv_domain *d = h_launch("sturdy", "mem=8M vcpus=1 workload=dirtier:ws=4M,rate=8", false);
	static char pkt[MVM_MSG_MAX + 512];
	struct hv_info info;
	int fd = raw_connect("sturdy"), devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	size_t n;

	(void)state;
	/* Truncated: shorter than a header, and shorter than its body_len. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_PING, 0, 0) - 4, -1), -EBADMSG);
	n = mkreq(pkt, MVM_THROTTLE, 8, 4);
	assert_int_equal(raw_rpc(fd, pkt, n, -1), -EBADMSG);
	/* Oversized. */
	n = mkreq(pkt, MVM_SET_CONTEXT, MVM_MSG_MAX + 100, MVM_MSG_MAX + 100);
	assert_int_equal(raw_rpc(fd, pkt, n, -1), -EMSGSIZE);
	/* Unknown type, zero type. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, 99, 0, 0), -1), -EOPNOTSUPP);
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, 0, 0, 0), -1), -EOPNOTSUPP);
	/* Wrong fd count: a ping carrying a descriptor. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_PING, 0, 0), devnull), -EBADMSG);
	/* Wrong body size for its type; bad magic; bad version. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_PAUSE, 8, 8), -1), -EBADMSG);
	n = mkreq(pkt, MVM_PING, 0, 0);
	pkt[0] ^= 1;
	assert_int_equal(raw_rpc(fd, pkt, n, -1), -EBADMSG);
	n = mkreq(pkt, MVM_PING, 0, 0);
	pkt[4] = 9;
	assert_int_equal(raw_rpc(fd, pkt, n, -1), -EPROTONOSUPPORT);
	/* An empty packet is a truncated request, not a hangup. */
	assert_int_equal(raw_rpc(fd, pkt, 0, -1), -EBADMSG);
	/* Well-formed but not the owner. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_PAUSE, 0, 0), -1), -EPERM);
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_HELLO, 0, 0), -1), -EBUSY);
	/* Still alive and serving, for this client and for the owner. */
	assert_int_equal(raw_rpc(fd, pkt, mkreq(pkt, MVM_PING, 0, 0), -1), 0);
	assert_int_equal(hv_info(d, &info), 0);
	assert_int_equal(kill(info.pid, 0), 0);
	assert_int_equal(hv_pause(d), 0);
	/* A bad context is refused, the domain is unchanged. */
	assert_int_equal(hv_load_context(d, "garbage", 7), -EINVAL);
	{
		void *blob;
		size_t len;
		assert_int_equal(hv_save_context(d, &blob, &len), 0);
		struct mvm_ctx_hdr ch;
		struct mvm_vcpu_regs rg;

		((unsigned char *)blob)[32] ^= 1; /* vCPU 0's seed */
		assert_int_equal(hv_load_context(d, blob, len), -EINVAL);
		((unsigned char *)blob)[32] ^= 1;
		/* A step count no guest could have reached (verify would replay it
		 * for ever), and a clock that would overflow: refused. */
		memcpy(&rg, (char *)blob + sizeof ch, sizeof rg);
		rg.step = htole64(1ULL << 60);
		memcpy((char *)blob + sizeof ch, &rg, sizeof rg);
		assert_int_equal(hv_load_context(d, blob, len), -EINVAL);
		free(blob);
		assert_int_equal(hv_save_context(d, &blob, &len), 0);
		memcpy(&ch, blob, sizeof ch);
		ch.guest_ns = htole64(1ULL << 63);
		memcpy(blob, &ch, sizeof ch);
		assert_int_equal(hv_load_context(d, blob, len), -EINVAL);
		free(blob);
		assert_int_equal(hv_save_context(d, &blob, &len), 0);
		assert_int_equal(hv_load_context(d, blob, len), 0);
		free(blob);
	}
	assert_int_equal(hv_unpause(d), 0);
	{
		void *blob;
		size_t len;
		assert_int_equal(hv_save_context(d, &blob, &len), -EBUSY); /* running */
	}
	verify_ok(d);
	close(fd);
	close(devnull);
	h_destroy(d);
}

/* Clients that never read their replies, or that only hold a connection,
 * cannot lock the owner out. */
static void test_greedy_clients(void **state)
{
	struct hv_domain *d = h_launch("greedy", "mem=4M vcpus=1 workload=idle", false);
	static char pkt[64];
	struct hv_info info;
	int hog = raw_connect("greedy"), idle[10];
	size_t n = mkreq(pkt, MVM_INFO, 0, 0);
	unsigned sent = 0;

	(void)state;
	/* Pipeline INFO requests and never read: the runtime drops the client
	 * instead of blocking on it. */
	for (; sent < 20000; sent++)
		if (send(hog, pkt, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			break;
	assert_int_equal(hv_info(d, &info), 0);
	assert_int_equal(hv_pause(d), 0);
	assert_int_equal(hv_unpause(d), 0);
	close(hog);
	/* More idle connections than the runtime serves: the owner still gets in. */
	hv_close(d);
	for (unsigned i = 0; i < 10; i++)
		idle[i] = raw_connect("greedy");
	h_sleep_ms(50);
	assert_int_equal(hv_open("mvm:greedy", &d), 0);
	assert_int_equal(hv_info(d, &info), 0);
	for (unsigned i = 0; i < 10; i++)
		close(idle[i]);
	h_destroy(d);
}

/* One owner at a time; a name is taken while its runtime lives. */
static void test_ownership(void **state)
{
	struct hv_domain *d = h_launch("owned", "mem=4M vcpus=1 workload=idle", false), *e;
	pid_t pid;

	(void)state;
	assert_int_equal(hv_open("mvm:owned", &e), -EBUSY);
	assert_int_equal(hv_mvm_launch("owned", "mem=4M vcpus=1 workload=idle", false, &pid),
			 -EEXIST);
	assert_int_equal(hv_open("mvm:nobody", &e), -ENOENT);
	assert_int_equal(hv_open("bogus:owned", &e), -EINVAL);
	hv_close(d); /* the guest keeps running without an owner */
	assert_int_equal(hv_open("mvm:owned", &d), 0);
	h_destroy(d);
}

/* An incoming runtime exits when its link closes before the commit, and
 * keeps running after it. */
static void test_incoming_link(void **state)
{
	const char *cfg = "mem=4M vcpus=1 workload=dirtier:ws=1M,rate=1";
	struct hv_domain *d;
	struct hv_info info;
	struct hv_mvm_stats st;
	int status;

	(void)state;
	assert_int_equal(hv_create("mvm:inc", cfg, NULL, 0, &d), 0);
	assert_int_equal(hv_info(d, &info), 0);
	h_track_pid(info.pid);
	assert_int_equal(info.paused, 1);
	assert_int_equal(hv_mvm_stats(d, &st), 0);
	assert_true(st.incoming);
	assert_int_equal(hv_create("mvm:inc", cfg, NULL, 0, &d) == 0, 0); /* name taken */
	hv_close(d);
	/* It exited, and close reaped it: no process, not even a zombie. */
	assert_int_equal(kill(info.pid, 0), -1);
	assert_int_equal(errno, ESRCH);

	assert_int_equal(hv_create("mvm:inc", cfg, NULL, 0, &d), 0);
	assert_int_equal(hv_info(d, &info), 0);
	h_track_pid(info.pid);
	assert_int_equal(hv_unpause(d), 0); /* commit */
	hv_close(d);
	h_sleep_ms(100);
	assert_int_equal(waitpid(info.pid, &status, WNOHANG), 0); /* still running */
	assert_int_equal(hv_open("mvm:inc", &d), 0);
	assert_int_equal(hv_mvm_stats(d, &st), 0);
	assert_false(st.incoming);
	h_destroy(d);
}

static bool file_exists(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/*
 * The runtime runs as its own user with no capabilities, no_new_privs and
 * a seccomp filter on every thread; what it must not do fails (the probe's
 * own report), and what it is for still works.
 */
static void test_confinement(void **state)
{
	const char *cap_keys[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
	char dir[300], ids[64], v[256], line[512], *log;
	struct passwd *pw = getpwnam(HV_RUNTIME_USER);
	struct hv_domain *d;
	struct hv_info info;
	struct bitmap dirty;
	unsigned threads = 0, denied = 0, allowed = 0;
	struct dirent *e;
	size_t loglen;
	DIR *tasks;
	FILE *f;
	int lock;

	(void)state;
	if (geteuid() != 0)
		skip();
	if (!pw)
		fail_msg("no user %s: scripts/setup makes it", HV_RUNTIME_USER);
	setenv("FERRY_FAILPOINTS", "mvm-confine-probe=error", 1);
	d = h_launch("jailed", "mem=16M vcpus=2 workload=dirtier:ws=8M,rate=4", false);
	unsetenv("FERRY_FAILPOINTS");
	assert_int_equal(hv_info(d, &info), 0);

	snprintf(dir, sizeof dir, "/proc/%d/task", (int)info.pid);
	assert_non_null(tasks = opendir(dir));
	while ((e = readdir(tasks))) {
		if (e->d_name[0] == '.')
			continue;
		threads++;
		snprintf(ids, sizeof ids, "%u %u %u %u", pw->pw_uid, pw->pw_uid, pw->pw_uid, pw->pw_uid);
		h_proc_status(info.pid, e->d_name, "Uid", v, sizeof v);
		assert_string_equal(v, ids);
		snprintf(ids, sizeof ids, "%u %u %u %u", pw->pw_gid, pw->pw_gid, pw->pw_gid, pw->pw_gid);
		h_proc_status(info.pid, e->d_name, "Gid", v, sizeof v);
		assert_string_equal(v, ids);
		h_proc_status(info.pid, e->d_name, "Groups", v, sizeof v);
		assert_string_equal(v, "");
		for (size_t i = 0; i < ARRAY_SIZE(cap_keys); i++) {
			h_proc_status(info.pid, e->d_name, cap_keys[i], v, sizeof v);
			assert_string_equal(v, "0000000000000000");
		}
		h_proc_status(info.pid, e->d_name, "NoNewPrivs", v, sizeof v);
		assert_string_equal(v, "1");
		h_proc_status(info.pid, e->d_name, "Seccomp", v, sizeof v);
		assert_string_equal(v, "2"); /* filter mode */
	}
	closedir(tasks);
	assert_true(threads >= 3); /* the control thread and two vCPUs */

	/* What it is for: the dirty log, pause, RAM through ferryd, verify. */
	assert_int_equal(bitmap_init(&dirty, info.nr_frames), 0);
	assert_int_equal(hv_logdirty_enable(d), 0);
	h_sleep_ms(50);
	assert_true(hv_logdirty_harvest(d, &dirty, 0) > 0);
	assert_int_equal(hv_logdirty_disable(d), 0);
	bitmap_free(&dirty);
	verify_ok(d);

	/* What it must not: every probe denied, none allowed. */
	snprintf(dir, sizeof dir, "%s/mvm/jailed.log", ferry_run_dir());
	assert_non_null(f = open_memstream(&log, &loglen));
	{
		FILE *in = fopen(dir, "r");
		assert_non_null(in);
		while (fgets(line, sizeof line, in)) {
			if (!strstr(line, "confine probe: "))
				continue;
			fputs(line, f);
			denied += strstr(line, ": denied (Operation not permitted)") != NULL;
			allowed += strstr(line, "ALLOWED") != NULL;
		}
		fclose(in);
	}
	fclose(f);
	if (allowed || denied != 10)
		fail_msg("the probe: %u denied, %u allowed of 10:\n%s", denied, allowed, log);
	free(log);
	assert_false(file_exists(ferry_run_dir(), "confine-probe"));

	/* It cannot remove its own files; ferryd does when it ends. */
	snprintf(dir, sizeof dir, "%s/mvm", ferry_run_dir());
	assert_true(file_exists(dir, "jailed.sock"));
	h_destroy(d);
	assert_false(file_exists(dir, "jailed.sock"));
	assert_false(file_exists(dir, "jailed.lock"));
	/* Killed outright: the next owner to see it dead tidies, unless the
	 * name was claimed again. */
	d = h_launch("jailed", "mem=4M vcpus=1 workload=idle", false);
	assert_int_equal(hv_info(d, &info), 0);
	kill(info.pid, SIGKILL);
	h_sleep_ms(50);
	hv_close(d);
	assert_false(file_exists(dir, "jailed.sock"));
	assert_true((lock = mvm_name_lock("jailed")) >= 0);
	mvm_name_release("jailed", lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_catches),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_greedy_clients),
		cmocka_unit_test(test_ownership),
		cmocka_unit_test(test_incoming_link),
		cmocka_unit_test(test_confinement),
	};
	return cmocka_run_group_tests_name("runtime", tests, h_group_setup, h_group_teardown);
}
