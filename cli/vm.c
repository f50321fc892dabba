/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry create / list / info / destroy / verify — the microVMs the local
 * ferryd owns.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/client.h"
#include "cli/cli.h"
#include "cli/opts.h"

static const char create_help[] =
	"usage: ferry create NAME [--mem SIZE] [--vcpus N] [--workload SPEC]\n"
	"                         [--net ADDR:PORT] [--paused] [--json]\n"
	"\n"
	"Starts a microVM named NAME, owned by the local ferryd. SIZE as 256M or 1G\n"
	"(default 256M); N vCPUs (default 1); SPEC is idle (default), fill,\n"
	"dirtier with options, e.g. dirtier:ws=512M,rate=64, or kvstore\n"
	"(docs/ferry-mvm.md, docs/kvstore.md). --net gives the guest a service\n"
	"address that moves with it (a kvstore serves its clients there).\n";

static const char list_help[] =
	"usage: ferry list [--json]\n\nLists the microVMs the local ferryd owns.\n";
static const char host_help[] =
	"usage: ferry host [--json]\n\nShows this host as a pool manager sees it: CPUs and RAM "
	"(total, committed,\nfree), VMs and jobs, its pool record in the coordination service, "
	"and its\nmigration port: connections waiting for their HELLO, served, refused and "
	"failed,\nand the addresses penalised for failing.\n";
static const char info_help[] =
	"usage: ferry info NAME [--json]\n\nShows one microVM: state, size, workload, steps, and "
	"the gaps its vCPUs saw.\n";
static const char destroy_help[] =
	"usage: ferry destroy NAME\n\nEnds the microVM NAME and frees its memory. Refused while "
	"a job holds it.\n";
static const char adopt_help[] =
	"usage: ferry adopt URI [--json]\n\nBrings a domain that runs on this host but was not "
	"started by ferryd under the\nlocal ferryd, which lists, watches and moves it from then "
	"on (and adopts it\nagain after a restart). URI names the backend and the domain: "
	"xen:web1 is the\nXen domain web1 (started with `xl create`).\n";
static const char verify_help[] =
	"usage: ferry verify NAME [--json]\n\nPauses NAME, replays its workload and checks every "
	"page of guest RAM, then\nresumes it. Exit status 0 if every page is as the workload "
	"wrote it, 1 if not.\n";

/* Common flags: --json, --help; returns the index of the first operand or
 * -1 (exit 2: the error reported) / -2 (help printed). on_extra reports
 * its own errors. */
