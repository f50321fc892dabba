/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry certs init / host / show — the pool's TLS certificates: a CA, and
 * the certificates it signs for each host (transport/certs.h). Works without
 * ferryd, on files only.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "transport/certs.h"

#define CA_DAYS 3650
#define HOST_DAYS 825
#define MAX_DAYS 36500
#define MAX_IPS (CERTS_NAMES_MAX - 1) /* the DNS name takes one */
#define SKEW_SECS 3600 /* certificates start an hour back: hosts' clocks differ */

static const char certs_help[] =
	"usage: ferry certs init [--dir DIR] [--days N] [--force] [--json]\n"
	"       ferry certs host NAME [--ip ADDR]... [--dir DIR] [--days N] [--force] [--json]\n"
	"       ferry certs client NAME --role manager|monitor [--dir DIR] [--days N]\n"
	"                   [--force] [--json]\n"
	"       ferry certs show FILE [--json]\n"
	"\n"
	"Makes the certificates ferryd's TLS connections use. init creates the pool CA,\n"
	"host signs a certificate for one host with it, client one for a pool manager\n"
	"or a monitor calling ferryd's remote API, show describes a certificate.\n"
	"DIR defaults to " CERTS_DEFAULT_DIR ", where ferryd looks for ca.crt,\n"
	"HOSTNAME.crt and HOSTNAME.key. `ferry certs COMMAND --help` says more.\n";

static const char init_help[] =
	"usage: ferry certs init [--dir DIR] [--days N] [--force] [--json]\n"
	"\n"
	"Creates the pool CA: a new EC P-256 key in DIR/ca.key (mode 0600) and a\n"
	"self-signed CA certificate in DIR/ca.crt, valid for N days (default 3650).\n"
	"DIR (default " CERTS_DEFAULT_DIR ") is created if missing. Existing files\n"
	"are left alone unless --force; a new CA invalidates every host certificate\n"
	"signed by the old one. Every host needs ca.crt; keep ca.key where you sign.\n";

static const char host_help[] =
	"usage: ferry certs host NAME [--ip ADDR]... [--dir DIR] [--days N] [--force] [--json]\n"
	"\n"
	"Creates a key (DIR/NAME.key, mode 0600) and a certificate (DIR/NAME.crt) for\n"
	"the host NAME, signed by the CA in DIR/ca.crt and DIR/ca.key, valid for N\n"
	"days (default 825, never past the CA's end). The certificate names NAME as\n"
	"its subject CN and a DNS name, and each --ip ADDR (IPv4 or IPv6) as an IP\n"
	"address: peers that reach the host by address check that. Existing files are\n"
	"left alone unless --force. Copy NAME.crt, NAME.key and ca.crt to the host's\n"
	CERTS_DEFAULT_DIR ".\n";

static const char client_help[] =
	"usage: ferry certs client NAME --role manager|monitor [--dir DIR] [--days N]\n"
	"                          [--force] [--json]\n"
	"\n"
	"Creates a key (DIR/NAME.key, mode 0600) and a client certificate (DIR/NAME.crt)\n"
	"for calling ferryd's remote API (api-listen in ferryd.conf), signed by the CA\n"
	"in DIR/ca.crt and DIR/ca.key, valid for N days (default 825). The role is in\n"
	"the certificate (its subject's OU): a manager may drive a host (create,\n"
	"destroy, migrate, protect, cancel), a monitor may only read (GET, events,\n"
	"metrics). A client certificate cannot serve a connection or migrate: hosts\n"
	"refuse it on the migration port. Existing files are left alone unless --force.\n";

static const char show_help[] =
	"usage: ferry certs show FILE [--json]\n"
	"\n"
	"Describes the first certificate in the PEM file FILE: subject, the names it\n"
	"vouches for, issuer, serial, SHA-256 fingerprint, validity, and whether it\n"
	"is a CA, has expired or is not valid yet.\n";

/* What the options said. */
struct certs_args {
	const char *dir;
	const char *ips[MAX_IPS];
	size_t nr_ips;
	unsigned days;
	const char *role;
	bool force, json;
};

/* Parse the options of `ferry certs VERB`; ips only for host. The index of
 * the first operand, or -1 (usage printed: exit 2) / -2 (help: exit 0). */
