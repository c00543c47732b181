/* The filesystem calls, each made through a directory fd that openat2
 * resolved beneath the layer dir with no symlinks at all: whatever the tree
 * holds, nothing here can reach outside it. */
#include "fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define RESOLVE_SAFE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int open_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = { .flags = (unsigned long long)(flags | O_CLOEXEC), .resolve = RESOLVE_SAFE };
	int fd;
	do fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
	while (fd < 0 && errno == EAGAIN);
	return fd;
}

/* Relative, no empty, "." or ".." components: the agent never sends them,
 * and refusing them here keeps the contract checkable. */
static int check_rel(const char *rel, const char *step, struct lxr_err *err)
{
	if (strlen(rel) >= PATH_MAX) return lxr_fail(err, ENAMETOOLONG, step, "path too long");
	if (*rel == 0) return 0;
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return lxr_fail(err, EINVAL, step, "path %s is not a clean relative path", rel);
		if (!slash) return 0;
		p = slash + 1;
	}
}

/* Opens (O_PATH) the directory that holds rel's last component and points
 * *base at that component. With mk, missing directories are made (0755). */
static int open_parent(int root, const char *rel, int mk, const char **base, const char *step, struct lxr_err *err)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(rel, '/');
	if (!slash) {
		*base = rel;
		snprintf(dir, sizeof dir, ".");
	} else {
		*base = slash + 1;
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - rel), rel);
	}
	int fd = open_beneath(root, dir, O_PATH | O_DIRECTORY);
	if (fd >= 0) return fd;
	if (errno != ENOENT || !mk) return lxr_fail(err, errno, step, "open the directory of %s", rel);
	/* Walk down, making what is missing; each step is again resolved beneath. */
	int cur = open_beneath(root, ".", O_PATH | O_DIRECTORY);
	if (cur < 0) return lxr_fail(err, errno, step, "open the layer directory");
	for (char *c = dir, *next; c; c = next) {
		next = strchr(c, '/');
		if (next) *next++ = 0;
		if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			close(cur);
			return lxr_fail(err, e, step, "make directory %s for %s", c, rel);
		}
		int n = open_beneath(cur, c, O_PATH | O_DIRECTORY);
		int e = errno;
		close(cur);
		if (n < 0) return lxr_fail(err, e, step, "open directory %s for %s", c, rel);
		cur = n;
	}
	return cur;
}

int op_whiteout(int root, const char *rel, struct lxr_err *err)
{
	const char *base;
	if (check_rel(rel, "whiteout", err) < 0) return -1;
	if (*rel == 0) return lxr_fail(err, EINVAL, "whiteout", "cannot white out the layer root");
	int p = open_parent(root, rel, 1, &base, "whiteout", err);
	if (p < 0) return -1;
	int r = mknodat(p, base, S_IFCHR | 0, makedev(0, 0));
	int e = errno;
	close(p);
	if (r < 0) return lxr_fail(err, e, "whiteout", "mknod %s", rel);
	return 0;
}

int op_opaque(int root, const char *rel, struct lxr_err *err)
{
	if (check_rel(rel, "opaque", err) < 0) return -1;
	if (*rel) {
		const char *base;
		int p = open_parent(root, rel, 1, &base, "opaque", err);
		if (p < 0) return -1;
		int r = mkdirat(p, base, 0755);
		int e = errno;
		close(p);
		if (r < 0 && e != EEXIST) return lxr_fail(err, e, "opaque", "make directory %s", rel);
	}
	int fd = open_beneath(root, *rel ? rel : ".", O_RDONLY | O_DIRECTORY);
	if (fd < 0) return lxr_fail(err, errno, "opaque", "open directory %s", *rel ? rel : ".");
	int r = fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0);
	int e = errno;
	close(fd);
	if (r < 0) return lxr_fail(err, e, "opaque", "set trusted.overlay.opaque on %s", *rel ? rel : ".");
	return 0;
}

int op_symlink(int root, const char *rel, const char *target, struct lxr_err *err)
{
	const char *base;
	if (check_rel(rel, "symlink", err) < 0) return -1;
	if (*rel == 0) return lxr_fail(err, EINVAL, "symlink", "the layer root cannot be a symlink");
	int p = open_parent(root, rel, 1, &base, "symlink", err);
	if (p < 0) return -1;
	int r = symlinkat(target, p, base);
	int e = errno;
	close(p);
	if (r < 0) return lxr_fail(err, e, "symlink", "symlink %s -> %s", rel, target);
	return 0;
}

static int attr_fd(int fd, const struct stat *st, long mode, long long uid, long long gid,
	const struct timespec *ts, const char *rel, struct lxr_err *err)
{
	/* chown clears set-id bits, so it goes before chmod. */
	if ((uid >= 0 && (uid_t)uid != st->st_uid) || (gid >= 0 && (gid_t)gid != st->st_gid)) {
		if (fchown(fd, uid >= 0 ? (uid_t)uid : (uid_t)-1, gid >= 0 ? (gid_t)gid : (gid_t)-1) < 0)
			return lxr_fail(err, errno, "attr", "chown %s to %lld:%lld", rel, uid, gid);
	}
	if (mode >= 0 && fchmod(fd, (mode_t)mode) < 0)
		return lxr_fail(err, errno, "attr", "chmod %s to %lo", rel, mode);
	if (ts && futimens(fd, ts) < 0)
		return lxr_fail(err, errno, "attr", "set times of %s", rel);
	return 0;
}

int op_attr(int root, const char *rel, long mode, long long uid, long long gid, long long mtime_ms,
	struct lxr_err *err)
{
	struct timespec tsv[2];
	const struct timespec *ts = NULL;
	if (mtime_ms >= 0) {
		tsv[0].tv_sec = (time_t)(mtime_ms / 1000);
		tsv[0].tv_nsec = (long)(mtime_ms % 1000) * 1000000L;
		tsv[1] = tsv[0];
		ts = tsv;
	}
	if (check_rel(rel, "attr", err) < 0) return -1;
	const char *base = ".";
	int p = root;
	if (*rel) {
		p = open_parent(root, rel, 0, &base, "attr", err);
		if (p < 0) return -1;
	}
	struct stat st;
	int r = -1;
	if (fstatat(p, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		lxr_fail(err, errno, "attr", "stat %s", rel);
	} else if (S_ISLNK(st.st_mode)) {
		/* A symlink's own owner and times; it has no mode of its own. */
		if ((uid >= 0 || gid >= 0) && fchownat(p, base, uid >= 0 ? (uid_t)uid : (uid_t)-1,
				gid >= 0 ? (gid_t)gid : (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
			lxr_fail(err, errno, "attr", "chown symlink %s", rel);
		else if (ts && utimensat(p, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
			lxr_fail(err, errno, "attr", "set times of symlink %s", rel);
		else
			r = 0;
	} else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		int fd = openat(p, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			lxr_fail(err, errno, "attr", "open %s", rel);
		} else {
			struct stat fst;
			if (fstat(fd, &fst) < 0) lxr_fail(err, errno, "attr", "stat %s", rel);
			else r = attr_fd(fd, &fst, mode, uid, gid, ts, *rel ? rel : ".", err);
			close(fd);
		}
	} else {
		lxr_fail(err, EINVAL, "attr", "%s is neither a file, a directory nor a symlink", rel);
	}
	if (p != root) close(p);
	return r;
}
