/*
 * pf_file.h - a read-only byte source: a regular file read with pread, or a
 * caller's buffer (the fuzz harnesses and tests read files from memory).
 *
 * The one place the file readers (shards, IDX, .npy, TFRecord) open files
 * and read byte ranges, so that every one of them reports a failed, short or
 * out-of-range read the same way: "NAME: offset N: reason".
 *
 * Threads: reads are pread (or memcpy), so one pf_file may be read by many
 * threads at once; open and close belong to its owner.
 */
#ifndef PF_FILE_H
#define PF_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_file {
	char *name;                 /* the path, or the name given for a buffer */
	int fd;                     /* -1 for a buffer */
	const unsigned char *mem;   /* the buffer, or NULL */
	uint64_t size;              /* bytes */
} pf_file;

/* Open a regular file.  PF_ENOENT / PF_EIO / PF_EINVAL (not a regular file)
 * with the path in the message.  *f is zeroed (fd -1) on failure. */
int pf_file_open(pf_file *f, const char *path, pf_error *err);

/* Wrap len bytes at buf (which must outlive f); name is used in messages. */
int pf_file_open_mem(pf_file *f, const void *buf, size_t len, const char *name,
		     pf_error *err);

/* Read exactly n bytes at off: 0, PF_ETRUNC when the range passes the end of
 * the file (or the file shrank), PF_EIO (strerror in the message). */
int pf_file_read(const pf_file *f, void *dst, size_t n, uint64_t off, pf_error *err);

/* Read up to n bytes at off; returns the count (0 at the end) or a negative
 * PF_E* code. */
ssize_t pf_file_read_some(const pf_file *f, void *dst, size_t n, uint64_t off,
			  pf_error *err);

/* Read n bytes at off from the descriptor fd with pread, going on after
 * interrupted (EINTR) and short reads until n bytes came or the file ended.
 * Returns the bytes read (fewer than n only at the end of the file), or
 * -errno when a read fails.  *done, when not NULL, gets the bytes read
 * before the failure (or the count).  No pf_error: the callers name the
 * file in their own messages. */
ssize_t pf_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *done);

/* Write n bytes to the descriptor fd, going on after interrupted (EINTR)
 * and short writes: 0, or -errno when a write fails.  *done, when not NULL,
 * gets the bytes written (before the failure, or n). */
int pf_write_full(int fd, const void *buf, size_t n, size_t *done);

/* Close and free the name; the struct may be reused.  A zeroed or closed
 * pf_file is a no-op. */
void pf_file_close(pf_file *f);

#ifdef __cplusplus
}
#endif
#endif /* PF_FILE_H */
