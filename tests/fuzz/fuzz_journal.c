/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_journal.c — libFuzzer target for ferryd's job records
 * (daemon/journal.c, journal_parse: a slot file or an older version's JSON;
 * daemon/job.c, job_from_json): what a restarted ferryd reads back from
 * STATE/jobs/. A record it takes must be one it writes the same way again:
 * read, written, read once more, the job is the same.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/job.h"
#include "daemon/journal.h"
#include "daemon/migration.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	json_t *o, *again;
	struct job *j, *k;

	if (!ready) {
		log_init("fuzz", LOG_ERROR);
		job_kind_register(JOB_MIGRATE_OUT, &migrate_out_kind);
		job_kind_register(JOB_MIGRATE_IN, &migrate_in_kind);
		ready = true;
	}
	o = journal_parse(data, size);
	j = job_from_json(o);
	json_decref(o);
	if (!j)
		return 0;
	CHECK((unsigned)j->state < JOB_STATE_MAX && (unsigned)j->kind < JOB_KIND_MAX);
	CHECK(j->nhist <= JOB_HISTORY_MAX);
	again = job_json(j);
	CHECK(again);
	k = job_from_json(again);
	CHECK(k && k->state == j->state && k->kind == j->kind && k->go == j->go &&
	      k->nhist == j->nhist && !strcmp(k->id, j->id) && !strcmp(k->vm, j->vm) &&
	      !strcmp(k->error, j->error) &&
	      k->opts.on_no_converge == j->opts.on_no_converge);
	for (unsigned i = 0; i < j->nhist; i++)
		CHECK(k->history[i].state == j->history[i].state &&
		      k->history[i].at_ms == j->history[i].at_ms);
	json_decref(again);
	job_free(k);
	job_free(j);
	return 0;
}
