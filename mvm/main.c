/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry-mvm — the microVM runtime: one process is one running guest.
 *
 *   ferry-mvm --name NAME --mem 1G --vcpus 2 --workload dirtier:ws=256M,rate=64
 *   ferry-mvm --name NAME --config "mem=... vcpus=... workload=..." \
 *             --listen-fd 5 --lock-fd 6 --user UID:GID [--incoming --ctl-fd 3]
 *
 * Its control socket is RUN_DIR/mvm/NAME.sock (SOCK_SEQPACKET, mode 0600).
 * ferryd (hv/mvm.c) claims the name, binds the socket and hands both over;
 * started by hand, the runtime claims the name itself. Either way it then
 * confines itself (confine.h). See docs/ferry-mvm.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "common/util.h"
#include "mvm/confine.h"
#include "mvm/name.h"
#include "mvm/runtime.h"

#define EXIT_NAME_TAKEN 3 /* a runtime of this name is running already */

static const char usage[] =
	"usage: ferry-mvm --name NAME [--run-dir DIR] [--paused]\n"
	"                 (--config \"mem=SIZE vcpus=N workload=SPEC\" |\n"
	"                  --mem SIZE [--vcpus N] [--workload SPEC])\n"
	"                 [--listen-fd FD --lock-fd FD] [--user UID:GID]\n"
	"                 [--incoming --ctl-fd FD] [--ready-fd FD] [--log-level LEVEL]\n"
	"\n"
	"Runs one microVM guest. Workloads: idle | fill[:ws=SIZE,seed=N,rate=MiB/s]\n"
	"  | dirtier:ws=SIZE,rate=MiB/s|max,pattern=uniform|hotcold,seed=N,steps=N\n"
	"  | kvstore[:conns=N,ring=SIZE,clients=N,stall=MS] (serves its net=ADDR:PORT)\n"
	"--incoming starts paused with zero RAM, owned by the peer of --ctl-fd, and\n"
	"exits if that link closes before the first unpause (the commit).\n"
	"--listen-fd and --lock-fd hand over the control socket and the name's lock\n"
	"(without them it claims the name itself); --user UID:GID is the user it\n"
	"becomes when started as root. It always runs confined: see ferry-mvm(8).\n";

static int parse_fd(const char *opt, const char *arg)
{
	uint64_t v;

	if (parse_u64(arg, 0, 1 << 20, &v))
		fatal("%s: not a file descriptor: %s", opt, arg);
	return (int)v;
}

