/* The exec server of one container: a helper that joined the container's
 * namespaces and cgroups once and forks every later exec from there. A
 * fork inherits the cgroups, so an exec through the server moves no
 * process between cgroups: on cgroup v1 that move waits for an RCU grace
 * period in the kernel (~10-20 ms), the largest part of an exec's latency.
 *
 * It listens on a unix socket (bound on the host before it entered the
 * container's mount namespace; the state dir is root-only). Each exec is
 * four connections from the agent, each opened with a 64-byte header
 * "KIND TOKEN [PLANBYTES]": `in`, `out` and `err` become the process's
 * stdin, stdout and stderr as they are (no byte passes through the server),
 * and `ctl` carries the exec plan's process records, then reports back
 * (started / error / exited, native/PLAN.md) and takes `signal N` lines.
 * The process is the server's child until the server reaped it, so a
 * signal never reaches a reused pid. The server ends when the container's
 * init does (pidfd). Like every helper it runs from a sealed copy, is not
 * dumpable, and is not in the container's pid namespace (only its children
 * are), so nothing in the container can see, signal or trace it. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HDR 64
#define MAXC 256

enum kind { K_NEW, K_CTL, K_IN, K_OUT, K_ERR, K_RUN };

struct conn {
	int fd;
	enum kind kind;
	char hdr[HDR + 1];
	size_t got;
	char token[40];
	char *plan;
	size_t plan_len, plan_got;
	pid_t child;
	char cmd[128];
	size_t cmd_len;
};

static struct conn conns[MAXC];
static size_t nconns;

static void drop(size_t i)
{
	if (conns[i].fd >= 0) close(conns[i].fd);
	free(conns[i].plan);
	conns[i] = conns[--nconns];
}

static ssize_t find(enum kind k, const char *token)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i].kind == k && conns[i].got == HDR && !strcmp(conns[i].token, token)) return (ssize_t)i;
	return -1;
}

/* Reads the 64-byte header; 1 complete, 0 more to come, -1 bad or closed. */
static int read_header(struct conn *c)
{
	ssize_t r = read(c->fd, c->hdr + c->got, HDR - c->got);
	if (r <= 0) return r < 0 && errno == EAGAIN ? 0 : -1;
	c->got += (size_t)r;
	if (c->got < HDR) return 0;
	c->hdr[HDR] = 0;
	char kind[8];
	unsigned long long n = 0;
	if (sscanf(c->hdr, "%7s %39s %llu", kind, c->token, &n) < 2) return -1;
	if (!strcmp(kind, "ctl")) {
		if (n == 0 || n > (1u << 20)) return -1;
		c->kind = K_CTL;
		c->plan_len = (size_t)n;
		c->plan = malloc(c->plan_len);
		if (!c->plan) return -1;
	} else if (!strcmp(kind, "in")) c->kind = K_IN;
	else if (!strcmp(kind, "out")) c->kind = K_OUT;
	else if (!strcmp(kind, "err")) c->kind = K_ERR;
	else return -1;
	return 1;
}

struct plan_src {
	char *buf;
	size_t len;
};

/* The child: the connections become its stdio, then the plan's process. */
static void run_child(struct plan_src src, const struct sock_fprog *filter, int in, int out, int err_fd, int sync_fd, int userns)
{
	struct lxr_err err = { 0 };
	static struct plan p;
	for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err_fd, 2) < 0) {
		lxr_fail(&err, errno, "exec", "stdio");
		goto fail;
	}
	/* The server accepted them non-blocking; the process expects blocking stdio. */
	for (int fd = 0; fd < 3; fd++) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	if (plan_parse(src.buf, src.len, &p, &err) < 0) goto fail;
	p.seccomp_compiled = filter;
	if (userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
		lxr_fail(&err, errno, "user namespace", "become root in the container's user namespace");
		goto fail;
	}
	finalize_and_exec(&p, -1, NULL, &err);
fail:
	send_child_error(sync_fd, &err);
	_exit(err.exit_code ? err.exit_code : 1);
}

