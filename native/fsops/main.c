/* lxr-fsops DIR: reads NUL-separated records on stdin and applies them
 * beneath DIR, in order:
 *   whiteout\0REL\0                          0/0 character device (overlay whiteout)
 *   opaque\0REL\0                            trusted.overlay.opaque=y on a directory
 *   symlink\0REL\0TARGET\0                   a symlink (TARGET is never resolved)
 *   attr\0REL\0MODE\0UID\0GID\0MTIME_MS\0    decimal numbers; empty leaves it alone
 * REL "" is DIR itself. Missing parent directories are made (0755) for
 * whiteouts, opaque dirs and symlinks. On failure: one JSON line on stderr
 * ({"step","errno","errnum","message"}) and exit status 1. */
#include "fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct input { char *buf; size_t len, off; };

static int read_stdin(struct input *in, struct lxr_err *err)
{
	size_t cap = 1 << 16;
	in->buf = malloc(cap);
	in->len = in->off = 0;
	if (!in->buf) return lxr_fail(err, ENOMEM, "read records", "allocate");
	for (;;) {
		if (in->len == cap) {
			char *n = realloc(in->buf, cap * 2);
			if (!n) return lxr_fail(err, ENOMEM, "read records", "allocate");
			in->buf = n;
			cap *= 2;
		}
		ssize_t r = read(0, in->buf + in->len, cap - in->len);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) return lxr_fail(err, errno, "read records", "read stdin");
		if (r == 0) return 0;
		in->len += (size_t)r;
	}
}

/* The next NUL-terminated field, or NULL at the end of the input. */
static const char *field(struct input *in)
{
	if (in->off >= in->len) return NULL;
	const char *f = in->buf + in->off;
	const char *nul = memchr(f, 0, in->len - in->off);
	if (!nul) return NULL;
	in->off = (size_t)(nul - in->buf) + 1;
	return f;
}

static int number(const char *s, long long *out, struct lxr_err *err)
{
	if (*s == 0) { *out = -1; return 0; }
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0) return lxr_fail(err, EINVAL, "read records", "bad number %s", s);
	*out = v;
	return 0;
}

static int run(int root, struct input *in, struct lxr_err *err)
{
	const char *op;
	while ((op = field(in))) {
		const char *rel = field(in);
		if (!rel) return lxr_fail(err, EINVAL, "read records", "%s record without a path", op);
		if (!strcmp(op, "whiteout")) {
			if (op_whiteout(root, rel, err) < 0) return -1;
		} else if (!strcmp(op, "opaque")) {
			if (op_opaque(root, rel, err) < 0) return -1;
		} else if (!strcmp(op, "symlink")) {
			const char *target = field(in);
			if (!target) return lxr_fail(err, EINVAL, "read records", "symlink record without a target");
			if (op_symlink(root, rel, target, err) < 0) return -1;
		} else if (!strcmp(op, "attr")) {
			long long v[4];
			for (int i = 0; i < 4; i++) {
				const char *f = field(in);
				if (!f) return lxr_fail(err, EINVAL, "read records", "short attr record for %s", rel);
				if (number(f, &v[i], err) < 0) return -1;
			}
			if (v[0] > 07777) return lxr_fail(err, EINVAL, "read records", "bad mode for %s", rel);
			if (op_attr(root, rel, (long)v[0], v[1], v[2], v[3], err) < 0) return -1;
		} else {
			return lxr_fail(err, EINVAL, "read records", "unknown record %s", op);
		}
	}
	if (in->off != in->len) return lxr_fail(err, EINVAL, "read records", "trailing bytes without a NUL");
	return 0;
}

int main(int argc, char **argv)
{
	struct lxr_err err = { 0 };
	if (argc != 2) {
		lxr_fail(&err, EINVAL, "usage", "usage: lxr-fsops DIR < records");
		report_error(2, &err);
		return 2;
	}
	umask(0);
	int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0) {
		lxr_fail(&err, errno, "open layer directory", "open %s", argv[1]);
		report_error(2, &err);
		return 1;
	}
	struct input in;
	if (read_stdin(&in, &err) < 0 || run(root, &in, &err) < 0) {
		report_error(2, &err);
		return 1;
	}
	return 0;
}
