/* SPDX-License-Identifier: Apache-2.0 */
/* settings.c — ferryd's settings; see settings.h. */
#include "config.h"

#include "daemon/settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/registry.h"
#include "hv/hv.h"
#include "session/wire.h"

static int copy_setting(char *dst, size_t max, const char *v, char *err, size_t errlen)
{
	if (!v[0] || strlen(v) >= max) {
		snprintf(err, errlen, "must be 1 to %zu characters", max - 1);
		return -EINVAL;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* A list of IP addresses ("10.0.0.1, 10.0.0.2"), or "none". */
static int pool_addresses(const char *v, char *err, size_t errlen)
{
	const char *s = v;

	if (strcmp(v, "none") == 0) {
		D.pool_addresses[0] = '\0';
		return 0;
	}
	while (*s) {
		size_t n = strcspn(s, ", ");
		unsigned char b[16];
		char a[64];

		if (n && (n >= sizeof a || (memcpy(a, s, n), a[n] = '\0',
			  inet_pton(AF_INET, a, b) != 1 && inet_pton(AF_INET6, a, b) != 1))) {
			snprintf(err, errlen, "\"%.*s\" is not an IP address", (int)MIN(n, 64), s);
			return -EINVAL;
		}
		s += n;
		s += strspn(s, ", ");
	}
	return copy_setting(D.pool_addresses, sizeof D.pool_addresses, v, err, errlen);
}

/* One setting, from the file or a flag. */
static int setting(void *ctx, const char *k, const char *v, char *err, size_t errlen)
{
	uint64_t n;

	(void)ctx;
	if (strcmp(k, "socket") == 0)
		return copy_setting(D.socket_path, sizeof D.socket_path, v, err, errlen);
	if (strcmp(k, "listen") == 0)
		return copy_setting(D.listen, sizeof D.listen, v, err, errlen);
	if (strcmp(k, "state-dir") == 0)
		return copy_setting(D.state_dir, sizeof D.state_dir, v, err, errlen);
	if (strcmp(k, "run-dir") == 0)
		return copy_setting(D.run_dir, sizeof D.run_dir, v, err, errlen);
	if (strcmp(k, "hostname") == 0)
		return copy_setting(D.hostname, sizeof D.hostname, v, err, errlen);
	if (strcmp(k, "peer-timeout-ms") == 0) {
		if (parse_u64(v, 100, 3600000, &n))
			goto range;
		D.peer_timeout_ms = (int)n;
		return 0;
	}
	if (strcmp(k, "handshake-timeout-ms") == 0) {
		if (parse_u64(v, 100, 600000, &n))
			goto range;
		D.handshake_timeout_ms = (int)n;
		return 0;
	}
	if (strcmp(k, "max-pending") == 0) {
		if (parse_u64(v, 4, 65536, &n))
			goto range;
		D.max_pending = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "max-pending-per-source") == 0) {
		if (parse_u64(v, 1, 65536, &n))
			goto range;
		D.max_pending_per_source = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "source-penalty-s") == 0) {
		if (parse_u64(v, 0, 86400, &n))
			goto range;
		D.source_penalty_s = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "pool-addresses") == 0)
		return pool_addresses(v, err, errlen);
	if (strcmp(k, "downtime-ms") == 0)
		return parse_u64(v, 1, 3600000, &D.downtime_ms) ? (snprintf(err, errlen,
			"a number of milliseconds, 1 to 3600000"), -EINVAL) : 0;
	if (strcmp(k, "max-iters") == 0) {
		if (parse_u64(v, 1, 1000, &n))
			goto range;
		D.max_iters = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "job-history") == 0) {
		if (parse_u64(v, 10, 100000, &n))
			goto range;
		D.job_history = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "max-incoming") == 0) {
		if (parse_u64(v, 1, 64, &n))
			goto range;
		D.max_incoming = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "on-no-converge") == 0) {
		if (mig_policy_parse(v, &D.on_no_converge)) {
			snprintf(err, errlen, MIG_POLICY_NAMES);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "codecs") == 0) {
		if (wire_caps_from_text(v, &D.caps)) {
			snprintf(err, errlen, "a list of lz4, delta (e.g. \"lz4,delta\"), or none");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "channels") == 0) {
		if (parse_u64(v, 1, WIRE_CHANNELS_MAX, &n))
			goto range;
		D.channels = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "net-hook") == 0)
		return copy_setting(D.net_hook, sizeof D.net_hook, v, err, errlen);
	if (strcmp(k, "net-hook-timeout-ms") == 0) {
		if (parse_u64(v, 100, 600000, &n))
			goto range;
		D.net_hook_timeout_ms = (int)n;
		return 0;
	}
	if (strcmp(k, "coord") == 0)
		return copy_setting(D.coord, sizeof D.coord, v, err, errlen);
	if (strcmp(k, "coord-ttl") == 0) {
		if (parse_u64(v, 1, 600, &n))
			goto range;
		D.coord_ttl_s = (int)n;
		return 0;
	}
	if (strcmp(k, "coord-timeout-ms") == 0) {
		if (parse_u64(v, 50, 60000, &n))
			goto range;
		D.coord_timeout_ms = (int)n;
		return 0;
	}
	if (strcmp(k, "pool-ttl") == 0) {
		if (parse_u64(v, 2, 600, &n))
			goto range;
		D.pool_ttl_s = (int)n;
		return 0;
	}
	if (strcmp(k, "api-listen") == 0)
		return copy_setting(D.api_listen, sizeof D.api_listen, v, err, errlen);
	if (strcmp(k, "host-mem") == 0) {
		if (strcmp(v, "0") != 0 && parse_size(v, UINT64_MAX, &D.host_mem)) {
			snprintf(err, errlen, "a size such as 64G, or 0 for all the machine has");
			return -EINVAL;
		}
		if (strcmp(v, "0") == 0)
			D.host_mem = 0;
		return 0;
	}
	if (strcmp(k, "host-cpus") == 0) {
		if (parse_u64(v, 0, 4096, &n))
			goto range;
		D.host_cpus = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "pki-dir") == 0)
		return copy_setting(D.pki_dir, sizeof D.pki_dir, v, err, errlen);
	if (strcmp(k, "tls-ca") == 0)
		return copy_setting(D.tls_ca, sizeof D.tls_ca, v, err, errlen);
	if (strcmp(k, "tls-cert") == 0)
		return copy_setting(D.tls_cert, sizeof D.tls_cert, v, err, errlen);
	if (strcmp(k, "tls-key") == 0)
		return copy_setting(D.tls_key, sizeof D.tls_key, v, err, errlen);
	if (strcmp(k, "allow-from") == 0)
		return copy_setting(D.allow_from, sizeof D.allow_from, v, err, errlen);
	if (strcmp(k, "insecure-plaintext") == 0) {
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
			D.plaintext = true;
		} else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
			D.plaintext = false;
		} else {
			snprintf(err, errlen, "yes or no");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "runtime-user") == 0) {
		/* Looked up when a guest starts: a user made later is found. */
		if (v[0] && !name_ok(v, 33)) {
			snprintf(err, errlen, "\"%s\" is not a user name", v);
			return -EINVAL;
		}
		hv_set_runtime_user(v);
		return 0;
	}
	if (strcmp(k, "log-level") == 0) {
		enum log_level l;

		if (log_parse_level(v, &l)) {
			snprintf(err, errlen, "error, warn, info or debug");
			return -EINVAL;
		}
		log_set_level(l);
		return 0;
	}
	snprintf(err, errlen, "unknown setting");
	return -ENOENT;
