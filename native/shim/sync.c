/* The monitor <-> container-init channel: a SOCK_SEQPACKET pair carrying
 * one-byte message kinds with an optional payload (an error's JSON). */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sync_send(int fd, char kind, const char *payload)
{
	char buf[4096];
	size_t n = 1;
	buf[0] = kind;
	if (payload) {
		size_t l = strlen(payload);
		if (l > sizeof buf - 2) l = sizeof buf - 2;
		memcpy(buf + 1, payload, l);
		n += l;
	}
	buf[n] = 0;
	for (;;) {
		if (send(fd, buf, n, MSG_NOSIGNAL) >= 0) return 0;
		if (errno != EINTR) return -1;
	}
}

/* Returns 1 for a message, 0 for EOF (the peer exec'd or exited), -1 on error. */
int sync_recv(int fd, char *kind, char *payload, size_t cap)
{
	char buf[4096];
	ssize_t r;
	do r = recv(fd, buf, sizeof buf - 1, 0); while (r < 0 && errno == EINTR);
	if (r < 0) return -1;
	if (r == 0) return 0;
	buf[r] = 0;
	*kind = buf[0];
	if (payload && cap) {
		strncpy(payload, buf + 1, cap - 1);
		payload[cap - 1] = 0;
	}
	return 1;
}

/* The child's error travels as "E" + "errnum\texit_code\tstep\tmessage". */
int send_child_error(int fd, const struct lxr_err *err)
{
	char buf[1024];
	snprintf(buf, sizeof buf, "%d\t%d\t%s\t%s", err->errnum, err->exit_code, err->step, err->msg);
	return sync_send(fd, 'E', buf);
}
