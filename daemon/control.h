/* SPDX-License-Identifier: Apache-2.0 */
/*
 * control.h — ferryd's control socket (D.socket_path): the ferry command
 * line's way in. One JSON request and reply per line (docs/ferryd.md).
 */
#ifndef FERRY_DAEMON_CONTROL_H
#define FERRY_DAEMON_CONTROL_H

/* Listen on the loop; exits if another ferryd answers there or the socket
 * cannot be made. */
void control_listen(void);
/* Stop listening and remove the socket file. */
void control_stop(void);

#endif