range:
	snprintf(err, errlen, "\"%s\" is out of range", v);
	return -ERANGE;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferryd [--config FILE] [--socket PATH] [--listen ADDR:PORT]\n"
		"              [--state-dir DIR] [--run-dir DIR] [--hostname NAME]\n"
		"              [--peer-timeout-ms MS] [--handshake-timeout-ms MS]\n"
		"              [--max-pending N] [--max-pending-per-source N]\n"
		"              [--source-penalty-s S] [--pool-addresses ADDR,...]\n"
		"              [--downtime-ms MS] [--max-iters N]\n"
		"              [--on-no-converge stop|throttle|abort|postcopy] [--max-incoming N]\n"
		"              [--job-history N]\n"
		"              [--codecs lz4,delta|none] [--channels N]\n"
		"              [--pki-dir DIR] [--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE]\n"
		"              [--allow-from HOST,...|*] [--insecure-plaintext]\n"
		"              [--api-listen ADDR:PORT] [--host-mem SIZE] [--host-cpus N]\n"
		"              [--net-hook PATH] [--net-hook-timeout-ms MS]\n"
		"              [--coord http://HOST:PORT,...] [--coord-ttl S] [--coord-timeout-ms MS]\n"
		"              [--pool-ttl S]\n"
		"              [--runtime-user USER] [--log-level error|warn|info|debug]\n\n"
		"The ferry host daemon: owns this host's microVMs, runs migrations, and\n"
		"answers the ferry command line. Settings come from the config file\n"
		"(default %s, key = value, the flag names without --),\n"
		"then from flags. See ferryd(8): docs/ferryd.md.\n",
		DEFAULT_CONFIG);
}

static int saved_argc;
static char **saved_argv;

