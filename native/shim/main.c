/* lxr-shim: `create PLAN` starts a container's monitor; `exec PLAN` runs a
 * process inside a running container. The plan format is ../PLAN.md; the
 * one-line JSON reports go to fd 3 when the caller opened it. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct lxr_err err = { 0 };
	int report_fd = fcntl(3, F_GETFD) >= 0 ? 3 : -1;
	if (argc == 2 && !strcmp(argv[1], "server")) {
		/* Sealed once here: every monitor forks from this copy. */
		if (self_protect(argv) < 0) {
			lxr_fail(&err, errno, "self-protect", "re-execute from a sealed copy");
			report_error(report_fd, &err);
			return 1;
		}
		if (report_fd >= 0) fcntl(report_fd, F_SETFD, FD_CLOEXEC);
		return cmd_server(report_fd);
	}
	int exec_server = argc == 4 && !strcmp(argv[1], "exec-server");
	if (!exec_server && (argc != 3 || (strcmp(argv[1], "create") && strcmp(argv[1], "exec")))) {
		fprintf(stderr, "usage: lxr-shim create|exec PLANFILE | lxr-shim exec-server PLANFILE SOCKET | lxr-shim server\n");
		return 2;
	}
	static struct plan plan;
	if (plan_load(argv[2], &plan, &err) < 0) {
		report_error(report_fd, &err);
		fprintf(stderr, "lxr-shim: %s\n", err.msg);
		return 1;
	}
	/* Always from a sealed copy: a container's init can exec /proc/self/exe
	 * (its entrypoint may be exactly that), and from then on the container
	 * holds a handle on whatever file the helper runs from. */
	if (self_protect(argv) < 0) {
		lxr_fail(&err, errno, "self-protect", "re-execute from a sealed copy");
		report_error(report_fd, &err);
		fprintf(stderr, "lxr-shim: %s\n", err.msg);
		return 1;
	}
	/* Only now: the re-exec above must keep the report descriptor. */
	if (report_fd >= 0) fcntl(report_fd, F_SETFD, FD_CLOEXEC);
	/* A caller that cannot pass fd 3 (node-pty) names a socket instead;
	 * whatever fd 3 then is, it is not ours to write to. */
	if (plan.report_socket) {
		report_fd = connect_unix(plan.report_socket, "report socket", &err);
		if (report_fd < 0) {
			fprintf(stderr, "lxr-shim: %s: %s\n", err.step, err.msg);
			return 1;
		}
	}
	if (exec_server) return cmd_exec_server(&plan, report_fd, argv[3]);
	return !strcmp(argv[1], "create") ? cmd_create(&plan, report_fd, 0) : cmd_exec(&plan, report_fd);
}