static int simple_opts(int argc, char **argv, const char *help, bool *json,
		       const struct option *extra, int (*on_extra)(int, const char *, void *),
		       void *ctx)
{
	struct option opts[12] = { { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' } };
	int n = 2, c;

	for (; extra && extra[n - 2].name; n++)
		opts[n] = extra[n - 2];
	opts[n] = (struct option){ 0, 0, 0, 0 };
	cli_getopt_begin();
	while ((c = cli_getopt(argv[0], argc, argv, opts)) != -1) {
		if (c == 'j') {
			*json = true;
		} else if (c == 'h') {
			fputs(help, stdout);
			return -2;
		} else if (c == CLI_OPT_ERROR || !on_extra || on_extra(c, optarg, ctx)) {
			return -1; /* reported */
		}
	}
	return optind;
}

struct create_args {
	const char *mem, *workload, *net;
	int vcpus;
	bool paused;
};

static int create_opt(int c, const char *arg, void *p)
{
	struct create_args *a = p;
	uint64_t n;

	switch (c) {
	case 'm': a->mem = arg; return 0;
	case 'w': a->workload = arg; return 0;
	case 'N': a->net = arg; return 0;
	case 'p': a->paused = true; return 0;
	case 'v':
		if (parse_u64(arg, 1, 64, &n)) {
			cli_bad_value("create", arg, "an integer from 1 to 64");
			return -1;
		}
		a->vcpus = (int)n;
		return 0;
	}
	return -1;
}

static void print_vm(json_t *vm)
{
	char b[32];

	printf("%-16s %-10s %10s %5" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT "  %s\n",
	       json_string_value(json_object_get(vm, "name")),
	       json_string_value(json_object_get(vm, "state")),
	       fmt_bytes((double)json_integer_value(json_object_get(vm, "mem")), b, sizeof b),
	       json_integer_value(json_object_get(vm, "vcpus")),
	       json_integer_value(json_object_get(vm, "pid")),
	       json_string_value(json_object_get(vm, "workload")));
}

int create_main(int argc, char **argv)
{
	static const struct option extra[] = {
		{ "mem", required_argument, 0, 'm' },	   { "vcpus", required_argument, 0, 'v' },
		{ "workload", required_argument, 0, 'w' }, { "paused", no_argument, 0, 'p' },
		{ "net", required_argument, 0, 'N' },
		{ 0, 0, 0, 0 },
	};
	struct create_args a = { "256M", "idle", NULL, 1, false };
	bool json = false;
	int i = simple_opts(argc, argv, create_help, &json, extra, create_opt, &a);
	json_t *r, *req;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (argc - i != 1)
		return cli_usage_error("create", "expects one NAME");
	req = json_pack("{s:s, s:s, s:s, s:i, s:s, s:b}", "op", "create", "name", argv[i], "mem",
			a.mem, "vcpus", a.vcpus, "workload", a.workload, "paused", a.paused);
	if (a.net)
		json_object_set_new(req, "net", json_string(a.net));
	r = client_call1(req);
	if (!client_ok(r))
		return 1;
	if (json)
		print_json(json_object_get(r, "vm"));
	else
		printf("created %s (pid %" JSON_INTEGER_FORMAT ")\n", argv[i],
		       json_integer_value(json_object_get(json_object_get(r, "vm"), "pid")));
	json_decref(r);
	return 0;
}

int list_main(int argc, char **argv)
{
	bool json = false;
	int i = simple_opts(argc, argv, list_help, &json, NULL, NULL, NULL);
	json_t *r, *vms, *vm;
	size_t k;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (i != argc)
		return cli_usage_error("list", "takes no operand");
	r = client_call1(json_pack("{s:s}", "op", "list"));
	if (!client_ok(r))
		return 1;
	vms = json_object_get(r, "vms");
	if (json) {
		print_json(vms);
	} else {
		printf("%-16s %-10s %10s %5s %8s  %s\n", "NAME", "STATE", "MEM", "VCPUS", "PID",
		       "WORKLOAD");
		json_array_foreach(vms, k, vm)
			print_vm(vm);
	}
	json_decref(r);
	return 0;
}

static long long num(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);

	return (long long)json_integer_value(b ? json_object_get(v, b) : v);
}

int host_cmd_main(int argc, char **argv)
{
	bool json = false;
	int i = simple_opts(argc, argv, host_help, &json, NULL, NULL, NULL);
	const json_t *h, *l, *p;
	json_t *r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (i != argc)
		return cli_usage_error("host", "takes no operand");
	r = client_call1(json_pack("{s:s}", "op", "host"));
	if (!client_ok(r))
		return 1;
	h = json_object_get(r, "host");
	if (json) {
		print_json((json_t *)h);
		json_decref(r);
		return 0;
	}
	l = json_object_get(h, "listener");
	p = json_object_get(h, "pool");
	printf("%s: %s, backend %s\n", json_string_value(json_object_get(h, "name")),
	       json_string_value(json_object_get(h, "state")),
	       json_string_value(json_object_get(h, "backend")));
	printf("  cpus %lld (%lld vCPUs committed); memory %lld MiB, %lld committed, %lld free\n",
	       num(h, "cpus", NULL), num(h, "vcpus_committed", NULL), num(h, "mem_total", NULL) >> 20,
	       num(h, "mem_committed", NULL) >> 20, num(h, "mem_free", NULL) >> 20);
	printf("  %lld VMs, %lld jobs active, %lld incoming\n", num(h, "vms", NULL),
	       num(h, "jobs_active", NULL), num(h, "incoming", NULL));
	if (json_is_string(json_object_get(p, "coord")))
		printf("  pool record: %s in %s%s%s\n",
		       json_is_true(json_object_get(p, "registered")) ? "registered" : "NOT registered",
		       json_string_value(json_object_get(p, "coord")),
		       json_object_get(p, "error") ? ": " : "",
		       json_object_get(p, "error") ? json_string_value(json_object_get(p, "error")) : "");
	else
		printf("  pool record: none (no coordination service configured)\n");
	if (l)
		printf("  migration port: %lld waiting for HELLO; %lld accepted, %lld served; refused "
		       "%lld (busy %lld, per source %lld, early %lld, penalised %lld); failed %lld "
		       "handshakes, %lld not the protocol, %lld idle, %lld closed, %lld told no; "
		       "%lld addresses penalised now (%lld penalties)\n",
		       num(l, "pending", NULL), num(l, "accepted", NULL), num(l, "served", NULL),
		       num(l, "refused", "busy") + num(l, "refused", "source") +
			       num(l, "refused", "early") + num(l, "refused", "penalised"),
		       num(l, "refused", "busy"), num(l, "refused", "source"),
		       num(l, "refused", "early"), num(l, "refused", "penalised"),
		       num(l, "failed", "handshake"),
		       num(l, "failed", "garbage") + num(l, "failed", "mismatch"),
		       num(l, "failed", "timeout"), num(l, "failed", "closed"),
		       num(l, "failed", "refused"), num(l, "penalised", NULL), num(l, "penalties", NULL));
	json_decref(r);
	return 0;
}

static json_t *name_call(int argc, char **argv, const char *op, const char *help, bool *json,
			 int *status)
{
	int i = simple_opts(argc, argv, help, json, NULL, NULL, NULL);
	json_t *r;

	*status = 0;
	if (i < 0 || argc - i != 1) {
		if (i >= 0)
			cli_usage_error(op, "expects one NAME");
		*status = i == -2 ? 0 : 2;
		return NULL;
	}
	r = client_call1(json_pack("{s:s, s:s}", "op", op, "name", argv[i]));
	if (!client_ok(r)) {
		*status = 1;
		return NULL;
	}
	return r;
}

/* One "key value" line per member; an object's members as "key.member". */
static void print_members(const char *prefix, json_t *o)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		char key[64], *s;

		snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", k);
		if (json_is_object(v) && !prefix[0]) {
			print_members(key, v);
			continue;
		}
		s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
		printf("%-24s %s\n", key, json_is_string(v) ? json_string_value(v) : s);
		free(s);
	}
}

