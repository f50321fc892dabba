/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ferry save / ferry restore — a running microVM to a file and back, without
 * the daemon (the library code is what ferryd will call).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/snapshot.h"
#include "common/mtime.h"
#include "common/util.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/progress.h"

static const char save_help[] =
	"usage: ferry save [--keep-running] [--no-compress] [--lz4-accel N] [--json] DOMAIN FILE\n"
	"\n"
	"Pauses DOMAIN (e.g. mvm:web1), writes its memory and vCPU state to FILE as a\n"
	"ferry stream (docs/stream-format.md), then stops it, or lets it run again\n"
	"with --keep-running. The file appears only when complete (written to a\n"
	"temporary file, fsynced, renamed); on any error, a full disk included, the\n"
	"guest is left running as it was and no partial file remains.\n";

static const char restore_help[] =
	"usage: ferry restore [--name NAME] [--paused] [--json] FILE\n"
	"\n"
	"Creates a new microVM from FILE (written by ferry save), under its saved name\n"
	"or NAME, checks the whole file before the guest runs, and starts it (or\n"
	"leaves it paused with --paused). A corrupt or truncated file is refused and\n"
	"nothing is left behind.\n";

static void print_stats(const char *verb, const char *dom, const char *file,
			const struct snapshot_stats *st, uint64_t nr_frames, bool json)
{
	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:f, s:I, s:{s:I, s:I, s:I, s:I}}", verb,
				      dom, "file", file, "bytes", (json_int_t)st->bytes, "seconds",
				      ns_to_sec(st->ns), "paused_seconds", ns_to_sec(st->paused_ns),
				      "zero_frames", (json_int_t)st->zero_frames, "pages", "zero",
				      (json_int_t)st->pages[STREAM_ENC_ZERO], "raw",
				      (json_int_t)st->pages[STREAM_ENC_RAW], "lz4",
				      (json_int_t)st->pages[STREAM_ENC_LZ4], "delta",
				      (json_int_t)st->pages[STREAM_ENC_DELTA]);
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(o);
		}
		return;
	}
	printf("%s %s %s %s: %.1f MiB file in %.2f s; %" PRIu64 " of %" PRIu64
	       " frames zero (extents), pages raw %" PRIu64 ", lz4 %" PRIu64 ", delta %" PRIu64 "\n",
	       verb, dom, strcmp(verb, "saved") ? "from" : "to", file,
	       (double)st->bytes / (1 << 20), ns_to_sec(st->ns), st->zero_frames, nr_frames,
	       st->pages[STREAM_ENC_RAW], st->pages[STREAM_ENC_LZ4], st->pages[STREAM_ENC_DELTA]);
}

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

int save_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keep-running", no_argument, 0, 'k' }, { "no-compress", no_argument, 0, 'n' },
		{ "lz4-accel", required_argument, 0, 'a' }, { "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },	   { 0 }
	};
	struct snapshot_opts o = { 0 };
	struct snapshot_stats st;
	struct hv_domain *d;
	struct hv_info info;
	struct progress pr;
	char err[512], what[160];
	bool json = false;
	int c, r;

	codec_opts_default(&o.codec);
	cli_getopt_begin();
	while ((c = cli_getopt("save", argc, argv, opts)) != -1) {
		uint64_t n;

		switch (c) {
		case 'k': o.keep_running = true; break;
		case 'n': o.codec.lz4 = o.codec.delta = false; break;
		case 'a':
			if (parse_u64(optarg, 1, 65537, &n))
				return cli_bad_value("save", optarg, "an integer from 1 to 65537");
			o.codec.lz4_accel = (int)n;
			break;
		case 'j': json = true; break;
		case 'h': fputs(save_help, stdout); return 0;
		default: return 2; /* reported */
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("save", "expects a VM's URI or NAME and a FILE");
	if ((r = hv_open(argv[optind], &d))) {
		fprintf(stderr, "ferry save: cannot open %s: %s\n", argv[optind],
			r == -EBUSY ? "another owner (ferryd?) holds it open" : strerror(-r));
		return 1;
	}
	if ((r = hv_info(d, &info))) {
		fprintf(stderr, "ferry save: %s: %s\n", argv[optind], strerror(-r));
		hv_close(d);
		return 1;
	}
	snprintf(what, sizeof what, "saving %s", argv[optind]);
	progress_init(&pr, what, info.page_size);
	o.on_frames = progress_update;
	o.on_frames_ctx = &pr;
	/* Ctrl-C stops the save cleanly: the guest runs on, no file is left. */
	o.cancel = &interrupted;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	r = snapshot_save(d, argv[optind + 1], &o, &st, err, sizeof err);
	progress_end(&pr);
	hv_close(d);
	if (r) {
		fprintf(stderr, "ferry save: %s\n", err);
		return 1;
	}
	print_stats("saved", argv[optind], argv[optind + 1], &st, info.nr_frames, json);
	return 0;
}

int restore_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'n' }, { "paused", no_argument, 0, 'p' },
		{ "json", no_argument, 0, 'j' },	{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct snapshot_opts o = { 0 };
	struct snapshot_stats st;
	struct hv_domain *d;
	struct hv_info info;
	struct progress pr;
	const char *name = NULL;
	char err[512], what[160];
	bool json = false;
	int c, r;

	codec_opts_default(&o.codec);
	cli_getopt_begin();
	while ((c = cli_getopt("restore", argc, argv, opts)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'p': o.paused = true; break;
		case 'j': json = true; break;
		case 'h': fputs(restore_help, stdout); return 0;
		default: return 2; /* reported */
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("restore", "expects one FILE");
	snprintf(what, sizeof what, "restoring %s", argv[optind]);
	progress_init(&pr, what, 4096);
	o.on_frames = progress_update;
	o.on_frames_ctx = &pr;
	r = snapshot_restore(argv[optind], name, &o, &d, &st, err, sizeof err);
	progress_end(&pr);
	if (r) {
		fprintf(stderr, "ferry restore: %s\n", err);
		return 1;
	}
	r = hv_info(d, &info);
	print_stats("restored", d->uri, argv[optind], &st, r ? 0 : info.nr_frames, json);
	hv_close(d);
	return 0;
}
