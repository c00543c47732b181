/* The exec helper's side of a container terminal. The process's terminal
 * is a PTY from the container's own devpts (so `tty` names a device that
 * exists in the container); the helper keeps its master and relays it to
 * its own stdin/stdout, which are the agent's PTY (node-pty), put in raw
 * mode so bytes pass unchanged. A window size set on the agent's PTY
 * arrives here as SIGWINCH and is copied to the container's PTY; other
 * forwarded signals, and `signal N` commands (control.c), go to the
 * process. Both directions are non-blocking
 * with one pending buffer each: a stalled reader on one side never stops
 * the other, and a reader that does not read stops the writer (backpressure
 * through the kernel's PTY buffers) instead of growing a buffer here. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

struct pending {
	char buf[65536];
	size_t off, len;
};

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0) fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Reads what fd has into an empty pending buffer: 1 data, 0 nothing now, -1 closed. */
static int fill(int fd, struct pending *pb)
{
	ssize_t r = read(fd, pb->buf, sizeof pb->buf);
	if (r > 0) {
		pb->off = 0;
		pb->len = (size_t)r;
		return 1;
	}
	if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
	return -1; /* EOF, or EIO once every slave is closed */
}

/* Writes some of the pending bytes: 0 ok (maybe partial), -1 the reader is gone. */
static int flush(int fd, struct pending *pb)
{
	ssize_t w = write(fd, pb->buf + pb->off, pb->len);
	if (w < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
	pb->off += (size_t)w;
	pb->len -= (size_t)w;
	return 0;
}

static void copy_winsize(int from, int to)
{
	struct winsize ws;
	if (ioctl(from, TIOCGWINSZ, &ws) == 0 && (ws.ws_row || ws.ws_col)) ioctl(to, TIOCSWINSZ, &ws);
}

/* Handles one signal from sfd; returns 1 once the child has been reaped. */
static int on_signal(int sfd, int master, pid_t child, int *status)
{
	struct signalfd_siginfo si;
	if (read(sfd, &si, sizeof si) != sizeof si) return 0;
	if (si.ssi_signo == SIGWINCH) {
		copy_winsize(STDIN_FILENO, master);
		return 0;
	}
	if (si.ssi_signo != SIGCHLD) {
		kill(child, (int)si.ssi_signo);
		return 0;
	}
	return waitpid(child, status, WNOHANG) == child;
}

/* After the process ended: what it wrote is already in the PTY; pass it on
 * (blocking: the agent reads it), then stop. Output of processes it left
 * behind that arrives later is not waited for. */
static void drain(int master, struct pending *out, int out_open)
{
	set_nonblock(STDOUT_FILENO, 0);
	for (;;) {
		while (out_open && out->len)
			if (flush(STDOUT_FILENO, out) < 0) out_open = 0;
		out->len = 0;
		if (fill(master, out) <= 0) return;
	}
}

int relay_terminal(int master, pid_t child, int sfd, int ctl, int *status)
{
	static struct pending in, out; /* agent -> process, process -> agent */
	int in_open = 1, out_open = 1, master_open = 1, done = 0;
	struct termios raw;
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &raw) == 0) {
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	set_nonblock(STDIN_FILENO, 1);
	set_nonblock(STDOUT_FILENO, 1);
	set_nonblock(master, 1);
	while (!done) {
		struct pollfd fds[5] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = in_open && !in.len ? STDIN_FILENO : -1, .events = POLLIN },
			{ .fd = -1, .events = 0 },
			{ .fd = out.len ? STDOUT_FILENO : -1, .events = POLLOUT },
			{ .fd = ctl, .events = POLLIN },
		};
		if (master_open && (!out.len || in.len)) {
			fds[2].fd = master;
			fds[2].events = (short)((!out.len ? POLLIN : 0) | (in.len ? POLLOUT : 0));
		}
		if (poll(fds, 5, -1) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		if (fds[0].revents & POLLIN) done = on_signal(sfd, master, child, status);
		if (fds[4].revents && control_read(ctl, child) < 0) ctl = -1;
		if (fds[1].revents && fill(STDIN_FILENO, &in) < 0) in_open = 0;
		if (fds[2].revents & (POLLOUT | POLLERR) && in.len && flush(master, &in) < 0) in.len = 0;
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR) && !out.len && fill(master, &out) < 0) master_open = 0;
		if (fds[3].revents && out.len && flush(STDOUT_FILENO, &out) < 0) {
			out.len = 0;
			out_open = 0; /* nobody reads the output any more: drop it */
		}
		if (!out_open) out.len = 0;
	}
	if (!done) waitpid(child, status, 0);
	drain(master, &out, out_open);
	close(master);
	return 0;
}
