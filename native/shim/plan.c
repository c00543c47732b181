/* The launch plan reader: NUL-separated records (see ../PLAN.md) parsed
 * into struct plan. Fields point into the file's buffer, which lives for the
 * process's lifetime. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PUSH(vec, val) do { \
	if ((vec).n == (vec).cap) { \
		(vec).cap = (vec).cap ? (vec).cap * 2 : 8; \
		(vec).v = realloc((vec).v, (vec).cap * sizeof(*(vec).v)); \
		if (!(vec).v) abort(); \
	} \
	(vec).v[(vec).n++] = (val); \
} while (0)

static int num(const char *s, unsigned long long *out, const char *op, struct lxr_err *err)
{
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		return lxr_fail(err, EINVAL, "read plan", "%s: %s is not a number", op, s);
	return 0;
}

static int ns_type(const char *s)
{
	static const struct { const char *n; int f; } t[] = {
		{ "pid", CLONE_NEWPID }, { "mount", CLONE_NEWNS }, { "uts", CLONE_NEWUTS },
		{ "ipc", CLONE_NEWIPC }, { "net", CLONE_NEWNET }, { "cgroup", CLONE_NEWCGROUP },
		{ "user", CLONE_NEWUSER },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(t[i].n, s)) return t[i].f;
	return 0;
}

#define NEED(k) do { if (argc != (k)) return lxr_fail(err, EINVAL, "read plan", "%s takes %d arguments, got %d", op, (k), argc); } while (0)
/* Narrowing is checked: a value that does not fit its field is refused, never wrapped. */
#define NUM(i, dst) do { \
	unsigned long long _v; \
	if (num(a[i], &_v, op, err) < 0) return -1; \
	(dst) = _v; \
	if ((unsigned long long)(dst) != _v) return lxr_fail(err, ERANGE, "read plan", "%s: %s is out of range", op, a[i]); \
} while (0)
/* (uid_t)-1 means "unchanged" to setresuid: running as it would silently stay root. */
#define ID(i, dst) do { NUM(i, dst); if ((dst) == (__typeof__(dst))-1) return lxr_fail(err, EINVAL, "read plan", "%s: id %s is reserved", op, a[i]); } while (0)

