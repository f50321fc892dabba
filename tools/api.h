/*
 * api.h — the shape of ferryd's control requests (docs/ferryd.md): which ops
 * exist, their members and types. Checked before any work is done, on the
 * loop thread; kept apart from the handlers so that a fuzzer can drive it.
 */
#ifndef FERRY_TOOLS_API_H
#define FERRY_TOOLS_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum api_type { API_STR, API_INT, API_BOOL, API_SIZE /* "1G" or a positive integer */ };

struct api_member {
	const char *key;
	enum api_type type;
	bool required;
};

struct api_op {
	const char *name;
	bool slow; /* talks to a runtime or the disk: runs on a task thread */
	struct api_member m[8];
};

/* 0 and *op if req is a well-formed request; -EINVAL with a sentence in err
 * otherwise (not an object, no op, unknown op, a member missing, unknown or
 * of the wrong type, a string over 1 KiB). */
int api_check(const json_t *req, const struct api_op **op, char *err, size_t errlen);

#endif
