/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certs.h — the pool's certificates (DESIGN.md §8): a pool CA, and host
 * certificates it signs, which TLS channels (tls.h) present and check.
 *
 * Keys are EC P-256. A CA certificate is self-signed, CA:TRUE (critical),
 * keyCertSign and cRLSign. A host certificate names the host as its subject
 * CN and as a DNS subject alternative name, plus any IP addresses it is
 * reached by; it is CA:FALSE, digitalSignature, serverAuth and clientAuth,
 * so the same pair serves both ends of a connection.
 *
 * A certificate carries a role (certs_role): a host's has none in its
 * subject, which means "host"; a client's (certs_client_new) names its role
 * as the subject's OU ("ferry-manager"): a manager drives hosts through the
 * remote API, a monitor may only read it. A client certificate is for
 * clientAuth only and names no host, so it can neither serve a connection nor
 * pass for a pool host on the migration port. Only the CA's holder can set a
 * role, since the CA signs the subject.
 *
 * Files are PEM and appear whole or not at all: written to a temporary file
 * in the same directory, fsynced, then renamed (or, when not forced, linked
 * so an existing file is never replaced); keys are mode 0600, certificates
 * 0644. Only this file includes OpenSSL's X509 building API.
 *
 * Every function that can fail returns 0 or -errno with one sentence,
 * naming the file at fault when there is one, in err.
 */
#ifndef FERRY_TRANSPORT_CERTS_H
#define FERRY_TRANSPORT_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define CERTS_DEFAULT_DIR "/etc/ferry/pki"
#define CERTS_CA_NAME "ferry pool CA"
#define CERTS_NAMES_MAX 32 /* names certs_inspect reports; more are counted */
#define CERTS_NAME_LEN 256

/* A private key and its certificate; opaque. */
struct certs_pair;

/* What a host certificate is for. */
struct certs_host_req {
	const char *name;       /* a DNS name: the subject CN and a DNS SAN */
	const char *const *ips; /* IPv4 / IPv6 addresses in text form, as IP SANs */
	size_t nr_ips;
	time_t not_before, not_after; /* not_after is cut to the CA's */
};

/* What a certificate may do. */
enum certs_role {
	CERTS_ROLE_HOST,    /* migrate to and from the pool's hosts */
	CERTS_ROLE_MANAGER, /* drive a host through its remote API */
	CERTS_ROLE_MONITOR, /* read a host's remote API (GET only) */
	CERTS_ROLE_UNKNOWN, /* an OU ferry does not know: refused everywhere */
};
/* "host", "manager", "monitor", "unknown". */
const char *certs_role_name(enum certs_role r);
/* 0 and *out for "manager" or "monitor" (the roles of client certificates);
 * -EINVAL otherwise. */
int certs_client_role_parse(const char *s, enum certs_role *out);
/* The role an X509 certificate (OpenSSL's X509 *) carries: host when its
 * subject has no OU, the role its OU "ferry-ROLE" names, else unknown. */
struct x509_st;
enum certs_role certs_role_of(const struct x509_st *x);

/* Create a pool CA named name (NULL: CERTS_CA_NAME) valid from not_before
 * to not_after. The caller frees *out with certs_pair_free. */
int certs_ca_new(const char *name, time_t not_before, time_t not_after, struct certs_pair **out,
		 char *err, size_t errlen);

/* Create a host certificate and key signed by ca (which stays the
 * caller's). The caller frees *out. */
int certs_host_new(const struct certs_pair *ca, const struct certs_host_req *req,
		   struct certs_pair **out, char *err, size_t errlen);

/* Create a client certificate and key for name (a DNS-style name, the
 * subject CN) with role manager or monitor, signed by ca; clientAuth only,
 * no subject alternative names. */
int certs_client_new(const struct certs_pair *ca, const char *name, enum certs_role role,
		     time_t not_before, time_t not_after, struct certs_pair **out, char *err,
		     size_t errlen);

/*
 * Write p's certificate to crt_path (0644) and its key to key_path (0600).
 * Unless force, -EEXIST if either exists, and nothing is written. Both files
 * are complete or absent on return, success or not.
 */
int certs_pair_write(const struct certs_pair *p, const char *crt_path, const char *key_path,
		     bool force, char *err, size_t errlen);

/* Load a CA's certificate and key back; -EINVAL if the certificate is not a
 * CA's or the key is not its own. The caller frees *out. */
int certs_ca_load(const char *crt_path, const char *key_path, struct certs_pair **out, char *err,
		  size_t errlen);

void certs_pair_free(struct certs_pair *p);

/* What a certificate says. */
struct certs_info {
	char subject[CERTS_NAME_LEN]; /* "CN=host-a" */
	char issuer[CERTS_NAME_LEN];
	char serial[80];              /* hex */
	char sha256[100];             /* fingerprint of the DER, "AB:CD:..." */
	char names[CERTS_NAMES_MAX][CERTS_NAME_LEN]; /* SANs: DNS names and IP addresses */
	int nr_names;                 /* may exceed CERTS_NAMES_MAX; only that many stored */
	time_t not_before, not_after;
	bool is_ca;
	enum certs_role role;
};

/* Read the (first) certificate in the PEM file path. */
int certs_inspect(const char *path, struct certs_info *info, char *err, size_t errlen);

/* Whether s is a host name ferry puts in a certificate: dot-separated
 * labels of letters, digits and '-' (not first or last), 1-63 characters
 * each, 253 in all, the last not all digits (it would read as an address). */
bool certs_dns_name_ok(const char *s);
/* Whether s is an IPv4 or IPv6 address in text form. */
bool certs_ip_ok(const char *s);

#endif