static int apply(struct plan *p, const char *op, int argc, char **a, struct lxr_err *err)
{
	if (!strcmp(op, "id")) { NEED(1); p->id = a[0]; }
	else if (!strcmp(op, "rootfs")) { NEED(1); p->rootfs = a[0]; }
	else if (!strcmp(op, "rootfs_readonly")) { NEED(0); p->rootfs_readonly = 1; }
	else if (!strcmp(op, "overlay")) {
		if (argc < 3) return lxr_fail(err, EINVAL, "read plan", "overlay needs upper, work and at least one lower");
		p->ov_upper = a[0]; p->ov_work = a[1];
		for (int i = 2; i < argc; i++) PUSH(p->ov_lower, a[i]);
	}
	else if (!strcmp(op, "ns")) {
		NEED(2);
		struct ns_op n = { ns_type(a[0]), a[1][0] ? a[1] : NULL };
		if (!n.type) return lxr_fail(err, EINVAL, "read plan", "unknown namespace type %s", a[0]);
		PUSH(p->ns, n);
	}
	else if (!strcmp(op, "uid_map") || !strcmp(op, "gid_map")) {
		NEED(3);
		char *line = malloc(96);
		if (!line) abort();
		snprintf(line, 96, "%s %s %s\n", a[0], a[1], a[2]);
		if (op[0] == 'u') PUSH(p->uid_map, line); else PUSH(p->gid_map, line);
	}
	else if (!strcmp(op, "cgroup")) { NEED(1); PUSH(p->cgroup_procs, a[0]); }
	else if (!strcmp(op, "mount")) {
		NEED(6);
		struct mount_op m = { 0, a[0], a[1], a[2], a[5], 0, 0 };
		NUM(3, m.flags); NUM(4, m.pflags);
		PUSH(p->mounts, m);
	}
	else if (!strcmp(op, "remount")) {
		NEED(3);
		struct mount_op m = { 1, "", a[0], "", a[2], 0, 0 };
		NUM(1, m.flags);
		PUSH(p->mounts, m);
	}
	else if (!strcmp(op, "mkdev")) {
		NEED(7);
		struct dev_op d = { .path = a[0], .type = a[1][0] };
		NUM(2, d.major); NUM(3, d.minor); NUM(4, d.mode); ID(5, d.uid); ID(6, d.gid);
		PUSH(p->devs, d);
	}
	else if (!strcmp(op, "symlink")) { NEED(2); struct kv k = { a[0], a[1] }; PUSH(p->symlinks, k); }
	else if (!strcmp(op, "masked")) { NEED(1); PUSH(p->masked, a[0]); }
	else if (!strcmp(op, "readonly")) { NEED(1); PUSH(p->readonly, a[0]); }
	else if (!strcmp(op, "propagation")) { NEED(1); NUM(0, p->propagation); }
	else if (!strcmp(op, "hostname")) { NEED(1); p->hostname = a[0]; }
	else if (!strcmp(op, "domainname")) { NEED(1); p->domainname = a[0]; }
	else if (!strcmp(op, "sysctl")) { NEED(2); struct kv k = { a[0], a[1] }; PUSH(p->sysctls, k); }
	else if (!strcmp(op, "rlimit")) {
		NEED(3);
		struct rlimit_op r;
		NUM(0, r.resource); NUM(1, r.soft); NUM(2, r.hard);
		PUSH(p->rlimits, r);
	}
	else if (!strcmp(op, "oom_score_adj")) {
		NEED(1);
		char *end; long v = strtol(a[0], &end, 10);
		if (*end || end == a[0]) return lxr_fail(err, EINVAL, "read plan", "oom_score_adj: %s is not a number", a[0]);
		p->has_oom_score_adj = 1; p->oom_score_adj = (int)v;
	}
	else if (!strcmp(op, "umask")) { NEED(1); NUM(0, p->umask_val); p->has_umask = 1; }
	else if (!strcmp(op, "user")) { NEED(2); ID(0, p->uid); ID(1, p->gid); p->has_user = 1; }
	else if (!strcmp(op, "groups")) {
		p->has_groups = 1;
		for (int i = 0; i < argc; i++) { gid_t g; ID(i, g); PUSH(p->groups, g); }
	}
	else if (!strcmp(op, "caps")) { NEED(5); for (int i = 0; i < 5; i++) NUM(i, p->caps[i]); p->has_caps = 1; }
	else if (!strcmp(op, "no_new_privs")) { NEED(0); p->no_new_privs = 1; }
	else if (!strcmp(op, "seccomp_default")) { NEED(1); NUM(0, p->seccomp_default); p->has_seccomp = 1; }
	else if (!strcmp(op, "seccomp_arch")) { NEED(1); PUSH(p->seccomp_arches, a[0]); }
	else if (!strcmp(op, "seccomp_rule")) {
		if (argc < 2 || (argc - 2) % 4 || (argc - 2) / 4 > 6)
			return lxr_fail(err, EINVAL, "read plan", "seccomp_rule: bad argument count %d", argc);
		struct scmp_rule_op r = { .name = a[1], .nargs = (argc - 2) / 4 };
		NUM(0, r.action);
		for (int i = 0; i < r.nargs; i++) {
			NUM(2 + 4 * i, r.args[i].index); NUM(3 + 4 * i, r.args[i].op);
			NUM(4 + 4 * i, r.args[i].v1); NUM(5 + 4 * i, r.args[i].v2);
		}
		PUSH(p->seccomp_rules, r);
	}
	else if (!strcmp(op, "cwd")) { NEED(1); p->cwd = a[0]; }
	else if (!strcmp(op, "env")) { NEED(1); PUSH(p->env, a[0]); }
	else if (!strcmp(op, "args")) {
		if (argc < 1) return lxr_fail(err, EINVAL, "read plan", "args needs at least one argument");
		for (int i = 0; i < argc; i++) PUSH(p->args, a[i]);
	}
	else if (!strcmp(op, "terminal")) { NEED(2); NUM(0, p->rows); NUM(1, p->cols); p->terminal = 1; }
	else if (!strcmp(op, "console_socket")) { NEED(1); p->console_socket = a[0]; }
	else if (!strcmp(op, "report_socket")) { NEED(1); p->report_socket = a[0]; }
	else if (!strcmp(op, "stdio")) {
		if (argc == 1 && !strcmp(a[0], "inherit")) p->stdio_log = 0;
		else if (argc == 2 && !strcmp(a[0], "log")) { p->stdio_log = 1; p->log_path = a[1]; }
		else return lxr_fail(err, EINVAL, "read plan", "stdio: expected 'inherit' or 'log PATH'");
	}
	else if (!strcmp(op, "control")) { NEED(1); p->control = a[0]; }
	else if (!strcmp(op, "autostart")) { NEED(0); p->autostart = 1; }
	else if (!strcmp(op, "gate")) { NEED(0); p->gate = 1; }
	else if (!strcmp(op, "exit_file")) { NEED(1); p->exit_file = a[0]; }
	else if (!strcmp(op, "oom_counter")) { NEED(2); p->oom_file = a[0]; p->oom_key = a[1]; }
	else if (!strcmp(op, "target")) { NEED(1); NUM(0, p->target); }
	else if (!strcmp(op, "detach")) { NEED(0); p->detach = 1; }
	else return lxr_fail(err, EINVAL, "read plan", "unknown record %s", op);
	return 0;
}

