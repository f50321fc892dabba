/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wanlink — a WAN-like link between two network namespaces, in user space
 * (these kernels have no sch_netem): two TUN devices, one in each
 * namespace, a point-to-point pair of addresses, and this process between
 * them, which holds every packet for a delay (with jitter), drops a share
 * of them at random, and lets them out no faster than a rate, each
 * direction on its own. Packets of one direction stay in order (the jitter
 * moves them later, never past one another), as on a real path.
 *
 *   wanlink --ns-a NS --ns-b NS [--addr-a 10.252.0.1] [--addr-b 10.252.0.2]
 *           [--delay-ms 20] [--jitter-ms 5] [--loss 0.01] [--rate-mbit 300]
 *           [--queue 1000] [--seed N]
 *
 * It makes the devices (wana, wanb), moves them into their namespaces,
 * addresses them and brings them up, prints "ready" on stdout, then runs
 * until SIGTERM or SIGINT, and prints one JSON line of counts per
 * direction. Needs root (CAP_NET_ADMIN) and iproute2.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PKT_MAX 2048

struct pkt {
	uint64_t due;  /* mono ns when it may leave */
	uint16_t len;
	unsigned char b[PKT_MAX];
};

struct dir {
	const char *name;      /* "a->b" */
	int in, out;           /* read from, write to */
	struct pkt *q;         /* a ring */
	unsigned head, n, cap;
	uint64_t last_due;     /* keeps the order */
	uint64_t wire_free;    /* when the rate lets the next one start */
	unsigned long long pkts, bytes, lost, overflow;
};

static volatile sig_atomic_t stop;
static double delay_ns = 20e6, jitter_ns = 5e6, loss = 0.01, rate_bps = 300e6;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* xorshift64*: a uniform double in [0, 1). */
static double uniform(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		fprintf(stderr, "wanlink: `%s` failed\n", cmd);
		exit(1);
	}
}

/* A TUN device named name; its fd. */
static int tun(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		perror("wanlink: /dev/net/tun");
		exit(1);
	}
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		perror("wanlink: TUNSETIFF");
		exit(1);
	}
	return fd;
}

/* Take in what arrived on d->in: lose some, queue the rest with their due
 * times. */
static void take(struct dir *d)
{
	for (;;) {
		struct pkt *p;
		uint64_t t, start, due;
		ssize_t n;

		if (d->n == d->cap) {
			unsigned char sink[PKT_MAX];

			if (read(d->in, sink, sizeof sink) <= 0)
				return;
			d->overflow++; /* a full queue drops at its tail */
			continue;
		}
		p = &d->q[(d->head + d->n) % d->cap];
		n = read(d->in, p->b, sizeof p->b);
		if (n <= 0)
			return;
		t = now_ns();
		d->pkts++;
		d->bytes += (unsigned long long)n;
		if (uniform() < loss) {
			d->lost++;
			continue;
		}
		/* On the wire after the ones before it, for its own length at
		 * the rate; then the path's delay, jittered, never before the
		 * packet ahead. */
		start = t > d->wire_free ? t : d->wire_free;
		d->wire_free = start + (uint64_t)((double)n * 8 / rate_bps * 1e9);
		due = d->wire_free + (uint64_t)(delay_ns + (2 * uniform() - 1) * jitter_ns);
		if (due < d->last_due)
			due = d->last_due;
		d->last_due = due;
		p->due = due;
		p->len = (uint16_t)n;
		d->n++;
	}
}