static const struct option opts[] = {
	{ "config", required_argument, 0, 'c' },
	{ "socket", required_argument, 0, 0 },
	{ "listen", required_argument, 0, 0 },
	{ "state-dir", required_argument, 0, 0 },
	{ "run-dir", required_argument, 0, 0 },
	{ "hostname", required_argument, 0, 0 },
	{ "peer-timeout-ms", required_argument, 0, 0 },
	{ "handshake-timeout-ms", required_argument, 0, 0 },
	{ "max-pending", required_argument, 0, 0 },
	{ "max-pending-per-source", required_argument, 0, 0 },
	{ "source-penalty-s", required_argument, 0, 0 },
	{ "pool-addresses", required_argument, 0, 0 },
	{ "downtime-ms", required_argument, 0, 0 },
	{ "max-iters", required_argument, 0, 0 },
	{ "max-incoming", required_argument, 0, 0 },
	{ "job-history", required_argument, 0, 0 },
	{ "on-no-converge", required_argument, 0, 0 },
	{ "log-level", required_argument, 0, 0 },
	{ "runtime-user", required_argument, 0, 0 },
	{ "codecs", required_argument, 0, 0 },
	{ "channels", required_argument, 0, 0 },
	{ "pki-dir", required_argument, 0, 0 },
	{ "net-hook", required_argument, 0, 0 },
	{ "net-hook-timeout-ms", required_argument, 0, 0 },
	{ "coord", required_argument, 0, 0 },
	{ "coord-ttl", required_argument, 0, 0 },
	{ "coord-timeout-ms", required_argument, 0, 0 },
	{ "tls-ca", required_argument, 0, 0 },
	{ "tls-cert", required_argument, 0, 0 },
	{ "tls-key", required_argument, 0, 0 },
	{ "allow-from", required_argument, 0, 0 },
	{ "insecure-plaintext", no_argument, 0, 0 },
	{ "api-listen", required_argument, 0, 0 },
	{ "pool-ttl", required_argument, 0, 0 },
	{ "host-mem", required_argument, 0, 0 },
	{ "host-cpus", required_argument, 0, 0 },
	{ "help", no_argument, 0, 'h' },
	{ "version", no_argument, 0, 'V' },
	{ 0, 0, 0, 0 },
};