static int parse_opts(int argc, char **argv, const char *verb, const char *help,
		      struct certs_args *a)
{
	static const struct option opts[] = {
		{ "dir", required_argument, 0, 'd' }, { "days", required_argument, 0, 'n' },
		{ "ip", required_argument, 0, 'i' },  { "force", no_argument, 0, 'f' },
		{ "json", no_argument, 0, 'j' },      { "help", no_argument, 0, 'h' },
		{ "role", required_argument, 0, 'r' }, { 0, 0, 0, 0 },
	};
	bool files = strcmp(verb, "show") != 0;
	uint64_t n;
	int c;

	char cmd[16];

	snprintf(cmd, sizeof cmd, "certs %s", verb);
	cli_getopt_begin();
	while ((c = cli_getopt(cmd, argc, argv, opts)) != -1) {
		if (c == 'h') {
			fputs(help, stdout);
			return -2;
		} else if (c == 'j') {
			a->json = true;
		} else if (c == 'd' && files) {
			a->dir = optarg;
		} else if (c == 'f' && files) {
			a->force = true;
		} else if (c == 'n' && files) {
			if (parse_u64(optarg, 1, MAX_DAYS, &n)) {
				char want[48];

				snprintf(want, sizeof want, "a number of days from 1 to %d", MAX_DAYS);
				cli_bad_value(cmd, optarg, want);
				return -1;
			}
			a->days = (unsigned)n;
		} else if (c == 'i' && strcmp(verb, "host") == 0) {
			if (!certs_ip_ok(optarg)) {
				cli_bad_value(cmd, optarg, "an IPv4 or IPv6 address");
				return -1;
			}
			if (a->nr_ips == MAX_IPS) {
				cli_usage_error(cmd, "at most %d --ip", MAX_IPS);
				return -1;
			}
			a->ips[a->nr_ips++] = optarg;
		} else if (c == 'r' && strcmp(verb, "client") == 0) {
			enum certs_role role;

			if (certs_client_role_parse(optarg, &role)) {
				cli_bad_value(cmd, optarg, "manager or monitor");
				return -1;
			}
			a->role = optarg;
		} else {
			if (c != CLI_OPT_ERROR)
				cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	return optind;
}

static void fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "?");
}

static void print_json(json_t *o)
{
	if (!o)
		return;
	json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(o);
}

/* DIR/NAME.EXT into buf; false (with a message) if too long. */
static bool path_in(char *buf, size_t len, const char *dir, const char *name, const char *ext)
{
	if ((size_t)snprintf(buf, len, "%s/%s.%s", dir, name, ext) < len)
		return true;
	fprintf(stderr, "ferry certs: the path %s/%s.%s is too long\n", dir, name, ext);
	return false;
}

static int fail(const char *verb, const char *err, int r)
{
	fprintf(stderr, "ferry certs %s: %s%s\n", verb, err,
		r == -EEXIST ? "; --force replaces it" : "");
	return 1;
}

/* ferry certs init: a new pool CA in DIR. */
static int init_main(int argc, char **argv)
{
	struct certs_args a = { .dir = CERTS_DEFAULT_DIR, .days = CA_DAYS };
	char crt[PATH_MAX], key[PATH_MAX], until[32], err[512];
	struct certs_pair *ca;
	time_t now = time(NULL);
	int i = parse_opts(argc, argv, "init", init_help, &a), r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (i != argc)
		return cli_usage_error("certs init", "takes no operand");
	if (!path_in(crt, sizeof crt, a.dir, "ca", "crt") ||
	    !path_in(key, sizeof key, a.dir, "ca", "key"))
		return 1;
	if ((r = mkdir_p(a.dir, 0755))) {
		fprintf(stderr, "ferry certs init: cannot create %s: %s\n", a.dir, strerror(-r));
		return 1;
	}
	if ((r = certs_ca_new(NULL, now - SKEW_SECS, now + (time_t)a.days * 86400, &ca, err,
			      sizeof err)))
		return fail("init", err, r);
	r = certs_pair_write(ca, crt, key, a.force, err, sizeof err);
	certs_pair_free(ca);
	if (r)
		return fail("init", err, r);
	fmt_time(now + (time_t)a.days * 86400, until, sizeof until);
	if (a.json)
		print_json(json_pack("{s:s, s:s, s:s}", "cert", crt, "key", key, "not_after",
				     until));
	else
		printf("created the pool CA %s (key %s), valid until %s\n"
		       "every host needs %s; keep %s only where certificates are signed\n",
		       crt, key, until, crt, key);
	return 0;
}

