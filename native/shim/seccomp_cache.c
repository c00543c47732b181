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

/* The records of `buf` whose name starts with "seccomp_", back to back, in
 * plan format (so they parse as a plan of their own); 0 with *out NULL when
 * there are none, < 0 when the plan is malformed. */
static int seccomp_records(const char *buf, size_t len, char **out, size_t *out_len)
{
	const char *cur = buf, *end = buf + len;
	char *keep = NULL;
	size_t n_keep = 0;
	*out = NULL;
	*out_len = 0;
	while (cur < end) {
		const char *rec = cur;
		const char *z = memchr(cur, 0, (size_t)(end - cur));
		if (!z) goto bad;
		const char *nz = memchr(z + 1, 0, (size_t)(end - z - 1));
		if (!nz) goto bad;
		char *stop;
		unsigned long long n = strtoull(z + 1, &stop, 0);
		if (stop != nz) goto bad;
		cur = nz + 1;
		for (unsigned long long i = 0; i < n; i++) {
			const char *fz = memchr(cur, 0, (size_t)(end - cur));
			if (!fz) goto bad;
			cur = fz + 1;
		}
		if (strncmp(rec, "seccomp_", 8)) continue;
		char *grown = realloc(keep, n_keep + (size_t)(cur - rec));
		if (!grown) goto bad;
		keep = grown;
		memcpy(keep + n_keep, rec, (size_t)(cur - rec));
		n_keep += (size_t)(cur - rec);
	}
	*out = keep;
	*out_len = n_keep;
	return 0;
bad:
	free(keep);
	return -1;
}

const struct sock_fprog *seccomp_cached(const char *plan_buf, size_t len)
{
	char *key;
	size_t klen;
	if (seccomp_records(plan_buf, len, &key, &klen) < 0 || !key) return NULL;
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
