/* Small utilities shared by the monitor and the exec helper: error records,
 * whole-file I/O, one-line JSON reports to the agent, and the self-protection
 * that keeps the helper's binary out of reach of the container. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

ssize_t read_all(int fd, char **out)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) return -1;
	for (;;) {
		if (len == cap) {
			cap *= 2;
			char *n = realloc(buf, cap + 1);
			if (!n) { free(buf); return -1; }
			buf = n;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR) continue;
			free(buf);
			return -1;
		}
		if (r == 0) break;
		len += (size_t)r;
	}
	buf[len] = 0;
	*out = buf;
	return (ssize_t)len;
}

int write_file(const char *path, const char *data, struct lxr_err *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) return lxr_fail(err, errno, "write file", "open %s", path);
	if (write_all(fd, data, strlen(data)) < 0) {
		int e = errno;
		close(fd);
		return lxr_fail(err, e, "write file", "write %s to %s", data, path);
	}
	if (close(fd) < 0) return lxr_fail(err, errno, "write file", "close %s", path);
	return 0;
}

const char *report_tag;
int report_tag_fd = -1;

int report(int fd, const char *fmt, ...)
{
	if (fd < 0) return 0;
	char line[2048];
	int t = report_tag && fd == report_tag_fd ? snprintf(line, 64, "%s ", report_tag) : 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + t, sizeof line - 1 - (size_t)t, fmt, ap);
	va_end(ap);
	if (n >= 0) n += t;
	if (n < 0) return -1;
	if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
	line[n++] = '\n';
	return write_all(fd, line, (size_t)n);
}

int report_error(int fd, const struct lxr_err *err)
{
	char step[300], msg[1600];
	json_str(step, sizeof step, err->step);
	json_str(msg, sizeof msg, err->msg);
	if (err->exit_code)
		return report(fd, "{\"type\":\"error\",\"step\":\"%s\",\"errno\":\"%s\",\"errnum\":%d,\"message\":\"%s\",\"exitCode\":%d}",
			step, errno_name(err->errnum), err->errnum, msg, err->exit_code);
	return report(fd, "{\"type\":\"error\",\"step\":\"%s\",\"errno\":\"%s\",\"errnum\":%d,\"message\":\"%s\"}",
		step, errno_name(err->errnum), err->errnum, msg);
}

/* A process that enters a container runs this binary inside it until it
 * execs the user's program. Were it the installed file, a process in the
 * container could reopen /proc/PID/exe for writing and replace the host's
 * helper (CVE-2019-5736). So the helper re-executes itself from a sealed
 * in-memory copy: the container can only ever reach that copy. */
int self_protect(char **argv)
{
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (self < 0) return -1;
	if (fcntl(self, F_GET_SEALS) >= 0) { /* already running from the sealed copy */
		close(self);
		return 0;
	}
	struct stat st;
	if (fstat(self, &st) < 0) { close(self); return -1; }
	int mfd = memfd_create("lxr-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) { close(self); return -1; }
	off_t off = 0;
	while (off < st.st_size) {
		ssize_t n = sendfile(mfd, self, &off, (size_t)(st.st_size - off));
		if (n <= 0) { close(self); close(mfd); return -1; }
	}
	close(self);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
		close(mfd);
		return -1;
	}
	extern char **environ;
	fexecve(mfd, argv, environ);
	close(mfd);
	return -1;
}