static json_t *names_json(const struct certs_info *in)
{
	json_t *a = json_array();

	for (int i = 0; a && i < in->nr_names && i < CERTS_NAMES_MAX; i++)
		json_array_append_new(a, json_string(in->names[i]));
	return a;
}

static void names_text(const struct certs_info *in, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < in->nr_names && i < CERTS_NAMES_MAX && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", in->names[i]);
	if (in->nr_names > CERTS_NAMES_MAX && off < len)
		snprintf(buf + off, len - off, " and %d more", in->nr_names - CERTS_NAMES_MAX);
}

/* Sign and write NAME's certificate: a host's, or with a->role a client's.
 * 0 or -errno with err set. */
static int make_signed(const struct certs_args *a, const char *name, const char *crt,
		       const char *key, char *err, size_t errlen)
{
	char ca_crt[PATH_MAX], ca_key[PATH_MAX];
	struct certs_pair *ca, *host;
	time_t now = time(NULL);
	struct certs_host_req req = {
		.name = name, .ips = a->ips, .nr_ips = a->nr_ips,
		.not_before = now - SKEW_SECS, .not_after = now + (time_t)a->days * 86400,
	};
	enum certs_role role;
	int r;

	snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", a->dir);
	snprintf(ca_key, sizeof ca_key, "%s/ca.key", a->dir);
	if ((r = certs_ca_load(ca_crt, ca_key, &ca, err, errlen))) {
		if (r == -ENOENT)
			snprintf(err + strlen(err), errlen - strlen(err),
				 " (`ferry certs init --dir %s` creates the CA)", a->dir);
		return r;
	}
	if (a->role && !certs_client_role_parse(a->role, &role))
		r = certs_client_new(ca, name, role, req.not_before, req.not_after, &host, err,
				     errlen);
	else
		r = certs_host_new(ca, &req, &host, err, errlen);
	certs_pair_free(ca);
	if (r)
		return r;
	r = certs_pair_write(host, crt, key, a->force, err, errlen);
	certs_pair_free(host);
	return r;
}

/* ferry certs host NAME: a host certificate signed by the CA in DIR. */
static int host_main(int argc, char **argv)
{
	struct certs_args a = { .dir = CERTS_DEFAULT_DIR, .days = HOST_DAYS };
	char crt[PATH_MAX], key[PATH_MAX], until[32], names[1024], err[512];
	struct certs_info in;
	const char *name;
	int i = parse_opts(argc, argv, "host", host_help, &a), r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (argc - i != 1)
		return cli_usage_error("certs host", "expects one host NAME");
	name = argv[i];
	if (!certs_dns_name_ok(name)) {
		fprintf(stderr, "ferry certs host: '%s' is not a host name (letters, digits, '-' "
			"and '.'; an address goes in --ip)\n", name);
		return 2;
	}
	if (!path_in(crt, sizeof crt, a.dir, name, "crt") ||
	    !path_in(key, sizeof key, a.dir, name, "key"))
		return 1;
	if ((r = make_signed(&a, name, crt, key, err, sizeof err)))
		return fail("host", err, r);
	if ((r = certs_inspect(crt, &in, err, sizeof err)))
		return fail("host", err, r);
	fmt_time(in.not_after, until, sizeof until);
	if (a.json) {
		print_json(json_pack("{s:s, s:s, s:s, s:o, s:s}", "host", name, "cert", crt, "key",
				     key, "names", names_json(&in), "not_after", until));
		return 0;
	}
	names_text(&in, names, sizeof names);
	printf("created the certificate of %s (%s), valid until %s: %s, %s\n"
	       "copy them and %s/ca.crt to %s's " CERTS_DEFAULT_DIR "\n",
	       name, names, until, crt, key, a.dir, name);
	return 0;
}

