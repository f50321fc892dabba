/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry dirtylog — start a microVM, harvest its kernel dirty log once per
 * interval, and print the distinct dirty pages next to what the workload's
 * rate R and working set W predict: W(1 - e^(-R t / W)) for uniform writes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "hv/hv.h"
#include "mvm/config.h"
#include "cli/cli.h"
#include "cli/opts.h"

static const char help[] =
	"usage: ferry dirtylog [--name NAME] [--mem SIZE] [--vcpus N] [--workload SPEC]\n"
	"                      [--interval SEC] [--seconds SEC] [--json]\n"
	"\n"
	"Starts a microVM (default: 1G, 2 vCPUs, dirtier:ws=256M,rate=64), enables the\n"
	"kernel dirty log, and once per interval prints the distinct pages the log\n"
	"reports next to the prediction W(1-e^(-R*t/W)) for a rate of R pages/s over a\n"
	"working set of W pages (per vCPU slice; hot/cold split for pattern=hotcold),\n"
	"using both the nominal rate and the rate the guest achieved. At the end it\n"
	"verifies every page of the guest and destroys it.\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* Expected distinct pages dirtied in t seconds at r pages/s over the config's
 * working set, summed over the vCPU slices. */
static double predict(const struct mvm_config *c, double r, double t)
{
	const struct wl_config *w = &c->wl;
	double total = 0;

	if (w->kind != WL_DIRTIER)
		return 0;
	for (unsigned i = 0; i < c->nr_vcpus; i++) {
		uint64_t lo, hi;
		double s, rv = r / c->nr_vcpus;

		wl_slice(w, c->nr_vcpus, i, &lo, &hi);
		s = (double)(hi - lo);
		if (s <= 0)
			continue;
		if (w->pattern == WL_UNIFORM) {
			total += s * (1 - exp(-rv * t / s));
		} else {
			double h = floor(s / 10) > 0 ? floor(s / 10) : 1;
			double ph = 230.0 / 256, pc = 26.0 / 256;
			double lh = rv * ph / h + rv * pc / s, lc = rv * pc / s;
			total += h * (1 - exp(-lh * t)) + (s - h) * (1 - exp(-lc * t));
		}
	}
	return total;
}

