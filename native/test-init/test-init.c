/*
 * lxr-test-init: the tiny PID 1 that tests put in containers. It runs one
 * command, forwards termination signals to it, reaps every zombie, and exits
 * with the command's status; its --probe modes report what the process sees
 * (fds, ids, pid) without needing a shell in the rootfs.
 *
 * Usage:
 *   lxr-test-init [--] CMD ARGS...   run CMD; exit with its code or 128+signal
 *   lxr-test-init                    wait for signals; exit 0 on SIGTERM/SIGINT
 *   lxr-test-init --probe fds        open fd numbers, space-separated
 *   lxr-test-init --probe ids        "uid=U gid=G groups=A,B"; a value shows as
 *                                    "real/effective/saved" when those differ
 *   lxr-test-init --probe pid        own pid
 *   lxr-test-init --probe exit N     exit with N (0..255)
 *   lxr-test-init --probe sleep S    sleep S seconds (fractions allowed)
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "lxr-test-init"
/* Usage errors, distinct from anything a probe or child reports. */
#define EXIT_USAGE 2

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 };
#define N_FORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static int fail(const char *what)
{
	fprintf(stderr, PROG ": %s: %s\n", what, strerror(errno));
	return -1;
}

static int usage(const char *problem)
{
	fprintf(stderr, PROG ": %s\nusage: " PROG " [--] CMD ARGS... | --probe fds|ids|pid|exit N|sleep S\n", problem);
	return EXIT_USAGE;
}

/* A handler (rather than SIG_DFL) matters for PID 1 in a pid namespace: the
 * kernel drops signals whose disposition is default for that process. */
static void noop_handler(int sig)
{
	(void)sig;
}

static int init_signals(sigset_t *handled, sigset_t *saved)
{
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = noop_handler;
	sigemptyset(&sa.sa_mask);
	sigemptyset(handled);
	for (i = 0; i < N_FORWARDED; i++)
		sigaddset(handled, forwarded[i]);
	sigaddset(handled, SIGCHLD);
	/* Block first so that nothing arriving between fork and the wait loop
	 * is lost: it stays pending until sigwaitinfo takes it. */
	if (sigprocmask(SIG_BLOCK, handled, saved) < 0)
		return fail("sigprocmask");
	for (i = 0; i < N_FORWARDED; i++)
		if (sigaction(forwarded[i], &sa, NULL) < 0)
			return fail("sigaction");
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return fail("sigaction SIGCHLD");
	return 0;
}

static int reset_signals(const sigset_t *saved)
{
	size_t i;

	for (i = 0; i < N_FORWARDED; i++)
		if (signal(forwarded[i], SIG_DFL) == SIG_ERR)
			return fail("signal");
	if (signal(SIGCHLD, SIG_DFL) == SIG_ERR)
		return fail("signal SIGCHLD");
	if (sigprocmask(SIG_SETMASK, saved, NULL) < 0)
		return fail("sigprocmask");
	return 0;
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Starts the command; in the child, never returns. 126/127 follow the shell's
 * convention: found but not runnable / not found. */
static pid_t spawn(char **argv, const sigset_t *saved)
{
	pid_t pid = fork();

	if (pid < 0)
		return fail("fork");
	if (pid > 0)
		return pid;
	if (reset_signals(saved) < 0)
		_exit(127);
	execvp(argv[0], argv);
	fprintf(stderr, PROG ": exec %s: %s\n", argv[0], strerror(errno));
	_exit(errno == EACCES || errno == ENOEXEC ? 126 : 127);
}

/* Reaps every exited child; sets *main_status when `main_pid` is among them.
 * Returns 1 when the main child was reaped, 0 otherwise, < 0 on failure. */
static int reap(pid_t main_pid, int *main_status)
{
	int found = 0;

	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid == 0)
			return found;
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD)
				return found;
			return fail("waitpid");
		}
		if (pid == main_pid) {
			*main_status = status;
			found = 1;
		}
	}
}

static int next_signal(const sigset_t *handled)
{
	for (;;) {
		int sig = sigwaitinfo(handled, NULL);

		if (sig >= 0)
			return sig;
		if (errno != EINTR)
			return fail("sigwaitinfo");
	}
}

static int run_command(char **argv)
{
	sigset_t handled, saved;
	pid_t child;
	int status = 0;

	if (init_signals(&handled, &saved) < 0)
		return 1;
	/* Off PID 1 (tests run it directly on the host) orphans would escape to
	 * the real init; as a subreaper it still reaps them. */
	if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		fail("prctl PR_SET_CHILD_SUBREAPER");
	child = spawn(argv, &saved);
	if (child < 0)
		return 1;
	for (;;) {
		int sig = next_signal(&handled);
		int done;

		if (sig < 0)
			return 1;
		if (sig != SIGCHLD) {
			if (kill(child, sig) < 0 && errno != ESRCH)
				fail("kill");
			continue;
		}
		done = reap(child, &status);
		if (done < 0)
			return 1;
		if (done)
			return exit_code(status);
	}
}

