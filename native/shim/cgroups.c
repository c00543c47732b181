/* Cgroups: which resource-accounting groups a container's processes are
 * charged to. The plan names each group by its cgroup.procs file; this file
 * decides how a process gets there.
 *
 * Writing a pid to cgroup.procs takes the kernel's global
 * cgroup_threadgroup_rwsem for writing, and the first writer after a quiet
 * spell waits for an RCU grace period: 5 to 17 ms per container on a
 * hybrid host, more than everything else a create does. Two ways avoid it:
 * - cgroup v1: a single-threaded process moves itself by writing "0" to the
 *   group's `tasks` file. Migrating only the calling thread needs no
 *   thread-group stability, so the kernel skips the global lock (Linux 6.0,
 *   "cgroup: Optimize single thread migration"). The files are opened by
 *   the caller, as root, before anything changes its identity: the kernel
 *   checks the opener's credentials, so it works from a new user namespace.
 * - cgroup v2: the process is created inside its group (clone3 with
 *   CLONE_INTO_CGROUP, Linux 5.7), which only takes the lock for reading.
 * What neither covers (a second v2 hierarchy, a kernel without clone3, a
 * process that moves another) falls back to writing the pid to
 * cgroup.procs, as before. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* The kernel's struct clone_args, version 2 (with cgroup). */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

void cgroup_join_init(struct cgroup_join *j)
{
	memset(j, 0, sizeof *j);
	j->into_fd = -1;
	for (size_t i = 0; i < CGROUP_JOIN_MAX; i++) j->tasks_fd[i] = -1;
}

void cgroup_join_close(struct cgroup_join *j)
{
	for (size_t i = 0; i < j->ntasks; i++)
		if (j->tasks_fd[i] >= 0) close(j->tasks_fd[i]);
	if (j->into_fd >= 0) close(j->into_fd);
	cgroup_join_init(j);
}

/* The directory of a cgroup.procs path, in `dir`. */
static int dir_of(const char *procs, char *dir, size_t cap, struct lxr_err *err)
{
	const char *slash = strrchr(procs, '/');
	size_t n = slash ? (size_t)(slash - procs) : 0;
	if (!slash || n == 0 || n >= cap) return lxr_fail(err, EINVAL, "join cgroup", "%s is not a path to a cgroup file", procs);
	memcpy(dir, procs, n);
	dir[n] = 0;
	return 0;
}

int cgroup_join_prepare(const struct plan *p, int into_v2, struct cgroup_join *j, struct lxr_err *err)
{
	cgroup_join_init(j);
	if (p->cgroup_procs.n > CGROUP_JOIN_MAX)
		return lxr_fail(err, E2BIG, "join cgroup", "%zu cgroups, at most %d", p->cgroup_procs.n, CGROUP_JOIN_MAX);
	for (size_t i = 0; i < p->cgroup_procs.n; i++) {
		const char *procs = p->cgroup_procs.v[i];
		char dir[4096], path[4200];
		struct statfs sf;
		if (dir_of(procs, dir, sizeof dir, err) < 0) goto fail;
		if (statfs(dir, &sf) < 0) { lxr_fail(err, errno, "join cgroup", "statfs %s", dir); goto fail; }
		if (sf.f_type == CGROUP2_SUPER_MAGIC && into_v2 && j->into_fd < 0) {
			j->into_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (j->into_fd < 0) { lxr_fail(err, errno, "join cgroup", "open %s", dir); goto fail; }
			j->into_procs = procs;
			continue;
		}
		if (sf.f_type == CGROUP_SUPER_MAGIC) {
			snprintf(path, sizeof path, "%s/tasks", dir);
			int fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) { j->tasks_fd[j->ntasks++] = fd; continue; }
			if (errno != ENOENT) { lxr_fail(err, errno, "join cgroup", "open %s", path); goto fail; }
		}
		j->procs[j->nprocs++] = procs;
	}
	return 0;
fail:
	cgroup_join_close(j);
	return -1;
}

pid_t cgroup_join_clone(struct cgroup_join *j, uint64_t flags, struct lxr_err *err)
{
	if (j->into_fd >= 0) {
		struct clone3_args a = { .flags = flags | CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)j->into_fd };
		pid_t child = (pid_t)syscall(SYS_clone3, &a, sizeof a);
		if (child >= 0) return child;
		/* No clone3 (ENOSYS), a clone3 without CLONE_INTO_CGROUP (5.3-5.6:
		 * E2BIG or EINVAL), or a policy that forbids it (EPERM): that group
		 * is joined by pid after all. A real failure repeats below. */
		if (errno != ENOSYS && errno != E2BIG && errno != EINVAL && errno != EPERM)
			return lxr_fail(err, errno, "clone", "into cgroup %s, new namespaces 0x%llx", j->into_procs, (unsigned long long)flags);
		close(j->into_fd);
		j->into_fd = -1;
		j->procs[j->nprocs++] = j->into_procs;
	}
	pid_t child = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
	if (child < 0) return lxr_fail(err, errno, "clone", "new namespaces 0x%llx", (unsigned long long)flags);
	return child;
}

int cgroup_join_self(struct cgroup_join *j, struct lxr_err *err)
{
	for (size_t i = 0; i < j->ntasks; i++)
		if (write(j->tasks_fd[i], "0", 1) != 1) {
			lxr_fail(err, errno, "join cgroup", "move this thread into its v1 cgroup (tasks)");
			cgroup_join_close(j);
			return -1;
		}
	if (j->into_fd >= 0) close(j->into_fd);
	for (size_t i = 0; i < j->ntasks; i++) close(j->tasks_fd[i]);
	j->into_fd = -1;
	j->ntasks = 0;
	return 0;
}

int cgroup_join_pid(struct cgroup_join *j, pid_t pid, struct lxr_err *err)
{
	char s[24];
	snprintf(s, sizeof s, "%d", pid);
	for (size_t i = 0; i < j->nprocs; i++)
		if (write_file(j->procs[i], s, err) < 0) {
			snprintf(err->step, sizeof err->step, "join cgroup");
			return -1;
		}
	return 0;
}

int cgroup_join_here(const struct plan *p, struct lxr_err *err)
{
	struct cgroup_join j;
	if (cgroup_join_prepare(p, 0, &j, err) < 0) return -1;
	if (cgroup_join_self(&j, err) < 0) return -1;
	return cgroup_join_pid(&j, getpid(), err);
}
