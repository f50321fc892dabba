/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry pool — the reference pool manager: the pool as etcd records it
 * (pool/inventory.h), plans (pool/plan.h) carried out through the hosts'
 * remote APIs (pool/exec.h). Needs no local ferryd.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/conf.h"
#include "common/util.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "coord/etcd.h"
#include "pool/exec.h"
#include "pool/hostapi.h"
#include "pool/inventory.h"
#include "pool/plan.h"

#define DEFAULT_CONF "/etc/ferry/ferryd.conf"
#define DEFAULT_PKI "/etc/ferry/pki"
#define ETCD_TIMEOUT_MS 2000

static const char pool_help[] =
	"usage: ferry pool status [--json]\n"
	"       ferry pool where VM [--json]\n"
	"       ferry pool drain HOST [--parallel K] [--plan] [--json]\n"
	"       ferry pool consolidate [--headroom P] [--plan | --apply]\n"
	"                              [--power-down CMD] [--parallel K] [--json]\n"
	"       ferry pool spread [--parallel K] [--plan] [--json]\n"
	"       ferry pool watch [--low P] [--high P] [--hold MIN] [--interval S]\n"
	"                        [--headroom P] [--power-down CMD] [--power-up CMD]\n"
	"                        [--once] [--parallel K] [--json]\n"
	"options of every command: [--coord URLS] [--pki-dir DIR] [--client NAME]\n"
	"       [--ca FILE] [--cert FILE] [--key FILE] [--vcpu-ratio R] [--timeout S]\n"
	"\n"
	"The pool manager. status and where read the pool's record in etcd (where\n"
	"every ferryd registers itself and its VMs); drain, consolidate and spread plan\n"
	"moves that never overcommit a host, counting a VM in flight on both its hosts,\n"
	"and carry them out in waves of at most K moves (default 2) through the hosts'\n"
	"remote APIs, as a manager (ferry certs client NAME --role manager).\n"
	"\n"
	"  drain HOST    move every VM off HOST, each where the most room is left\n"
	"  consolidate   pack the VMs onto the fewest hosts that hold them within the\n"
	"                headroom P (default 0.1: hosts kept at most 90 %% full); shows\n"
	"                the plan, and with --apply carries it out and runs CMD HOST\n"
	"                (--power-down) for each host it empties\n"
	"  spread        even out the load over every host (the morning after)\n"
	"  watch         apply the policy on its own: when the pool's load (the larger\n"
	"                of its RAM and vCPU shares) stays below --low (default 0.3)\n"
	"                for --hold minutes (default 10), consolidate (and power down);\n"
	"                above --high (default 0.75), power up the hosts it powered\n"
	"                down (--power-up CMD HOST), wait for them, and spread. Looks\n"
	"                every --interval seconds (default 60); --once: look once,\n"
	"                with no hold, and exit\n"
	"\n"
	"drain and spread act unless --plan; consolidate only shows its plan unless\n"
	"--apply. A stopped or failed run leaves every VM running on one host: run it\n"
	"again to go on from where the pool is. etcd: --coord, else $FERRY_COORD, else\n"
	"coord in " DEFAULT_CONF ". Certificates: DIR/NAME.crt, DIR/NAME.key and\n"
	"DIR/ca.crt (DIR " DEFAULT_PKI ", NAME manager), or --cert, --key, --ca.\n"
	"vCPUs a host may run: its CPUs times R (default 4). --timeout: a move that\n"
	"runs longer than S seconds (default 600) stops the run.\n";

struct pool_args {
	const char *coord, *pki, *client, *ca, *cert, *key, *power_down, *power_up;
	double headroom, vcpu_ratio, low, high;
	unsigned parallel, timeout_s, hold_min, interval_s;
	bool plan_only, apply, json, once;
};

/* Hosts this run powered down (watch powers them up again). */
static char powered[64][POOL_NAME_LEN];
static unsigned npowered;

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* coord = ... in ferryd's config file. */
static int conf_coord(void *ctx, const char *k, const char *v, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	if (!strcmp(k, "coord"))
		snprintf(ctx, 512, "%s", v);
	return 0;
}

