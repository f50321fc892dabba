/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xxh.h — xxHash, at the machine's best speed. Include this, not <xxhash.h>.
 *
 * libxxhash's own XXH3 functions run its SSE2 code whatever the CPU. Its x86
 * builds also carry a dispatcher that picks AVX2 or AVX-512 once, at the first
 * call; where configure found it, the XXH3 names below are that dispatcher's
 * (a 2 MiB record hashes at 64 GB/s instead of 17 on this project's test
 * machine). The hashes are the same: only the code that computes them differs.
 * XXH3_state_t is used on the stack, hence XXH_STATIC_LINKING_ONLY (the
 * library's ABI for it is fixed within 0.8).
 */
#ifndef FERRY_XXH_H
#define FERRY_XXH_H

#include "config.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#ifdef HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h>
#endif

#endif
