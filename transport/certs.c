/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certs.c — the pool CA and host certificates over OpenSSL 3; see certs.h.
 */
#include "transport/certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CN_MAX 64 /* X.520's upper bound on a common name */

struct certs_pair {
	X509 *x;
	EVP_PKEY *key;
};

/* OpenSSL's first queued error reason (else dflt) into buf; clears the queue. */
static const char *ossl_why(char *buf, size_t len, const char *dflt)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : dflt);
	ERR_clear_error();
	return buf;
}

void certs_pair_free(struct certs_pair *p)
{
	if (!p)
		return;
	X509_free(p->x);
	EVP_PKEY_free(p->key);
	free(p);
}

/* ---- names ---- */

static bool dns_label_ok(const char *s, size_t n)
{
	if (n < 1 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
	}
	return true;
}

bool certs_dns_name_ok(const char *s)
{
	const char *label = s, *dot;
	bool digits_only = true;

	if (!s || !*s || strlen(s) > 253)
		return false;
	for (;; label = dot + 1) {
		size_t n;

		dot = strchr(label, '.');
		n = dot ? (size_t)(dot - label) : strlen(label);
		if (!dns_label_ok(label, n))
			return false;
		if (!dot) {
			digits_only = strspn(label, "0123456789") == n;
			break;
		}
	}
	return !digits_only;
}

bool certs_ip_ok(const char *s)
{
	unsigned char b[16];

	return s && (inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1);
}

/* ---- building certificates ---- */

/* A random 128-bit serial number (RFC 5280 allows 20 octets). */
static int set_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn;
	bool ok;

	if (RAND_bytes(b, sizeof b) != 1)
		return -EIO;
	bn = BN_bin2bn(b, sizeof b, NULL);
	ok = bn && !BN_is_zero(bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

/*
 * An unsigned version 3 certificate for key: a random serial, subject CN=cn,
 * issued by issuer (by itself if NULL), valid from not_before to not_after.
 * NULL on failure (the reason queued in OpenSSL's errors).
 */
static X509 *cert_skeleton(const char *cn, EVP_PKEY *key, X509 *issuer, time_t not_before,
			   time_t not_after)
{
	X509 *x = X509_new();
	X509_NAME *subj;

	if (!x || !X509_set_version(x, X509_VERSION_3) || set_serial(x))
		goto fail;
	subj = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), not_after) || !X509_set_pubkey(x, key))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* Add the extension nid given in OpenSSL's configuration syntax (constants
 * only, never text from outside); issuer is for the authority key id. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	bool ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	ok = ext && X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EINVAL;
}

/* Append a general name of type holding v (taken over, even on failure). */
static int push_name(GENERAL_NAMES *gens, int type, ASN1_STRING *v)
{
	GENERAL_NAME *g = v ? GENERAL_NAME_new() : NULL;

	if (!g) {
		ASN1_STRING_free(v);
		return -ENOMEM;
	}
	GENERAL_NAME_set0_value(g, type, v);
	if (!sk_GENERAL_NAME_push(gens, g)) {
		GENERAL_NAME_free(g);
		return -ENOMEM;
	}
	return 0;
}

/* subjectAltName: DNS:name and IP:each address (all already checked). */
static int add_san(X509 *x, const struct certs_host_req *req)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
	int r = -ENOMEM;

	if (!gens || !dns || !ASN1_STRING_set(dns, req->name, -1)) {
		ASN1_STRING_free(dns);
		goto out;
	}
	if ((r = push_name(gens, GEN_DNS, dns)))
		goto out;
	for (size_t i = 0; i < req->nr_ips; i++)
		if ((r = push_name(gens, GEN_IPADD, a2i_IPADDRESS(req->ips[i]))))
			goto out;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		r = -ENOMEM;
out:
	GENERAL_NAMES_free(gens);
	return r;
}

static bool validity_ok(time_t not_before, time_t not_after, char *err, size_t errlen)
{
	if (not_after > not_before)
		return true;
	snprintf(err, errlen, "a certificate's validity must end after it begins");
	return false;
}

/*
 * Create the pool CA: a fresh key and a self-signed certificate that may
 * only sign certificates (and CRLs). 0 and *out, or -errno.
 */
