/* SPDX-License-Identifier: Apache-2.0 */
/*
 * harness.h — shared set-up for integration tests: real ferry-mvm processes
 * in a private run directory, all of them ended (by PID) and the directory
 * removed when the test group ends, also when a test failed.
 */
#ifndef FERRY_TESTS_HARNESS_H
#define FERRY_TESTS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/types.h>

#include "hv/hv.h"
#include "hv/mvm.h"
#include "mvm/context.h"

/* cmocka group setup/teardown: make / remove the run dir, end runtimes. */
int h_group_setup(void **state);
int h_group_teardown(void **state);

/* Start a microVM (running unless paused) and open it; asserts success. */
struct hv_domain *h_launch(const char *name, const char *config, bool paused);
/* Destroy and close a domain (NULL is fine). */
void h_destroy(struct hv_domain *d);
/* Remember a pid so that teardown ends it if a test did not. */
void h_track_pid(pid_t pid);

/* XXH3 of all guest RAM, read through read_pages. */
uint64_t h_ram_hash(struct hv_domain *d);
/* All of guest RAM into a new buffer (nr_frames * page_size). */
void *h_ram_read(struct hv_domain *d, uint64_t *nr_frames);
/* Wait until every vCPU has halted (reached steps=), at most timeout_ms. */
void h_wait_halted(struct hv_domain *d, int timeout_ms);
/* Wait until the guest has made at least steps steps in all (a loaded
 * machine can starve it for a while), at most timeout_ms. */
void h_wait_steps(struct hv_domain *d, uint64_t steps, int timeout_ms);
/* Per-vCPU registers from save_context (domain must be paused). */
unsigned h_regs(struct hv_domain *d, struct mvm_vcpu_regs *regs);
/* Sleep ms milliseconds. */
void h_sleep_ms(unsigned ms);
/* Rounds for repeated tests: $FERRY_TEST_ROUNDS, else def. */
unsigned h_rounds(unsigned def);
/* The value of "Key:" in /proc/PID/task/TID/status (tid NULL: the
 * process's), whitespace squeezed to single spaces, into out. */
void h_proc_status(pid_t pid, const char *tid, const char *key, char *out, size_t len);

#endif
