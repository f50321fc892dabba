/* SPDX-License-Identifier: Apache-2.0 */
/*
 * settings.h — ferryd's settings into D: the defaults, then the config file
 * (-c/--config FILE, else /etc/ferry/ferryd.conf if it exists), then the
 * flags, which win. A bad setting or flag exits with status 2 and a
 * sentence naming it.
 *
 * Threads read the live settings without a lock: each is one aligned word,
 * written whole by the reload.
 */
#ifndef FERRY_DAEMON_SETTINGS_H
#define FERRY_DAEMON_SETTINGS_H

#define DEFAULT_CONFIG "/etc/ferry/ferryd.conf"

void settings_load(int argc, char **argv);
/*
 * SIGHUP: read the file and the flags again. The live settings (the
 * defaults of new migrations — downtime-ms, max-iters, on-no-converge —,
 * max-incoming, job-history, log-level, peer-timeout-ms for new sessions,
 * net-hook-timeout-ms, coord-timeout-ms) change at once; any other that
 * differs is logged as waiting for a restart; a bad value is logged and the
 * old one kept. A setting removed from the file keeps its value. Nothing
 * running stops. 0, or -EINVAL if anything was refused. Event loop thread.
 */
int settings_reload(void);

#endif
