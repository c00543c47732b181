/* The monitor: one per container. It detaches from whoever started it,
 * becomes a subreaper, clones the container's init into new namespaces,
 * places it in its cgroups, waits for `start` on its control socket (or,
 * with `autostart`, starts it as soon as it is ready), writes the
 * container's output to the log (CRI format) when there is no terminal,
 * and records how the container ended. */
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
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the container's init, between clone and exec ---- */

static int go_wait(int fd)
{
	char k;
	if (sync_send(fd, 'R', NULL) < 0) return -1;
	int r = sync_recv(fd, &k, NULL, 0);
	return r == 1 && k == 'S' ? 0 : -1;
}

/* With autostart: ready, and on to exec without waiting to be told. */
static int go_on(int fd)
{
	return sync_send(fd, 'R', NULL);
}

static int new_userns(const struct plan *p)
{
	for (size_t i = 0; i < p->ns.n; i++)
		if (p->ns.v[i].type == CLONE_NEWUSER && !p->ns.v[i].path) return 1;
	return 0;
}

/* need_go: the monitor has work to do on the init (id maps, oom_score_adj,
 * cgroups it places it in) before it may go on. */
static void __attribute__((noreturn)) container_init(const struct plan *p, struct cgroup_join *cg, int need_go, int sync, int console_fd, int out_w, int err_w)
{
	struct lxr_err err = { 0 };
	char k;
	/* Nothing may ptrace the init or open its /proc files while it runs
	 * LXR's code; execve restores dumpability for the user's program. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (need_go && (sync_recv(sync, &k, NULL, 0) != 1 || k != 'G')) _exit(1);
	/* Into the v1 cgroups before anything else (see cgroups.c). */
	if (cgroup_join_self(cg, &err) < 0) goto fail;
	umask(0);
	if (new_userns(p) && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
		lxr_fail(&err, errno, "user namespace", "become root in the new user namespace (is 0 mapped?)");
		goto fail;
	}
	/* In all our cgroups now (the monitor placed us in the rest before
	 * 'G'): only now does a new cgroup namespace get them as its root, as
	 * with runc. */
	for (size_t i = 0; i < p->ns.n; i++)
		if (p->ns.v[i].type == CLONE_NEWCGROUP && !p->ns.v[i].path && unshare(CLONE_NEWCGROUP) < 0) {
			lxr_fail(&err, errno, "cgroup namespace", "unshare");
			goto fail;
		}
	if (out_w >= 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
			lxr_fail(&err, errno, "stdio", "connect the log pipes");
			goto fail;
		}
		close(null); close(out_w); close(err_w);
	}
	if (join_namespaces(p, 1, &err) < 0) goto fail;
	if (setup_rootfs(p, &err) < 0) goto fail;
	if (finish_rootfs(p, &err) < 0) goto fail;
	if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) {
		lxr_fail(&err, errno, "hostname", "sethostname %s", p->hostname);
		goto fail;
	}
	if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0) {
		lxr_fail(&err, errno, "hostname", "setdomainname %s", p->domainname);
		goto fail;
	}
	if (p->terminal && setup_terminal(p, console_fd, &err) < 0) goto fail;
	finalize_and_exec(p, sync, p->autostart ? go_on : go_wait, &err);
fail:
	send_child_error(sync, &err);
	_exit(err.exit_code ? err.exit_code : 1);
}

/* ---- the monitor ---- */

struct logbuf { const char *stream; char buf[16384]; size_t n; };

static void log_emit(int logfd, const char *stream, const char *data, size_t n, int full)
{
	struct timespec ts;
	struct tm tm;
	char head[96];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(head + h, sizeof head - h, ".%09ldZ %s %c ", ts.tv_nsec, stream, full ? 'F' : 'P');
	write_all(logfd, head, strlen(head));
	write_all(logfd, data, n);
	write_all(logfd, "\n", 1);
}

/* Returns 0 at EOF, 1 while the pipe stays open. */
static int log_pump(int fd, int logfd, struct logbuf *b)
{
	for (;;) {
		ssize_t r = read(fd, b->buf + b->n, sizeof b->buf - b->n);
		if (r < 0) return errno == EINTR ? 1 : errno == EAGAIN ? 1 : 0;
		if (r == 0) {
			if (b->n) log_emit(logfd, b->stream, b->buf, b->n, 1);
			b->n = 0;
			return 0;
		}
		b->n += (size_t)r;
		char *start = b->buf, *nl;
		while ((nl = memchr(start, '\n', b->n - (size_t)(start - b->buf)))) {
			log_emit(logfd, b->stream, start, (size_t)(nl - start), 1);
			start = nl + 1;
		}
		b->n -= (size_t)(start - b->buf);
		memmove(b->buf, start, b->n);
		if (b->n == sizeof b->buf) { /* a line longer than the buffer goes out in parts */
			log_emit(logfd, b->stream, b->buf, b->n, 0);
			b->n = 0;
		}
	}
}