ssize_t plan_read(const char *path, char **buf, struct lxr_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return lxr_fail(err, errno, "read plan", "open %s", path);
	ssize_t len = read_all(fd, buf);
	int saved = errno;
	close(fd);
	if (len < 0) return lxr_fail(err, saved, "read plan", "read %s", path);
	return len;
}

int plan_load(const char *path, struct plan *p, struct lxr_err *err)
{
	char *buf;
	ssize_t len = plan_read(path, &buf, err);
	if (len < 0) return -1;
	return plan_parse(buf, (size_t)len, p, err);
}

/* The record at `cur` (name NUL, field count NUL, that many NUL-terminated
 * fields): its name, count and first field, and where the next one starts. */
static int split_record(const char *cur, const char *end, const char **op, unsigned long long *n, const char **fields, const char **next, struct lxr_err *err)
{
	*op = cur;
	const char *z = memchr(cur, 0, (size_t)(end - cur));
	if (!z) return lxr_fail(err, EINVAL, "read plan", "truncated record");
	cur = z + 1;
	const char *nz = memchr(cur, 0, (size_t)(end - cur));
	if (!nz) return lxr_fail(err, EINVAL, "read plan", "%s: truncated record", *op);
	if (num(cur, n, *op, err) < 0) return -1;
	if (*n > (unsigned long long)(end - cur)) return lxr_fail(err, EINVAL, "read plan", "%s: truncated record", *op);
	cur = *fields = nz + 1;
	for (unsigned long long i = 0; i < *n; i++) {
		const char *fz = memchr(cur, 0, (size_t)(end - cur));
		if (!fz) return lxr_fail(err, EINVAL, "read plan", "%s: truncated record", *op);
		cur = fz + 1;
	}
	*next = cur;
	return 0;
}

ssize_t plan_select(const char *buf, size_t len, const char *prefix, char **out)
{
	const char *cur = buf, *end = buf + len;
	char *keep = NULL;
	size_t n_keep = 0, plen = strlen(prefix);
	struct lxr_err err = { 0 };
	while (cur < end) {
		const char *op, *fields, *next;
		unsigned long long n;
		if (split_record(cur, end, &op, &n, &fields, &next, &err) < 0) { free(keep); return -1; }
		if (!strncmp(op, prefix, plen)) {
			char *grown = realloc(keep, n_keep + (size_t)(next - cur));
			if (!grown) { free(keep); return -1; }
			keep = grown;
			memcpy(keep + n_keep, cur, (size_t)(next - cur));
			n_keep += (size_t)(next - cur);
		}
		cur = next;
	}
	*out = keep;
	return (ssize_t)n_keep;
}

int plan_scan(const char *buf, size_t len, struct plan_scan *s, struct lxr_err *err)
{
	const char *cur = buf, *end = buf + len;
	memset(s, 0, sizeof *s);
	while (cur < end) {
		const char *op, *fields, *next;
		unsigned long long n;
		if (split_record(cur, end, &op, &n, &fields, &next, err) < 0) return -1;
		/* ns TYPE PATH: an empty PATH is a new namespace. */
		if (!strcmp(op, "ns") && n == 2) {
			const char *path = fields + strlen(fields) + 1;
			if (!*path && !strcmp(fields, "net")) s->new_net = 1;
			if (!*path && !strcmp(fields, "user")) s->new_user = 1;
		}
		if (!strcmp(op, "gate")) s->gate = 1;
		cur = next;
	}
	return 0;
}

/* Parses a plan in memory; the plan points into buf, which must outlive it. */
int plan_parse(char *buf, size_t len, struct plan *p, struct lxr_err *err)
{
	memset(p, 0, sizeof *p);
	p->gate_fd = -1;
	const char *cur = buf, *end = buf + len;
	char **fields = NULL;
	size_t fields_cap = 0;
	while (cur < end) {
		const char *op, *first, *next;
		unsigned long long n;
		if (split_record(cur, end, &op, &n, &first, &next, err) < 0) return -1;
		if (n > fields_cap) {
			fields_cap = (size_t)n;
			fields = realloc(fields, fields_cap * sizeof *fields);
			if (!fields) abort();
		}
		/* The buffer is the caller's and writable: fields point into it. */
		char *f = (char *)first;
		for (unsigned long long i = 0; i < n; i++) {
			fields[i] = f;
			f += strlen(f) + 1;
		}
		if (apply(p, op, (int)n, fields, err) < 0) return -1;
		cur = next;
	}
	PUSH(p->env, NULL); p->env.n--;
	PUSH(p->args, NULL); p->args.n--;
	return 0;
}
