/*
 * checkpoint.c - pf_model_save / pf_model_load: the model and its optimizer
 * state in one versioned, crc32c-checked file, replaced atomically (layout
 * in pf_model.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_checksum.h"
#include "pf_model_int.h"

#define HDR 88
static const char MAGIC[8] = { 'P', 'F', 'C', 'K', 'P', 'T', 0, 0 };

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int pf_model_save(pf_model *m, pf_stream *s, const char *path, pf_error *err)
{
	size_t n = m->nparams;
	size_t total = HDR + 12 * n + 4;
	unsigned char *buf = calloc(1, total);
	if (!buf)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	memcpy(buf, MAGIC, 8);
	put32(buf + 8, PF_CKPT_VERSION);
	put32(buf + 12, (uint32_t)m->cfg.nsizes);
	for (int i = 0; i < m->cfg.nsizes; i++)
		put32(buf + 16 + 4 * i, (uint32_t)m->cfg.sizes[i]);
	put32(buf + 52, (uint32_t)m->t_host);
	put64(buf + 56, n);
	put64(buf + 64, m->cfg.seed);
	memcpy(buf + 72, &m->cfg.lr, 4);
	memcpy(buf + 76, &m->cfg.b1, 4);
	memcpy(buf + 80, &m->cfg.b2, 4);
	memcpy(buf + 84, &m->cfg.eps, 4);
	float *p = (float *)(void *)(buf + HDR);
	int rc;
	if ((rc = pf_model_download(m, s, PF_BUF_PARAMS, p, err)) < 0 ||
	    (rc = pf_model_download(m, s, PF_BUF_M, p + n, err)) < 0 ||
	    (rc = pf_model_download(m, s, PF_BUF_V, p + 2 * n, err)) < 0) {
		free(buf);
		return rc;
	}
	put32(buf + total - 4, pf_crc32c(0, buf, total - 4));

	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = pf_error_set(err, pf_error_from_errno(-errno), "%s: %s", tmp,
				  strerror(errno));
		free(buf);
		return rc;
	}
	int e = write_all(fd, buf, total);
	if (e == 0 && fsync(fd) < 0)
		e = -errno;
	if (close(fd) < 0 && e == 0)
		e = -errno;
	free(buf);
	if (e == 0 && rename(tmp, path) < 0)
		e = -errno;
	if (e < 0) {
		unlink(tmp);
		return pf_error_set(err, pf_error_from_errno(e), "%s: writing: %s",
				    path, strerror(-e));
	}
	/* Make the rename itself durable. */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int pf_model_load(pf_model *m, pf_stream *s, const char *path, pf_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pf_error_set(err, pf_error_from_errno(-errno), "%s: %s", path,
				    strerror(errno));
	struct stat st;
	size_t n = m->nparams, want = HDR + 12 * n + 4;
	unsigned char hdr[HDR];
	int rc = 0;
	unsigned char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		rc = pf_error_set(err, PF_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	if ((size_t)st.st_size < HDR || pread(fd, hdr, HDR, 0) != HDR) {
		rc = pf_error_set(err, PF_ETRUNC,
				  "%s: offset %lld: truncated header (%d bytes needed)",
				  path, (long long)st.st_size, HDR);
		goto out;
	}
	if (memcmp(hdr, MAGIC, 8) != 0) {
		rc = pf_error_set(err, PF_EFORMAT, "%s: offset 0: not a pipefeed checkpoint (bad magic)",
				  path);
		goto out;
	}
	if (get32(hdr + 8) != PF_CKPT_VERSION) {
		rc = pf_error_set(err, PF_EVERSION,
				  "%s: offset 8: checkpoint version %u, this build reads %d",
				  path, get32(hdr + 8), PF_CKPT_VERSION);
		goto out;
	}
	if (get64(hdr + 56) != n || get32(hdr + 12) != (uint32_t)m->cfg.nsizes) {
		rc = pf_error_set(err, PF_EINVAL,
				  "%s: offset 12: checkpoint of another architecture (%u sizes, %llu parameters; model has %d, %zu)",
				  path, get32(hdr + 12),
				  (unsigned long long)get64(hdr + 56),
				  m->cfg.nsizes, n);
		goto out;
	}
	for (int i = 0; i < m->cfg.nsizes; i++)
		if (get32(hdr + 16 + 4 * i) != (uint32_t)m->cfg.sizes[i]) {
			rc = pf_error_set(err, PF_EINVAL,
					  "%s: offset %d: layer size %u, model has %d",
					  path, 16 + 4 * i, get32(hdr + 16 + 4 * i),
					  m->cfg.sizes[i]);
			goto out;
		}
	if ((size_t)st.st_size != want) {
		rc = pf_error_set(err, (size_t)st.st_size < want ? PF_ETRUNC : PF_ECORRUPT,
				  "%s: offset %lld: file is %lld bytes, expected %zu",
				  path, (long long)st.st_size, (long long)st.st_size,
				  want);
		goto out;
	}
	buf = malloc(want);
	if (!buf) {
		rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if (pread(fd, buf, want, 0) != (ssize_t)want) {
		rc = pf_error_set(err, PF_EIO, "%s: short read", path);
		goto out;
	}
	uint32_t crc = pf_crc32c(0, buf, want - 4);
	if (crc != get32(buf + want - 4)) {
		rc = pf_error_set(err, PF_ECORRUPT,
				  "%s: offset %zu: checksum mismatch (stored %08x, computed %08x)",
				  path, want - 4, get32(buf + want - 4), crc);
		goto out;
	}
	const float *p = (const float *)(const void *)(buf + HDR);
	if ((rc = pf_model_upload(m, s, PF_BUF_PARAMS, p, err)) < 0 ||
	    (rc = pf_model_upload(m, s, PF_BUF_M, p + n, err)) < 0 ||
	    (rc = pf_model_upload(m, s, PF_BUF_V, p + 2 * n, err)) < 0 ||
	    (rc = pf_model_set_step(m, s, (int32_t)get32(buf + 52), err)) < 0)
		goto out;
	/* The Adam settings stored are informative: the model's own (the
	 * caller's --lr) stay in force after a resume. */
out:
	free(buf);
	close(fd);
	return rc;
}