int dirtylog_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'n' },	   { "mem", required_argument, 0, 'm' },
		{ "vcpus", required_argument, 0, 'v' },	   { "workload", required_argument, 0, 'w' },
		{ "interval", required_argument, 0, 'i' }, { "seconds", required_argument, 0, 's' },
		{ "json", no_argument, 0, 'j' },	   { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	const char *name = "ferry-demo", *mem = "1G", *vcpus = "2",
		   *workload = "dirtier:ws=256M,rate=64";
	double interval = 1, seconds = 10;
	bool json = false;
	char cfgtext[MVM_CONFIG_MAX], err[256], uri[HV_URI_MAX], why[64] = "?";
	struct mvm_config cfg;
	struct hv_domain *d = NULL;
	struct hv_info info;
	struct bitmap dirty = { 0 };
	double steps, checked = 0;
	json_t *v = NULL;
	int c, r, rc = 1, ok = 0;

	cli_getopt_begin();
	while ((c = cli_getopt("dirtylog", argc, argv, opts)) != -1) {
		char *end;

		switch (c) {
		case 'n': name = optarg; break;
		case 'm': mem = optarg; break;
		case 'v': vcpus = optarg; break;
		case 'w': workload = optarg; break;
		case 'i':
			interval = strtod(optarg, &end);
			if (end == optarg || *end || interval < 0.05 || interval > 3600)
				return cli_bad_value("dirtylog", optarg,
						     "a number of seconds from 0.05 to 3600");
			break;
		case 's':
			seconds = strtod(optarg, &end);
			if (end == optarg || *end || !(seconds > 0) || seconds > 86400)
				return cli_bad_value("dirtylog", optarg,
						     "a number of seconds up to 86400");
			break;
		case 'j': json = true; break;
		case 'h': fputs(help, stdout); return 0;
		default: return 2; /* reported */
		}
	}
	if (optind != argc)
		return cli_usage_error("dirtylog", "takes no operand");
	if (seconds < interval)
		return cli_usage_error("dirtylog", "--seconds (%g) is shorter than --interval (%g)",
				       seconds, interval);
	snprintf(cfgtext, sizeof cfgtext, "mem=%s vcpus=%s workload=%s", mem, vcpus, workload);
	if (mvm_config_parse(cfgtext, &cfg, err, sizeof err)) {
		fprintf(stderr, "ferry dirtylog: %s\n", err);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	struct hv_spec spec = { cfg.mem, cfg.nr_vcpus, cfg.workload, NULL };
	if ((r = hv_uri(uri, sizeof uri, NULL, name)) ||
	    (r = hv_launch(uri, &spec, 0, &d, err, sizeof err))) {
		fprintf(stderr, "ferry dirtylog: cannot start microVM %s: %s\n", name,
			r == -EINVAL && !d ? "bad name" : err);
		return 1;
	}
	if ((r = hv_info(d, &info)) || (r = bitmap_init(&dirty, info.nr_frames)))
		goto out;

	if (!json)
		printf("microVM %s: %s\n"
		       "%6s %10s %12s %12s %10s %9s\n",
		       name, info.config, "t(s)", "dirty", "pred(nom)", "pred(ach)", "ach MiB/s",
		       "scan ms");
	/* The first interval starts just before the log is switched on:
	 * write-protecting all of RAM takes a few ms, and pages written behind
	 * the walk are already logged. */
	if ((r = hv_extra_number(d, HV_EXTRA_STATS, "steps", &steps)))
		goto out;
	uint64_t t0 = mono_ns(), last = t0;
	double prev_steps = steps;
	if ((r = hv_logdirty_enable(d)))
		goto out;
	for (unsigned k = 1; !stop && ns_to_sec(mono_ns() - t0) < seconds - 1e-9; k++) {
		uint64_t due = t0 + (uint64_t)(k * interval * 1e9), now = mono_ns(), h0, h1;
		int64_t n;
		double t, ach, nominal, achieved;

		if (due > now)
			mono_sleep_ns(due - now);
		if (stop)
			break;
		bitmap_zero(&dirty);
		h0 = mono_ns();
		n = hv_logdirty_harvest(d, &dirty, 0);
		h1 = mono_ns();
		if (n < 0 || (r = hv_extra_number(d, HV_EXTRA_STATS, "steps", &steps))) {
			r = n < 0 ? (int)n : r;
			goto out;
		}
		/* The steps between two harvests are the writes of that interval. */
		t = ns_to_sec(h0 - last);
		ach = (steps - prev_steps) / t;
		prev_steps = steps;
		last = h0;
		nominal = predict(&cfg, (double)cfg.wl.rate_pages, t);
		achieved = predict(&cfg, ach, t);
		if (json)
			printf("{\"t\":%.3f,\"interval_s\":%.3f,\"dirty_pages\":%" PRId64
			       ",\"predicted_nominal\":%.0f,\"predicted_achieved\":%.0f,"
			       "\"achieved_pages_per_s\":%.0f,\"harvest_ms\":%.3f}\n",
			       ns_to_sec(h0 - t0), t, n, nominal, achieved, ach, ns_to_ms(h1 - h0));
		else
			printf("%6.1f %10" PRId64 " %12.0f %12.0f %10.1f %9.2f\n", ns_to_sec(h0 - t0),
			       n, nominal, achieved, ach * info.page_size / (1 << 20),
			       ns_to_ms(h1 - h0));
		fflush(stdout);
	}
	r = hv_extra(d, HV_EXTRA_VERIFY, &v);
	if (r == 0) {
		const char *res = "?", *w = "?";
		json_int_t pc = 0;

		json_unpack(v, "{s:b, s:s, s?s, s?I}", "verified", &ok, "result", &res, "why", &w,
			    "pages_checked", &pc);
		snprintf(why, sizeof why, "%s", w);
		checked = (double)pc;
		if (json)
			printf("{\"verify\":\"%s\",\"pages_checked\":%.0f}\n", why, checked);
		else
			printf("verify: %s\n", res);
		rc = ok ? 0 : 1;
	}
out:
	if (r)
		fprintf(stderr, "ferry dirtylog: %s\n", strerror(-r));
	if (d) {
		hv_destroy(d);
		hv_close(d); /* reaps the runtime it launched */
	}
	json_decref(v);
	bitmap_free(&dirty);
	return r ? 1 : rc;
}
