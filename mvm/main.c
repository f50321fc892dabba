/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry-mvm — the microVM runtime: one process is one running guest.
 *
 *   ferry-mvm --name NAME --mem 1G --vcpus 2 --workload dirtier:ws=256M,rate=64
 *   ferry-mvm --name NAME --config "mem=... vcpus=... workload=..." --incoming --ctl-fd 3
 *
 * It listens on RUN_DIR/mvm/NAME.sock (SOCK_SEQPACKET, mode 0600). Normally
 * started by ferryd (hv/mvm.c) with posix_spawn; see docs/ferry-mvm.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "common/util.h"
#include "mvm/runtime.h"

static const char usage[] =
	"usage: ferry-mvm --name NAME [--run-dir DIR] [--paused]\n"
	"                 (--config \"mem=SIZE vcpus=N workload=SPEC\" |\n"
	"                  --mem SIZE [--vcpus N] [--workload SPEC])\n"
	"                 [--incoming --ctl-fd FD] [--ready-fd FD] [--log-level LEVEL]\n"
	"\n"
	"Runs one microVM guest. Workloads: idle | fill[:ws=SIZE,seed=N,rate=MiB/s]\n"
	"  | dirtier:ws=SIZE,rate=MiB/s|max,pattern=uniform|hotcold,seed=N,steps=N\n"
	"  | kvstore[:conns=N,ring=SIZE,clients=N,stall=MS] (serves its net=ADDR:PORT)\n"
	"--incoming starts paused with zero RAM, owned by the peer of --ctl-fd, and\n"
	"exits if that link closes before the first unpause (the commit).\n";

/* Bind RUN_DIR/mvm/NAME.sock. The caller holds NAME's lock, so a socket
 * already there is a dead runtime's: replace it. */
static int bind_socket(const char *name, char *path, size_t pathlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	r = mvm_socket_path(name, path, pathlen, true);
	if (r)
		return r;
	if (strlen(path) >= sizeof sa.sun_path)
		return log_error("%s: socket path too long", path), -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	umask(077);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 8) == 0)
		return fd;
	r = -errno;
	log_error("%s: binding %s: %s", name, path, strerror(errno));
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'n' },	   { "run-dir", required_argument, 0, 'd' },
		{ "config", required_argument, 0, 'c' },   { "mem", required_argument, 0, 'm' },
		{ "vcpus", required_argument, 0, 'v' },	   { "workload", required_argument, 0, 'w' },
		{ "incoming", no_argument, 0, 'i' },	   { "ctl-fd", required_argument, 0, 'f' },
		{ "ready-fd", required_argument, 0, 'r' }, { "paused", no_argument, 0, 'p' },
		{ "log-level", required_argument, 0, 'l' }, { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	static struct mvm m;
	const char *config = NULL, *mem = NULL, *vcpus = "1", *workload = "idle";
	int ctl_fd = -1, ready_fd = -1, listen_fd, lock_fd, c, r;
	bool start_paused = false;
	char err[256], path[256];
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
		case 'f':
			if (parse_u64(optarg, 0, 1 << 20, &v))
				fatal("--ctl-fd: not a file descriptor: %s", optarg);
			ctl_fd = (int)v;
			break;
		case 'r':
			if (parse_u64(optarg, 0, 1 << 20, &v))
				fatal("--ready-fd: not a file descriptor: %s", optarg);
			ready_fd = (int)v;
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
	if (optind != argc || !m.name[0] || (!config && !mem) || (m.incoming && ctl_fd < 0)) {
		fputs(usage, stderr);
		return 2;
	}
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
	m.memfd = m.uffd = m.pagemap = -1;
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

	/* Claim the name before anything expensive; hold it for life. */
	lock_fd = mvm_name_lock(m.name);
	if (lock_fd < 0) {
		if (lock_fd == -EEXIST) {
			log_error("%s: a microVM of this name is already running", m.name);
			return MVM_EXIT_EXISTS;
		}
		fatal("%s: cannot claim the name: %s", m.name, strerror(-lock_fd));
	}
	listen_fd = bind_socket(m.name, path, sizeof path);
	if (listen_fd < 0 || mvm_ram_setup(&m) < 0) {
		mvm_name_release(m.name, lock_fd);
		return 1;
	}
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
		if (nic_start(&m, &m.kv.l, m.cfg.wl.stall_ms, !m.incoming) < 0) {
			mvm_name_release(m.name, lock_fd);
			return 1;
		}
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
	if (mvm_vcpus_start(&m) < 0) {
		mvm_name_release(m.name, lock_fd);
		return 1;
	}
	if (m.incoming || start_paused)
		mvm_pause(&m);
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
	mvm_name_release(m.name, lock_fd);
	if (r < 0)
		log_error("%s: control loop: %s", m.name, strerror(-r));
	/* The vCPUs are left to exit with the process: nothing of the guest
	 * survives it. */
	return r < 0 ? 1 : 0;
}