static void start(size_t ci, int userns)
{
	struct conn *c = &conns[ci];
	ssize_t in = find(K_IN, c->token), out = find(K_OUT, c->token), er = find(K_ERR, c->token);
	if (in < 0 || out < 0 || er < 0) return;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		struct lxr_err err = { 0 };
		lxr_fail(&err, errno, "exec", "socketpair");
		report_error(c->fd, &err);
		return;
	}
	/* Compiled once per profile, in this server (seccomp_cache.c). */
	const struct sock_fprog *filter = seccomp_cached(c->plan, c->plan_len);
	pid_t child = fork();
	if (child == 0) {
		close(sv[0]);
		run_child((struct plan_src){ c->plan, c->plan_len }, filter, conns[in].fd, conns[out].fd, conns[er].fd, sv[1], userns);
	}
	close(sv[1]);
	/* Drop the stdio connections: only the process holds them now. Highest index first. */
	ssize_t idx[3] = { in, out, er };
	for (int a = 0; a < 3; a++)
		for (int b = a + 1; b < 3; b++)
			if (idx[b] > idx[a]) { ssize_t t = idx[a]; idx[a] = idx[b]; idx[b] = t; }
	int ctl_fd = c->fd;
	for (int k = 0; k < 3; k++) drop((size_t)idx[k]);
	/* `c` may have moved: find the control connection again. */
	for (ci = 0; ci < nconns && conns[ci].fd != ctl_fd; ci++) {}
	c = &conns[ci];
	free(c->plan);
	c->plan = NULL;
	if (child < 0) {
		struct lxr_err err = { 0 };
		lxr_fail(&err, errno, "exec", "fork");
		report_error(c->fd, &err);
		close(sv[0]);
		drop(ci);
		return;
	}
	char k, payload[4096];
	int r = sync_recv(sv[0], &k, payload, sizeof payload);
	close(sv[0]);
	if (r == 1 && k == 'E') {
		struct lxr_err err = { 0 };
		sscanf(payload, "%d\t%d\t%127[^\t]\t%767[^\n]", &err.errnum, &err.exit_code, err.step, err.msg);
		report_error(c->fd, &err);
		waitpid(child, NULL, 0);
		drop(ci);
		return;
	}
	report(c->fd, "{\"type\":\"started\",\"pid\":%d}", child);
	c->kind = K_RUN;
	c->child = child;
}

static void on_ctl(size_t i)
{
	struct conn *c = &conns[i];
	if (c->kind == K_CTL) {
		ssize_t r = read(c->fd, c->plan + c->plan_got, c->plan_len - c->plan_got);
		if (r <= 0) {
			if (r < 0 && errno == EAGAIN) return;
			drop(i);
			return;
		}
		c->plan_got += (size_t)r;
		return;
	}
	/* K_RUN: `signal N` lines; EOF: the agent went away, the process stays. */
	ssize_t r = read(c->fd, c->cmd + c->cmd_len, sizeof c->cmd - 1 - c->cmd_len);
	if (r <= 0) {
		if (r < 0 && errno == EAGAIN) return;
		shutdown(c->fd, SHUT_RD);
		c->cmd_len = sizeof c->cmd; /* stop polling it */
		return;
	}
	c->cmd_len += (size_t)r;
	c->cmd[c->cmd_len] = 0;
	char *nl;
	while ((nl = strchr(c->cmd, '\n'))) {
		*nl = 0;
		int sig;
		if (sscanf(c->cmd, "signal %d", &sig) == 1 && sig > 0 && sig < NSIG) kill(c->child, sig);
		c->cmd_len -= (size_t)(nl + 1 - c->cmd);
		memmove(c->cmd, nl + 1, c->cmd_len + 1);
	}
	if (c->cmd_len >= sizeof c->cmd - 1) c->cmd_len = 0;
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < nconns; i++) {
			if (conns[i].kind != K_RUN || conns[i].child != pid) continue;
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			report(conns[i].fd, "{\"type\":\"exited\",\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":false}", pid, code,
			       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			drop(i);
			break;
		}
	}
}

