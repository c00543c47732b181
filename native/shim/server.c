/* Server mode: one long-lived helper per agent that forks a container
 * monitor per request, so starting a container costs one fork of this small
 * process instead of a fork of the agent plus an exec (and the fork is the
 * monitor: with SIGCHLD ignored here, nobody waits on it). Requests are lines on
 * stdin, "create TAG PLANFILE"; reports go to the shared report descriptor,
 * each line prefixed with its TAG (lines under PIPE_BUF never interleave).
 * Only plans that need no sealed re-exec come here (the agent decides). */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

int cmd_server(int report_fd)
{
	/* The intermediate children exit at once; let the kernel reap them. */
	signal(SIGCHLD, SIG_IGN);
	report_tag_fd = report_fd;
	char line[4352];
	while (fgets(line, sizeof line, stdin)) {
		char tag[64], path[4096];
		if (sscanf(line, "create %63s %4095[^\n]", tag, path) != 2) {
			/* Tagged so the waiting caller hears of it ("-" if no tag was read). */
			if (sscanf(line, "%*s %63s", tag) != 1) snprintf(tag, sizeof tag, "-");
			report_tag = tag;
			report(report_fd, "{\"type\":\"error\",\"step\":\"server\",\"errno\":\"EINVAL\",\"errnum\":22,\"message\":\"bad request\"}");
			continue;
		}
		/* Read here, so that its seccomp filter is compiled once per profile
		 * (seccomp_cache.c) and the child inherits it. */
		struct lxr_err err = { 0 };
		char *buf = NULL;
		ssize_t len = plan_read(path, &buf, &err);
		if (len < 0) {
			report_tag = tag;
			report_error(report_fd, &err);
			report_tag = NULL;
			continue;
		}
		const struct sock_fprog *filter = seccomp_cached(buf, (size_t)len);
		fflush(NULL);
		pid_t c = fork();
		if (c < 0) {
			lxr_fail(&err, errno, "server", "fork");
			report_tag = tag;
			report_error(report_fd, &err);
			report_tag = NULL;
		}
		if (c != 0) {
			free(buf);
			continue;
		}
		signal(SIGCHLD, SIG_DFL);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null >= 0) { dup2(null, 0); close(null); }
		report_tag = tag;
		static struct plan plan;
		if (plan_parse(buf, (size_t)len, &plan, &err) < 0) {
			report_error(report_fd, &err);
			_exit(1);
		}
		plan.seccomp_compiled = filter;
		_exit(cmd_create(&plan, report_fd, 1));
	}
	return 0;
}