static int parse(int argc, char **argv, const char *verb, struct pool_args *a)
{
	static const struct option opts[] = {
		{ "coord", required_argument, 0, 'c' },    { "pki-dir", required_argument, 0, 'd' },
		{ "client", required_argument, 0, 'n' },   { "ca", required_argument, 0, 'A' },
		{ "cert", required_argument, 0, 'C' },     { "key", required_argument, 0, 'K' },
		{ "parallel", required_argument, 0, 'p' }, { "headroom", required_argument, 0, 'H' },
		{ "vcpu-ratio", required_argument, 0, 'r' }, { "timeout", required_argument, 0, 't' },
		{ "power-down", required_argument, 0, 'P' }, { "plan", no_argument, 0, 'l' },
		{ "apply", no_argument, 0, 'a' },          { "json", no_argument, 0, 'j' },
		{ "low", required_argument, 0, 'L' },      { "high", required_argument, 0, 'G' },
		{ "hold", required_argument, 0, 'o' },     { "interval", required_argument, 0, 'i' },
		{ "power-up", required_argument, 0, 'U' }, { "once", no_argument, 0, '1' },
		{ "help", no_argument, 0, 'h' },           { 0, 0, 0, 0 },
	};
	char cmd[32], *end;
	uint64_t n;
	int c;

	snprintf(cmd, sizeof cmd, "pool %s", verb);
	cli_getopt_begin();
	while ((c = cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case 'h': fputs(pool_help, stdout); return -2;
		case 'c': a->coord = optarg; break;
		case 'd': a->pki = optarg; break;
		case 'n': a->client = optarg; break;
		case 'A': a->ca = optarg; break;
		case 'C': a->cert = optarg; break;
		case 'K': a->key = optarg; break;
		case 'P': a->power_down = optarg; break;
		case 'U': a->power_up = optarg; break;
		case '1': a->once = true; break;
		case 'L':
		case 'G': {
			double v = strtod(optarg, &end);

			if (*end || end == optarg || !(v >= 0 && v <= 1))
				return cli_bad_value(cmd, optarg, "a fraction from 0 to 1"), -1;
			*(c == 'L' ? &a->low : &a->high) = v;
			break;
		}
		case 'o':
			if (parse_u64(optarg, 0, 1440, &n))
				return cli_bad_value(cmd, optarg, "minutes from 0 to 1440"), -1;
			a->hold_min = (unsigned)n;
			break;
		case 'i':
			if (parse_u64(optarg, 1, 3600, &n))
				return cli_bad_value(cmd, optarg, "seconds from 1 to 3600"), -1;
			a->interval_s = (unsigned)n;
			break;
		case 'l': a->plan_only = true; break;
		case 'a': a->apply = true; break;
		case 'j': a->json = true; break;
		case 'p':
			if (parse_u64(optarg, 1, 64, &n))
				return cli_bad_value(cmd, optarg, "a number of moves from 1 to 64"), -1;
			a->parallel = (unsigned)n;
			break;
		case 't':
			if (parse_u64(optarg, 1, 86400, &n))
				return cli_bad_value(cmd, optarg, "seconds from 1 to 86400"), -1;
			a->timeout_s = (unsigned)n;
			break;
		case 'H':
			a->headroom = strtod(optarg, &end);
			if (*end || end == optarg || !(a->headroom >= 0 && a->headroom < 0.95))
				return cli_bad_value(cmd, optarg, "a fraction from 0 to 0.95"), -1;
			break;
		case 'r':
			a->vcpu_ratio = strtod(optarg, &end);
			if (*end || end == optarg || !(a->vcpu_ratio >= 0.1 && a->vcpu_ratio <= 64))
				return cli_bad_value(cmd, optarg, "a ratio from 0.1 to 64"), -1;
			break;
		default:
			return -1; /* reported */
		}
	}
	if (a->plan_only && a->apply)
		return cli_usage_error(cmd, "--plan and --apply exclude each other"), -1;
	if (a->low >= a->high)
		return cli_usage_error(cmd, "--low (%.2f) must be under --high (%.2f)", a->low,
				       a->high), -1;
	return optind;
}

