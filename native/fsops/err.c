/* The one-line JSON error report lxr-fsops writes for the agent. */
#include "fsops.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void report_error(int fd, const struct lxr_err *err)
{
	char step[300], msg[1600];
	json_str(step, sizeof step, err->step);
	json_str(msg, sizeof msg, err->msg);
	dprintf(fd, "{\"step\":\"%s\",\"errno\":\"%s\",\"errnum\":%d,\"message\":\"%s\"}\n",
		step, errno_name(err->errnum), err->errnum, msg);
}
