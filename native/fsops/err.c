/* Error records and the one-line JSON report the agent parses. */
#include "fsops.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lxr_fail(struct lxr_err *err, int errnum, const char *step, const char *fmt, ...)
{
	va_list ap;
	err->errnum = errnum;
	snprintf(err->step, sizeof err->step, "%s", step);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	if (errnum) {
		size_t l = strlen(err->msg);
		snprintf(err->msg + l, sizeof err->msg - l, ": %s", strerror(errnum));
	}
	return -1;
}

static void json_str(char *dst, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') { dst[o++] = '\\'; dst[o++] = (char)c; }
		else if (c < 0x20) o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
		else dst[o++] = (char)c;
	}
	dst[o] = 0;
}

const char *errno_name(int e)
{
	switch (e) {
	case 0: return "";
	case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EIO: return "EIO";
	case EBADF: return "EBADF"; case ENOMEM: return "ENOMEM"; case EACCES: return "EACCES";
	case EEXIST: return "EEXIST"; case ENOTDIR: return "ENOTDIR"; case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC"; case EROFS: return "EROFS";
	case ENAMETOOLONG: return "ENAMETOOLONG"; case ENOSYS: return "ENOSYS"; case ELOOP: return "ELOOP";
	case EXDEV: return "EXDEV"; case EOPNOTSUPP: return "EOPNOTSUPP"; case ENOTEMPTY: return "ENOTEMPTY";
	case EAGAIN: return "EAGAIN"; case EDQUOT: return "EDQUOT"; case E2BIG: return "E2BIG";
	default: return "EUNKNOWN";
	}
}

void report_error(int fd, const struct lxr_err *err)
{
	char step[300], msg[1600];
	json_str(step, sizeof step, err->step);
	json_str(msg, sizeof msg, err->msg);
	dprintf(fd, "{\"step\":\"%s\",\"errno\":\"%s\",\"errnum\":%d,\"message\":\"%s\"}\n",
		step, errno_name(err->errnum), err->errnum, msg);
}