static struct etcd *etcd_open(const struct pool_args *a)
{
	static char from_conf[512];
	const char *coord = a->coord ? a->coord : getenv("FERRY_COORD");
	struct etcd *e;
	char err[300];

	if (!coord || !*coord) {
		conf_load(DEFAULT_CONF, conf_coord, from_conf, err, sizeof err);
		coord = from_conf;
	}
	if (!*coord) {
		cli_error("no etcd to read the pool from: --coord http://HOST:2379, $FERRY_COORD, "
			  "or coord in " DEFAULT_CONF);
		return NULL;
	}
	if (etcd_new(coord, ETCD_TIMEOUT_MS, &e, err, sizeof err)) {
		cli_error("--coord: %s", err);
		return NULL;
	}
	return e;
}

/* One JSON line on stdout; takes o. */
static void put_json(json_t *o)
{
	if (o) {
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		fflush(stdout);
	}
	json_decref(o);
}

static int inv_read(struct etcd *e, struct pool_inv *inv)
{
	char err[300];

	if (pool_inv_read(e, inv, err, sizeof err)) {
		cli_error("reading the pool from etcd (%s): %s", etcd_endpoints(e), err);
		return -1;
	}
	return 0;
}

static void gib(uint64_t b, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f GiB", (double)b / (1 << 30));
}

/* ---- status, where ---- */

static json_t *host_json(const struct pool_host *h)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:i}", "name", h->name, "state",
			 h->state, "migrate", h->migrate, "api", h->api, "cpus", (int)h->cpus,
			 "vcpus_committed", (int)h->vcpus_committed, "mem_total",
			 (json_int_t)h->mem_total, "mem_committed", (json_int_t)h->mem_committed,
			 "vms", (int)h->vms);
}

static int status_cmd(struct etcd *e, const struct pool_args *a)
{
	struct pool_inv inv;
	uint64_t tot = 0, used = 0;
	unsigned orphans = 0;

	if (inv_read(e, &inv))
		return 1;
	for (size_t i = 0; i < inv.nvms; i++)
		orphans += inv.vms[i].host_index < 0;
	if (a->json) {
		json_t *hs = json_array(), *vs = json_array();

		for (size_t i = 0; i < inv.nhosts; i++)
			json_array_append_new(hs, host_json(&inv.hosts[i]));
		for (size_t i = 0; i < inv.nvms; i++)
			json_array_append_new(vs, json_pack("{s:s, s:s, s:s, s:I, s:i}", "name",
							    inv.vms[i].name, "host", inv.vms[i].host,
							    "state", inv.vms[i].state, "mem",
							    (json_int_t)inv.vms[i].mem, "vcpus",
							    (int)inv.vms[i].vcpus));
		put_json(json_pack("{s:o, s:o}", "hosts", hs, "vms", vs));
		pool_inv_free(&inv);
		return 0;
	}
	printf("%-16s %-9s %4s %9s %25s %5s  %s\n", "HOST", "STATE", "VMS", "vCPUs", "RAM", "LOAD",
	       "API");
	for (size_t i = 0; i < inv.nhosts; i++) {
		const struct pool_host *h = &inv.hosts[i];
		struct plan_host ph = { h->mem_total, (uint32_t)(h->cpus * a->vcpu_ratio), true };
		char u[32], t[32], ram[80], vc[32];

		gib(h->mem_committed, u, sizeof u);
		gib(h->mem_total, t, sizeof t);
		snprintf(ram, sizeof ram, "%s / %s", u, t);
		snprintf(vc, sizeof vc, "%u/%u", h->vcpus_committed, h->cpus);
		printf("%-16s %-9s %4u %9s %25s %4.0f%%  %s\n", h->name, h->state, h->vms, vc, ram,
		       100 * plan_load(&ph, h->mem_committed, h->vcpus_committed),
		       h->api[0] ? h->api : "(none)");
		tot += h->mem_total;
		used += h->mem_committed;
	}
	{
		char u[32], t[32];

		gib(used, u, sizeof u);
		gib(tot, t, sizeof t);
		printf("%zu hosts, %zu VMs; RAM %s of %s committed (%.0f %%)\n", inv.nhosts, inv.nvms,
		       u, t, tot ? 100.0 * (double)used / (double)tot : 0.0);
	}
	if (orphans)
		printf("%u VMs are recorded on hosts that are not (their host left the pool)\n",
		       orphans);
	pool_inv_free(&inv);
	return 0;
}

