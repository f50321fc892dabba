/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferryd — the ferry host daemon (docs/ferryd.md): start-up in order, the
 * event loop, signals, shutdown. The pieces are the other files of daemon/; this is the
 * only one that calls them all.
 */
#include "config.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/control.h"
#include "daemon/core.h"
#include "daemon/events.h"
#include "daemon/idem.h"
#include "daemon/metrics.h"
#include "daemon/remote.h"
#include "daemon/job.h"
#include "daemon/fence.h"
#include "daemon/journal.h"
#include "daemon/migration.h"
#include "daemon/net.h"
#include "daemon/peers.h"
#include "daemon/protection.h"
#include "daemon/registry.h"
#include "daemon/settings.h"
#include "daemon/vm.h"
#include "hv/hv.h"

/*
 * systemd's service notification (sd_notify(3)): READY=1 once the sockets
 * listen (Type=notify), RELOADING=1 and READY=1 around a reload,
 * STOPPING=1. Nothing without libsystemd, or when not started by systemd
 * (no NOTIFY_SOCKET).
 */
static void notify(const char *state)
{
#ifdef HAVE_SYSTEMD
	struct timespec ts;

	if (strcmp(state, "RELOADING=1") == 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		/* MONOTONIC_USEC: what Type=notify-reload (systemd 253) asks for. */
		sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
			   (unsigned long long)ts.tv_sec * 1000000ULL +
				   (unsigned long long)ts.tv_nsec / 1000);
		return;
	}
	sd_notifyf(0, "%s\nSTATUS=%s", state,
		   strcmp(state, "STOPPING=1") == 0 ? "stopping; guests keep running"
						    : "ready");
#else
	(void)state;
#endif
}

/* A VM left this host: its address goes, and the event is told. */
static void vm_gone(struct vm *v)
{
	net_gone(v);
	registry_kick();
	events_publish("vm", json_pack("{s:s, s:s}", "name", v->name, "event", "gone"));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what, (void)arg;
	if (sig == SIGHUP) {
		/* Reload: nothing running stops. */
		notify("RELOADING=1");
		log_info("SIGHUP: reloading %s and the certificates", D.config_path);
		settings_reload();
		peers_reload_tls();
		notify("READY=1");
		return;
	}
	notify("STOPPING=1");
	log_info("signal %d: shutting down; guests keep running", (int)sig);
	event_base_loopexit(D.base, NULL);
}

int main(int argc, char **argv)
{
	const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	struct event *sigs[3];
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	log_init("ferryd", LOG_INFO);
	log_set_journal_tag(false); /* journald names the unit's own lines */
	failpoints_init();
	settings_load(argc, argv);
	/* The state directory is ours before anything in it is read: a second
	 * ferryd on it stops here, having touched nothing. */
	if (journal_open(D.state_dir, err, sizeof err))
		fatal("%s", err);
	if (mkdir_p(D.run_dir, 0755))
		fatal("cannot create %s: %s", D.run_dir, strerror(errno));
	core_init();
	{
		uid_t uid;
		gid_t gid;

		/* Say now, not at the first guest, that guests cannot start. */
		(void)hv_runtime_ids(&uid, &gid, NULL, 0);
	}
	job_kind_register(JOB_MIGRATE_OUT, &migrate_out_kind);
	job_kind_register(JOB_MIGRATE_IN, &migrate_in_kind);
	job_kind_register(JOB_PRIMARY, &protect_kind);
	job_kind_register(JOB_BACKUP, &standby_kind);
	vm_on_gone(vm_gone);
	events_init();
	metrics_init();

	peers_setup();
	if (fence_init(err, sizeof err))
		fatal("coord: %s", err);
	vms_adopt();
	jobs_recover();
	idem_load();
	control_listen();
	peers_listen();
	remote_listen();
	registry_start();
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(D.base, signos[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}
	log_info("ready: control %s, migrations on %s (%s, %u channels), state %s, run %s, host %s",
		 D.socket_path, D.listen, D.plaintext ? "plaintext" : "TLS", D.channels,
		 D.state_dir, D.run_dir, D.hostname);
	notify("READY=1");

	event_base_dispatch(D.base);

	registry_stop();
	remote_stop();
	peers_stop();
	control_stop();
	pthread_mutex_lock(&D.lock);
	D.stopping = true;
	pthread_mutex_unlock(&D.lock);
	/* Job threads roll back or park what they hold; wait for them. */
	jobs_stop();
	core_wait_threads();
	peers_free();
	fence_exit();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	log_info("stopped");
	return 0;
}