int cmd_exec_server(struct plan *p, int report_fd, const char *sock_path)
{
	struct lxr_err err = { 0 };
	int fds[16];
	if (!p->target) { lxr_fail(&err, EINVAL, "exec server", "the plan names no target process"); goto fail; }
	if (p->ns.n > 16) { lxr_fail(&err, EINVAL, "exec server", "too many namespaces"); goto fail; }
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock_path) >= sizeof sa.sun_path) { lxr_fail(&err, ENAMETOOLONG, "exec server", "%s", sock_path); goto fail; }
	strcpy(sa.sun_path, sock_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0) { lxr_fail(&err, errno, "exec server", "socket"); goto fail; }
	unlink(sock_path);
	mode_t old = umask(0077);
	int b = bind(lfd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (b < 0 || listen(lfd, 64) < 0) { lxr_fail(&err, errno, "exec server", "listen on %s", sock_path); goto fail; }
	int pidfd = (int)syscall(SYS_pidfd_open, p->target, 0);
	if (pidfd < 0) { lxr_fail(&err, errno, "exec server", "the container's init %d", p->target); goto fail; }
	if (open_ns_fds(p, fds, &err) < 0) goto fail;
	if (cgroup_join_here(p, &err) < 0) goto fail;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) { lxr_fail(&err, errno, "exec server", "set non-dumpable"); goto fail; }
	if (setns_fds(p, fds, &err) < 0) goto fail;
	int userns = 0;
	for (size_t i = 0; i < p->ns.n; i++)
		if (p->ns.v[i].type == CLONE_NEWUSER) userns = 1;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) { lxr_fail(&err, errno, "exec server", "signalfd"); goto fail; }
	report(report_fd, "{\"type\":\"created\",\"pid\":%d}", getpid());
	if (report_fd >= 0) close(report_fd);

	for (;;) {
		struct pollfd pf[3 + MAXC];
		size_t map[MAXC], n = 3;
		pf[0] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		pf[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pf[2] = (struct pollfd){ .fd = nconns < MAXC ? lfd : -1, .events = POLLIN };
		for (size_t i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			int want = c->got < HDR || (c->kind == K_CTL && c->plan_got < c->plan_len) || (c->kind == K_RUN && c->cmd_len < sizeof c->cmd);
			if (!want) continue;
			map[n - 3] = i;
			pf[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		}
		if (poll(pf, n, -1) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		if (pf[0].revents) break; /* the container's init is gone */
		if (pf[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {}
			reap();
			continue; /* indexes may have moved */
		}
		/* Back to front: drop() moves the last connection into the freed slot. */
		for (size_t k = n; k-- > 3;) {
			if (!pf[k].revents) continue;
			size_t i = map[k - 3];
			struct conn *c = &conns[i];
			if (c->got < HDR) {
				int h = read_header(c);
				if (h < 0) drop(i);
			} else on_ctl(i);
		}
		/* Start every exec whose plan and stdio are all here (start() moves entries). */
		for (int again = 1; again;) {
			again = 0;
			for (size_t i = 0; i < nconns; i++) {
				struct conn *c = &conns[i];
				if (c->kind != K_CTL || !c->plan || c->plan_got != c->plan_len) continue;
				if (find(K_IN, c->token) < 0 || find(K_OUT, c->token) < 0 || find(K_ERR, c->token) < 0) continue;
				start(i, userns);
				again = 1;
				break;
			}
		}
		if (pf[2].revents) {
			int cfd;
			while (nconns < MAXC && (cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
				conns[nconns++] = (struct conn){ .fd = cfd, .kind = K_NEW };
			}
		}
	}
	unlink(sock_path);
	return 0;
fail:
	report_error(report_fd, &err);
	fprintf(stderr, "lxr-shim exec-server: %s: %s\n", err.step, err.msg);
	return 1;
}