int info_main(int argc, char **argv)
{
	bool json = false;
	int st;
	json_t *r = name_call(argc, argv, "info", info_help, &json, &st), *vm;

	if (!r)
		return st;
	vm = json_object_get(r, "vm");
	if (json) {
		print_json(vm);
	} else {
		print_members("", vm);
	}
	json_decref(r);
	return 0;
}

int destroy_main(int argc, char **argv)
{
	bool json = false;
	int st;
	json_t *r = name_call(argc, argv, "destroy", destroy_help, &json, &st);

	if (!r)
		return st;
	if (json)
		print_json(r);
	else
		printf("destroyed %s\n", argv[argc - 1]);
	json_decref(r);
	return 0;
}

int adopt_main(int argc, char **argv)
{
	bool json = false;
	int i = simple_opts(argc, argv, adopt_help, &json, NULL, NULL, NULL);
	json_t *r;

	if (i < 0 || argc - i != 1) {
		if (i >= 0)
			cli_usage_error("adopt", "expects one URI");
		return i == -2 ? 0 : 2;
	}
	r = client_call1(json_pack("{s:s, s:s}", "op", "adopt", "uri", argv[i]));
	if (!client_ok(r))
		return 1;
	if (json)
		print_json(json_object_get(r, "vm"));
	else
		printf("adopted %s\n", argv[i]);
	json_decref(r);
	return 0;
}

int verify_main(int argc, char **argv)
{
	bool json = false, ok;
	int st;
	json_t *r = name_call(argc, argv, "verify", verify_help, &json, &st);

	if (!r)
		return st;
	ok = json_is_true(json_object_get(r, "verified"));
	if (json)
		print_json(r);
	else
		printf("%s: %s (%" JSON_INTEGER_FORMAT " pages checked, %" JSON_INTEGER_FORMAT
		       " written by the workload)\n",
		       argv[argc - 1], json_string_value(json_object_get(r, "result")),
		       json_integer_value(json_object_get(r, "pages_checked")),
		       json_integer_value(json_object_get(r, "pages_written")));
	json_decref(r);
	return ok ? 0 : 1;
}
