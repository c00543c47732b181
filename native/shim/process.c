/* The process's identity and limits: rlimits, working directory, user and
 * groups, the five capability sets, no_new_privs and the seccomp filter,
 * then execve with every inherited descriptor closed. Shared by the
 * container's init and by processes exec'd into a running container. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int apply_rlimits(const struct plan *p, struct lxr_err *err)
{
	for (size_t i = 0; i < p->rlimits.n; i++) {
		const struct rlimit_op *r = &p->rlimits.v[i];
		struct rlimit rl = { .rlim_cur = r->soft, .rlim_max = r->hard };
		if (setrlimit(r->resource, &rl) < 0) {
			struct rlimit cur = { 0, 0 };
			getrlimit(r->resource, &cur);
			if (errno == EPERM || (errno == EINVAL && r->hard > cur.rlim_max))
				return lxr_fail(err, EPERM, "rlimit", "resource %d: hard limit %llu is above the current %llu, and raising it needs CAP_SYS_RESOURCE, which this host withholds",
						r->resource, r->hard, (unsigned long long)cur.rlim_max);
			return lxr_fail(err, errno, "rlimit", "setrlimit(%d, %llu, %llu)", r->resource, r->soft, r->hard);
		}
	}
	return 0;
}

/* chdir, then make sure the result is really inside the container's root:
 * getcwd reports "(unreachable)" for a directory outside it (e.g. one
 * reached through a leaked descriptor, CVE-2024-21626). */
int enter_cwd(const struct plan *p, struct lxr_err *err)
{
	const char *cwd = p->cwd ? p->cwd : "/";
	if (chdir(cwd) < 0) return lxr_fail(err, errno, "cwd", "chdir %s", cwd);
	char buf[PATH_MAX];
	if (!getcwd(buf, sizeof buf) || buf[0] != '/')
		return lxr_fail(err, errno ? errno : EPERM, "cwd", "working directory %s is outside the container's root", cwd);
	return 0;
}

static int capset_all(const uint64_t *c, struct lxr_err *err)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	for (int i = 0; i < 2; i++) {
		d[i].effective = (uint32_t)(c[1] >> (32 * i));
		d[i].permitted = (uint32_t)(c[2] >> (32 * i));
		d[i].inheritable = (uint32_t)(c[3] >> (32 * i));
	}
	if (syscall(SYS_capset, &h, d) < 0) return lxr_fail(err, errno, "capabilities", "capset");
	return 0;
}

