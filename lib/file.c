/* file.c - read-only byte sources (file or buffer); see pf_file.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_file.h"

int pf_file_open(pf_file *f, const char *path, pf_error *err)
{
	struct stat st;
	int rc;

	memset(f, 0, sizeof(*f));
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return pf_error_set(err, pf_error_from_errno(-errno), "%s: cannot open: %s",
				    path, strerror(errno));
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = pf_error_set(err, PF_EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	if (!(f->name = strdup(path))) {
		rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	f->size = (uint64_t)st.st_size;
	return 0;
fail:
	close(f->fd);
	f->fd = -1;
	return rc;
}

int pf_file_open_mem(pf_file *f, const void *buf, size_t len, const char *name,
		     pf_error *err)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if (!name)
		name = "(memory)";
	if (!(f->name = strdup(name)))
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", name);
	f->mem = buf ? buf : (const unsigned char *)"";
	f->size = len;
	return 0;
}

ssize_t pf_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *done)
{
	size_t got = 0;
	ssize_t rc = 0;

	while (got < n) {
		ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = -errno;
			break;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	if (done)
		*done = got;
	return rc < 0 ? rc : (ssize_t)got;
}

int pf_write_full(int fd, const void *buf, size_t n, size_t *done)
{
	const char *p = buf;
	size_t put = 0;
	int rc = 0;

	while (put < n) {
		ssize_t k = write(fd, p + put, n - put);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = -errno;
			break;
		}
		put += (size_t)k;
	}
	if (done)
		*done = put;
	return rc;
}

ssize_t pf_file_read_some(const pf_file *f, void *dst, size_t n, uint64_t off,
			  pf_error *err)
{
	size_t got;
	ssize_t k;

	if (off >= f->size)
		return 0;
	if (n > f->size - off)
		n = (size_t)(f->size - off);
	if (f->mem) {
		memcpy(dst, f->mem + off, n);
		return (ssize_t)n;
	}
	k = pf_pread_full(f->fd, dst, n, off, &got);
	if (k < 0)
		return pf_error_set(err, pf_error_from_errno((int)k),
				    "%s: offset %" PRIu64 ": read: %s",
				    f->name, off + got, strerror((int)-k));
	return k;
}

int pf_file_read(const pf_file *f, void *dst, size_t n, uint64_t off, pf_error *err)
{
	ssize_t k;

	if (off > f->size || n > f->size - off)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %" PRIu64 ": %zu bytes past the end (file is %" PRIu64 " bytes)",
				    f->name, off, n, f->size);
	k = pf_file_read_some(f, dst, n, off, err);
	if (k < 0)
		return (int)k;
	if ((size_t)k < n)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %" PRIu64 ": unexpected end of file (file shrank?)",
				    f->name, off + (uint64_t)k);
	return 0;
}

void pf_file_close(pf_file *f)
{
	if (!f)
		return;
	if (f->fd > 0 || (f->fd == 0 && f->name && !f->mem))
		close(f->fd);
	free(f->name);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}
