/* SPDX-License-Identifier: Apache-2.0 */
/* idem.c — Idempotency-Key records; see idem.h. */
#include "daemon/idem.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "daemon/core.h"
#include "daemon/job.h"
#include "daemon/journal.h"

#define HASH_HEX 64

struct entry {
	struct entry *next;
	char kh[HASH_HEX + 1]; /* (caller, key) */
	char rh[HASH_HEX + 1]; /* the request */
	bool pending;
	int status;
	char *body;
	time_t at;
};

static struct entry *entries;

bool idem_key_ok(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > IDEM_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x21 || key[i] > 0x7e)
			return false;
	return true;
}

/* Hex SHA-256 of the parts, each followed by its length (no ambiguity). */
static void digest(const void *const *parts, const size_t *lens, unsigned n, char *hex)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	memset(md, 0, sizeof md);
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		for (unsigned i = 0; i < n; i++) {
			unsigned long long l = lens[i];

			EVP_DigestUpdate(c, parts[i], lens[i]);
			EVP_DigestUpdate(c, &l, sizeof l);
		}
		EVP_DigestFinal_ex(c, md, &mdlen);
	}
	EVP_MD_CTX_free(c);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void idem_token(const char *caller, const char *key, const char *method, const char *path,
		const void *body, size_t len, char token[IDEM_TOKEN_LEN])
{
	const void *k[] = { caller, key };
	size_t kl[] = { strlen(caller), strlen(key) };
	const void *r[] = { method, path, body ? body : "" };
	size_t rl[] = { strlen(method), strlen(path), body ? len : 0 };

	digest(k, kl, 2, token);
	token[HASH_HEX] = ':';
	digest(r, rl, 3, token + HASH_HEX + 1);
}

static const char *dir_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/idempotency", D.state_dir);
	return buf;
}

static void drop(struct entry **pp, bool unlink_file)
{
	struct entry *e = *pp;
	char dir[300], path[400];

	if (unlink_file) {
		snprintf(path, sizeof path, "%s/%s.json", dir_path(dir, sizeof dir), e->kh);
		unlink(path);
	}
	*pp = e->next;
	free(e->body);
	free(e);
}

static void expire(time_t now)
{
	for (struct entry **pp = &entries; *pp;)
		if (!(*pp)->pending && (*pp)->at + IDEM_TTL_S < now)
			drop(pp, true);
		else
			pp = &(*pp)->next;
}

/* A job started by the key (its record outlives a crash before the key's). */
static bool from_jobs(const char *kh, const char *rh, time_t now, int *status, char **body,
		      enum idem_verdict *v)
{
	bool hit = false;

	pthread_mutex_lock(&D.lock);
	for (struct job *j = D.jobs; j && !hit; j = j->next) {
		if (strncmp(j->idem, kh, HASH_HEX) != 0 || j->idem[HASH_HEX] != ':' ||
		    j->started + IDEM_TTL_S < now)
			continue;
		hit = true;
		if (strcmp(j->idem + HASH_HEX + 1, rh) != 0) {
			*v = IDEM_MISMATCH;
		} else {
			*v = IDEM_REPLAY;
			json_t *o = json_pack("{s:s}", "job", j->id);

			*status = 202;
			*body = o ? json_dumps(o, JSON_COMPACT) : NULL;
			json_decref(o);
		}
	}
	pthread_mutex_unlock(&D.lock);
	return hit;
}

enum idem_verdict idem_begin(const char *token, int *status, char **body)
{
	time_t now = time(NULL);
	enum idem_verdict v;
	struct entry *e;
	char kh[HASH_HEX + 1];
	const char *rh = token + HASH_HEX + 1;

	snprintf(kh, sizeof kh, "%.*s", HASH_HEX, token);
	expire(now);
	for (e = entries; e; e = e->next) {
		if (strcmp(e->kh, kh) != 0)
			continue;
		if (strcmp(e->rh, rh) != 0)
			return IDEM_MISMATCH;
		if (e->pending)
			return IDEM_BUSY;
		*status = e->status;
		*body = strdup(e->body);
		return IDEM_REPLAY;
	}
	if (from_jobs(kh, rh, now, status, body, &v))
		return v;
	if (!(e = calloc(1, sizeof *e)))
		return IDEM_NEW; /* unguarded, but answered */
	snprintf(e->kh, sizeof e->kh, "%s", kh);
	snprintf(e->rh, sizeof e->rh, "%s", rh);
	e->pending = true;
	e->at = now;
	e->next = entries;
	entries = e;
	return IDEM_NEW;
}

void idem_finish(const char *token, int status, const char *body)
{
	char dir[300], name[HASH_HEX + 8];
	struct entry **pp;
	json_t *o;

	for (pp = &entries; *pp; pp = &(*pp)->next)
		if (strncmp((*pp)->kh, token, HASH_HEX) == 0 && (*pp)->pending)
			break;
	if (!*pp)
		return;
	if (status >= 500) {
		drop(pp, false);
		return;
	}
	(*pp)->pending = false;
	(*pp)->status = status;
	if (!((*pp)->body = strdup(body))) {
		drop(pp, false);
		return;
	}
	o = json_pack("{s:s, s:i, s:s, s:I}", "request", (*pp)->rh, "status", status, "body",
		      body, "at", (json_int_t)(*pp)->at);
	snprintf(name, sizeof name, "%s.json", (*pp)->kh);
	if (o)
		journal_write(dir_path(dir, sizeof dir), name, o, false);
	json_decref(o);
}

void idem_load(void)
{
	char dir[300], path[600];
	time_t now = time(NULL);
	struct dirent *de;
	unsigned n = 0;
	DIR *dp;

	dir_path(dir, sizeof dir);
	if (mkdir(dir, 0700) && errno != EEXIST)
		log_warn("%s: %s; Idempotency-Key answers will not outlive a restart", dir,
			 strerror(errno));
	if (!(dp = opendir(dir)))
		return;
	while ((de = readdir(dp))) {
		const char *rh = NULL, *body = NULL;
		json_int_t at = 0;
		struct entry *e;
		int status = 0;
		json_t *o;

		if (strlen(de->d_name) != HASH_HEX + 5 || strcmp(de->d_name + HASH_HEX, ".json"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		o = journal_load(path);
		if (!o || json_unpack(o, "{s:s, s:i, s:s, s:I}", "request", &rh, "status",
				      &status, "body", &body, "at", &at) ||
		    strlen(rh) != HASH_HEX || at + IDEM_TTL_S < now || !(e = calloc(1, sizeof *e))) {
			json_decref(o);
			unlink(path); /* expired or unreadable: it answers nothing */
			continue;
		}
		snprintf(e->kh, sizeof e->kh, "%.*s", HASH_HEX, de->d_name);
		snprintf(e->rh, sizeof e->rh, "%s", rh);
		e->status = status;
		e->at = (time_t)at;
		if (!(e->body = strdup(body))) {
			free(e);
			json_decref(o);
			continue;
		}
		e->next = entries;
		entries = e;
		json_decref(o);
		n++;
	}
	closedir(dp);
	if (n)
		log_info("idempotency: %u keys' answers kept from before", n);
}
