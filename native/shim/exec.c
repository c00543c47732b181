/* Exec into a running container: join its namespaces (user first, mount
 * last) and its cgroups, fork so the child lands in its pid namespace, and
 * give the child the container's identity, capabilities, no_new_privs and
 * seccomp before exec. The helper is non-dumpable from the first setns, so
 * nothing in the container can ptrace it or open its /proc files. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse_err(const char *payload, struct lxr_err *err)
{
	sscanf(payload, "%d\t%d\t%127[^\t]\t%767[^\n]", &err->errnum, &err->exit_code, err->step, err->msg);
	return -1;
}

int cmd_exec(struct plan *p, int report_fd)
{
	struct lxr_err err = { 0 };
	int fds[16], cfd = -1, sv[2], master = -1, slave = -1;
	/* A terminal without a console socket is relayed by this helper. */
	int relay = p->terminal && !p->console_socket;
	if (!p->target) { lxr_fail(&err, EINVAL, "exec", "the plan names no target process"); goto fail; }
	if (!p->args.n) { lxr_fail(&err, EINVAL, "exec", "the plan has no args"); goto fail; }
	if (p->ns.n > 16) { lxr_fail(&err, EINVAL, "exec", "too many namespaces"); goto fail; }
	if (open_ns_fds(p, fds, &err) < 0) goto fail;
	if (p->terminal && p->console_socket && (cfd = connect_unix(p->console_socket, "console socket", &err)) < 0) goto fail;
	if (p->has_oom_score_adj) {
		char v[16];
		snprintf(v, sizeof v, "%d", p->oom_score_adj);
		if (write_file("/proc/self/oom_score_adj", v, &err) < 0) goto fail;
	}
	if (cgroup_join_here(p, &err) < 0) goto fail;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) { lxr_fail(&err, errno, "exec", "set non-dumpable"); goto fail; }
	if (setns_fds(p, fds, &err) < 0) goto fail;
	/* In the container's mount namespace now: the PTY comes from its devpts. */
	if (relay && open_pty(p, &master, &slave, &err) < 0) goto fail;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) { lxr_fail(&err, errno, "exec", "socketpair"); goto fail; }

	sigset_t mask, old;
	sigemptyset(&mask);
	int fwd[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
	for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) sigaddset(&mask, fwd[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);

	pid_t child = fork();
	if (child < 0) { lxr_fail(&err, errno, "exec", "fork"); goto fail; }
	if (child == 0) {
		for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		(void)old;
		close(sv[0]);
		if (report_fd >= 0) close(report_fd);
		for (size_t i = 0; i < p->ns.n; i++)
			if (p->ns.v[i].type == CLONE_NEWUSER && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
				lxr_fail(&err, errno, "user namespace", "become root in the container's user namespace");
				goto child_fail;
			}
		if (relay) {
			close(master);
			if (become_tty_session(slave, &err) < 0) goto child_fail;
		} else if (p->terminal && setup_terminal(p, cfd, &err) < 0) goto child_fail;
		finalize_and_exec(p, -1, NULL, &err);
	child_fail:
		send_child_error(sv[1], &err);
		_exit(err.exit_code ? err.exit_code : 1);
	}
	close(sv[1]);
	if (cfd >= 0) close(cfd);
	if (slave >= 0) close(slave);
	char k, payload[4096];
	int r = sync_recv(sv[0], &k, payload, sizeof payload);
	close(sv[0]);
	int status;
	if (r == 1 && k == 'E') {
		parse_err(payload, &err);
		report_error(report_fd, &err);
		waitpid(child, &status, 0);
		fprintf(stderr, "lxr-shim exec: %s\n", err.msg);
		return err.exit_code ? err.exit_code : 1;
	}
	report(report_fd, "{\"type\":\"started\",\"pid\":%d}", child);
	if (p->detach) return 0;

	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		/* Cannot forward signals; still report the right status. */
		waitpid(child, &status, 0);
		goto done;
	}
	if (relay) relay_terminal(master, child, sfd, report_fd, &status);
	else wait_forwarding(child, sfd, report_fd, &status);
done:;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	report(report_fd, "{\"type\":\"exited\",\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":false}", child, code,
	       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return code;
fail:
	report_error(report_fd, &err);
	fprintf(stderr, "lxr-shim exec: %s: %s\n", err.step, err.msg);
	return 1;
}
