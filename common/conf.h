/* SPDX-License-Identifier: Apache-2.0 */
/*
 * conf.h — "key = value" configuration text: one setting per line, '#'
 * starts a comment, blank lines are ignored, keys are [a-z0-9-]+, values run
 * to the end of the line with surrounding blanks removed (no quoting).
 */
#ifndef FERRY_CONF_H
#define FERRY_CONF_H

#include <stddef.h>

/* Called for each setting; a nonzero return stops the parse with it (the
 * callback writes the reason into err). */
typedef int (*conf_fn)(void *ctx, const char *key, const char *value, char *err,
		       size_t errlen);

/* Parse len bytes of text. 0, the callback's error, or -EINVAL with
 * "LINE: reason" in err. */
int conf_parse(const char *text, size_t len, conf_fn fn, void *ctx, char *err, size_t errlen);

/* Read and parse a file; -ENOENT if it does not exist (err says so). */
int conf_load(const char *path, conf_fn fn, void *ctx, char *err, size_t errlen);

#endif