void settings_load(int argc, char **argv)
{
	char err[512];
	struct utsname u;
	int c, idx, r;

	saved_argc = argc;
	saved_argv = argv;

	/* Defaults. */
	snprintf(D.listen, sizeof D.listen, "0.0.0.0:%d", WIRE_DEFAULT_PORT);
	snprintf(D.state_dir, sizeof D.state_dir, "/var/lib/ferry");
	snprintf(D.config_path, sizeof D.config_path, "%s", DEFAULT_CONFIG);
	D.peer_timeout_ms = 15000;
	D.handshake_timeout_ms = 3000;
	D.max_pending = 256;
	D.max_pending_per_source = 16;
	D.source_penalty_s = 30;
	D.max_incoming = 4;
	D.net_hook_timeout_ms = 5000;
	D.coord_ttl_s = 2;
	D.coord_timeout_ms = 500;
	D.pool_ttl_s = REGISTRY_TTL_DEFAULT;
	D.downtime_ms = 300;
	D.max_iters = 30;
	D.on_no_converge = NOCONV_STOP;
	D.caps = WIRE_CAPS_ALL;
	D.channels = (unsigned)MAX(1, MIN(sysconf(_SC_NPROCESSORS_ONLN), 8));
	snprintf(D.pki_dir, sizeof D.pki_dir, "/etc/ferry/pki");
	snprintf(D.allow_from, sizeof D.allow_from, "*");
	if (uname(&u) == 0)
		snprintf(D.hostname, sizeof D.hostname, "%s", u.nodename);

	/* The config file first (its path may come from a flag: -c FILE, -cFILE,
	 * --config FILE, --config=FILE or an abbreviation), flags after; the
	 * same table reads both passes, so no spelling is seen by one only. */
	bool explicit = false;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:hV", opts, &idx)) != -1)
		if (c == 'c') {
			snprintf(D.config_path, sizeof D.config_path, "%s", optarg);
			explicit = true;
		}
	opterr = 1;
	optind = 0; /* GNU getopt: start over, afresh */
	r = conf_load(D.config_path, setting, NULL, err, sizeof err);
	if (r && !(r == -ENOENT && !explicit)) {
		fprintf(stderr, "ferryd: %s\n", err);
		exit(2);
	}
	while ((c = getopt_long(argc, argv, "c:hV", opts, &idx)) != -1) {
		switch (c) {
		case 0:
			if (setting(NULL, opts[idx].name, optarg ? optarg : "yes", err, sizeof err)) {
				fprintf(stderr, "ferryd: --%s: %s\n", opts[idx].name, err);
				exit(2);
			}
			break;
		case 'c':
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("ferryd %s (migration protocol %d)\n", PACKAGE_VERSION, WIRE_PROTO_VERSION);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferryd: unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
	if (!D.run_dir[0])
		snprintf(D.run_dir, sizeof D.run_dir, "%s", ferry_run_dir());
	ferry_set_run_dir(D.run_dir);
	if (!D.socket_path[0] &&
	    (size_t)snprintf(D.socket_path, sizeof D.socket_path, "%.200s/ferryd.sock", D.run_dir) >=
		    sizeof D.socket_path)
		fatal("run-dir too long");
}


/* ---- SIGHUP ---- */

/* What a reload changes at once; the rest waits for a restart. */
static const char *const live_keys[] = { "downtime-ms", "max-iters", "on-no-converge",
					  "max-incoming", "job-history", "log-level", "runtime-user",
					  "peer-timeout-ms", "handshake-timeout-ms", "net-hook-timeout-ms",
					  "coord-timeout-ms", "host-mem", "host-cpus", "max-pending",
					  "max-pending-per-source", "source-penalty-s",
					  "pool-addresses", NULL };

static bool is_live(const char *k)
{
	for (const char *const *l = live_keys; *l; l++)
		if (strcmp(*l, k) == 0)
			return true;
	return false;
}

static bool yes(const char *v)
{
	return strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

/* Whether a setting that is not live asks for something else than ferryd
 * runs with. */
static bool differs(const char *k, const char *v)
{
	static const struct {
		const char *key;
		const char *now;
	} strs[] = {
		{ "socket", D.socket_path }, { "listen", D.listen },	 { "state-dir", D.state_dir },
		{ "run-dir", D.run_dir },      { "hostname", D.hostname }, { "pki-dir", D.pki_dir },
		{ "tls-ca", D.tls_ca },	       { "tls-cert", D.tls_cert }, { "tls-key", D.tls_key },
		{ "allow-from", D.allow_from }, { "net-hook", D.net_hook }, { "coord", D.coord },
		{ "api-listen", D.api_listen },
	};
	uint32_t caps;
	uint64_t n;

	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		if (strcmp(k, strs[i].key) == 0)
			return strcmp(v, strs[i].now) != 0;
	if (strcmp(k, "channels") == 0)
		return parse_u64(v, 1, WIRE_CHANNELS_MAX, &n) || n != D.channels;
	if (strcmp(k, "coord-ttl") == 0)
		return parse_u64(v, 1, 600, &n) || n != (uint64_t)D.coord_ttl_s;
	if (strcmp(k, "pool-ttl") == 0)
		return parse_u64(v, 2, 600, &n) || n != (uint64_t)D.pool_ttl_s;
	if (strcmp(k, "codecs") == 0)
		return wire_caps_from_text(v, &caps) || caps != D.caps;
	if (strcmp(k, "insecure-plaintext") == 0)
		return yes(v) != D.plaintext;
	return false;
}

struct reload {
	const char *from; /* the file, or "a flag" */
	unsigned applied, later, bad;
};

static int reload_setting(void *ctx, const char *k, const char *v, char *err, size_t errlen)
{
	struct reload *rl = ctx;

	if (!is_live(k)) {
		if (differs(k, v)) {
			log_warn("reload: %s: %s = %s takes effect at the next restart", rl->from, k,
				 v);
			rl->later++;
		}
		return 0;
	}
	if (setting(NULL, k, v, err, errlen)) {
		/* The old value stays; the rest of the file still counts. */
		log_error("reload: %s: %s = %s: %s; kept as it was", rl->from, k, v, err);
		rl->bad++;
		return 0;
	}
	rl->applied++;
	return 0;
}

int settings_reload(void)
{
	struct reload rl = { D.config_path, 0, 0, 0 };
	char err[512];
	int c, idx, r;

	r = conf_load(D.config_path, reload_setting, &rl, err, sizeof err);
	if (r && r != -ENOENT) {
		log_error("reload: %s: %s; nothing changed from it", D.config_path, err);
		rl.bad++;
	}
	/* The flags win, as at start. */
	rl.from = "the command line";
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(saved_argc, saved_argv, "c:hV", opts, &idx)) != -1)
		if (c == 0)
			reload_setting(&rl, opts[idx].name, optarg ? optarg : "yes", err, sizeof err);
	D.peers.peer_timeout_ms = D.peer_timeout_ms;
	D.peers.handshake_timeout_ms = D.handshake_timeout_ms;
	D.peers.link.timeout_ms = D.peer_timeout_ms;
	log_info("reload: %s read: %u settings applied, %u for the next restart, %u refused",
		 D.config_path, rl.applied, rl.later, rl.bad);
	return rl.bad ? -EINVAL : 0;
}
