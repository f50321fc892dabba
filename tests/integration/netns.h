/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netns.h — hosts in network namespaces for the integration tests: a
 * namespace per host, each with a veth into a switch namespace that holds
 * one bridge; host i gets 10.251.1.(i+1)/24. Every namespace the tests make
 * is removed by tn_teardown, by the group's teardown and at exit, also after
 * a failed test.
 */
#ifndef FERRY_TESTS_NETNS_H
#define FERRY_TESTS_NETNS_H

#define TN_HOSTS_MAX 4
#define TN_SUBNET "10.251.1"

struct tnet {
	char sw[32];
	char ns[TN_HOSTS_MAX][32];
	unsigned n;
};

/* Whether this machine lets us make namespaces (root, iproute2). */
int tn_available(void);
/* Make the switch and n hosts named names[i] (ns names get a unique suffix). */
void tn_setup(struct tnet *t, const char *const *names, unsigned n);
/* Remove every namespace of t (processes in them must be gone first). */
void tn_teardown(struct tnet *t);
/* Does namespace ns hold address addr? */
int tn_has_addr(const char *ns, const char *addr);
/* Run a shell command; assert it exits 0. */
void tn_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
