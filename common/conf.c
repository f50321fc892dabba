/* SPDX-License-Identifier: Apache-2.0 */
/* conf.c — configuration file parsing; see conf.h. */
#include "common/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 4096

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int conf_parse(const char *text, size_t len, conf_fn fn, void *ctx, char *err, size_t errlen)
{
	char line[LINE_MAX_LEN + 1], why[256];
	unsigned no = 0;

	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *k, *eq, *v, *end;
		int r;

		no++;
		if (n > LINE_MAX_LEN) {
			snprintf(err, errlen, "line %u: longer than %d bytes", no, LINE_MAX_LEN);
			return -EINVAL;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + 1;
		if (strlen(line) != n) {
			snprintf(err, errlen, "line %u: contains a NUL byte", no);
			return -EINVAL;
		}
		if ((k = strchr(line, '#')))
			*k = '\0';
		for (k = line; blank(*k); k++)
			;
		if (!*k)
			continue;
		if (!(eq = strchr(k, '='))) {
			snprintf(err, errlen, "line %u: expected \"key = value\"", no);
			return -EINVAL;
		}
		for (end = eq; end > k && blank(end[-1]); end--)
			;
		*end = '\0';
		for (char *c = k; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
				snprintf(err, errlen, "line %u: \"%.40s\" is not a key (a-z, 0-9, -)",
					 no, k);
				return -EINVAL;
			}
		if (!*k) {
			snprintf(err, errlen, "line %u: no key before '='", no);
			return -EINVAL;
		}
		for (v = eq + 1; blank(*v); v++)
			;
		for (end = v + strlen(v); end > v && blank(end[-1]); end--)
			;
		*end = '\0';
		why[0] = '\0';
		if ((r = fn(ctx, k, v, why, sizeof why))) {
			snprintf(err, errlen, "line %u: %s: %s", no, k, why[0] ? why : "invalid");
			return r;
		}
	}
	return 0;
}

int conf_load(const char *path, conf_fn fn, void *ctx, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;
	int r;

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		snprintf(err, errlen, "%s: not a regular file of at most 1 MiB", path);
		return -EINVAL;
	}
	if (!(buf = malloc((size_t)n + 1))) {
		fclose(f);
		return -ENOMEM;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		snprintf(err, errlen, "%s: read error", path);
		return -EIO;
	}
	fclose(f);
	{
		char why[512];

		r = conf_parse(buf, (size_t)n, fn, ctx, why, sizeof why);
		if (r)
			snprintf(err, errlen, "%s: %s", path, why);
	}
	free(buf);
	return r;
}
