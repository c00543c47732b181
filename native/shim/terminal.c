/* The container's terminal: a PTY allocated from the container's own devpts
 * instance, its master handed to whoever listens on the console socket
 * (SCM_RIGHTS, as runc does) or kept by the exec helper, which relays it
 * (relay.c); its slave made the controlling terminal and stdio of the
 * process. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

/* Connects to a unix stream socket; `what` names it in errors. */
int connect_unix(const char *path, const char *what, struct lxr_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sa.sun_path)
		return lxr_fail(err, ENAMETOOLONG, what, "%s", path);
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return lxr_fail(err, errno, what, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		return lxr_fail(err, e, what, "connect %s", path);
	}
	return fd;
}

static int send_fd(int sock, int fd, const char *name)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = { .iov_base = (void *)name, .iov_len = strlen(name) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* A PTY from the devpts instance that /dev/ptmx resolves to in the caller's
 * mount namespace (the container's, once joined), sized from the plan. */
int open_pty(const struct plan *p, int *master_out, int *slave_out, struct lxr_err *err)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) return lxr_fail(err, errno, "terminal", "open /dev/ptmx");
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
		int e = errno;
		close(master);
		return lxr_fail(err, e, "terminal", "unlock pty");
	}
	/* TIOCGPTPEER opens the slave through the master, never by a path the
	 * container could have replaced. */
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) {
		int e = errno;
		close(master);
		return lxr_fail(err, e, "terminal", "open pty slave");
	}
	if (p->rows || p->cols) {
		struct winsize ws = { .ws_row = (unsigned short)p->rows, .ws_col = (unsigned short)p->cols };
		ioctl(slave, TIOCSWINSZ, &ws);
	}
	*master_out = master;
	*slave_out = slave;
	return 0;
}

/* The slave becomes the controlling terminal and stdio of a new session. */
int become_tty_session(int slave, struct lxr_err *err)
{
	if (setsid() < 0 && errno != EPERM) return lxr_fail(err, errno, "terminal", "setsid");
	if (ioctl(slave, TIOCSCTTY, 0) < 0) return lxr_fail(err, errno, "terminal", "set controlling terminal");
	for (int i = 0; i < 3; i++)
		if (dup2(slave, i) < 0) return lxr_fail(err, errno, "terminal", "dup2");
	if (slave > 2) close(slave);
	return 0;
}

int setup_terminal(const struct plan *p, int console_fd, struct lxr_err *err)
{
	int master, slave, ptn;
	if (open_pty(p, &master, &slave, err) < 0) return -1;
	char name[32] = "/dev/pts/?";
	if (ioctl(master, TIOCGPTN, &ptn) == 0) snprintf(name, sizeof name, "/dev/pts/%d", ptn);
	if (console_fd >= 0 && send_fd(console_fd, master, name) < 0) {
		int e = errno;
		close(master); close(slave);
		return lxr_fail(err, e, "terminal", "send pty master to console socket");
	}
	close(master);
	if (console_fd >= 0) close(console_fd);
	return become_tty_session(slave, err);
}
