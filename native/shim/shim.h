/* lxr-shim: the per-container monitor and the namespace-joining exec helper.
 * Shared declarations: the error record every function fills, the parsed
 * launch plan (see ../PLAN.md) and the steps each file implements. */
#ifndef LXR_SHIM_H
#define LXR_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/err.h"



struct mount_op {
	int is_remount;
	const char *src, *dst, *type, *data;
	unsigned long flags, pflags;
};

struct dev_op {
	const char *path;
	char type;
	unsigned major, minor;
	unsigned mode;
	uid_t uid;
	gid_t gid;
};

struct kv { const char *a, *b; };
struct rlimit_op { int resource; unsigned long long soft, hard; };
struct ns_op { int type; const char *path; }; /* type: CLONE_NEW* */
struct scmp_arg_op { unsigned index; int op; uint64_t v1, v2; };
struct scmp_rule_op { uint32_t action; const char *name; int nargs; struct scmp_arg_op args[6]; };

#define VEC(T) struct { T *v; size_t n, cap; }

struct plan {
	const char *id;
	const char *rootfs;
	int rootfs_readonly;
	const char *ov_upper, *ov_work;
	VEC(const char *) ov_lower;
	VEC(struct ns_op) ns;
	VEC(const char *) uid_map;   /* "c h n" lines */
	VEC(const char *) gid_map;
	VEC(const char *) cgroup_procs;
	VEC(struct mount_op) mounts; /* mounts and remounts, in order */
	VEC(struct dev_op) devs;
	VEC(struct kv) symlinks;
	VEC(const char *) masked;
	VEC(const char *) readonly;
	unsigned long propagation;
	const char *hostname, *domainname;
	VEC(struct kv) sysctls;
	VEC(struct rlimit_op) rlimits;
	int has_oom_score_adj, oom_score_adj;
	int has_umask; unsigned umask_val;
	int has_user; uid_t uid; gid_t gid;
	int has_groups; VEC(gid_t) groups;
	int has_caps; uint64_t caps[5]; /* bounding effective permitted inheritable ambient */
	int no_new_privs;
	int has_seccomp; uint32_t seccomp_default;
	VEC(const char *) seccomp_arches;
	VEC(struct scmp_rule_op) seccomp_rules;
	/* Set after parsing by whoever has the filter compiled already (seccomp_cache.c). */
	const struct sock_fprog *seccomp_compiled;
	const char *cwd;
	VEC(char *) env;   /* NULL-terminated when used */
	VEC(char *) args;  /* NULL-terminated when used */
	int terminal; unsigned rows, cols;
	const char *console_socket;
	const char *report_socket;
	int stdio_log; const char *log_path;
	const char *control;
	int autostart;
	/* Set by the server: this process already sits in a fresh network
	 * namespace made for it, which the init keeps instead of a new one. */
	int netns_ready;
	/* `gate`: the monitor waits for the caller's go (one byte on gate_fd,
	 * from the server) before it touches the container's cgroups. */
	int gate; int gate_fd;
	const char *exit_file;
	const char *oom_file, *oom_key;
	/* exec mode */
	pid_t target;
	int detach;
};

int plan_load(const char *path, struct plan *p, struct lxr_err *err);
int plan_parse(char *buf, size_t len, struct plan *p, struct lxr_err *err);
/* A plan file's bytes (malloc'd into *buf): its length, < 0 on failure. */
ssize_t plan_read(const char *path, char **buf, struct lxr_err *err);
/* The records whose name starts with `prefix`, back to back in plan format
 * (malloc'd into *out, NULL when none): their length; < 0 for a malformed plan. */
ssize_t plan_select(const char *buf, size_t len, const char *prefix, char **out);
/* What the server must know of a plan (in memory) before it forks, read
 * from its records without keeping anything: whether it asks for a new
 * network and a new user namespace, and whether it is gated. < 0 for a
 * malformed plan. */
struct plan_scan { int new_net, new_user, gate; };
int plan_scan(const char *buf, size_t len, struct plan_scan *s, struct lxr_err *err);