static int where_cmd(struct etcd *e, const struct pool_args *a, const char *vm)
{
	struct pool_inv inv;
	int rc = 1;

	if (inv_read(e, &inv))
		return 1;
	for (size_t i = 0; i < inv.nvms; i++) {
		const struct pool_vm *v = &inv.vms[i];

		if (strcmp(v->name, vm) != 0)
			continue;
		if (a->json) {
			put_json(json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "vm", vm, "host",
					     v->host, "state", v->state));
		} else {
			printf("%s runs on %s (%s)%s\n", vm, v->host, v->state,
			       v->host_index < 0 ? "; that host is not in the pool now" : "");
		}
		rc = 0;
	}
	if (rc)
		cli_error("%s is not in the pool's record", vm);
	pool_inv_free(&inv);
	return rc;
}

/* ---- plans ---- */

enum verb { DRAIN, CONSOLIDATE, SPREAD };

static void say_line(void *ctx, const char *line)
{
	const struct pool_args *a = ctx;

	if (a->json) {
		put_json(json_pack("{s:s}", "progress", line));
	} else {
		printf("%s\n", line);
	}
	fflush(stdout);
}

static json_t *plan_json(const struct plan *pl, const struct pool_inv *inv, const int *vm_of,
			 const bool *emptied)
{
	json_t *moves = json_array(), *empty = json_array();

	for (size_t i = 0; i < pl->nmoves; i++)
		json_array_append_new(moves, json_pack("{s:s, s:s, s:s, s:i}", "vm",
						       inv->vms[vm_of[pl->moves[i].vm]].name, "from",
						       inv->hosts[pl->moves[i].from].name, "to",
						       inv->hosts[pl->moves[i].to].name, "wave",
						       (int)pl->moves[i].wave));
	for (size_t h = 0; emptied && h < inv->nhosts; h++)
		if (emptied[h])
			json_array_append_new(empty, json_string(inv->hosts[h].name));
	return json_pack("{s:o, s:i, s:i, s:i, s:o}", "moves", moves, "waves", (int)pl->waves,
			 "bounces", (int)pl->bounces, "hosts_used", (int)pl->hosts_used, "emptied",
			 empty);
}

static void plan_print(const struct plan *pl, const struct pool_inv *inv, const int *vm_of,
		       const bool *emptied)
{
	printf("%zu moves in %u waves (%u through a third host); %u hosts hold VMs after\n",
	       pl->nmoves, pl->waves, pl->bounces, pl->hosts_used);
	for (size_t i = 0; i < pl->nmoves; i++)
		printf("  wave %u: %-20s %s -> %s\n", pl->moves[i].wave + 1,
		       inv->vms[vm_of[pl->moves[i].vm]].name, inv->hosts[pl->moves[i].from].name,
		       inv->hosts[pl->moves[i].to].name);
	if (emptied) {
		bool any = false;

		printf("hosts left empty:");
		for (size_t h = 0; h < inv->nhosts; h++)
			if (emptied[h]) {
				printf(" %s", inv->hosts[h].name);
				any = true;
			}
		printf("%s\n", any ? "" : " none");
	}
}

