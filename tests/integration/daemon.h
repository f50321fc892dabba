/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon.h — real ferryd processes for integration tests: start, stop,
 * kill and restart them with their own state, run and log files under the
 * harness's private directory, talk to their control socket, and find the
 * ferry-mvm runtimes they started.
 *
 * Every process a test starts here (and every runtime found in one of its
 * daemons' run directories) is remembered by PID and ended when the test's
 * teardown runs or the test program is killed, also after a failed test.
 * Helpers assert (cmocka) and say which daemon and what it answered.
 */
#ifndef FERRY_TESTS_DAEMON_H
#define FERRY_TESTS_DAEMON_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "transport/certs.h"
#include "transport/chan.h"

#include "tests/integration/harness.h"

struct td {
	char name[16];          /* "A", "B": also its --hostname */
	char dir[256];          /* BASE/TEST/NAME */
	char state_dir[280], run_dir[280], sock[280], log[280];
	uint16_t port;          /* migration listener on 127.0.0.1 */
	int peer_timeout_ms;
	char failpoints[256];   /* FERRY_FAILPOINTS of the running process */
	pid_t pid;              /* 0 when not running */
	int ctl;                /* control connection, -1 if none */
	char *rbuf;             /* bytes read past the last reply */
	size_t rlen, rcap;
	unsigned starts;        /* how often it was started */
	const char *codecs;     /* --codecs, or NULL for the default */
	/* Transport: TLS with the group's PKI (td_pki) unless one of these. */
	bool plaintext;         /* --insecure-plaintext */
	const char *pki_dir;    /* --pki-dir, or NULL for td_pki() */
	const char *allow_from; /* --allow-from, or NULL (any host of the CA) */
	unsigned channels;      /* --channels, or 0 for the default */
	const char *config;     /* the config file, or NULL for /dev/null */
	const char *config_flag; /* how it is given: "--config" (NULL), "-c", "--conf" */
	bool hostname_from_config; /* no --hostname: the config file names it */
	const char *netns;      /* run in this network namespace (listening on
				 * 0.0.0.0:port there), or NULL */
	const char *extra_args[16]; /* more flags, NULL-terminated */
	const char *env[8];     /* "NAME=VALUE" for its ferryd and ferry (td_cli),
				 * over ours; NULL-terminated */
};

/*
 * The group's PKI: a CA and a certificate for every daemon name td_init
 * sees (DNS name = the daemon's name, IP 127.0.0.1), in BASE/pki as ferryd
 * reads them (ca.crt, NAME.crt, NAME.key).
 */
const char *td_pki(void);
/* A CA in dir (ca.crt, ca.key). */
void td_make_ca(const char *dir);
/* A host certificate dir/name.{crt,key} signed by the CA in ca_dir, valid
 * from not_before to not_after, naming ip (NULL: no IP) besides name. */
void td_make_cert(const char *ca_dir, const char *dir, const char *name, const char *ip,
		  time_t not_before, time_t not_after);
/* A client certificate dir/name.{crt,key} of role (manager, monitor),
 * signed by the CA in dir, valid for a day. */
void td_make_client(const char *dir, const char *name, enum certs_role role);
/* A migration connection to 127.0.0.1:port as the test host "T" (TLS with
 * the group's PKI, or plaintext); asserts. */
struct chan *td_peer_open(uint16_t port, bool plaintext);
/* The same without asserting: 0 and *out, or -errno with the reason in err. */
int td_peer_try_open(uint16_t port, bool plaintext, struct chan **out, char *err, size_t len);

/* cmocka group set-up / tear-down: the harness's, plus ours. */
int td_group_setup(void **state);
int td_group_teardown(void **state);

/*
 * Per test: td_test_begin names the test's directory (BASE/name); the
 * teardown (td_test_end) ends every daemon and runtime of the test, checks
 * their logs for sanitizer reports, and on failure (td_test_passed() not
 * called) prints the tail of every daemon's log.
 */
void td_test_begin(const char *name);
void td_test_passed(void);
int td_test_end(void);

/* Prepare a daemon (dirs, a free port); not started. */
void td_init(struct td *d, const char *name, int peer_timeout_ms);
/* Start it with these failpoints (NULL: none); returns once its control
 * socket answers and its listener is up. Asserts. */
void td_start(struct td *d, const char *failpoints);
/* Start it as td_start would, expecting it to exit at once: its wait
 * status (asserts that it exits within timeout_ms). */
int td_run_to_exit(struct td *d, int timeout_ms);
/* SIGKILL it and reap it. */
void td_kill(struct td *d);
/* SIGTERM, wait up to timeout_ms for it to exit; returns its wait status, or
 * -1 if it had to be SIGKILLed. */
int td_term(struct td *d, int timeout_ms);
/* Wait until it is stopped (a failpoint's SIGSTOP); asserts. */
void td_wait_stopped(struct td *d, int timeout_ms);
/* Is it stopped right now? */
bool td_is_stopped(const struct td *d);
/* Did it exit (reaped now if so)? */
bool td_exited(struct td *d, int *status);
/* Print the last lines of its log to stderr. */
void td_log_tail(const struct td *d, unsigned lines);

/* Open a fresh control connection (the caller closes it). */
int td_connect(const struct td *d);
/* Send one raw line (without its newline) on fd and read one reply line:
 * NULL if the connection closed or nothing came within timeout_ms. */
char *td_raw_call(int fd, const char *line, size_t len, int timeout_ms);
/* Read one reply line (caller frees); NULL on EOF or timeout. */
char *td_read_line(int fd, int timeout_ms);

/*
 * One request on the daemon's control connection: a json_pack format and
 * its arguments. The reply (caller decrefs) must be an object with a
 * boolean "ok"; td_ok also requires ok=true and td_err ok=false (with a
 * non-empty "error" string).
 */
json_t *td_call(struct td *d, const char *fmt, ...);
json_t *td_ok(struct td *d, const char *fmt, ...);
json_t *td_err(struct td *d, const char *fmt, ...);
/* The error string of a failed reply ("" if none). */
const char *td_errstr(const json_t *reply);

/* Convenience over the API. */
void td_create(struct td *d, const char *vm, const char *mem, unsigned vcpus,
	       const char *workload);
void td_destroy(struct td *d, const char *vm);
/* The vm object of info (caller decrefs), or NULL if the daemon says no. */
json_t *td_info(struct td *d, const char *vm);
/* Is vm in the daemon's list? Its state copied to state[32] if so. */
bool td_listed(struct td *d, const char *vm, char *state);
/* verify must pass. */
void td_verify_ok(struct td *d, const char *vm);
/* The guest makes progress: its steps grow within timeout_ms. */
void td_wait_running(struct td *d, const char *vm, int timeout_ms);
/* The guest does not step for ms. */
void td_assert_frozen(struct td *d, const char *vm, unsigned ms);
/* Start a migration; returns the job id (caller frees). extra: a json_pack
 * format of more members (may be NULL), e.g. "s:i", "downtime_ms", 50. */
char *td_migrate(struct td *src, const char *vm, uint16_t port, const char *extra, ...);
/* The job object (caller decrefs). */
json_t *td_job(struct td *d, const char *job);
/* Poll until the job's state is not "active" (or is want, if want is not
 * NULL); returns the job object. Asserts the timeout. */
json_t *td_wait_job(struct td *d, const char *job, const char *want, int timeout_ms);
const char *td_jstr(const json_t *o, const char *key);
/* A number member (also inside stats: "stats.downtime_ms"); NAN if none. */
double td_jnum(const json_t *o, const char *path);

/* ferry-mvm runtimes in run_dir named vm (NULL: any), not zombies: their
 * count, and up to max PIDs. They are remembered for clean-up. */
int td_runtimes(const char *run_dir, const char *vm, pid_t *pids, int max);
/* Wait until there is no runtime for vm in run_dir; asserts. */
void td_wait_no_runtime(const char *run_dir, const char *vm, int timeout_ms);

/* What the runtime of vm in run_dir itself says (its INFO, which anyone may
 * ask): 0 or -errno (-ENOENT / -ECONNREFUSED: no runtime). */
struct td_rt_info {
	bool paused, logdirty, incoming;
	unsigned throttle;
	pid_t pid;
	uint64_t steps, resume_gap_ns;
};
int td_rt_info(const char *run_dir, const char *vm, struct td_rt_info *out);

/* Open fds of a process, and how many of them are memfds. -1 if gone. */
int td_fd_count(pid_t pid, int *memfds);

/* A daemon at rest: no VMs listed, no active job, no runtime in its run
 * dir, no memfd held. */
void td_assert_quiet(struct td *d);

/* Remember a leak measurement: fds of daemon d after round 1 and after the
 * last round; checked by td_check_fd_records. */
void td_fd_record(const char *test, const struct td *d, int first, int last);
/* Fails if a daemon's fd count grew by more than slack across rounds. */
void td_check_fd_records(int slack);
/* Processes alive whose command line names the base directory. */
int td_leftover_processes(char *desc, size_t len);

/* Run the ferry command line against d (--socket), arguments up to a NULL;
 * its exit status, and its standard output in *out (caller frees) if out. */
int td_cli(const struct td *d, char **out, ...) __attribute__((sentinel));

/* rel in the source tree this test was built from (buf). */
const char *td_src_path(const char *rel, char *buf, size_t len);
/* daemon/ferry-net-hook of the source tree this test was built from. */
const char *td_net_hook(void);
/* Wait up to 10 s until vm's net_state on d is want; asserts. */
void td_wait_net_state(struct td *d, const char *vm, const char *want);

/* Paths: $FERRYD / $FERRY, else next to the build tree's top. */
const char *td_ferryd_path(void);
const char *td_ferry_path(void);
/* The base directory of this test program's files. */
const char *td_base(void);
/* A port nobody listens on right now (bound and released). */
uint16_t td_free_port(void);

#endif
