/* lxr-fsops: carries out an image layer's filesystem plan beneath the layer
 * directory (overlay whiteouts, opaque dirs, symlinks, final attributes).
 * The agent decides everything; this program only resolves each path beneath
 * the directory without following symlinks and makes the call. */
#ifndef LXR_FSOPS_H
#define LXR_FSOPS_H

#include <stddef.h>

#include "../common/err.h"


/* One JSON line {"step","errno","errnum","message"} on fd. */
void report_error(int fd, const struct lxr_err *err);

/* ops.c: each takes the layer dir's fd and a relative path ("" = the dir). */
int op_whiteout(int root, const char *rel, struct lxr_err *err);
int op_opaque(int root, const char *rel, struct lxr_err *err);
int op_symlink(int root, const char *rel, const char *target, struct lxr_err *err);
/* mode/uid/gid/mtime_ms < 0 leave that attribute alone. */
int op_attr(int root, const char *rel, long mode, long long uid, long long gid, long long mtime_ms,
	struct lxr_err *err);

#endif
