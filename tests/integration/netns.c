/* SPDX-License-Identifier: Apache-2.0 */
/* netns.c — hosts in network namespaces; see netns.h. */
#include "tests/integration/netns.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/harness.h"

static struct tnet *live[8];

static void remove_all(void)
{
	for (unsigned i = 0; i < 8; i++)
		if (live[i])
			tn_teardown(live[i]);
}

void tn_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	r = system(cmd);
	if (r != 0)
		fail_msg("`%s` failed (status %d)", cmd, r);
}

int tn_available(void)
{
	return geteuid() == 0 && system("ip netns list >/dev/null 2>&1") == 0;
}

void tn_setup(struct tnet *t, const char *const *names, unsigned n)
{
	static int once;
	unsigned i;

	if (!once++)
		atexit(remove_all);
	for (i = 0; i < 8 && live[i]; i++)
		;
	assert_true(i < 8 && n <= TN_HOSTS_MAX);
	live[i] = t;
	memset(t, 0, sizeof *t);
	snprintf(t->sw, sizeof t->sw, "fsw%d", (int)getpid());
	tn_sh("ip netns add %s && ip -n %s link add br0 type bridge && ip -n %s link set br0 up",
	      t->sw, t->sw, t->sw);
	for (i = 0; i < n; i++) {
		snprintf(t->ns[i], sizeof t->ns[i], "f%s%d", names[i], (int)getpid());
		t->n = i + 1;
		tn_sh("ip netns add %s && ip -n %s link set lo up && "
		      "ip link add h%u%d netns %s type veth peer name p%u%d netns %s && "
		      "ip -n %s link set h%u%d name eth0 && "
		      "ip -n %s addr add " TN_SUBNET ".%u/24 dev eth0 && ip -n %s link set eth0 up && "
		      "ip -n %s link set p%u%d master br0 && ip -n %s link set p%u%d up",
		      t->ns[i], t->ns[i], i, (int)getpid(), t->ns[i], i, (int)getpid(), t->sw,
		      t->ns[i], i, (int)getpid(), t->ns[i], i + 1, t->ns[i], t->sw, i,
		      (int)getpid(), t->sw, i, (int)getpid());
	}
}

void tn_teardown(struct tnet *t)
{
	char cmd[128];

	for (unsigned i = 0; i < 8; i++)
		if (live[i] == t)
			live[i] = NULL;
	for (unsigned i = 0; i < t->n; i++) {
		snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null", t->ns[i]);
		if (system(cmd)) {
			/* already gone */
		}
	}
	if (t->sw[0]) {
		snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null", t->sw);
		if (system(cmd)) {
			/* already gone */
		}
	}
	t->n = 0;
	t->sw[0] = '\0';
}

int tn_has_addr(const char *ns, const char *addr)
{
	char cmd[256];

	snprintf(cmd, sizeof cmd, "ip -n %s -o addr show | grep -q ' %s/'", ns, addr);
	return system(cmd) == 0;
}
