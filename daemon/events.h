/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h — what changes on this host, as a stream of events for whoever
 * follows it (the remote API's GET /v1/events, server-sent events): "job"
 * for every transition of a job's state machine (the job's JSON, as `ferry
 * status --json` shows it, plus "from"), "vm" when a VM comes to this host
 * or leaves it ({"name", "event": "created" | "arrived" | "gone"}).
 *
 * Events carry a number that grows by one per event; a follower that sees a
 * gap knows it missed some (a slow follower is cut off rather than held in
 * memory: remote.c).
 */
#ifndef FERRY_DAEMON_EVENTS_H
#define FERRY_DAEMON_EVENTS_H

#include <stdint.h>

#include <jansson.h>

struct job;

/* Start listening to the jobs (job.h job_listen); once, at start-up. */
void events_init(void);
/* Publish an event of type with data (taken); any thread. Its followers
 * hear of it on the loop thread, in the order published. */
void events_publish(const char *type, json_t *data);
/* Who follows: fn runs on the loop thread for each event, with its number,
 * type and data as compact JSON text. One follower (the remote API). */
void events_follow(void (*fn)(void *ctx, uint64_t id, const char *type, const char *json),
		   void *ctx);

#endif