static long long oom_count(const struct plan *p)
{
	if (!p->oom_file) return -1;
	int fd = open(p->oom_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	char *buf;
	ssize_t n = read_all(fd, &buf);
	close(fd);
	if (n < 0) return -1;
	size_t kl = strlen(p->oom_key);
	long long v = -1;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, p->oom_key, kl) && line[kl] == ' ') { v = atoll(line + kl + 1); break; }
	free(buf);
	return v;
}

static void write_exit(const struct plan *p, pid_t pid, int status, int oom, const char *errmsg)
{
	char tmp[4200], js[1600], when[64];
	struct timespec ts;
	struct tm tm;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t h = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + h, sizeof when - h, ".%09ldZ", ts.tv_nsec);
	json_str(js, sizeof js, errmsg ? errmsg : "");
	char line[2048];
	int n = snprintf(line, sizeof line,
		"{\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,\"exitedAt\":\"%s\"%s%s%s}\n",
		pid, code, sig, oom ? "true" : "false", when, errmsg ? ",\"error\":\"" : "", errmsg ? js : "", errmsg ? "\"" : "");
	if (!p->exit_file) return;
	snprintf(tmp, sizeof tmp, "%s.tmp", p->exit_file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return;
	/* No fsync: the state root lives under /run, which does not survive a
	 * reboot anyway; the rename alone makes the record atomic. */
	write_all(fd, line, (size_t)n);
	close(fd);
	rename(tmp, p->exit_file);
}

static int parse_child_error(const char *payload, struct lxr_err *err)
{
	int errnum = 0, code = 0;
	char step[128] = "", msg[768] = "";
	sscanf(payload, "%d\t%d\t%127[^\t]\t%767[^\n]", &errnum, &code, step, msg);
	err->errnum = errnum;
	err->exit_code = code;
	snprintf(err->step, sizeof err->step, "%s", step);
	snprintf(err->msg, sizeof err->msg, "%s", msg);
	return -1;
}

static int listen_control(const char *path, struct lxr_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sa.sun_path)
		return lxr_fail(err, ENAMETOOLONG, "control socket", "%s is longer than a unix socket path may be", path);
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return lxr_fail(err, errno, "control socket", "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4) < 0) {
		int e = errno;
		close(fd);
		return lxr_fail(err, e, "control socket", "bind %s", path);
	}
	return fd;
}

