/* Namespaces: which kernel views (pids, mounts, hostname, IPC, network,
 * cgroups, user ids) the container gets of its own. New ones come from the
 * clone flags; joined ones by setns on the path the plan names. Also the
 * write only the parent can do for the child: its user-namespace id maps. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *ns_name(int type)
{
	switch (type) {
	case CLONE_NEWPID: return "pid"; case CLONE_NEWNS: return "mount"; case CLONE_NEWUTS: return "uts";
	case CLONE_NEWIPC: return "ipc"; case CLONE_NEWNET: return "net"; case CLONE_NEWCGROUP: return "cgroup";
	case CLONE_NEWUSER: return "user";
	}
	return "?";
}

/* Join order matters: the user namespace first (it grants the rights to
 * join the others), the mount namespace last (it changes what paths mean). */
static int join_rank(int type)
{
	return type == CLONE_NEWUSER ? 0 : type == CLONE_NEWNS ? 2 : 1;
}

int open_ns_fds(const struct plan *p, int *fds, struct lxr_err *err)
{
	for (size_t i = 0; i < p->ns.n; i++) {
		fds[i] = -1;
		if (!p->ns.v[i].path) continue;
		fds[i] = open(p->ns.v[i].path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			return lxr_fail(err, errno, "join namespace", "open %s namespace %s", ns_name(p->ns.v[i].type), p->ns.v[i].path);
	}
	return 0;
}

int setns_fds(const struct plan *p, const int *fds, struct lxr_err *err)
{
	for (int rank = 0; rank <= 2; rank++)
		for (size_t i = 0; i < p->ns.n; i++) {
			if (fds[i] < 0 || join_rank(p->ns.v[i].type) != rank) continue;
			if (setns(fds[i], p->ns.v[i].type) < 0)
				return lxr_fail(err, errno, "join namespace", "setns %s %s", ns_name(p->ns.v[i].type), p->ns.v[i].path);
			close(fds[i]);
		}
	return 0;
}

/* Joins the namespaces given by path; the pid namespace is joined by the
 * monitor before clone (it only affects children), so skip it here. */
int join_namespaces(const struct plan *p, int skip_pid, struct lxr_err *err)
{
	int fds[16];
	if (p->ns.n > 16) return lxr_fail(err, EINVAL, "join namespace", "too many namespaces");
	if (open_ns_fds(p, fds, err) < 0) return -1;
	for (size_t i = 0; i < p->ns.n; i++)
		if (skip_pid && fds[i] >= 0 && p->ns.v[i].type == CLONE_NEWPID) { close(fds[i]); fds[i] = -1; }
	return setns_fds(p, fds, err);
}

static int write_map(pid_t pid, const char *file, const char **lines, size_t n, struct lxr_err *err)
{
	char path[64], buf[4096];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + o, sizeof buf - o, "%s", lines[i]);
		if (w < 0 || (size_t)w >= sizeof buf - o)
			return lxr_fail(err, E2BIG, "user namespace", "%s: more mappings than fit in one write (%zu lines)", file, n);
		o += (size_t)w;
	}
	snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
	if (write_file(path, buf, err) < 0) {
		snprintf(err->step, sizeof err->step, "user namespace %s", file);
		return -1;
	}
	return 0;
}

int write_id_maps(pid_t pid, const struct plan *p, struct lxr_err *err)
{
	if (p->uid_map.n && write_map(pid, "uid_map", p->uid_map.v, p->uid_map.n, err) < 0) return -1;
	if (p->gid_map.n && write_map(pid, "gid_map", p->gid_map.v, p->gid_map.n, err) < 0) return -1;
	return 0;
}