/* ferry certs client NAME --role ROLE: a client certificate for the API. */
static int client_main(int argc, char **argv)
{
	struct certs_args a = { .dir = CERTS_DEFAULT_DIR, .days = HOST_DAYS };
	char crt[PATH_MAX], key[PATH_MAX], until[32], err[512];
	struct certs_info in;
	const char *name;
	int i = parse_opts(argc, argv, "client", client_help, &a), r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (argc - i != 1)
		return cli_usage_error("certs client", "expects one client NAME");
	if (!a.role)
		return cli_usage_error("certs client", "--role manager or --role monitor is "
				       "required");
	name = argv[i];
	if (!certs_dns_name_ok(name)) {
		fprintf(stderr, "ferry certs client: '%s' is not a valid name (letters, digits, "
			"'-' and '.')\n", name);
		return 2;
	}
	if (!path_in(crt, sizeof crt, a.dir, name, "crt") ||
	    !path_in(key, sizeof key, a.dir, name, "key"))
		return 1;
	if ((r = make_signed(&a, name, crt, key, err, sizeof err)))
		return fail("client", err, r);
	if ((r = certs_inspect(crt, &in, err, sizeof err)))
		return fail("client", err, r);
	fmt_time(in.not_after, until, sizeof until);
	if (a.json) {
		print_json(json_pack("{s:s, s:s, s:s, s:s, s:s}", "client", name, "role", a.role,
				     "cert", crt, "key", key, "not_after", until));
		return 0;
	}
	printf("created the %s certificate of %s, valid until %s: %s, %s\n"
	       "give them and %s/ca.crt to the %s (ferry pool --cert, --key, --ca)\n",
	       a.role, name, until, crt, key, a.dir, a.role);
	return 0;
}

/* The state of a validity period at now, in a word. */
static const char *validity_word(const struct certs_info *in, time_t now)
{
	if (now < in->not_before)
		return "not valid yet";
	return now > in->not_after ? "expired" : "valid";
}

/* ferry certs show FILE. */
static int show_main(int argc, char **argv)
{
	struct certs_args a = { 0 };
	char nb[32], na[32], names[1024], err[512];
	struct certs_info in;
	time_t now = time(NULL);
	int i = parse_opts(argc, argv, "show", show_help, &a), r;

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (argc - i != 1)
		return cli_usage_error("certs show", "expects one certificate FILE");
	if ((r = certs_inspect(argv[i], &in, err, sizeof err)))
		return fail("show", err, r);
	fmt_time(in.not_before, nb, sizeof nb);
	fmt_time(in.not_after, na, sizeof na);
	if (a.json) {
		print_json(json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:b, s:b, s:b}",
				     "file", argv[i], "subject", in.subject, "role",
				     in.is_ca ? "ca" : certs_role_name(in.role), "issuer", in.issuer,
				     "names", names_json(&in), "serial", in.serial, "sha256",
				     in.sha256, "not_before", nb, "not_after", na, "ca", in.is_ca,
				     "expired", now > in.not_after, "not_yet_valid",
				     now < in.not_before));
		return 0;
	}
	names_text(&in, names, sizeof names);
	printf("file:       %s\nsubject:    %s\nrole:       %s\nnames:      %s\nissuer:     %s\n"
	       "serial:     %s\nsha256:     %s\nnot before: %s\nnot after:  %s\nstate:      %s\n"
	       "CA:         %s\n",
	       argv[i], in.subject, in.is_ca ? "ca" : certs_role_name(in.role),
	       names[0] ? names : "(none)", in.issuer, in.serial, in.sha256, nb, na,
	       validity_word(&in, now), in.is_ca ? "yes" : "no");
	return 0;
}

int certs_main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = { { "init", init_main },
		      { "host", host_main },
		      { "client", client_main },
		      { "show", show_main } };

	if (argc < 2) {
		fputs(certs_help, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(certs_help, stdout);
		return 0;
	}
	for (size_t k = 0; k < ARRAY_SIZE(verbs); k++)
		if (!strcmp(argv[1], verbs[k].name))
			return verbs[k].fn(argc - 1, argv + 1);
	return cli_usage_error("certs", "unknown command '%s' (init, host, client or show)", argv[1]);
}