static int wait_forever(void)
{
	sigset_t handled, saved;
	int status;

	if (init_signals(&handled, &saved) < 0)
		return 1;
	for (;;) {
		int sig = next_signal(&handled);

		if (sig < 0)
			return 1;
		if (sig == SIGTERM || sig == SIGINT)
			return 0;
		if (sig == SIGCHLD && reap(-1, &status) < 0)
			return 1;
	}
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static int probe_fds(void)
{
	int fds[1024];
	size_t n = 0, i;
	struct dirent *ent;
	DIR *dir = opendir("/proc/self/fd");
	int own;

	if (!dir)
		return fail("opendir /proc/self/fd");
	own = dirfd(dir);
	errno = 0;
	while ((ent = readdir(dir)) != NULL) {
		char *end;
		long fd = strtol(ent->d_name, &end, 10);

		if (ent->d_name[0] == '.' || *end != '\0' || fd == own)
			continue;
		if (n < sizeof(fds) / sizeof(fds[0]))
			fds[n++] = (int)fd;
	}
	if (errno != 0) {
		fail("readdir /proc/self/fd");
		closedir(dir);
		return -1;
	}
	closedir(dir);
	qsort(fds, n, sizeof(fds[0]), cmp_int);
	for (i = 0; i < n; i++)
		printf(i ? " %d" : "%d", fds[i]);
	printf("\n");
	return 0;
}

static void print_id(const char *name, unsigned r, unsigned e, unsigned s)
{
	if (r == e && e == s)
		printf("%s=%u", name, r);
	else
		printf("%s=%u/%u/%u", name, r, e, s);
}

static int probe_ids(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	gid_t groups[4096];
	int n, i;

	if (getresuid(&ru, &eu, &su) < 0)
		return fail("getresuid");
	if (getresgid(&rg, &eg, &sg) < 0)
		return fail("getresgid");
	n = getgroups(sizeof(groups) / sizeof(groups[0]), groups);
	if (n < 0)
		return fail("getgroups");
	print_id("uid", ru, eu, su);
	print_id(" gid", rg, eg, sg);
	printf(" groups=");
	for (i = 0; i < n; i++)
		printf(i ? ",%u" : "%u", (unsigned)groups[i]);
	printf("\n");
	return 0;
}

static int parse_number(const char *s, double min, double max, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || *out < min || *out > max) {
		fprintf(stderr, PROG ": bad number %s (want %g..%g)\n", s, min, max);
		return -1;
	}
	return 0;
}

/* Off PID 1 a terminating signal should look like one to the parent; as PID
 * 1 raising it is ignored by the kernel, so fall back to 128+signal. */
static void die_by_signal(int sig)
{
	signal(sig, SIG_DFL);
	raise(sig);
	_exit(128 + sig);
}

static int probe_sleep(double seconds)
{
	struct timespec left;
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = die_by_signal;
	for (i = 0; i < N_FORWARDED; i++)
		if (sigaction(forwarded[i], &sa, NULL) < 0)
			return fail("sigaction");
	left.tv_sec = (time_t)seconds;
	left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
	while (nanosleep(&left, &left) < 0)
		if (errno != EINTR)
			return fail("nanosleep");
	return 0;
}

static int run_probe(int argc, char **argv)
{
	const char *what = argc > 0 ? argv[0] : "";
	double n;

	if (strcmp(what, "fds") == 0 && argc == 1)
		return probe_fds() < 0 ? 1 : 0;
	if (strcmp(what, "ids") == 0 && argc == 1)
		return probe_ids() < 0 ? 1 : 0;
	if (strcmp(what, "pid") == 0 && argc == 1) {
		printf("%d\n", (int)getpid());
		return 0;
	}
	if (strcmp(what, "exit") == 0 && argc == 2) {
		if (parse_number(argv[1], 0, 255, &n) < 0 || n != (int)n)
			return usage("exit code must be an integer 0..255");
		return (int)n;
	}
	if (strcmp(what, "sleep") == 0 && argc == 2) {
		if (parse_number(argv[1], 0, 1e9, &n) < 0)
			return usage("sleep wants seconds");
		return probe_sleep(n) < 0 ? 1 : 0;
	}
	return usage("unknown probe");
}

int main(int argc, char **argv)
{
	int rc;

	if (argc > 1 && strcmp(argv[1], "--probe") == 0) {
		rc = run_probe(argc - 2, argv + 2);
		/* Probe output is the result: a failed write must fail the probe. */
		if (fflush(stdout) != 0 && rc == 0)
			rc = fail("write stdout") < 0 ? 1 : 0;
		return rc;
	}
	if (argc > 1 && strcmp(argv[1], "--") == 0) {
		argv++;
		argc--;
	}
	if (argc < 2)
		return wait_forever();
	return run_command(argv + 1);
}
