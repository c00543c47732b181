/* Error records and the small helpers every native program's reports use. */
#include "err.h"

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

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

void json_str(char *dst, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') { dst[o++] = '\\'; dst[o++] = (char)c; }
		else if (c == '\n') { dst[o++] = '\\'; dst[o++] = 'n'; }
		else if (c < 0x20) o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
		else dst[o++] = (char)c;
	}
	dst[o] = 0;
}

const char *errno_name(int e)
{
	switch (e) {
	case 0: return "";
	case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case ESRCH: return "ESRCH";
	case EINTR: return "EINTR"; case EIO: return "EIO"; case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC"; case EBADF: return "EBADF"; case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN"; case ENOMEM: return "ENOMEM"; case EACCES: return "EACCES";
	case EFAULT: return "EFAULT"; case EBUSY: return "EBUSY"; case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR"; case EISDIR: return "EISDIR"; case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC"; case EROFS: return "EROFS"; case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS"; case ELOOP: return "ELOOP"; case ENODEV: return "ENODEV";
	case EXDEV: return "EXDEV"; case ETXTBSY: return "ETXTBSY"; case EOPNOTSUPP: return "EOPNOTSUPP";
	case ECONNREFUSED: return "ECONNREFUSED"; case ENOTEMPTY: return "ENOTEMPTY";
	default: return "EUNKNOWN";
	}
}