int set_identity(const struct plan *p, struct lxr_err *err)
{
	if (p->has_caps)
		for (int cap = 0; cap < 64; cap++) {
			int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
			if (r < 0) break; /* past the kernel's last capability */
			if (r == 1 && !(p->caps[0] & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
				return lxr_fail(err, errno, "capabilities", "drop %d from the bounding set", cap);
		}
	if (p->has_user) {
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return lxr_fail(err, errno, "user", "keep capabilities");
		if (p->has_groups && setgroups(p->groups.n, p->groups.v) < 0)
			return lxr_fail(err, errno, "user", "setgroups (%zu groups)", p->groups.n);
		if (setresgid(p->gid, p->gid, p->gid) < 0) return lxr_fail(err, errno, "user", "setgid %u", p->gid);
		if (setresuid(p->uid, p->uid, p->uid) < 0) return lxr_fail(err, errno, "user", "setuid %u", p->uid);
		if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return lxr_fail(err, errno, "user", "clear keep capabilities");
	}
	if (p->has_caps) {
		if (capset_all(p->caps, err) < 0) return -1;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
			return lxr_fail(err, errno, "capabilities", "clear ambient");
		for (int cap = 0; cap < 64; cap++)
			if ((p->caps[4] & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
				return lxr_fail(err, errno, "capabilities", "raise ambient %d (it must be permitted and inheritable)", cap);
	}
	return 0;
}

static const char *env_path(const struct plan *p)
{
	for (size_t i = 0; i < p->env.n; i++)
		if (!strncmp(p->env.v[i], "PATH=", 5)) return p->env.v[i] + 5;
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

static int check_exec(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) return errno;
	if (S_ISDIR(st.st_mode)) return EACCES;
	if (access(path, X_OK) < 0) return errno;
	return 0;
}

/* Looked up as the container's user in the container's PATH, so a missing
 * program fails before start with 127 and a non-executable one with 126. */
int find_binary(const struct plan *p, char *out, size_t cap, struct lxr_err *err)
{
	const char *name = p->args.v[0];
	int e;
	if (strchr(name, '/')) {
		snprintf(out, cap, "%s", name);
		e = check_exec(out);
	} else {
		e = ENOENT;
		const char *path = env_path(p);
		while (*path) {
			const char *colon = strchrnul(path, ':');
			int len = (int)(colon - path);
			snprintf(out, cap, "%.*s/%s", len ? len : 1, len ? path : ".", name);
			int r = check_exec(out);
			if (r == 0) { e = 0; break; }
			/* Keep the most telling failure: a candidate that exists but
			 * cannot run (EACCES, ELOOP) beats "not in this directory". */
			if (r != ENOENT && r != ENOTDIR) e = r;
			path = *colon ? colon + 1 : colon;
		}
	}
	if (!e) return 0;
	err->exit_code = (e == ENOENT || e == ENOTDIR) ? 127 : 126;
	return lxr_fail(err, e, "exec", err->exit_code == 127 ? "%s: executable file not found in $PATH" : "%s: cannot execute", name);
}

/* The filter is compiled to BPF by libseccomp (about 1.5 ms for Docker's
 * profile) before the init waits for start, and only installed after it:
 * start pays for one seccomp(2) call. */
int compile_seccomp(const struct plan *p, struct sock_fprog *prog, struct lxr_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(p->seccomp_default);
	if (!ctx) return lxr_fail(err, EINVAL, "seccomp", "init with default action 0x%x", p->seccomp_default);
	int rc = 0;
	for (size_t i = 0; i < p->seccomp_arches.n && !rc; i++) {
		uint32_t arch = seccomp_arch_resolve_name(p->seccomp_arches.v[i]);
		if (!arch) { rc = lxr_fail(err, EINVAL, "seccomp", "unknown architecture %s", p->seccomp_arches.v[i]); break; }
		int r = seccomp_arch_add(ctx, arch);
		if (r < 0 && r != -EEXIST) rc = lxr_fail(err, -r, "seccomp", "add architecture %s", p->seccomp_arches.v[i]);
	}
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* no_new_privs is the plan's decision, applied separately */
	for (size_t i = 0; i < p->seccomp_rules.n && !rc; i++) {
		const struct scmp_rule_op *r = &p->seccomp_rules.v[i];
		int nr = seccomp_syscall_resolve_name(r->name);
		if (nr == __NR_SCMP_ERROR || r->action == p->seccomp_default) continue; /* unknown on this kernel/arch */
		struct scmp_arg_cmp cmp[6];
		for (int j = 0; j < r->nargs; j++)
			cmp[j] = (struct scmp_arg_cmp){ r->args[j].index, (enum scmp_compare)r->args[j].op, r->args[j].v1, r->args[j].v2 };
		int e = seccomp_rule_add_array(ctx, r->action, nr, (unsigned)r->nargs, cmp);
		if (e < 0) rc = lxr_fail(err, -e, "seccomp", "rule for %s", r->name);
	}
	int fd = -1;
	if (!rc && (fd = memfd_create("lxr-seccomp", MFD_CLOEXEC)) < 0) rc = lxr_fail(err, errno, "seccomp", "memfd for the compiled filter");
	if (!rc) {
		int e = seccomp_export_bpf(ctx, fd);
		off_t n = e < 0 ? 0 : lseek(fd, 0, SEEK_END);
		if (e < 0) rc = lxr_fail(err, -e, "seccomp", "compile filter");
		else if (n <= 0 || n % (off_t)sizeof(struct sock_filter) || n / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
			rc = lxr_fail(err, E2BIG, "seccomp", "the compiled filter has %lld bytes (at most %d instructions)", (long long)n, BPF_MAXINSNS);
		else if (!(prog->filter = malloc((size_t)n)))
			rc = lxr_fail(err, ENOMEM, "seccomp", "%lld bytes for the compiled filter", (long long)n);
		else if (pread(fd, prog->filter, (size_t)n, 0) != n) {
			rc = lxr_fail(err, EIO, "seccomp", "read the compiled filter back");
			free(prog->filter);
			prog->filter = NULL;
		}
		else prog->len = (unsigned short)(n / (off_t)sizeof(struct sock_filter));
	}
	if (fd >= 0) close(fd);
	seccomp_release(ctx);
	return rc;
}

int install_seccomp(const struct sock_fprog *prog, struct lxr_err *err)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0) return lxr_fail(err, errno, "seccomp", "load filter");
	return 0;
}

int apply_no_new_privs(const struct plan *p, struct lxr_err *err)
{
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return lxr_fail(err, errno, "no_new_privs", "prctl");
	return 0;
}

/* The home directory of `uid` in the container's /etc/passwd, "/" when it is
 * not listed (as runc and crun). Parsed by hand, never through NSS (which
 * could load modules from the container), and only from a regular file of
 * sane size (a FIFO or device there must not block or flood us). */
static void passwd_home(uid_t uid, char *out, size_t cap)
{
	snprintf(out, cap, "/");
	int fd = open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) return;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1 << 22) && read_all(fd, &buf) >= 0) {
		for (char *line = buf, *next; line && *line; line = next) {
			next = strchr(line, '\n');
			if (next) *next++ = 0;
			/* name:passwd:uid:gid:gecos:home:shell */
			char *f[7] = { line };
			int nf = 1;
			for (char *c = line; *c && nf < 7; c++)
				if (*c == ':') { *c = 0; f[nf++] = c + 1; }
			char *end;
			if (nf < 6 || !*f[2]) continue;
			unsigned long v = strtoul(f[2], &end, 10);
			if (*end || v != uid) continue;
			if (*f[5]) snprintf(out, cap, "%s", f[5]);
			break;
		}
	}
	free(buf);
	close(fd);
}