/* util.c */
int write_file(const char *path, const char *data, struct lxr_err *err);
ssize_t read_all(int fd, char **out);
int report(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int report_error(int fd, const struct lxr_err *err);
/* When set, every report line on report_tag_fd starts with this tag and a
 * space (server mode); other descriptors (the control socket) get none. */
extern const char *report_tag;
extern int report_tag_fd;
int self_protect(char **argv);

/* mounts.c: the container's filesystem view */
int setup_rootfs(const struct plan *p, struct lxr_err *err);
int finish_rootfs(const struct plan *p, struct lxr_err *err);

/* process.c: the process's identity and limits, then exec */
int apply_rlimits(const struct plan *p, struct lxr_err *err);
int enter_cwd(const struct plan *p, struct lxr_err *err);
int set_identity(const struct plan *p, struct lxr_err *err);
int find_binary(const struct plan *p, char *out, size_t cap, struct lxr_err *err);
struct sock_fprog;
int compile_seccomp(const struct plan *p, struct sock_fprog *prog, struct lxr_err *err);
int install_seccomp(const struct sock_fprog *prog, struct lxr_err *err);
/* The compiled filter of a plan's seccomp records (plan format, in memory), from a
 * cache kept by the calling server; NULL when there is none to give. */
const struct sock_fprog *seccomp_cached(const char *plan_buf, size_t len);
int apply_no_new_privs(const struct plan *p, struct lxr_err *err);
int exec_process(const struct plan *p, const char *path, struct lxr_err *err);
int finalize_and_exec(const struct plan *p, int sync_fd, int (*wait_go)(int), struct lxr_err *err);

/* terminal.c */
int setup_terminal(const struct plan *p, int console_fd, struct lxr_err *err);
int connect_unix(const char *path, const char *what, struct lxr_err *err);
int open_pty(const struct plan *p, int *master, int *slave, struct lxr_err *err);
int become_tty_session(int slave, struct lxr_err *err);
/* relay.c */
int relay_terminal(int master, pid_t child, int sfd, int ctl, int *status);
/* control.c */
int control_read(int fd, pid_t child);
int wait_forwarding(pid_t child, int sfd, int ctl, int *status);

/* namespaces.c */
int join_namespaces(const struct plan *p, int skip_pid, struct lxr_err *err);
int open_ns_fds(const struct plan *p, int *fds, struct lxr_err *err);
int setns_fds(const struct plan *p, const int *fds, struct lxr_err *err);
int write_id_maps(pid_t pid, const struct plan *p, struct lxr_err *err);

/* cgroups.c: joining the container's cgroups without the global lock */
#define CGROUP_JOIN_MAX 32
struct cgroup_join {
	int tasks_fd[CGROUP_JOIN_MAX]; size_t ntasks; /* v1 `tasks` files, written "0" by the process itself */
	int into_fd; const char *into_procs;          /* the v2 group a clone is created in */
	const char *procs[CGROUP_JOIN_MAX]; size_t nprocs; /* the rest: the pid written to cgroup.procs */
};
void cgroup_join_init(struct cgroup_join *j);
void cgroup_join_close(struct cgroup_join *j);
/* Opens what joining needs; into_v2: the v2 group is for cgroup_join_clone. */
int cgroup_join_prepare(const struct plan *p, int into_v2, struct cgroup_join *j, struct lxr_err *err);
/* clone (new namespaces `flags`, SIGCHLD) with the child in the v2 group. */
pid_t cgroup_join_clone(struct cgroup_join *j, uint64_t flags, struct lxr_err *err);
/* In the (single-threaded) process that joins: its v1 groups. */
int cgroup_join_self(struct cgroup_join *j, struct lxr_err *err);
/* By any process, for `pid`: what is left. */
int cgroup_join_pid(struct cgroup_join *j, pid_t pid, struct lxr_err *err);
/* The calling (single-threaded) process joins all of the plan's cgroups. */
int cgroup_join_here(const struct plan *p, struct lxr_err *err);

/* sync.c: messages between monitor and container init */
int sync_send(int fd, char kind, const char *payload);
int sync_recv(int fd, char *kind, char *payload, size_t cap);
int send_child_error(int fd, const struct lxr_err *err);

/* forked: the caller forked this process for it (server mode), so the
 * monitor need not fork again to be nobody's waiting child. */
int cmd_create(struct plan *p, int report_fd, int forked);
int cmd_exec(struct plan *p, int report_fd);
int cmd_server(int report_fd);
int cmd_exec_server(struct plan *p, int report_fd, const char *sock_path);

#endif
