/* error.c - the error table and message helpers declared in pf_error.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pf_error.h"

const char *pf_err_name(int code)
{
	switch (code) {
	case PF_OK: return "PF_OK";
#define PF_X_NAME(name, val, msg) case -(val): return "PF_" #name;
	PF_ERRNO_MAP(PF_X_NAME)
#undef PF_X_NAME
	default: return "PF_E?";
	}
}

const char *pf_strerror(int code)
{
	switch (code) {
	case PF_OK: return "success";
#define PF_X_MSG(name, val, msg) case -(val): return msg;
	PF_ERRNO_MAP(PF_X_MSG)
#undef PF_X_MSG
	default: return "unknown error";
	}
}

int pf_error_set(pf_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code != 0)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int pf_error_from_errno(int neg_errno)
{
	switch (-neg_errno) {
	case 0: return PF_OK;
	case ENOMEM: return PF_ENOMEM;
	case ENOENT: case ENOTDIR: return PF_ENOENT;
	case EINVAL: return PF_EINVAL;
	case ENOSPC: case EDQUOT: return PF_ENOSPC;
	case EINTR: return PF_EINTR;
	case ENODEV: case ENXIO: return PF_ENODEV;
	default: return PF_EIO;
	}
}

void pf_error_clear(pf_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