int cmd_create(struct plan *p, int report_fd, int forked)
{
	struct lxr_err err = { 0 };
	if (!forked) {
		pid_t m = fork();
		if (m < 0) { lxr_fail(&err, errno, "monitor", "fork"); report_error(report_fd, &err); return 1; }
		if (m > 0) _exit(0); /* the monitor is nobody's child: it outlives its caller */
	}
	setsid();
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	umask(077);

	int ctl = -1, logfd = -1, cfd = -1, out[2] = { -1, -1 }, errp[2] = { -1, -1 }, sv[2];
	struct cgroup_join cg;
	cgroup_join_init(&cg);
	if (p->control && (ctl = listen_control(p->control, &err)) < 0) goto fail_early;
	if (p->stdio_log) {
		logfd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (logfd < 0) { lxr_fail(&err, errno, "log", "open %s", p->log_path); goto fail_early; }
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) { lxr_fail(&err, errno, "log", "pipe"); goto fail_early; }
	}
	if (p->terminal && p->console_socket && (cfd = connect_unix(p->console_socket, "console socket", &err)) < 0) goto fail_early;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) { lxr_fail(&err, errno, "monitor", "socketpair"); goto fail_early; }

	unsigned long flags = 0;
	for (size_t i = 0; i < p->ns.n; i++) {
		/* A new cgroup namespace is unshared by the init once it is in its
		 * cgroups (see container_init): created at clone, its root would be
		 * the monitor's cgroup and the container would see host paths. */
		if (!p->ns.v[i].path) {
			/* The server put this process in a fresh one already (server.c). */
			int ready = p->ns.v[i].type == CLONE_NEWNET && p->netns_ready;
			if (p->ns.v[i].type != CLONE_NEWCGROUP && !ready) flags |= (unsigned long)p->ns.v[i].type;
			continue;
		}
		if (p->ns.v[i].type != CLONE_NEWPID) continue;
		int fd = open(p->ns.v[i].path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) { lxr_fail(&err, errno, "join namespace", "pid %s", p->ns.v[i].path); goto fail_early; }
		close(fd);
	}
	/* Everything above needs nothing of the container's cgroups, which the
	 * caller may still be making: with a gate, they are there once it opens. */
	if (p->gate) {
		char go;
		ssize_t got = 0;
		while (p->gate_fd >= 0 && (got = read(p->gate_fd, &go, 1)) < 0 && errno == EINTR) {}
		if (p->gate_fd >= 0) close(p->gate_fd);
		if (got != 1) { lxr_fail(&err, ECANCELED, "gate", "the create was called off before its cgroups were made"); goto fail_early; }
	}
	long long oom_before = oom_count(p);
	if (cgroup_join_prepare(p, 1, &cg, &err) < 0) goto fail_early;

	sigset_t mask, old;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD); sigaddset(&mask, SIGTERM); sigaddset(&mask, SIGINT); sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &old);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) { lxr_fail(&err, errno, "monitor", "signalfd"); goto fail_early; }

	pid_t child = cgroup_join_clone(&cg, flags, &err);
	if (child < 0) goto fail_early;
	/* Each message between the two is a wakeup (tens of microseconds on a
	 * VM): none when the monitor has nothing to do first. Both sides decide
	 * after the clone (a clone3 fallback leaves a cgroup to join by pid). */
	int need_go = new_userns(p) || p->has_oom_score_adj || cg.nprocs > 0;
	if (child == 0) {
		/* The container starts with default dispositions and nothing
		 * blocked, whatever the monitor or its caller had. */
		for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		(void)old;
		if (report_fd >= 0) close(report_fd);
		close(sv[0]); close(sfd);
		if (ctl >= 0) close(ctl);
		if (logfd >= 0) { close(logfd); close(out[0]); close(errp[0]); }
		container_init(p, &cg, need_go, sv[1], cfd, out[1], errp[1]);
	}
	close(sv[1]);
	if (cfd >= 0) close(cfd);
	if (out[1] >= 0) { close(out[1]); close(errp[1]); }
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null); }

	char k, payload[4096];
	if (new_userns(p) && write_id_maps(child, p, &err) < 0) goto fail_child;
	if (p->has_oom_score_adj) {
		char path[64], v[16];
		snprintf(path, sizeof path, "/proc/%d/oom_score_adj", child);
		snprintf(v, sizeof v, "%d", p->oom_score_adj);
		if (write_file(path, v, &err) < 0) goto fail_child;
	}
	if (cgroup_join_pid(&cg, child, &err) < 0) goto fail_child;
	cgroup_join_close(&cg);
	if (need_go && sync_send(sv[0], 'G', NULL) < 0) { lxr_fail(&err, errno, "monitor", "release init"); goto fail_child; }
	int r = sync_recv(sv[0], &k, payload, sizeof payload);
	if (r == 1 && k == 'E') { parse_child_error(payload, &err); goto fail_child; }
	if (r != 1 || k != 'R') { lxr_fail(&err, 0, "create", "the container's init died during setup"); goto fail_child; }
	/* With autostart nobody asks: the init went on by itself, and its exec
	 * (or failure) is reported where `created` was. */
	int started = 0, awaiting = 0;
	if (p->autostart) started = awaiting = 1;
	report(report_fd, "{\"type\":\"created\",\"pid\":%d,\"monitor\":%d}", child, getpid());

	struct logbuf lo = { .stream = "stdout" }, le = { .stream = "stderr" };
	if (logfd >= 0) { fcntl(out[0], F_SETFL, O_NONBLOCK); fcntl(errp[0], F_SETFL, O_NONBLOCK); }
	int client = -1, status = 0;
	char exec_error[800] = "";
	for (;;) {
		struct pollfd pf[5];
		int n = 0, i_sig, i_ctl = -1, i_sync = -1, i_out = -1, i_err = -1;
		pf[i_sig = n++] = (struct pollfd){ sfd, POLLIN, 0 };
		if (ctl >= 0 && client < 0) pf[i_ctl = n++] = (struct pollfd){ ctl, POLLIN, 0 };
		if (awaiting) pf[i_sync = n++] = (struct pollfd){ sv[0], POLLIN, 0 };
		if (out[0] >= 0) pf[i_out = n++] = (struct pollfd){ out[0], POLLIN, 0 };
		if (errp[0] >= 0) pf[i_err = n++] = (struct pollfd){ errp[0], POLLIN, 0 };
		if (poll(pf, (nfds_t)n, -1) < 0) { if (errno == EINTR) continue; break; }
		if (i_out >= 0 && pf[i_out].revents && !log_pump(out[0], logfd, &lo)) { close(out[0]); out[0] = -1; }
		if (i_err >= 0 && pf[i_err].revents && !log_pump(errp[0], logfd, &le)) { close(errp[0]); errp[0] = -1; }
		if (i_ctl >= 0 && pf[i_ctl].revents) {
			int c = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
			char cmd[64] = "";
			if (c >= 0) {
				/* A client that connects and says nothing must not freeze
				 * the monitor (reaping, logs): give it a second. */
				struct timeval tv = { .tv_sec = 1 };
				setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
				ssize_t got = read(c, cmd, sizeof cmd - 1);
				cmd[got > 0 ? got : 0] = 0;
				if (strncmp(cmd, "start", 5)) {
					report(c, "{\"type\":\"error\",\"step\":\"control\",\"errno\":\"EINVAL\",\"errnum\":22,\"message\":\"unknown command\"}");
					close(c);
				} else if (started) {
					report(c, "{\"type\":\"error\",\"step\":\"start\",\"errno\":\"EALREADY\",\"errnum\":114,\"message\":\"the container was already started\"}");
					close(c);
				} else {
					started = awaiting = 1;
					client = c;
					if (sync_send(sv[0], 'S', NULL) < 0) { /* init already gone; SIGCHLD answers */ }
				}
			}
		}
		if (i_sync >= 0 && pf[i_sync].revents) {
			if (p->control) unlink(p->control);
			/* The one who asked for the start hears how it went. */
			int to = client >= 0 ? client : report_fd;
			r = sync_recv(sv[0], &k, payload, sizeof payload);
			if (r == 1 && k == 'E') {
				struct lxr_err e2 = { 0 };
				parse_child_error(payload, &e2);
				report_error(to, &e2);
				snprintf(exec_error, sizeof exec_error, "%s", e2.msg);
			} else {
				report(to, "{\"type\":\"started\",\"pid\":%d}", child);
			}
			if (client >= 0) close(client);
			client = -1;
			awaiting = 0;
			close(sv[0]);
			sv[0] = -1;
			if (ctl >= 0) close(ctl);
			ctl = -1;
		}
		if (pf[i_sig].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) { /* SIGTERM/INT/HUP: the monitor stays */ }
			int done = 0, st;
			pid_t w;
			while ((w = waitpid(-1, &st, WNOHANG)) > 0)
				if (w == child) { status = st; done = 1; }
			if (done) break;
		}
	}
	if (out[0] >= 0) log_pump(out[0], logfd, &lo);
	if (errp[0] >= 0) log_pump(errp[0], logfd, &le);
	if (awaiting) {
		if (exec_error[0] == 0) {
			/* The init died before it could exec. */
			r = sv[0] >= 0 ? sync_recv(sv[0], &k, payload, sizeof payload) : 0;
			struct lxr_err e2 = { 0 };
			if (r == 1 && k == 'E') parse_child_error(payload, &e2);
			else lxr_fail(&e2, 0, "start", "the container exited before it started");
			report_error(client >= 0 ? client : report_fd, &e2);
			snprintf(exec_error, sizeof exec_error, "%s", e2.msg);
		}
		if (client >= 0) close(client);
	}
	long long oom_after = oom_count(p);
	int oom = oom_before >= 0 && oom_after > oom_before && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	write_exit(p, child, status, oom, exec_error[0] ? exec_error : NULL);
	report(report_fd, "{\"type\":\"exited\",\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s}", child,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), WIFSIGNALED(status) ? WTERMSIG(status) : 0,
	       oom ? "true" : "false");
	if (ctl >= 0 && p->control) unlink(p->control);
	return 0;

fail_child:
	cgroup_join_close(&cg);
	report_error(report_fd, &err);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (p->control) unlink(p->control);
	return 1;
fail_early:
	cgroup_join_close(&cg);
	report_error(report_fd, &err);
	if (ctl >= 0 && p->control) unlink(p->control);
	return 1;
}
