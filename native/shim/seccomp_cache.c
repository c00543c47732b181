/* Compiled seccomp filters, kept by the long-lived servers (the create
 * server and each container's exec server) and inherited by what they fork.
 *
 * Compiling a profile with libseccomp takes about 0.4-0.6 ms, and every
 * container and every exec of a host usually carries the same default
 * profile. A server looks up the plan's seccomp records (all of them, as
 * bytes) before it forks; on a miss it compiles them once. The forked
 * process uses the compiled filter from its copy of the server's memory and
 * compiles only when the cache had nothing (a new profile with the cache
 * full, or records it could not read: the process's own parse then reports
 * the problem). */
#include "shim.h"

#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX 8

struct entry {
	char *key;
	size_t len;
	struct sock_fprog prog;
};

static struct entry cache[CACHE_MAX];
static size_t cached;

const struct sock_fprog *seccomp_cached(const char *plan_buf, size_t len)
{
	char *key;
	ssize_t got = plan_select(plan_buf, len, "seccomp_", &key);
	if (got <= 0) return NULL;
	size_t klen = (size_t)got;
	for (size_t i = 0; i < cached; i++)
		if (cache[i].len == klen && !memcmp(cache[i].key, key, klen)) {
			free(key);
			return &cache[i].prog;
		}
	if (cached == CACHE_MAX) { free(key); return NULL; }
	/* Parsed from a copy: the plan points into the buffer it parses. */
	static struct plan p;
	struct lxr_err err = { 0 };
	char *work = malloc(klen);
	if (!work) { free(key); return NULL; }
	memcpy(work, key, klen);
	struct sock_fprog prog = { 0 };
	int rc = plan_parse(work, klen, &p, &err) < 0 || !p.has_seccomp || compile_seccomp(&p, &prog, &err) < 0 ? -1 : 0;
	free(p.seccomp_arches.v);
	free(p.seccomp_rules.v);
	free(p.env.v);
	free(p.args.v);
	free(work);
	if (rc < 0) { free(key); return NULL; }
	cache[cached] = (struct entry){ key, klen, prog };
	return &cache[cached++].prog;
}
