/*
 * ferryd — the ferry host daemon (docs/ferryd.md): settings, the event loop,
 * the control socket, the migration listener, signals.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "common/conf.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/util.h"
#include "session/wire.h"
#include "tools/api.h"
#include "tools/daemon.h"

#define DEFAULT_CONFIG "/etc/ferry/ferryd.conf"
#define LINE_MAX_BYTES (64 * 1024)

struct daemon D = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
};

/* ---- running things on the loop thread ---- */

struct call {
	struct call *next;
	void (*fn)(void *);
	void *arg;
};

static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct call *calls, **calls_tail = &calls;
static struct event *calls_ev;

void loop_call(void (*fn)(void *), void *arg)
{
	struct call *c = malloc(sizeof *c);

	if (!c)
		fatal("out of memory");
	*c = (struct call){ NULL, fn, arg };
	pthread_mutex_lock(&calls_lock);
	*calls_tail = c;
	calls_tail = &c->next;
	pthread_mutex_unlock(&calls_lock);
	event_active(calls_ev, EV_READ, 0);
}

static void run_calls(evutil_socket_t fd, short what, void *arg)
{
	struct call *c;

	(void)fd, (void)what, (void)arg;
	pthread_mutex_lock(&calls_lock);
	c = calls;
	calls = NULL;
	calls_tail = &calls;
	pthread_mutex_unlock(&calls_lock);
	while (c) {
		struct call *next = c->next;

		c->fn(c->arg);
		free(c);
		c = next;
	}
}

struct thread_arg {
	void *(*fn)(void *);
	void *arg;
};

static void *thread_main(void *p)
{
	struct thread_arg a = *(struct thread_arg *)p;

	free(p);
	return a.fn(a.arg);
}

int spawn_thread(void *(*fn)(void *), void *arg)
{
	struct thread_arg *a = malloc(sizeof *a);
	pthread_attr_t at;
	pthread_t t;
	int r;

	if (!a)
		return -ENOMEM;
	a->fn = fn;
	a->arg = arg;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&D.lock);
	D.threads++;
	pthread_mutex_unlock(&D.lock);
	r = pthread_create(&t, &at, thread_main, a);
	pthread_attr_destroy(&at);
	if (r) {
		free(a);
		thread_done();
		return -r;
	}
	return 0;
}

void thread_done(void)
{
	pthread_mutex_lock(&D.lock);
	if (--D.threads == 0)
		pthread_cond_broadcast(&D.idle);
	pthread_mutex_unlock(&D.lock);
}

int write_json_file(const char *dir, const char *name, json_t *o)
{
	char tmp[512], path[512], *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	size_t len;
	int fd, dfd, r = 0;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves room for the NUL we overwrite */
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
	} else {
		if (pio_full(fd, text, len + 1, 0, true) || fsync(fd) < 0)
			r = -errno ? -errno : -EIO;
		close(fd);
		if (!r && rename(tmp, path) < 0)
			r = -errno;
		if (r)
			unlink(tmp);
	}
	free(text);
	if (!r && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(dfd) < 0)
			r = -errno;
		close(dfd);
	}
	if (r)
		log_error("writing %s: %s", path, strerror(-r));
	return r;
}

/* ---- the control socket ---- */

struct client {
	struct bufferevent *bev;
	int refs;        /* loop thread only */
	bool closed;     /* the peer went away; drop replies */
	bool busy;       /* a request is on a task thread */
	bool skipping;   /* discarding the rest of an over-long line */
};

struct task {
	struct client *c;
	json_t *req, *reply;
};

static void client_read(struct bufferevent *bev, void *arg);

static void client_put(struct client *c)
{
	if (--c->refs == 0) {
		bufferevent_free(c->bev);
		free(c);
	}
}

static void send_reply(struct client *c, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);

	if (text) {
		struct evbuffer *out = bufferevent_get_output(c->bev);

		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
		free(text);
	}
	json_decref(reply);
}

