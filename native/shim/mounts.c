/* The mount namespace: what filesystem tree the container sees. The root is
 * made private first so nothing propagates back to the host, the rootfs
 * (optionally an overlay) becomes a mount point, each planned mount lands at
 * a path resolved *inside* the rootfs (symlinks can never lead out), and
 * pivot_root (never chroot) makes it "/" with the old root detached. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int open_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (unsigned)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	while (*path == '/') path++;
	if (!*path) path = ".";
	return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* Opens (O_PATH) `path` inside the root, creating missing directories and,
 * when want_file, the final component as an empty file. */
static int mkpath_in_root(int rootfd, const char *path, int want_file, struct lxr_err *err)
{
	int fd = open_in_root(rootfd, path, O_PATH);
	if (fd >= 0) return fd;
	if (errno != ENOENT) return lxr_fail(err, errno, "resolve path", "%s", path);
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return lxr_fail(err, ENAMETOOLONG, "resolve path", "%s", path);
	char *comp = buf;
	while (*comp == '/') comp++;
	/* Usually only the last component is missing (its parent is a mount
	 * made just before, such as /sys/fs/cgroup): start there when the
	 * parent resolves, instead of walking down from the root. */
	int parent = -1;
	char *final_slash = strrchr(comp, '/');
	if (final_slash && final_slash[1]) {
		*final_slash = 0;
		parent = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
		*final_slash = '/';
		if (parent >= 0) comp = final_slash + 1;
	}
	if (parent < 0) parent = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
	if (parent < 0) return lxr_fail(err, errno, "resolve path", "/");
	for (;;) {
		char *slash = strchr(comp, '/');
		if (slash) *slash = 0;
		int last = !slash || !slash[1];
		if (*comp) {
			if (last && want_file) {
				int f = openat(parent, comp, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (f < 0 && errno != EEXIST) {
					int e = errno;
					close(parent);
					return lxr_fail(err, e, "create mount point", "%s", path);
				}
				if (f >= 0) close(f);
			} else if (mkdirat(parent, comp, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(parent);
				return lxr_fail(err, e, "create mount point", "%s", path);
			}
			close(parent);
			/* Re-resolve from the root: the component may be a symlink, and
			 * only RESOLVE_IN_ROOT keeps following it safe. */
			char saved = slash ? '/' : 0;
			parent = open_in_root(rootfd, buf, O_PATH);
			if (slash) *slash = saved;
			if (parent < 0) return lxr_fail(err, errno, "resolve path", "%s", buf);
		}
		if (last) return parent;
		comp = slash + 1;
	}
}

static unsigned long locked_flags(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(path, &sv) < 0) return 0;
	if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	return f;
}

/* A bind mount takes only MS_BIND|MS_REC; its other flags need a remount,
 * which must keep the flags the kernel locked on the source. */
static int remount_bind(const char *target, unsigned long flags, struct lxr_err *err, const char *what)
{
	unsigned long f = MS_REMOUNT | MS_BIND | (flags & ~(MS_REC | MS_BIND | MS_REMOUNT));
	if (mount(NULL, target, NULL, f, NULL) == 0) return 0;
	if (errno == EPERM && mount(NULL, target, NULL, f | locked_flags(target), NULL) == 0) return 0;
	return lxr_fail(err, errno, "remount", "%s", what);
}

static int mount_overlay(const struct plan *p, struct lxr_err *err)
{
	char *opts = malloc(65536);
	if (!opts) return lxr_fail(err, ENOMEM, "mount overlay", "options");
	/* o only grows while everything fits; past one page the fsconfig path
	 * takes over, so a truncated option string is never used. */
	size_t o = (size_t)snprintf(opts, 65536, "lowerdir=");
	for (size_t i = 0; i < p->ov_lower.n && o < 65536; i++)
		o += (size_t)snprintf(opts + o, 65536 - o, "%s%s", i ? ":" : "", p->ov_lower.v[i]);
	if (o < 65536) o += (size_t)snprintf(opts + o, 65536 - o, ",upperdir=%s,workdir=%s", p->ov_upper, p->ov_work);
	int rc = 0;
	if (o < 4000) {
		if (mount("overlay", p->rootfs, "overlay", 0, opts) < 0)
			rc = lxr_fail(err, errno, "mount overlay", "overlay on %s (%zu layers)", p->rootfs, p->ov_lower.n);
	} else {
		/* Past one page of options, add layers one by one (lowerdir+, Linux 6.8). */
		int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
		if (fs < 0) rc = lxr_fail(err, errno, "mount overlay", "fsopen");
		for (size_t i = 0; !rc && i < p->ov_lower.n; i++)
			if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir+", p->ov_lower.v[i], 0) < 0)
				rc = lxr_fail(err, errno, "mount overlay", "lowerdir+ %s", p->ov_lower.v[i]);
		if (!rc && (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", p->ov_upper, 0) < 0 ||
			    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", p->ov_work, 0) < 0 ||
			    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0))
			rc = lxr_fail(err, errno, "mount overlay", "configure overlay");
		int mnt = rc ? -1 : (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
		if (!rc && mnt < 0) rc = lxr_fail(err, errno, "mount overlay", "fsmount");
		if (!rc && syscall(SYS_move_mount, mnt, "", AT_FDCWD, p->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			rc = lxr_fail(err, errno, "mount overlay", "move_mount to %s", p->rootfs);
		if (mnt >= 0) close(mnt);
		if (fs >= 0) close(fs);
	}
	free(opts);
	return rc;
}

static int do_mount(int rootfd, const struct mount_op *m, struct lxr_err *err)
{
	char what[PATH_MAX + 64], target[64];
	snprintf(what, sizeof what, "%s on %s", m->is_remount ? "remount" : m->type[0] ? m->type : "bind", m->dst);
	int want_file = 0;
	if (!m->is_remount && (m->flags & MS_BIND)) {
		struct stat st;
		if (stat(m->src, &st) < 0) return lxr_fail(err, errno, "mount", "%s: source %s", what, m->src);
		want_file = !S_ISDIR(st.st_mode);
	}
	int fd = mkpath_in_root(rootfd, m->dst, want_file, err);
	if (fd < 0) return -1;
	snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
	int rc = 0;
	if (m->is_remount) {
		if (mount(NULL, target, NULL, MS_REMOUNT | m->flags, m->data[0] ? m->data : NULL) < 0)
			rc = lxr_fail(err, errno, "mount", "%s", what);
	} else if (m->flags & MS_BIND) {
		if (mount(m->src, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
			rc = lxr_fail(err, errno, "mount", "%s from %s", what, m->src);
	} else if (mount(m->src, target, m->type, m->flags, m->data[0] ? m->data : NULL) < 0) {
		rc = lxr_fail(err, errno, "mount", "%s", what);
	}
	close(fd);
	if (rc) return rc;
	int bind_flags = !m->is_remount && (m->flags & MS_BIND) && (m->flags & ~(MS_BIND | MS_REC));
	if (!bind_flags && !m->pflags) return 0;
	/* The descriptor above is the directory *under* the new mount: reopen
	 * the path to reach the mount itself. */
	fd = open_in_root(rootfd, m->dst, O_PATH);
	if (fd < 0) return lxr_fail(err, errno, "mount", "%s: reopen", what);
	snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
	if (bind_flags && remount_bind(target, m->flags, err, what) < 0) rc = -1;
	if (!rc && m->pflags && mount(NULL, target, NULL, m->pflags, NULL) < 0)
		rc = lxr_fail(err, errno, "mount", "%s: propagation", what);
	close(fd);
	return rc;
}

/* Opens the parent directory of `path` inside the root (creating it) as a
 * real directory fd (mknodat/symlinkat refuse O_PATH ones) and puts the last
 * component in `base`. */
static int open_parent(int rootfd, const char *path, char *base, size_t cap, const char *step, struct lxr_err *err)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || !slash[1]) return lxr_fail(err, EINVAL, step, "%s", path);
	snprintf(base, cap, "%s", slash + 1);
	*slash = 0;
	int pathfd = mkpath_in_root(rootfd, dir[0] ? dir : "/", 0, err);
	if (pathfd < 0) return -1;
	char dpath[64];
	snprintf(dpath, sizeof dpath, "/proc/self/fd/%d", pathfd);
	int fd = open(dpath, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	int e = errno;
	close(pathfd);
	if (fd < 0) return lxr_fail(err, e, step, "%s", path);
	return fd;
}

/* The parent last opened: devices and links mostly share /dev, and nothing
 * else runs in the rootfs while they are made. */
struct parent_cache { char dir[PATH_MAX]; int fd; };

static int parent_of(int rootfd, const char *path, char *base, size_t cap, const char *step, struct parent_cache *c, struct lxr_err *err)
{
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	if (c->fd >= 0 && slash && slash[1] && dlen < sizeof c->dir && !strncmp(c->dir, path, dlen) && c->dir[dlen] == 0) {
		snprintf(base, cap, "%s", slash + 1);
		return c->fd;
	}
	int fd = open_parent(rootfd, path, base, cap, step, err);
	if (fd < 0) return -1;
	if (c->fd >= 0) close(c->fd);
	c->fd = fd;
	snprintf(c->dir, sizeof c->dir, "%.*s", (int)dlen, path);
	return fd;
}

static int make_device(int rootfd, const struct dev_op *d, struct parent_cache *c, struct lxr_err *err)
{
	char base[NAME_MAX + 1];
	int dir = parent_of(rootfd, d->path, base, sizeof base, "create device", c, err);
	if (dir < 0) return -1;
	mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
	unlinkat(dir, base, 0);
	int rc = 0;
	if (mknodat(dir, base, type | (d->mode & 07777), makedev(d->major, d->minor)) < 0)
		rc = lxr_fail(err, errno, "create device", "mknod %s", d->path);
	else if (fchownat(dir, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
		rc = lxr_fail(err, errno, "create device", "chown %s", d->path);
	else if (fchmodat(dir, base, d->mode & 07777, 0) < 0)
		rc = lxr_fail(err, errno, "create device", "chmod %s", d->path);
	return rc;
}

static int make_symlink(int rootfd, const struct kv *s, struct parent_cache *c, struct lxr_err *err)
{
	char base[NAME_MAX + 1];
	int dir = parent_of(rootfd, s->b, base, sizeof base, "create symlink", c, err);
	if (dir < 0) return -1;
	int rc = 0;
	/* Ours replaces whatever the image has there (e.g. its own /dev/ptmx). */
	if (unlinkat(dir, base, 0) < 0 && errno != ENOENT)
		rc = lxr_fail(err, errno, "create symlink", "replace %s", s->b);
	else if (symlinkat(s->a, dir, base) < 0)
		rc = lxr_fail(err, errno, "create symlink", "%s -> %s", s->b, s->a);
	return rc;
}

/* The null device masked files are bound from, opened after pivot_root
 * without following links and checked to be 1:3: the container's /dev/null
 * could otherwise be a symlink or a plain file (CVE-2025-31133). A bind
 * source must be in our mount namespace, so the host's (in the detached old
 * root) cannot serve. */
static int null_dev = -1;

static int open_null(struct lxr_err *err)
{
	null_dev = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (null_dev < 0 || fstat(null_dev, &st) < 0)
		return lxr_fail(err, errno, "masked path", "open /dev/null");
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
		return lxr_fail(err, EINVAL, "masked path", "/dev/null in the container is not the null device");
	return 0;
}

static int pivot(const char *rootfs, struct lxr_err *err)
{
	int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (oldroot < 0) return lxr_fail(err, errno, "pivot_root", "open /");
	int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (newroot < 0) { close(oldroot); return lxr_fail(err, errno, "pivot_root", "open %s", rootfs); }
	int rc = 0;
	if (fchdir(newroot) < 0) rc = lxr_fail(err, errno, "pivot_root", "chdir %s", rootfs);
	else if (syscall(SYS_pivot_root, ".", ".") < 0) rc = lxr_fail(err, errno, "pivot_root", "%s", rootfs);
	else if (fchdir(oldroot) < 0) rc = lxr_fail(err, errno, "pivot_root", "chdir old root");
	else if (umount2(".", MNT_DETACH) < 0) rc = lxr_fail(err, errno, "pivot_root", "detach old root");
	else if (chdir("/") < 0) rc = lxr_fail(err, errno, "pivot_root", "chdir /");
	close(oldroot);
	close(newroot);
	return rc;
}

int setup_rootfs(const struct plan *p, struct lxr_err *err)
{
	int own_mntns = 0;
	for (size_t i = 0; i < p->ns.n; i++)
		if (p->ns.v[i].type == CLONE_NEWNS && !p->ns.v[i].path) own_mntns = 1;
	if (!own_mntns)
		return lxr_fail(err, EINVAL, "make mounts private", "the plan has no new mount namespace: refusing to touch the host's mounts");
	/* Before anything else: nothing done below may reach the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return lxr_fail(err, errno, "make mounts private", "/");
	if (p->ov_lower.n && mount_overlay(p, err) < 0) return -1;
	if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		return lxr_fail(err, errno, "bind rootfs", "%s", p->rootfs);
	int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) return lxr_fail(err, errno, "open rootfs", "%s", p->rootfs);
	int rc = 0;
	for (size_t i = 0; !rc && i < p->mounts.n; i++) rc = do_mount(rootfd, &p->mounts.v[i], err);
	struct parent_cache parent = { .fd = -1 };
	for (size_t i = 0; !rc && i < p->devs.n; i++) rc = make_device(rootfd, &p->devs.v[i], &parent, err);
	for (size_t i = 0; !rc && i < p->symlinks.n; i++) rc = make_symlink(rootfd, &p->symlinks.v[i], &parent, err);
	if (parent.fd >= 0) close(parent.fd);
	close(rootfd);
	if (rc) return rc;
	return pivot(p->rootfs, err);
}

int finish_rootfs(const struct plan *p, struct lxr_err *err)
{
	if (p->rootfs_readonly && remount_bind("/", MS_RDONLY, err, "/ read-only") < 0) return -1;
	for (size_t i = 0; i < p->sysctls.n; i++)
		if (write_file(p->sysctls.v[i].a, p->sysctls.v[i].b, err) < 0) {
			snprintf(err->step, sizeof err->step, "sysctl");
			return -1;
		}
	for (size_t i = 0; i < p->readonly.n; i++) {
		const char *path = p->readonly.v[i];
		if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT) continue;
			return lxr_fail(err, errno, "readonly path", "%s", path);
		}
		if (remount_bind(path, MS_RDONLY | MS_REC, err, path) < 0) return -1;
	}
	if (p->masked.n && open_null(err) < 0) return -1;
	for (size_t i = 0; i < p->masked.n; i++) {
		const char *path = p->masked.v[i];
		struct stat st;
		/* O_NOFOLLOW: a masked path that is a symlink is masked itself,
		 * never the file it points to. */
		int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT) continue;
			return lxr_fail(err, errno, "masked path", "%s", path);
		}
		char target[64], null_path[64];
		snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
		snprintf(null_path, sizeof null_path, "/proc/self/fd/%d", null_dev);
		int r = fstat(fd, &st);
		if (r == 0)
			r = S_ISDIR(st.st_mode) ? mount("tmpfs", target, "tmpfs", MS_RDONLY, NULL)
						: mount(null_path, target, NULL, MS_BIND, NULL);
		int e = errno;
		close(fd);
		if (r < 0) return lxr_fail(err, e, "masked path", "%s", path);
	}
	if (null_dev >= 0) {
		close(null_dev);
		null_dev = -1;
	}
	if (p->propagation && mount(NULL, "/", NULL, p->propagation, NULL) < 0)
		return lxr_fail(err, errno, "rootfs propagation", "/");
	return 0;
}