/* CMD HOST through the shell, as `sh -c 'CMD "$1"' sh HOST`: its status. */
static int run_host_cmd(const char *cmd, const char *host)
{
	char script[1100];
	pid_t pid;
	int st;

	snprintf(script, sizeof script, "%s \"$1\"", cmd);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", script, "sh", host, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Run the power-down command for each host the plan left empty, once etcd's
 * record shows it holds no VM and runs no job. 0, or 1 if one failed. */
static int power_down_empty(struct etcd *e, const struct pool_args *a,
			    const struct pool_inv *planned, const bool *emptied)
{
	struct pool_inv now;
	char line[600];
	int rc = 0;

	if (inv_read(e, &now))
		return 1;
	for (size_t k = 0; k < planned->nhosts; k++) {
		const char *name = planned->hosts[k].name;
		int h = pool_inv_host(&now, name), st;
		unsigned held = 0;

		if (!emptied[k])
			continue;
		for (size_t v = 0; v < now.nvms; v++)
			held += !strcmp(now.vms[v].host, name);
		if (h < 0 || held || now.hosts[h].vms) {
			snprintf(line, sizeof line, "%s: not powered down: %s", name,
				 h < 0 ? "it left the pool's record" : "it holds VMs");
			say_line((void *)a, line);
			rc = 1;
			continue;
		}
		st = run_host_cmd(a->power_down, name);
		snprintf(line, sizeof line, "%s: %s %s: %s (exit %d)", name, a->power_down, name,
			 st ? "failed" : "powered down", st);
		say_line((void *)a, line);
		rc |= st != 0;
		if (!st && npowered < sizeof powered / sizeof powered[0])
			snprintf(powered[npowered++], POOL_NAME_LEN, "%s", name);
	}
	pool_inv_free(&now);
	return rc;
}

static int plan_cmd(struct etcd *e, const struct pool_args *a, enum verb verb, const char *host)
{
	static const char *const names[] = { "drain", "consolidate", "spread" };
	struct hostapi_tls tls;
	char ca[600], crt[600], key[600], run_id[48];
	struct pool_inv inv;
	struct plan_pool pp;
	struct plan pl = { 0 };
	bool *emptied = NULL;
	int *vm_of = NULL, r, h = -1, rc = 1;
	bool act = verb == CONSOLIDATE ? a->apply : !a->plan_only;
	unsigned char rnd[4] = { 0 };

	if (inv_read(e, &inv))
		return 1;
	if (host && (h = pool_inv_host(&inv, host)) < 0) {
		cli_error("%s is not in the pool's record (ferry pool status lists the hosts)",
			  host);
		goto out;
	}
	if (pool_inv_plan(&inv, a->vcpu_ratio, host ? &host : NULL, host ? 1 : 0, &pp, &vm_of)) {
		cli_error("out of memory");
		goto out;
	}
	r = verb == DRAIN ? plan_drain(&pp, h, a->parallel, &pl)
	    : verb == CONSOLIDATE ? plan_consolidate(&pp, a->headroom, a->parallel, &pl)
				  : plan_spread(&pp, a->parallel, &pl);
	if (r) {
		cli_error("%s: no plan keeps every host within its capacity: %s", names[verb],
			  r == -ENOSPC ? pl.why : strerror(-r));
		goto out_pp;
	}
	if (verb == CONSOLIDATE && (emptied = calloc(inv.nhosts + 1, 1))) {
		for (size_t k = 0; k < inv.nhosts; k++)
			emptied[k] = true;
		for (size_t v = 0; v < pp.nvms; v++)
			emptied[pl.target[v]] = false;
	}
	if (a->json) {
		json_t *o = plan_json(&pl, &inv, vm_of, emptied);

		json_object_set_new(o, "plan", json_string(names[verb]));
		json_object_set_new(o, "apply", json_boolean(act));
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		plan_print(&pl, &inv, vm_of, emptied);
	}
	if (!act || pl.nmoves == 0) {
		rc = 0;
		if (!act && !a->json)
			printf("%s\n", verb == CONSOLIDATE ? "(a plan only: --apply carries it out)"
							   : "(a plan only)");
		if (!act || !emptied || !a->power_down)
			goto out_plan;
	}
	snprintf(ca, sizeof ca, "%s/ca.crt", a->pki);
	snprintf(crt, sizeof crt, "%s/%s.crt", a->pki, a->client);
	snprintf(key, sizeof key, "%s/%s.key", a->pki, a->client);
	tls = (struct hostapi_tls){ a->ca ? a->ca : ca, a->cert ? a->cert : crt,
				    a->key ? a->key : key };
	if (getrandom(rnd, sizeof rnd, 0) < 0)
		rnd[0] = (unsigned char)getpid();
	snprintf(run_id, sizeof run_id, "%s-%02x%02x%02x%02x", names[verb], rnd[0], rnd[1], rnd[2],
		 rnd[3]);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	if (pl.nmoves) {
		struct pool_exec x = { &tls, e, &inv, &pl, vm_of, run_id, NULL,
				       (int)a->timeout_s * 1000, &stop_flag, say_line,
				       (void *)a };
		struct pool_exec_result res;

		r = pool_exec_run(&x, &res);
		if (a->json) {
			put_json(json_pack("{s:b, s:i, s:i, s:i, s:s}", "ok", !r, "moved",
					     (int)res.moved, "failed", (int)res.failed, "waves_done",
					     (int)res.waves_done, "why", res.why));
		} else {
			printf("%u moved, %u failed, %u of %u waves done\n", res.moved, res.failed,
			       res.waves_done, pl.waves);
		}
		if (r) {
			cli_error("%s stopped: %s; every VM runs on one host: run it again to go on",
				  names[verb], res.why);
			goto out_plan;
		}
	}
	rc = 0;
	if (emptied && a->power_down)
		rc = power_down_empty(e, a, &inv, emptied);
out_plan:
	plan_free(&pl);
	free(emptied);
out_pp:
	pool_inv_plan_free(&pp, vm_of);
out:
	pool_inv_free(&inv);
	return rc;
}

/* The pool's load: committed over offered, RAM and vCPUs, over the hosts
 * that run (the larger of the two). */
static double pool_load(const struct pool_inv *inv, double ratio)
{
	uint64_t ram = 0, ram_used = 0, cpu = 0, cpu_used = 0;

	for (size_t i = 0; i < inv->nhosts; i++) {
		if (strcmp(inv->hosts[i].state, "running"))
			continue;
		ram += inv->hosts[i].mem_total;
		ram_used += inv->hosts[i].mem_committed;
		cpu += (uint64_t)(inv->hosts[i].cpus * ratio);
		cpu_used += inv->hosts[i].vcpus_committed;
	}
	if (!ram || !cpu)
		return 0;
	return MAX((double)ram_used / (double)ram, (double)cpu_used / (double)cpu);
}

/* How many hosts that run now a consolidation would leave empty; -1 if it
 * cannot be planned. */
static int would_empty(const struct pool_inv *inv, const struct pool_args *a)
{
	struct plan_pool pp;
	struct plan pl = { 0 };
	int *vm_of, n;

	if (pool_inv_plan(inv, a->vcpu_ratio, NULL, 0, &pp, &vm_of))
		return -1;
	n = plan_consolidate(&pp, a->headroom, a->parallel, &pl) ? -1
	    : (int)inv->nhosts - (int)pl.hosts_used;
	plan_free(&pl);
	pool_inv_plan_free(&pp, vm_of);
	return n;
}

/* Power up the hosts this run powered down, and wait (up to 10 minutes)
 * until the record shows them. 0, or 1 if one did not come. */
static int power_up_all(struct etcd *e, const struct pool_args *a)
{
	char line[600];
	int rc = 0;

	for (unsigned k = 0; k < npowered; k++) {
		int st = run_host_cmd(a->power_up, powered[k]);

		snprintf(line, sizeof line, "%s: %s %s: %s (exit %d)", powered[k], a->power_up,
			 powered[k], st ? "failed" : "powering up", st);
		say_line((void *)a, line);
	}
	for (unsigned k = 0; k < npowered; k++) {
		bool up = false;

		for (int t = 0; t < 600 && !up && !stop_flag; t++) {
			struct pool_inv inv;
			char err[300];

			if (!pool_inv_read(e, &inv, err, sizeof err)) {
				up = pool_inv_host(&inv, powered[k]) >= 0;
				pool_inv_free(&inv);
			}
			if (!up)
				sleep(1);
		}
		snprintf(line, sizeof line, "%s: %s", powered[k],
			 up ? "back in the pool" : "not back in the pool after 10 minutes");
		say_line((void *)a, line);
		rc |= !up;
	}
	npowered = 0;
	return rc;
}

/* The policy, applied on its own (oVirt's power saving, for a pool). */
static int watch_cmd(struct etcd *e, struct pool_args *a)
{
	uint64_t low_since = 0, high_since = 0, hold = (uint64_t)a->hold_min * 60;
	char line[600];
	int rc = 0;

	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	while (!stop_flag) {
		struct pool_inv inv;
		uint64_t now = (uint64_t)time(NULL);
		double load;
		char err[300];
		int empty;

		if (pool_inv_read(e, &inv, err, sizeof err)) {
			snprintf(line, sizeof line, "etcd: %s; looking again in %u s", err,
				 a->interval_s);
			say_line(a, line);
			if (a->once)
				return 1;
			sleep(a->interval_s);
			continue;
		}
		load = pool_load(&inv, a->vcpu_ratio);
		empty = would_empty(&inv, a);
		low_since = load < a->low ? (low_since ? low_since : now) : 0;
		high_since = load > a->high ? (high_since ? high_since : now) : 0;
		pool_inv_free(&inv);
		snprintf(line, sizeof line, "pool load %.0f %% (low %.0f %%, high %.0f %%); a "
			 "consolidation would empty %d hosts", 100 * load, 100 * a->low,
			 100 * a->high, empty);
		say_line(a, line);
		if (low_since && (a->once || now - low_since >= hold) && empty > 0) {
			struct pool_args c = *a;

			c.apply = true;
			say_line(a, "below the low mark long enough: consolidating");
			rc = plan_cmd(e, &c, CONSOLIDATE, NULL);
			low_since = 0;
		} else if (high_since && (a->once || now - high_since >= hold)) {
			if (npowered && a->power_up) {
				say_line(a, "above the high mark long enough: powering up");
				rc = power_up_all(e, a);
			} else {
				say_line(a, "above the high mark long enough: spreading");
			}
			rc |= plan_cmd(e, a, SPREAD, NULL);
			high_since = 0;
		}
		if (a->once)
			break;
		for (unsigned s = 0; s < a->interval_s && !stop_flag; s++)
			sleep(1);
	}
	return rc;
}

int pool_main(int argc, char **argv)
{
	struct pool_args a = { .pki = DEFAULT_PKI, .client = "manager", .headroom = 0.1,
			       .vcpu_ratio = 4, .parallel = 2, .timeout_s = 600, .low = 0.3,
			       .high = 0.75, .hold_min = 10, .interval_s = 60 };
	const char *verb = argc > 1 ? argv[1] : "";
	struct etcd *e;
	int i, rc;

	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
		fputs(pool_help, stdout);
		return 0;
	}
	if (strcmp(verb, "status") && strcmp(verb, "where") && strcmp(verb, "drain") &&
	    strcmp(verb, "consolidate") && strcmp(verb, "spread") && strcmp(verb, "watch"))
		return cli_usage_error("pool", "%s%s%s (status, where, drain, consolidate, spread "
				       "or watch)", *verb ? "unknown command '" : "a command is needed",
				       verb, *verb ? "'" : "");
	if ((i = parse(argc - 1, argv + 1, verb, &a)) < 0)
		return i == -2 ? 0 : 2;
	i++; /* into argv */
	if (!strcmp(verb, "where") || !strcmp(verb, "drain")) {
		if (argc - i != 1)
			return cli_usage_error(verb[0] == 'w' ? "pool where" : "pool drain",
					       "expects one %s", verb[0] == 'w' ? "VM" : "HOST");
	} else if (argc != i) {
		return cli_usage_error("pool", "%s takes no operand", verb);
	}
	if (!(e = etcd_open(&a)))
		return 1;
	if (!strcmp(verb, "status"))
		rc = status_cmd(e, &a);
	else if (!strcmp(verb, "where"))
		rc = where_cmd(e, &a, argv[i]);
	else if (!strcmp(verb, "watch"))
		rc = watch_cmd(e, &a);
	else
		rc = plan_cmd(e, &a, !strcmp(verb, "drain") ? DRAIN
				 : !strcmp(verb, "consolidate") ? CONSOLIDATE : SPREAD,
			      !strcmp(verb, "drain") ? argv[i] : NULL);
	etcd_free(e);
	return rc;
}