static json_t *error_reply(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static void task_done(void *p)
{
	struct task *t = p;
	struct client *c = t->c;

	if (!c->closed) {
		send_reply(c, t->reply);
		c->busy = false;
		bufferevent_enable(c->bev, EV_READ);
		client_read(c->bev, c); /* requests that queued meanwhile */
	} else {
		json_decref(t->reply);
	}
	json_decref(t->req);
	free(t);
	client_put(c);
}

static void *task_main(void *p)
{
	struct task *t = p;

	t->reply = api_handle(t->req);
	loop_call(task_done, t);
	thread_done();
	return NULL;
}

static void handle_line(struct client *c, const char *line, size_t len)
{
	json_error_t je;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	const struct api_op *op;
	char err[256];
	struct task *t;

	if (!req) {
		snprintf(err, sizeof err, "malformed JSON: %s (column %d)", je.text, je.column);
		send_reply(c, error_reply(err));
		return;
	}
	if (api_check(req, &op, err, sizeof err)) {
		send_reply(c, error_reply(err));
		json_decref(req);
		return;
	}
	if (!op->slow) {
		send_reply(c, api_handle(req));
		json_decref(req);
		return;
	}
	if (!(t = calloc(1, sizeof *t))) {
		send_reply(c, error_reply("out of memory"));
		json_decref(req);
		return;
	}
	t->c = c;
	t->req = req;
	c->refs++;
	c->busy = true;
	bufferevent_disable(c->bev, EV_READ);
	if (spawn_thread(task_main, t)) {
		c->refs--;
		c->busy = false;
		bufferevent_enable(c->bev, EV_READ);
		send_reply(c, error_reply("cannot start a thread"));
		json_decref(req);
		free(t);
	}
}

static void client_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->busy && !c->closed) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);

		if (!line) {
			if (evbuffer_get_length(in) > LINE_MAX_BYTES) {
				/* Drop it and the rest of the line; one error for it. */
				evbuffer_drain(in, evbuffer_get_length(in));
				if (!c->skipping)
					send_reply(c, error_reply("request longer than 64 KiB"));
				c->skipping = true;
			}
			return;
		}
		if (c->skipping) {
			c->skipping = false;
			free(line);
			continue;
		}
		if (n > LINE_MAX_BYTES)
			send_reply(c, error_reply("request longer than 64 KiB"));
		else if (n > 0)
			handle_line(c, line, n);
		free(line);
	}
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		c->closed = true;
		client_put(c);
	}
}

static void client_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int len, void *arg)
{
	struct client *c = calloc(1, sizeof *c);

	(void)l, (void)sa, (void)len, (void)arg;
	if (!c || !(c->bev = bufferevent_socket_new(D.base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		free(c);
		close(fd);
		return;
	}
	c->refs = 1;
	bufferevent_setcb(c->bev, client_read, NULL, client_event, c);
	bufferevent_enable(c->bev, EV_READ);
}

static struct evconnlistener *listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct evconnlistener *l;
	int fd;

	if (strlen(path) >= sizeof sa.sun_path)
		fatal("socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	/* A socket file left by a dead ferryd: nobody answers on it. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
		fatal("%s: another ferryd is running", path);
	if (fd >= 0)
		close(fd);
	unlink(path);
	l = evconnlistener_new_bind(D.base, client_accept, NULL,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64,
				    (struct sockaddr *)&sa, sizeof sa);
	if (!l)
		fatal("cannot listen on %s: %s", path, strerror(errno));
	chmod(path, 0660);
	return l;
}

/* ---- the migration listener ---- */

static void mig_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		       int len, void *arg)
{
	(void)l, (void)sa, (void)len, (void)arg;
	job_accept(fd);
}

static struct evconnlistener *listen_tcp(const char *spec)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICHOST }, *ai;
	struct evconnlistener *l;
	char host[256], port[16];
	int r;

	if (parse_host_port(spec, WIRE_DEFAULT_PORT, host, sizeof host, port, sizeof port))
		fatal("listen: \"%s\" is not ADDR:PORT", spec);
	if ((r = getaddrinfo(host, port, &hints, &ai)))
		fatal("listen: %s: %s", spec, gai_strerror(r));
	l = evconnlistener_new_bind(D.base, mig_accept, NULL,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
					    LEV_OPT_REUSEABLE,
				    64, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (!l)
		fatal("cannot listen on %s: %s", spec, strerror(errno));
	return l;
}