int certs_ca_new(const char *name, time_t not_before, time_t not_after, struct certs_pair **out,
		 char *err, size_t errlen)
{
	struct certs_pair *p;
	char why[160];

	if (!name)
		name = CERTS_CA_NAME;
	if (!*name || strlen(name) > CN_MAX) {
		snprintf(err, errlen, "a CA name must have 1 to %d characters", CN_MAX);
		return -EINVAL;
	}
	if (!validity_ok(not_before, not_after, err, errlen))
		return -EINVAL;
	if (!(p = calloc(1, sizeof *p))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!(p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) ||
	    !(p->x = cert_skeleton(name, p->key, NULL, not_before, not_after)) ||
	    add_ext(p->x, p->x, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(p->x, p->x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(p->x, p->x, NID_subject_key_identifier, "hash") ||
	    add_ext(p->x, p->x, NID_authority_key_identifier, "keyid:always") ||
	    !X509_sign(p->x, p->key, EVP_sha256())) {
		snprintf(err, errlen, "cannot create the CA certificate: %s",
			 ossl_why(why, sizeof why, "OpenSSL failed"));
		certs_pair_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

/* ---- roles ---- */

#define ROLE_OU_PREFIX "ferry-"

static const char *const role_names[] = { "host", "manager", "monitor", "unknown" };

const char *certs_role_name(enum certs_role r)
{
	return (unsigned)r <= CERTS_ROLE_UNKNOWN ? role_names[r] : "unknown";
}

int certs_client_role_parse(const char *s, enum certs_role *out)
{
	if (s && strcmp(s, "manager") == 0)
		*out = CERTS_ROLE_MANAGER;
	else if (s && strcmp(s, "monitor") == 0)
		*out = CERTS_ROLE_MONITOR;
	else
		return -EINVAL;
	return 0;
}

enum certs_role certs_role_of(const struct x509_st *x)
{
	const X509_NAME *n = X509_get_subject_name(x);
	enum certs_role role = CERTS_ROLE_HOST;
	int i = -1, seen = 0;

	/* Exactly one OU, "ferry-ROLE"; none is a host (every host certificate
	 * ferry has made). Two, or one ferry does not know, is nobody. */
	while ((i = X509_NAME_get_index_by_NID(n, NID_organizationalUnitName, i)) >= 0) {
		const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
		int l = ASN1_STRING_length(v);
		char ou[32];

		if (seen++ || l <= 0 || (size_t)l >= sizeof ou)
			return CERTS_ROLE_UNKNOWN;
		memcpy(ou, ASN1_STRING_get0_data(v), (size_t)l);
		ou[l] = '\0';
		role = CERTS_ROLE_UNKNOWN;
		for (int r = CERTS_ROLE_HOST; r < CERTS_ROLE_UNKNOWN; r++)
			if (strncmp(ou, ROLE_OU_PREFIX, strlen(ROLE_OU_PREFIX)) == 0 &&
			    strcmp(ou + strlen(ROLE_OU_PREFIX), role_names[r]) == 0)
				role = (enum certs_role)r;
	}
	return role;
}

/* Check a host certificate request; 0 or -EINVAL with err set. */
static int host_req_check(const struct certs_host_req *req, char *err, size_t errlen)
{
	if (!certs_dns_name_ok(req->name)) {
		snprintf(err, errlen, "'%s' is not a valid host name (letters, digits, '-' "
			 "and '.')", req->name ? req->name : "");
		return -EINVAL;
	}
	if (strlen(req->name) > CN_MAX) {
		snprintf(err, errlen, "host name %s is longer than the %d characters a "
			 "certificate's CN holds", req->name, CN_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < req->nr_ips; i++) {
		if (!certs_ip_ok(req->ips[i])) {
			snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", req->ips[i]);
			return -EINVAL;
		}
	}
	return validity_ok(req->not_before, req->not_after, err, errlen) ? 0 : -EINVAL;
}

/*
 * Create a host's key and certificate, signed by ca, usable by either end of
 * a TLS connection. Its validity is cut to end no later than the CA's.
 * 0 and *out, or -errno.
 */
int certs_host_new(const struct certs_pair *ca, const struct certs_host_req *req,
		   struct certs_pair **out, char *err, size_t errlen)
{
	time_t not_after = req->not_after;
	struct certs_pair *p;
	char why[160];
	int r;

	if ((r = host_req_check(req, err, errlen)))
		return r;
	if (!(X509_get_extension_flags(ca->x) & EXFLAG_CA)) {
		snprintf(err, errlen, "the signing certificate is not a CA's");
		return -EINVAL;
	}
	if (!(p = calloc(1, sizeof *p))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!(p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) ||
	    !(p->x = cert_skeleton(req->name, p->key, ca->x, req->not_before, req->not_after)))
		goto fail;
	if (X509_cmp_time(X509_get0_notAfter(ca->x), &not_after) < 0 &&
	    !X509_set1_notAfter(p->x, X509_get0_notAfter(ca->x)))
		goto fail;
	if (add_ext(p->x, ca->x, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(p->x, ca->x, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(p->x, ca->x, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    add_ext(p->x, ca->x, NID_subject_key_identifier, "hash") ||
	    add_ext(p->x, ca->x, NID_authority_key_identifier, "keyid:always") ||
	    add_san(p->x, req) || !X509_sign(p->x, ca->key, EVP_sha256()))
		goto fail;
	*out = p;
	return 0;
fail:
	snprintf(err, errlen, "cannot create the certificate of %s: %s", req->name,
		 ossl_why(why, sizeof why, "OpenSSL failed"));
	certs_pair_free(p);
	return -ENOMEM;
}

/*
 * A client's key and certificate: CN=name, OU=ferry-ROLE, clientAuth only.
 * 0 and *out, or -errno.
 */
int certs_client_new(const struct certs_pair *ca, const char *name, enum certs_role role,
		     time_t not_before, time_t not_after, struct certs_pair **out, char *err,
		     size_t errlen)
{
	char ou[32], why[160];
	struct certs_pair *p;

	if (role != CERTS_ROLE_MANAGER && role != CERTS_ROLE_MONITOR) {
		snprintf(err, errlen, "a client certificate's role is manager or monitor");
		return -EINVAL;
	}
	if (!certs_dns_name_ok(name) || strlen(name) > CN_MAX) {
		snprintf(err, errlen, "'%s' is not a valid client name (letters, digits, '-' and "
			 "'.', at most %d)", name ? name : "", CN_MAX);
		return -EINVAL;
	}
	if (!validity_ok(not_before, not_after, err, errlen))
		return -EINVAL;
	if (!(X509_get_extension_flags(ca->x) & EXFLAG_CA)) {
		snprintf(err, errlen, "the signing certificate is not a CA's");
		return -EINVAL;
	}
	if (!(p = calloc(1, sizeof *p))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(ou, sizeof ou, ROLE_OU_PREFIX "%s", certs_role_name(role));
	if (!(p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) ||
	    !(p->x = cert_skeleton(name, p->key, ca->x, not_before, not_after)) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(p->x), "OU", MBSTRING_UTF8,
					(const unsigned char *)ou, -1, -1, 0))
		goto fail;
	if (X509_cmp_time(X509_get0_notAfter(ca->x), &not_after) < 0 &&
	    !X509_set1_notAfter(p->x, X509_get0_notAfter(ca->x)))
		goto fail;
	if (add_ext(p->x, ca->x, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(p->x, ca->x, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(p->x, ca->x, NID_ext_key_usage, "clientAuth") ||
	    add_ext(p->x, ca->x, NID_subject_key_identifier, "hash") ||
	    add_ext(p->x, ca->x, NID_authority_key_identifier, "keyid:always") ||
	    !X509_sign(p->x, ca->key, EVP_sha256()))
		goto fail;
	*out = p;
	return 0;
fail:
	snprintf(err, errlen, "cannot create the certificate of %s: %s", name,
		 ossl_why(why, sizeof why, "OpenSSL failed"));
	certs_pair_free(p);
	return -ENOMEM;
}

/* ---- files ---- */

/* The PEM text of p's key (if key) or certificate, malloc'd into *buf. */
static int pem_of(const struct certs_pair *p, bool key, char **buf, size_t *len)
{
	BIO *b = BIO_new(key ? BIO_s_secmem() : BIO_s_mem());
	char *data;
	long n = 0;
	bool ok;

	ok = b && (key ? PEM_write_bio_PrivateKey(b, p->key, NULL, NULL, 0, NULL, NULL)
		       : PEM_write_bio_X509(b, p->x));
	if (ok)
		n = BIO_get_mem_data(b, &data);
	ok = ok && n > 0 && (*buf = malloc((size_t)n));
	if (ok) {
		memcpy(*buf, data, (size_t)n);
		*len = (size_t)n;
	}
	BIO_free(b);
	return ok ? 0 : -ENOMEM;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Write data to a new temporary file next to path, with mode, and fsync it.
 * 0 and its name in tmp (the caller installs or unlinks it), or -errno with
 * nothing left behind.
 */
static int write_tmp(const char *path, const char *data, size_t len, mode_t mode, char *tmp,
		     size_t tmplen, char *err, size_t errlen)
{
	int fd, r = 0;

	if ((size_t)snprintf(tmp, tmplen, "%s.tmp-XXXXXX", path) >= tmplen) {
		snprintf(err, errlen, "the path %s is too long", path);
		return -ENAMETOOLONG;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create a file next to %s: %s", path, strerror(-r));
		return r;
	}
	r = fchmod(fd, mode) ? -errno : 0;
	if (!r)
		r = write_all(fd, data, len);
	if (!r && fsync(fd))
		r = -errno;
	if (close(fd) && !r)
		r = -errno;
	if (r) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
	}
	return r;
}

/* Rename tmp to path: over it if force, else only if path does not exist. */
static int place(const char *tmp, const char *path, bool force)
{
	if (force)
		return rename(tmp, path) ? -errno : 0;
	if (!renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* No RENAME_NOREPLACE on this file system: link(2) never replaces either. */
	if (link(tmp, path))
		return -errno;
	unlink(tmp);
	return 0;
}

/* Put the temporary file tmp in place as path (see place); tmp is gone
 * afterwards either way. 0 or -errno (-EEXIST: path exists, not forced). */
static int install(const char *tmp, const char *path, bool force, char *err, size_t errlen)
{
	int r = place(tmp, path, force);

	if (r)
		unlink(tmp);
	if (r == -EEXIST)
		snprintf(err, errlen, "%s already exists (not overwritten)", path);
	else if (r)
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(-r));
	return r;
}

/* fsync the directory holding path, so a rename into it is durable. */
static void fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else
		snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/*
 * Write p as two files (see certs.h): both temporary files are written
 * first, then the key is put in place, then the certificate. If the
 * certificate cannot be, a key just created is removed again.
 */
int certs_pair_write(const struct certs_pair *p, const char *crt_path, const char *key_path,
		     bool force, char *err, size_t errlen)
{
	char tcrt[PATH_MAX], tkey[PATH_MAX];
	char *pc = NULL, *pk = NULL;
	size_t lc = 0, lk = 0;
	int r;

	if (!force && (exists(crt_path) || exists(key_path))) {
		snprintf(err, errlen, "%s already exists (not overwritten)",
			 exists(crt_path) ? crt_path : key_path);
		return -EEXIST;
	}
	if ((r = pem_of(p, false, &pc, &lc)) || (r = pem_of(p, true, &pk, &lk))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((r = write_tmp(key_path, pk, lk, 0600, tkey, sizeof tkey, err, errlen)))
		goto out;
	if ((r = write_tmp(crt_path, pc, lc, 0644, tcrt, sizeof tcrt, err, errlen))) {
		unlink(tkey);
		goto out;
	}
	if ((r = install(tkey, key_path, force, err, errlen))) {
		unlink(tcrt);
		goto out;
	}
	if ((r = install(tcrt, crt_path, force, err, errlen)) && !force)
		unlink(key_path);
	fsync_dir_of(key_path);
	fsync_dir_of(crt_path);
out:
	free(pc);
	if (pk)
		OPENSSL_cleanse(pk, lk);
	free(pk);
	return r;
}

/* ---- reading ---- */

/* The first certificate (if x) or private key (if key) in the PEM file path. */
static int read_pem(const char *path, X509 **x, EVP_PKEY **key, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	int r;

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	ERR_clear_error();
	if (x)
		*x = PEM_read_X509(f, NULL, NULL, NULL);
	else
		*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (x ? !*x : !*key) {
		snprintf(err, errlen, "%s holds no PEM %s", path,
			 x ? "certificate" : "private key");
		return -EINVAL;
	}
	return 0;
}

/*
 * Load the CA's certificate and key (to sign host certificates with).
 * 0 and *out, or -errno.
 */
int certs_ca_load(const char *crt_path, const char *key_path, struct certs_pair **out, char *err,
		  size_t errlen)
{
	struct certs_pair *p = calloc(1, sizeof *p);
	int r;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = read_pem(crt_path, &p->x, NULL, err, errlen)) ||
	    (r = read_pem(key_path, NULL, &p->key, err, errlen)))
		goto fail;
	r = -EINVAL;
	if (!(X509_get_extension_flags(p->x) & EXFLAG_CA)) {
		snprintf(err, errlen, "%s is not a CA certificate", crt_path);
		goto fail;
	}
	if (X509_check_private_key(p->x, p->key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "the key %s does not belong to the certificate %s", key_path,
			 crt_path);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	certs_pair_free(p);
	return r;
}

static void name_text(const X509_NAME *n, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long l;

	buf[0] = '\0';
	if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (l = BIO_get_mem_data(b, &data)) > 0)
		snprintf(buf, len, "%.*s", (int)l, data);
	BIO_free(b);
}

static time_t asn1_to_time(const ASN1_TIME *a)
{
	struct tm tm;

	if (!a || !ASN1_TIME_to_tm(a, &tm))
		return 0;
	return timegm(&tm);
}

/* The DNS and IP subject alternative names of x into info. */
static void san_list(X509 *x, struct certs_info *info)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char *dst = info->names[info->nr_names];
		const unsigned char *d;
		int l;

		if (g->type != GEN_DNS && g->type != GEN_IPADD)
			continue;
		if (info->nr_names++ >= CERTS_NAMES_MAX)
			continue;
		d = ASN1_STRING_get0_data(g->d.ia5);
		l = ASN1_STRING_length(g->d.ia5);
		if (g->type == GEN_DNS)
			snprintf(dst, CERTS_NAME_LEN, "%.*s", l, (const char *)d);
		else if (!inet_ntop(l == 4 ? AF_INET : AF_INET6, d, dst, CERTS_NAME_LEN))
			snprintf(dst, CERTS_NAME_LEN, "(a %d-byte address)", l);
	}
	GENERAL_NAMES_free(gens);
}

/* Read the first certificate of a PEM file and describe it. 0 or -errno. */
int certs_inspect(const char *path, struct certs_info *info, char *err, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t off = 0;
	BIGNUM *bn;
	char *hex;
	X509 *x;
	int r;

	memset(info, 0, sizeof *info);
	if ((r = read_pem(path, &x, NULL, err, errlen)))
		return r;
	name_text(X509_get_subject_name(x), info->subject, sizeof info->subject);
	name_text(X509_get_issuer_name(x), info->issuer, sizeof info->issuer);
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) && (hex = BN_bn2hex(bn))) {
		snprintf(info->serial, sizeof info->serial, "%s", hex);
		OPENSSL_free(hex);
	}
	BN_free(bn);
	if (X509_digest(x, EVP_sha256(), md, &mdlen))
		for (unsigned int i = 0; i < mdlen && off + 4 <= sizeof info->sha256; i++)
			off += (size_t)snprintf(info->sha256 + off, 4, "%s%02X", i ? ":" : "",
						md[i]);
	san_list(x, info);
	info->not_before = asn1_to_time(X509_get0_notBefore(x));
	info->not_after = asn1_to_time(X509_get0_notAfter(x));
	info->is_ca = X509_get_extension_flags(x) & EXFLAG_CA;
	info->role = certs_role_of(x);
	X509_free(x);
	ERR_clear_error();
	return 0;
}
