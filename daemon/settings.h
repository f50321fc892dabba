/*
 * settings.h — ferryd's settings into D: the defaults, then the config file
 * (-c/--config FILE, else /etc/ferry/ferryd.conf if it exists), then the
 * flags, which win. A bad setting or flag exits with status 2 and a
 * sentence naming it.
 */
#ifndef FERRY_DAEMON_SETTINGS_H
#define FERRY_DAEMON_SETTINGS_H

#define DEFAULT_CONFIG "/etc/ferry/ferryd.conf"

void settings_load(int argc, char **argv);

#endif
