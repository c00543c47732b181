/* Server mode: the agent's long-lived helper that forks one container
 * monitor per request, gates a monitor until its cgroups exist, and keeps a
 * fresh network namespace ready for the next container (../PLAN.md). */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

/* Why one process forks them all: a fork of this small process is cheaper
 * than a fork of the agent plus an exec, and, with SIGCHLD ignored here, the
 * fork can be the monitor itself (nobody waits on it). A new network
 * namespace is the costliest part of clone (about 0.4 ms), so one is made
 * while idle; made right after a fork, it delayed that child as much. */
#define SPARE_IDLE_MS 10

/* The write ends of the gates of monitors not yet let on, by tag (grows
 * with the creates in flight: only descriptors bound it). */
static struct gate { char tag[64]; int fd; } *gates;
static size_t ngates, gates_cap;

/* "go TAG" or "abort TAG": opens or drops that gate; 0 when the line is neither. */
static int gate_request(const char *line, int report_fd)
{
	char verb[8], tag[64];
	if (sscanf(line, "%7s %63s", verb, tag) != 2 || (strcmp(verb, "go") && strcmp(verb, "abort"))) return 0;
	for (size_t i = 0; i < ngates; i++) {
		if (strcmp(gates[i].tag, tag)) continue;
		/* The monitor reads EOF instead of the byte when it is called off. */
		if (!strcmp(verb, "go") && write(gates[i].fd, "g", 1) != 1) { /* it is gone already; its report says why */ }
		close(gates[i].fd);
		gates[i] = gates[--ngates];
		return 1;
	}
	report_tag = tag;
	report(report_fd, "{\"type\":\"error\",\"step\":\"server\",\"errno\":\"ENOENT\",\"errnum\":2,\"message\":\"no create waits at that gate\"}");
	report_tag = NULL;
	return 1;
}

/* One request: forks its monitor. Returns 1 when the spare went with it. */
static int serve(char *line, int report_fd, int host_net, int spare)
{
	char tag[64], path[4096];
	if (gate_request(line, report_fd)) return 0;
	if (sscanf(line, "create %63s %4095[^\n]", tag, path) != 2) {
		/* Tagged so the waiting caller hears of it ("-" if no tag was read). */
		if (sscanf(line, "%*s %63s", tag) != 1) snprintf(tag, sizeof tag, "-");
		report_tag = tag;
		report(report_fd, "{\"type\":\"error\",\"step\":\"server\",\"errno\":\"EINVAL\",\"errnum\":22,\"message\":\"bad request\"}");
		report_tag = NULL;
		return 0;
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
		return 0;
	}
	const struct sock_fprog *filter = seccomp_cached(buf, (size_t)len);
	struct plan_scan scan;
	/* A plan that does not scan is refused by its monitor's own parse below. */
	int scanned = plan_scan(buf, (size_t)len, &scan, &err) == 0;
	int use_spare = spare && scanned && scan.new_net && !scan.new_user;
	int gate[2] = { -1, -1 };
	if (scanned && scan.gate) {
		if (ngates == gates_cap) {
			struct gate *grown = realloc(gates, (gates_cap ? gates_cap * 2 : 16) * sizeof *gates);
			if (grown) { gates = grown; gates_cap = gates_cap ? gates_cap * 2 : 16; }
		}
		if (ngates == gates_cap) lxr_fail(&err, ENOMEM, "server", "no room for one more gate");
		else if (pipe2(gate, O_CLOEXEC) < 0) lxr_fail(&err, errno, "server", "gate pipe");
		if (gate[0] < 0) {
			report_tag = tag;
			report_error(report_fd, &err);
			report_tag = NULL;
			free(buf);
			return 0;
		}
	}
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
		if (gate[0] >= 0) close(gate[0]);
		if (gate[1] >= 0 && c > 0) {
			snprintf(gates[ngates].tag, sizeof gates[ngates].tag, "%s", tag);
			gates[ngates++].fd = gate[1];
		} else if (gate[1] >= 0) close(gate[1]);
		return c > 0 && use_spare;
	}
	signal(SIGCHLD, SIG_DFL);
	report_tag = tag;
	/* Only the server may open a gate: the others' ends stay out of this monitor. */
	for (size_t i = 0; i < ngates; i++) close(gates[i].fd);
	if (gate[1] >= 0) close(gate[1]);
	if (spare && !use_spare && setns(host_net, CLONE_NEWNET) < 0) {
		lxr_fail(&err, errno, "server", "return to the original network namespace");
		report_error(report_fd, &err);
		_exit(1);
	}
	if (host_net >= 0) close(host_net);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null >= 0) { dup2(null, 0); close(null); }
	static struct plan plan;
	if (plan_parse(buf, (size_t)len, &plan, &err) < 0) {
		report_error(report_fd, &err);
		_exit(1);
	}
	plan.seccomp_compiled = filter;
	plan.netns_ready = use_spare;
	plan.gate_fd = gate[0];
	_exit(cmd_create(&plan, report_fd, 1));
}

int cmd_server(int report_fd)
{
	/* Monitors are the kernel's to reap; a gate whose monitor is gone, or an
	 * agent that went away, is an EPIPE to note, not the server's end. */
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	report_tag_fd = report_fd;
	int host_net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	/* spare: the server sits in a fresh network namespace. Without the right
	 * to make one (EPERM, in some sandboxes), every clone makes its own. */
	int can_spare = host_net >= 0, spare = 0;
	char in[8192];
	size_t have = 0;
	int overlong = 0; /* dropping a line no request is as long as, up to its end */
	for (;;) {
		char *nl = memchr(in, '\n', have);
		if (!nl) {
			if (have == sizeof in) {
				have = 0;
				overlong = 1;
			}
			struct pollfd pf = { .fd = 0, .events = POLLIN };
			int r = poll(&pf, 1, can_spare && !spare ? SPARE_IDLE_MS : -1);
			if (r == 0) {
				if (unshare(CLONE_NEWNET) == 0) spare = 1;
				else can_spare = 0;
				continue;
			}
			if (r < 0) {
				if (errno == EINTR) continue;
				break;
			}
			ssize_t n = read(0, in + have, sizeof in - have);
			if (n < 0 && errno == EINTR) continue;
			if (n <= 0) break; /* the agent went away */
			have += (size_t)n;
			continue;
		}
		*nl = 0;
		if (overlong) {
			report_tag = "-";
			report(report_fd, "{\"type\":\"error\",\"step\":\"server\",\"errno\":\"E2BIG\",\"errnum\":7,\"message\":\"a request longer than %zu bytes\"}", sizeof in);
			report_tag = NULL;
			overlong = 0;
		} else if (serve(in, report_fd, host_net, spare)) {
			spare = 0;
			/* Never linger in a container's namespace. */
			if (setns(host_net, CLONE_NEWNET) < 0) {
				struct lxr_err err = { 0 };
				lxr_fail(&err, errno, "server", "return to the original network namespace");
				report_tag = "-";
				report_error(report_fd, &err);
				return 1;
			}
		}
		have -= (size_t)(nl + 1 - in);
		memmove(in, nl + 1, have);
	}
	return 0;
}