/* Let out what is due; the time until the next is, or -1. */
static int64_t give(struct dir *d)
{
	uint64_t t = now_ns();

	while (d->n) {
		struct pkt *p = &d->q[d->head];

		if (p->due > t)
			return (int64_t)(p->due - t);
		if (write(d->out, p->b, p->len) < 0 && errno == EAGAIN)
			return 100000; /* the device is full: a little later */
		d->head = (d->head + 1) % d->cap;
		d->n--;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ns-a", required_argument, 0, 'a' },	 { "ns-b", required_argument, 0, 'b' },
		{ "addr-a", required_argument, 0, 'A' }, { "addr-b", required_argument, 0, 'B' },
		{ "delay-ms", required_argument, 0, 'd' }, { "jitter-ms", required_argument, 0, 'j' },
		{ "loss", required_argument, 0, 'l' },	 { "rate-mbit", required_argument, 0, 'r' },
		{ "queue", required_argument, 0, 'q' },	 { "seed", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },	 { 0, 0, 0, 0 },
	};
	const char *ns_a = NULL, *ns_b = NULL, *addr_a = "10.252.0.1", *addr_b = "10.252.0.2";
	unsigned queue = 1000;
	struct dir dirs[2];
	int c, fa, fb;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': ns_a = optarg; break;
		case 'b': ns_b = optarg; break;
		case 'A': addr_a = optarg; break;
		case 'B': addr_b = optarg; break;
		case 'd': delay_ns = atof(optarg) * 1e6; break;
		case 'j': jitter_ns = atof(optarg) * 1e6; break;
		case 'l': loss = atof(optarg); break;
		case 'r': rate_bps = atof(optarg) * 1e6; break;
		case 'q': queue = (unsigned)atoi(optarg); break;
		case 's': rng = strtoull(optarg, NULL, 0) | 1; break;
		case 'h':
			printf("usage: wanlink --ns-a NS --ns-b NS [--addr-a A] [--addr-b B] "
			       "[--delay-ms MS] [--jitter-ms MS] [--loss P] [--rate-mbit R] "
			       "[--queue N] [--seed N]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!ns_a || !ns_b || queue < 1 || jitter_ns > delay_ns || loss < 0 || loss >= 1 ||
	    rate_bps <= 0) {
		fprintf(stderr, "wanlink: --ns-a and --ns-b are needed; jitter <= delay; "
				"0 <= loss < 1; rate > 0\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fa = tun("wana");
	fb = tun("wanb");
	sh("ip link set wana netns %s && ip link set wanb netns %s", ns_a, ns_b);
	sh("ip -n %s addr add %s peer %s dev wana && ip -n %s link set wana up", ns_a, addr_a,
	   addr_b, ns_a);
	sh("ip -n %s addr add %s peer %s dev wanb && ip -n %s link set wanb up", ns_b, addr_b,
	   addr_a, ns_b);
	dirs[0] = (struct dir){ .name = "a->b", .in = fa, .out = fb, .cap = queue };
	dirs[1] = (struct dir){ .name = "b->a", .in = fb, .out = fa, .cap = queue };
	for (int i = 0; i < 2; i++)
		if (!(dirs[i].q = calloc(queue, sizeof *dirs[i].q))) {
			fprintf(stderr, "wanlink: out of memory\n");
			return 1;
		}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		struct pollfd p[2] = { { .fd = fa, .events = POLLIN }, { .fd = fb, .events = POLLIN } };
		int64_t wait = -1;

		for (int i = 0; i < 2; i++) {
			int64_t w = give(&dirs[i]);

			if (w >= 0 && (wait < 0 || w < wait))
				wait = w;
		}
		/* poll() counts milliseconds: sleep finer ones out instead. */
		if (wait >= 0 && wait < 1000000) {
			struct timespec ts = { 0, (long)wait };

			if (poll(p, 2, 0) <= 0) {
				nanosleep(&ts, NULL);
				continue;
			}
		} else if (poll(p, 2, wait < 0 ? 100 : (int)(wait / 1000000)) <= 0) {
			continue;
		}
		for (int i = 0; i < 2; i++)
			if (p[i].revents & POLLIN)
				take(&dirs[i]);
	}
	printf("{\"bench\":\"wanlink\",\"delay_ms\":%g,\"jitter_ms\":%g,\"loss\":%g,"
	       "\"rate_mbit\":%g", delay_ns / 1e6, jitter_ns / 1e6, loss, rate_bps / 1e6);
	for (int i = 0; i < 2; i++)
		printf(",\"%s\":{\"packets\":%llu,\"bytes\":%llu,\"lost\":%llu,\"overflow\":%llu}",
		       dirs[i].name, dirs[i].pkts, dirs[i].bytes, dirs[i].lost, dirs[i].overflow);
	printf("}\n");
	return 0;
}
