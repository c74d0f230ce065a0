/*
 * pf_error.h - error codes and messages shared by every pipefeed call.
 *
 * Conventions (taken from liburing and libuv):
 *  - functions return 0 (or a count) on success and a negative PF_E* code on
 *    failure; errno is never the channel;
 *  - a call that fails and takes a `pf_error *` fills it with a one-line
 *    message naming what failed: the file, the byte offset and the reason
 *    ("fmnist-00001-of-00004.pfs: block 3 at offset 81920: checksum mismatch");
 *  - a NULL `pf_error *` is allowed: the code is still returned.
 */
#ifndef PF_ERROR_H
#define PF_ERROR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message): the one table of error codes. */
#define PF_ERRNO_MAP(X)                                                        \
	X(EINVAL,   1, "invalid argument")                                     \
	X(ENOMEM,   2, "out of memory")                                        \
	X(EIO,      3, "input/output error")                                   \
	X(ENOENT,   4, "no such file")                                         \
	X(ECORRUPT, 5, "corrupt data (checksum or structure)")                 \
	X(ETRUNC,   6, "truncated file")                                       \
	X(EVERSION, 7, "unsupported format version")                           \
	X(EFORMAT,  8, "not a file of the expected format")                    \
	X(ELIMIT,   9, "a size or count exceeds its limit")                    \
	X(EBUDGET, 10, "does not fit the memory budget")                       \
	X(ESPEC,   11, "pipeline spec error")                                  \
	X(EMAP,    12, "map function failed")                                  \
	X(ESTATE,  13, "call not valid in this state")                         \
	X(ENOSPC,  14, "no space left on device")                              \
	X(ENODEV,  15, "no such device")                                       \
	X(EINTR,   16, "interrupted")                                          \
	X(EOF_,    17, "end of sequence")                                     \
	X(ETIMEDOUT, 18, "deadline passed or cannot be met")

enum pf_errno {
	PF_OK = 0,
#define PF_X_ENUM(name, val, msg) PF_##name = -(val),
	PF_ERRNO_MAP(PF_X_ENUM)
#undef PF_X_ENUM
};

/* End of an epoch/sequence is not an error: iterators return PF_END (> 0). */
#define PF_END 1

#define PF_ERROR_MSG_MAX 512

/* An error report: the code and a message that names file, offset, reason. */
typedef struct pf_error {
	int code;
	char msg[PF_ERROR_MSG_MAX];
} pf_error;

/* Short name of a code ("PF_ECORRUPT"); "PF_E?" for an unknown code. Never NULL. */
const char *pf_err_name(int code);

/* Generic message of a code ("corrupt data ..."). Never NULL. */
const char *pf_strerror(int code);

/*
 * Fill *err (when err is not NULL) with code and a printf-style message, and
 * return code, so that callers can write `return pf_error_set(err, ...)`.
 * The first error wins: a message already set (err->code != 0) is kept, so a
 * low-level report is not overwritten by a vaguer one further up.
 */
int pf_error_set(pf_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Convert a negative errno (from a syscall or io_uring CQE) to a PF_E* code. */
int pf_error_from_errno(int neg_errno);

/* Reset *err to "no error" (NULL allowed). */
void pf_error_clear(pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_ERROR_H */