/* ---- settings ---- */

static int parse_policy(const char *s, enum noconv_policy *p)
{
	if (strcmp(s, "stop") == 0)
		*p = NOCONV_STOP;
	else if (strcmp(s, "throttle") == 0)
		*p = NOCONV_THROTTLE;
	else if (strcmp(s, "abort") == 0)
		*p = NOCONV_ABORT;
	else
		return -EINVAL;
	return 0;
}

static int copy_setting(char *dst, size_t max, const char *v, char *err, size_t errlen)
{
	if (!v[0] || strlen(v) >= max) {
		snprintf(err, errlen, "must be 1 to %zu characters", max - 1);
		return -EINVAL;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
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
	if (strcmp(k, "downtime-ms") == 0)
		return parse_u64(v, 1, 3600000, &D.downtime_ms) ? (snprintf(err, errlen,
			"a number of milliseconds, 1 to 3600000"), -EINVAL) : 0;
	if (strcmp(k, "max-iters") == 0) {
		if (parse_u64(v, 1, 1000, &n))
			goto range;
		D.max_iters = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "max-incoming") == 0) {
		if (parse_u64(v, 1, 64, &n))
			goto range;
		D.max_incoming = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "on-no-converge") == 0) {
		if (parse_policy(v, &D.on_no_converge)) {
			snprintf(err, errlen, "stop, throttle or abort");
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
		"              [--peer-timeout-ms MS] [--downtime-ms MS] [--max-iters N]\n"
		"              [--on-no-converge stop|throttle|abort] [--max-incoming N]\n"
		"              [--codecs lz4,delta|none] [--channels N]\n"
		"              [--pki-dir DIR] [--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE]\n"
		"              [--allow-from HOST,...|*] [--insecure-plaintext]\n"
		"              [--log-level error|warn|info|debug]\n\n"
		"The ferry host daemon: owns this host's microVMs, runs migrations, and\n"
		"answers the ferry command line. Settings come from the config file\n"
		"(default %s, key = value, the flag names without --),\n"
		"then from flags. See ferryd(8): docs/ferryd.md.\n",
		DEFAULT_CONFIG);
}