int exec_process(const struct plan *p, const char *path, struct lxr_err *err)
{
	umask(p->has_umask ? p->umask_val : 022);
	/* Without HOME in the environment, the user's home directory, as runc
	 * sets it (images and tools rely on it). */
	char **envp = p->env.v;
	int has_home = 0;
	for (size_t i = 0; i < p->env.n; i++)
		if (!strncmp(p->env.v[i], "HOME=", 5)) has_home = 1;
	if (!has_home) {
		char home[PATH_MAX], *entry = malloc(sizeof home + 5);
		envp = calloc(p->env.n + 2, sizeof *envp);
		if (!envp || !entry) return lxr_fail(err, ENOMEM, "exec", "environment");
		passwd_home(getuid(), home, sizeof home);
		snprintf(entry, sizeof home + 5, "HOME=%s", home);
		memcpy(envp, p->env.v, p->env.n * sizeof *envp);
		envp[p->env.n] = entry;
	}
	/* Every descriptor but stdio closes at exec: nothing of the host leaks in. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		return lxr_fail(err, errno, "close descriptors", "close_range");
	execve(path, p->args.v, envp);
	int e = errno;
	err->exit_code = e == ENOENT ? 127 : 126;
	return lxr_fail(err, e, "exec", "%s", path);
}

/* Everything from the working directory to execve. wait_go (create only)
 * reports readiness and blocks until `start`. Seccomp goes last when
 * no_new_privs is set; without it, loading a filter needs CAP_SYS_ADMIN, so
 * it is loaded before the capabilities are dropped. */
int finalize_and_exec(const struct plan *p, int sync_fd, int (*wait_go)(int), struct lxr_err *err)
{
	char path[PATH_MAX];
	struct sock_fprog filter = { 0 };
	if (p->has_seccomp) {
		if (p->seccomp_compiled) filter = *p->seccomp_compiled;
		else if (compile_seccomp(p, &filter, err) < 0) return -1;
	}
	if (apply_rlimits(p, err) < 0) return -1;
	if (enter_cwd(p, err) < 0) return -1;
	if (p->has_seccomp && !p->no_new_privs && install_seccomp(&filter, err) < 0) return -1;
	if (set_identity(p, err) < 0) return -1;
	if (find_binary(p, path, sizeof path, err) < 0) return -1;
	if (wait_go && wait_go(sync_fd) < 0) return lxr_fail(err, EPIPE, "wait for start", "the monitor went away");
	if (apply_no_new_privs(p, err) < 0) return -1;
	if (p->has_seccomp && p->no_new_privs && install_seccomp(&filter, err) < 0) return -1;
	return exec_process(p, path, err);
}
