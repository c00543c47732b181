/* The error record every native LXR function fills, shared by lxr-shim and
 * lxr-fsops: each function returns < 0 on failure and fills a struct
 * lxr_err with the errno, the step and a message; each program reports it
 * to the agent in its own one-line JSON. */
#ifndef LXR_COMMON_ERR_H
#define LXR_COMMON_ERR_H

#include <stddef.h>

struct lxr_err {
	int errnum;          /* errno of the failed call, 0 if none */
	int exit_code;       /* 127/126 for a missing/non-executable binary */
	char step[128];      /* what was being done, e.g. "mount /proc" */
	char msg[768];
};

/* Fills err and returns -1. errnum is errno (0 for a logic error). */
int lxr_fail(struct lxr_err *err, int errnum, const char *step, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* errno's symbolic name ("EPERM"), "" for 0. */
const char *errno_name(int e);
/* s as the inside of a JSON string, truncated to fit cap. */
void json_str(char *dst, size_t cap, const char *s);
int write_all(int fd, const void *buf, size_t len);

#endif