#if defined(__SANITIZE_ADDRESS__)
#define FERRY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FERRY_ASAN 1
#endif
#endif
#ifdef FERRY_ASAN
/* LeakSanitizer checks at exit from a helper process that ptrace-stops this
 * one: a confined runtime may do neither, so sanitizer builds of it check
 * everything but leaks. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "detect_leaks=0"; }
#endif

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'n' },	   { "run-dir", required_argument, 0, 'd' },
		{ "config", required_argument, 0, 'c' },   { "mem", required_argument, 0, 'm' },
		{ "vcpus", required_argument, 0, 'v' },	   { "workload", required_argument, 0, 'w' },
		{ "incoming", no_argument, 0, 'i' },	   { "ctl-fd", required_argument, 0, 'f' },
		{ "ready-fd", required_argument, 0, 'r' }, { "paused", no_argument, 0, 'p' },
		{ "log-level", required_argument, 0, 'l' }, { "help", no_argument, 0, 'h' },
		{ "listen-fd", required_argument, 0, 'L' }, { "lock-fd", required_argument, 0, 'K' },
		{ "user", required_argument, 0, 'u' },	   { 0 }
	};
	static struct mvm m;
	const char *config = NULL, *mem = NULL, *vcpus = "1", *workload = "idle";
	int ctl_fd = -1, ready_fd = -1, listen_fd = -1, lock_fd = -1, c, r;
	bool start_paused = false, change_user = false;
	uid_t uid = 0;
	gid_t gid = 0;
	char err[256];
	uint64_t v;
	enum log_level lvl = LOG_INFO;

	signal(SIGPIPE, SIG_IGN);
	failpoints_init();
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': snprintf(m.name, sizeof m.name, "%s", optarg); break;
		case 'd': ferry_set_run_dir(optarg); break;
		case 'c': config = optarg; break;
		case 'm': mem = optarg; break;
		case 'v': vcpus = optarg; break;
		case 'w': workload = optarg; break;
		case 'i': m.incoming = true; break;
		case 'p': start_paused = true; break;
		case 'f': ctl_fd = parse_fd("--ctl-fd", optarg); break;
		case 'r': ready_fd = parse_fd("--ready-fd", optarg); break;
		case 'L': listen_fd = parse_fd("--listen-fd", optarg); break;
		case 'K': lock_fd = parse_fd("--lock-fd", optarg); break;
		case 'u':
			if (mvm_confine_parse_ids(optarg, &uid, &gid))
				fatal("--user: UID:GID, both numeric and not 0: %s", optarg);
			change_user = true;
			break;
		case 'l':
			if (log_parse_level(optarg, &lvl))
				fatal("--log-level: error, warn, info or debug");
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	log_init("ferry-mvm", lvl);
	if (optind != argc || !m.name[0] || (!config && !mem) || (m.incoming && ctl_fd < 0) ||
	    (listen_fd < 0) != (lock_fd < 0)) {
		fputs(usage, stderr);
		return 2;
	}
	/* Before the drop: a process that changed its user is not dumpable, and
	 * its /proc files are no longer its own to open. */
	m.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (m.pagemap < 0)
		fatal("%s: /proc/self/pagemap: %s", m.name, strerror(errno));
	/* And a userfaultfd that sees the kernel's faults as well as the
	 * user's, while we may make one (root; unprivileged processes get
	 * user-mode ones only): post-copy resolves the NIC's receives into
	 * missing guest RAM through it. The filter keeps the runtime itself
	 * from registering anything with it (ram.c). */
	m.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	m.uffd_kernel = m.uffd >= 0;
	if (mvm_confine_user(change_user, uid, gid))
		return 1;
	if (!mvm_name_ok(m.name))
		fatal("bad name '%s': use 1-63 letters, digits, '.', '_' or '-'", m.name);
	if (config) {
		r = mvm_config_parse(config, &m.cfg, err, sizeof err);
	} else {
		r = parse_size(mem, MVM_MEM_MAX, &m.cfg.mem);
		if (r == 0)
			r = parse_u64(vcpus, 1, MVM_VCPUS_MAX, &v);
		if (r)
			fatal("--mem SIZE (4K..64G) and --vcpus 1..%u", MVM_VCPUS_MAX);
		m.cfg.nr_vcpus = (unsigned)v;
		snprintf(m.cfg.workload, sizeof m.cfg.workload, "%s", workload);
		r = mvm_config_check(&m.cfg, err, sizeof err);
	}
	if (r)
		fatal("%s", err);
	mvm_config_format(&m.cfg, m.config_text, sizeof m.config_text);

	m.page_size = MVM_PAGE_SIZE;
	m.nr_frames = m.cfg.mem / m.page_size;
	m.nr_vcpus = m.cfg.nr_vcpus;
	m.writers = m.nr_vcpus;
	m.memfd = -1;
	pthread_mutex_init(&m.lock, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m.cond, &ca);
		pthread_cond_init(&m.parked_cv, &ca);
	}
	m.vcpus = calloc(m.nr_vcpus, sizeof *m.vcpus);
	if (!m.vcpus)
		fatal("out of memory");
	for (unsigned i = 0; i < m.nr_vcpus; i++) {
		struct mvm_vcpu *vc = &m.vcpus[i];
		vc->m = &m;
		vc->id = i;
		wl_slice(&m.cfg.wl, m.nr_vcpus, i, &vc->lo, &vc->hi);
		vc->limit = wl_vcpu_limit(&m.cfg.wl, m.nr_vcpus, i);
		vc->regs.seed = wl_vcpu_seed(&m.cfg.wl, i);
	}

	/* Claim the name before anything expensive (unless ferryd did); hold
	 * it for life. */
	if (listen_fd < 0) {
		listen_fd = mvm_name_claim(m.name, &lock_fd);
		if (listen_fd == -EEXIST) {
			log_error("%s: a microVM of this name is already running", m.name);
			return EXIT_NAME_TAKEN;
		}
		if (listen_fd < 0)
			fatal("%s: cannot claim the name: %s", m.name, strerror(-listen_fd));
	}
	if (fcntl(listen_fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(lock_fd, F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) < 0)
		fatal("%s: --listen-fd %d / --lock-fd %d: %s", m.name, listen_fd, lock_fd,
		      strerror(errno));
	if (mvm_ram_setup(&m) < 0)
		return 1;
	if (m.cfg.wl.kind == WL_KVSTORE) {
		/* Its store and NIC live in guest RAM: a new guest writes their
		 * headers, an incoming one gets them with its RAM. */
		m.kv = (struct kv_store){ .ram = (uint8_t *)m.ram, .size = m.cfg.mem };
		if (kv_layout_of(&m.cfg.wl, m.cfg.mem, &m.kv.l, err, sizeof err))
			fatal("%s: %s", m.name, err);
		m.kv.drop_append = failpoint("kv-drop-append") != 0;
		m.kv.double_append = failpoint("kv-double-append") != 0;
		if (!m.incoming)
			kv_init(&m.kv);
		if (m.incoming || start_paused)
			atomic_store(&m.pause_req, true);
		if (nic_start(&m, &m.kv.l, m.cfg.wl.stall_ms, !m.incoming) < 0)
			return 1;
	}
	if (m.incoming) {
		/* Never block the only control thread on a peer that stops reading. */
		int fl = fcntl(ctl_fd, F_GETFL);
		if (fl < 0 || fcntl(ctl_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
		    fcntl(ctl_fd, F_SETFD, FD_CLOEXEC) < 0)
			fatal("%s: --ctl-fd %d: %s", m.name, ctl_fd, strerror(errno));
	}
	/* From here on: no fork (the dirty log would not see a child's writes). */
	if (m.incoming || start_paused)
		atomic_store(&m.pause_req, true);
	if (mvm_vcpus_start(&m) < 0)
		return 1;
	if (m.incoming || start_paused)
		mvm_pause(&m);
	/* Every thread is running, and nothing from outside has reached any
	 * of them yet: the control socket is served from here on. */
	mvm_wait_started(&m);
	if (mvm_confine_syscalls() < 0)
		return 1;
	if (failpoint("mvm-confine-probe"))
		mvm_confine_probe();
	log_info("%s: running %s%s", m.name, m.config_text,
		 m.incoming ? " (incoming, paused)" : start_paused ? " (paused)" : "");
	if (ready_fd >= 0) {
		if (write(ready_fd, "R", 1) < 0) {
			/* The launcher is gone; keep running, it may re-open us. */
		}
		close(ready_fd);
	}
	r = mvm_serve(&m, listen_fd, ctl_fd);
	atomic_store(&m.quit, true);
	/* The lock goes with the process; the files stay for whoever sees it
	 * dead (mvm_name_tidy) or claims the name next. */
	if (r < 0)
		log_error("%s: control loop: %s", m.name, strerror(-r));
	/* The vCPUs are left to exit with the process: nothing of the guest
	 * survives it. */
	return r < 0 ? 1 : 0;
}