static void settings(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, 0, 'c' },
		{ "socket", required_argument, 0, 0 },
		{ "listen", required_argument, 0, 0 },
		{ "state-dir", required_argument, 0, 0 },
		{ "run-dir", required_argument, 0, 0 },
		{ "hostname", required_argument, 0, 0 },
		{ "peer-timeout-ms", required_argument, 0, 0 },
		{ "downtime-ms", required_argument, 0, 0 },
		{ "max-iters", required_argument, 0, 0 },
		{ "max-incoming", required_argument, 0, 0 },
		{ "on-no-converge", required_argument, 0, 0 },
		{ "log-level", required_argument, 0, 0 },
		{ "codecs", required_argument, 0, 0 },
		{ "channels", required_argument, 0, 0 },
		{ "pki-dir", required_argument, 0, 0 },
		{ "tls-ca", required_argument, 0, 0 },
		{ "tls-cert", required_argument, 0, 0 },
		{ "tls-key", required_argument, 0, 0 },
		{ "allow-from", required_argument, 0, 0 },
		{ "insecure-plaintext", no_argument, 0, 0 },
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, 'V' },
		{ 0, 0, 0, 0 },
	};
	char err[512];
	struct utsname u;
	int c, idx, r;

	/* Defaults. */
	snprintf(D.listen, sizeof D.listen, "0.0.0.0:%d", WIRE_DEFAULT_PORT);
	snprintf(D.state_dir, sizeof D.state_dir, "/var/lib/ferry");
	snprintf(D.config_path, sizeof D.config_path, "%s", DEFAULT_CONFIG);
	D.peer_timeout_ms = 15000;
	D.max_incoming = 4;
	D.downtime_ms = 300;
	D.max_iters = 30;
	D.on_no_converge = NOCONV_STOP;
	D.caps = WIRE_CAPS_ALL;
	D.channels = (unsigned)MAX(1, MIN(sysconf(_SC_NPROCESSORS_ONLN), 8));
	snprintf(D.pki_dir, sizeof D.pki_dir, "/etc/ferry/pki");
	snprintf(D.allow_from, sizeof D.allow_from, "*");
	if (uname(&u) == 0)
		snprintf(D.hostname, sizeof D.hostname, "%s", u.nodename);

	/* The config file first (its path may come from a flag), flags after. */
	bool explicit = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			snprintf(D.config_path, sizeof D.config_path, "%s", argv[i + 1]);
			explicit = true;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			snprintf(D.config_path, sizeof D.config_path, "%s", argv[i] + 9);
			explicit = true;
		}
	}
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

/* ---- main ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what, (void)arg;
	log_info("signal %d: shutting down; guests keep running", (int)sig);
	event_base_loopexit(D.base, NULL);
}

int main(int argc, char **argv)
{
	struct evconnlistener *ctl, *mig;
	struct event *sigs[3];
	const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	char path[512];

	signal(SIGPIPE, SIG_IGN);
	log_init("ferryd", LOG_INFO);
	failpoints_init();
	settings(argc, argv);
	if (evthread_use_pthreads())
		fatal("libevent has no thread support");
	for (const char *sub = "jobs"; sub; sub = strcmp(sub, "jobs") == 0 ? "vms" : NULL) {
		snprintf(path, sizeof path, "%s/%s", D.state_dir, sub);
		if (mkdir_p(path, 0700))
			fatal("cannot create %s: %s", path, strerror(errno));
	}
	if (mkdir_p(D.run_dir, 0755))
		fatal("cannot create %s: %s", D.run_dir, strerror(errno));
	if (!(D.base = event_base_new()))
		fatal("cannot create the event loop");
	calls_ev = event_new(D.base, -1, 0, run_calls, NULL);

	link_setup();
	vms_adopt();
	jobs_recover();
	ctl = listen_unix(D.socket_path);
	mig = listen_tcp(D.listen);
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(D.base, signos[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}
	log_info("ready: control %s, migrations on %s (%s, %u channels), state %s, run %s, host %s",
		 D.socket_path, D.listen, D.plaintext ? "plaintext" : "TLS", D.channels,
		 D.state_dir, D.run_dir, D.hostname);

	event_base_dispatch(D.base);

	evconnlistener_free(mig);
	evconnlistener_free(ctl);
	unlink(D.socket_path);
	pthread_mutex_lock(&D.lock);
	D.stopping = true;
	pthread_mutex_unlock(&D.lock);
	jobs_stop();
	/* Job threads roll back or park what they hold; wait for them. */
	pthread_mutex_lock(&D.lock);
	while (D.threads) {
		pthread_mutex_unlock(&D.lock);
		event_base_loop(D.base, EVLOOP_NONBLOCK);
		usleep(10000);
		pthread_mutex_lock(&D.lock);
	}
	pthread_mutex_unlock(&D.lock);
	event_base_loop(D.base, EVLOOP_NONBLOCK);
	tls_ctx_free(D.link.tls);
	log_info("stopped");
	return 0;
}
