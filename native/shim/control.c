/* Commands from the agent to an exec helper, on the report channel (a
 * socket both ways): one line each, `signal N`. The helper is the parent
 * of the process and reaps it only after it ended, so a signal sent this
 * way can never reach a reused pid, which signalling the pid from outside
 * could. */
#include "shim.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads and applies what arrived; -1 once the agent closed its end. */
int control_read(int fd, pid_t child)
{
	static char line[256];
	static size_t len;
	ssize_t r = read(fd, line + len, sizeof line - 1 - len);
	if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (r == 0) return -1;
	len += (size_t)r;
	line[len] = 0;
	char *nl;
	while ((nl = strchr(line, '\n'))) {
		*nl = 0;
		int sig;
		if (sscanf(line, "signal %d", &sig) == 1 && sig > 0 && sig < NSIG) kill(child, sig);
		len -= (size_t)(nl + 1 - line);
		memmove(line, nl + 1, len + 1);
	}
	if (len == sizeof line - 1) len = 0; /* an overlong line: not a command */
	return 0;
}

/* Forwards signals (from sfd) and commands (from ctl) to the child until it ends. */
int wait_forwarding(pid_t child, int sfd, int ctl, int *status)
{
	for (;;) {
		struct pollfd fds[2] = { { .fd = sfd, .events = POLLIN }, { .fd = ctl, .events = POLLIN } };
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR) continue;
			return waitpid(child, status, 0) == child ? 0 : -1;
		}
		if (fds[1].revents && control_read(ctl, child) < 0) ctl = -1;
		if (!(fds[0].revents & POLLIN)) continue;
		struct signalfd_siginfo si;
		if (read(sfd, &si, sizeof si) != sizeof si) continue;
		if (si.ssi_signo != SIGCHLD) {
			kill(child, (int)si.ssi_signo);
			continue;
		}
		if (waitpid(child, status, WNOHANG) == child) return 0;
	}
}
