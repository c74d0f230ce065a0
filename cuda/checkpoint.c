/*
 * checkpoint.c - pf_model_save / pf_model_load: the model and its optimizer
 * state in one versioned, crc32c-checked file, replaced atomically (layout
 * in pf_model.h), with an optional opaque "run" section (pipe-train's
 * options and position, for --resume).  Version 1 files (no run section)
 * still load.
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
#define RUN_MAX (1u << 20)   /* bound on a run section */
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
	return pf_model_save_run(m, s, path, NULL, 0, err);
}

int pf_model_save_run(pf_model *m, pf_stream *s, const char *path,
		      const void *run, size_t run_len, pf_error *err)
{
	if (run_len > RUN_MAX)
		return pf_error_set(err, PF_ELIMIT, "%s: run section of %zu bytes (at most %u)",
				    path, run_len, RUN_MAX);
	size_t n = m->nparams;
	size_t roff = HDR + 12 * n;
	size_t total = roff + 4 + run_len + 4;
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
	put32(buf + roff, (uint32_t)run_len);
	if (run_len)
		memcpy(buf + roff + 4, run, run_len);
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

/*
 * Read the whole checkpoint at path into *bufp (malloc'd, *lenp bytes) and
 * check it: magic, version (1 or 2), that the length agrees with the
 * header's nparams (and the run section's length), and the crc32c.  On
 * success *roff / *rlen locate the run section (0 / 0 for version 1).
 * Messages name the file and the offset.
 */
static int read_checked(const char *path, unsigned char **bufp, size_t *lenp,
			size_t *roff, size_t *rlen, pf_error *err)
{
	*bufp = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pf_error_set(err, pf_error_from_errno(-errno), "%s: %s", path,
				    strerror(errno));
	struct stat st;
	unsigned char hdr[HDR];
	int rc = 0;
	unsigned char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		rc = pf_error_set(err, PF_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	size_t size = (size_t)st.st_size;
	if (size < HDR || pread(fd, hdr, HDR, 0) != HDR) {
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
	uint32_t ver = get32(hdr + 8);
	if (ver != 1 && ver != PF_CKPT_VERSION) {
		rc = pf_error_set(err, PF_EVERSION,
				  "%s: offset 8: checkpoint version %u, this build reads 1 and %d",
				  path, ver, PF_CKPT_VERSION);
		goto out;
	}
	uint64_t n = get64(hdr + 56);
	if (get32(hdr + 12) < 2 || get32(hdr + 12) > PF_MLP_MAX_LAYERS + 1 ||
	    n > (size / 12)) {
		rc = pf_error_set(err, n > size / 12 ? PF_ETRUNC : PF_ECORRUPT,
				  "%s: offset 12: %s: the header says %u sizes and %llu parameters, the file has %zu bytes",
				  path, n > size / 12 ? "truncated" : "bad header",
				  get32(hdr + 12), (unsigned long long)n, size);
		goto out;
	}
	size_t ro = HDR + 12 * (size_t)n, rl = 0, want = ro + 4;
	if (ver >= 2) {
		unsigned char lb[4];
		if (size < ro + 4 || pread(fd, lb, 4, (off_t)ro) != 4) {
			rc = pf_error_set(err, PF_ETRUNC, "%s: offset %zu: truncated before the run section",
					  path, size);
			goto out;
		}
		rl = get32(lb);
		if (rl > RUN_MAX) {
			rc = pf_error_set(err, PF_ECORRUPT, "%s: offset %zu: run section of %zu bytes (at most %u)",
					  path, ro, rl, RUN_MAX);
			goto out;
		}
		want = ro + 4 + rl + 4;
	}
	if (size != want) {
		rc = pf_error_set(err, size < want ? PF_ETRUNC : PF_ECORRUPT,
				  "%s: offset %zu: %s: file is %zu bytes, expected %zu",
				  path, size < want ? size : want,
				  size < want ? "truncated" : "trailing bytes", size, want);
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
	*roff = ver >= 2 ? ro + 4 : 0;
	*rlen = rl;
	*lenp = want;
	*bufp = buf;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int pf_model_load(pf_model *m, pf_stream *s, const char *path, pf_error *err)
{
	unsigned char *buf;
	size_t len, roff, rlen, n = m->nparams;
	int rc = read_checked(path, &buf, &len, &roff, &rlen, err);
	if (rc < 0)
		return rc;
	if (get64(buf + 56) != n || get32(buf + 12) != (uint32_t)m->cfg.nsizes) {
		rc = pf_error_set(err, PF_EINVAL,
				  "%s: offset 12: checkpoint of another architecture (%u sizes, %llu parameters; model has %d, %zu)",
				  path, get32(buf + 12),
				  (unsigned long long)get64(buf + 56),
				  m->cfg.nsizes, n);
		goto out;
	}
	for (int i = 0; i < m->cfg.nsizes; i++)
		if (get32(buf + 16 + 4 * i) != (uint32_t)m->cfg.sizes[i]) {
			rc = pf_error_set(err, PF_EINVAL,
					  "%s: offset %d: layer size %u, model has %d",
					  path, 16 + 4 * i, get32(buf + 16 + 4 * i),
					  m->cfg.sizes[i]);
			goto out;
		}
	/* the arrays start at offset 88: float-aligned in a malloc'd buffer */
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
	return rc;
}

int pf_ckpt_read_run(const char *path, char **run, size_t *run_len, pf_error *err)
{
	unsigned char *buf;
	size_t len, roff, rlen;
	*run = NULL;
	*run_len = 0;
	int rc = read_checked(path, &buf, &len, &roff, &rlen, err);
	if (rc < 0)
		return rc;
	char *r = malloc(rlen + 1);
	if (!r) {
		free(buf);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	if (rlen)
		memcpy(r, buf + roff, rlen);
	r[rlen] = 0;
	free(buf);
	*run = r;
	*run_len = rlen;
	return 0;
}

int pf_ckpt_read_arch(const char *path, pf_model_cfg *c, pf_error *err)
{
	unsigned char *buf;
	size_t len, roff, rlen;
	int rc = read_checked(path, &buf, &len, &roff, &rlen, err);
	if (rc < 0)
		return rc;
	int ns = (int)get32(buf + 12);
	for (int i = 0; i < ns; i++) {
		uint32_t v = get32(buf + 16 + 4 * i);
		if (v < 1 || v > 65536) {
			free(buf);
			return pf_error_set(err, PF_ECORRUPT,
					    "%s: offset %d: layer size %u (1..65536)",
					    path, 16 + 4 * i, v);
		}
		c->sizes[i] = (int)v;
	}
	c->nsizes = ns;
	free(buf);
	return 0;
}

int pf_model_set_acc(pf_model *m, pf_stream *s, int which, const double in[4],
		     pf_error *err)
{
	if (which != PF_ACC_TRAIN && which != PF_ACC_EVAL)
		return pf_error_set(err, PF_EINVAL, "model: no accumulator %d", which);
	double h[3] = { in[0], in[1], in[2] };
	int rc = pf_memcpy_async(m->dev, s, m->acc + 3 * which, h, sizeof(h), PF_H2D, err);
	if (rc == 0)
		rc = pf_stream_sync(m->dev, s, err); /* h is on this stack */
	if (rc == 0)
		m->rows[which] = in[3];
	return rc;
}
