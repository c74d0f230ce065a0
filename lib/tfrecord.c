/* tfrecord.c - TFRecord reader with CRC32C checks; see pf_tfrecord.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_checksum.h"
#include "pf_file.h"
#include "pf_tfrecord.h"

/* fd: the read window.  Records of up to TFR_WIN bytes are read through a
 * window of TFR_WIN bytes (one pread for many small records); larger ones
 * into buf.  The counting pass (skip) fills the window only while records
 * are small (up to TFR_SMALL bytes), so that a file of large records is
 * stepped over with a 12-byte read per frame, as before. */
#define TFR_WIN (256u << 10)
#define TFR_SKIP_WIN (64u << 10)
#define TFR_SMALL 4096u

struct pf_tfrecord {
	pf_file f;                  /* the bytes: a file or a buffer */
	uint64_t off;               /* offset of the next frame */
	uint64_t count;             /* records passed */
	unsigned char *buf;         /* fd: data + crc of a record over TFR_WIN */
	size_t cap;
	unsigned char *win;         /* fd: bytes [win_off, win_off + win_len) */
	uint64_t win_off;
	size_t win_len;
	uint64_t last_len;          /* the last frame's data length */
	int failed;
};

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void pf_tfrecord_frame(const void *data, uint64_t len,
		       unsigned char head[PF_TFRECORD_HEADER],
		       unsigned char tail[PF_TFRECORD_FOOTER])
{
	for (int i = 0; i < 8; i++)
		head[i] = (unsigned char)(len >> (8 * i));
	put32(head + 8, pf_crc32c_mask(pf_crc32c(0, head, 8)));
	put32(tail, pf_crc32c_mask(pf_crc32c(0, data, (size_t)len)));
}

/* Read n bytes at off (the caller checked the bounds). */
static int read_at(pf_tfrecord *r, void *dst, size_t n, uint64_t off,
		   pf_error *err)
{
	return pf_file_read(&r->f, dst, n, off, err);
}

/*
 * fd: the n bytes at off (n <= TFR_WIN; the caller checked that the file
 * has them) from the window, refilled from off with `fill` bytes (at least
 * n, at most TFR_WIN and what the file has) when it does not hold them.
 * NULL on a read error (err set).
 */
static const unsigned char *win_at(pf_tfrecord *r, uint64_t off, size_t n, size_t fill,
				   pf_error *err)
{
	if (off >= r->win_off && off + n <= r->win_off + r->win_len)
		return r->win + (off - r->win_off);
	if (!r->win && !(r->win = malloc(TFR_WIN))) {
		pf_error_set(err, PF_ENOMEM, "%s: out of memory", r->f.name);
		return NULL;
	}
	if (fill < n)
		fill = n;
	if (fill > TFR_WIN)
		fill = TFR_WIN;
	if (fill > r->f.size - off)
		fill = (size_t)(r->f.size - off);
	r->win_len = 0;
	if (read_at(r, r->win, fill, off, err) < 0)
		return NULL;
	r->win_off = off;
	r->win_len = fill;
	return r->win;
}

/* Read and check the frame header at r->off; *len gets the data length.
 * fill: the window refill when the header is not in it (fd). */
static int frame_head(pf_tfrecord *r, uint64_t *len, size_t fill, pf_error *err)
{
	const unsigned char *h;
	uint64_t left = r->f.size - r->off;

	if (r->failed)
		return pf_error_set(err, PF_ESTATE, "%s: reader failed earlier", r->f.name);
	if (left == 0)
		return PF_END;
	if (left < PF_TFRECORD_HEADER)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: record %" PRIu64 " at offset %" PRIu64
				    ": truncated (%" PRIu64 " bytes left, a frame header needs 12)",
				    r->f.name, r->count, r->off, left);
	if (r->f.fd < 0)
		h = r->f.mem + r->off;
	else if (!(h = win_at(r, r->off, PF_TFRECORD_HEADER, fill, err)))
		return err && err->code ? err->code : PF_EIO;
	if (pf_crc32c_mask(pf_crc32c(0, h, 8)) != le32(h + 8))
		return pf_error_set(err, PF_ECORRUPT,
				    "%s: record %" PRIu64 " at offset %" PRIu64
				    ": bad length crc", r->f.name, r->count, r->off);
	*len = le64(h);
	if (*len > PF_TFRECORD_MAX_RECORD)
		return pf_error_set(err, PF_ELIMIT,
				    "%s: record %" PRIu64 " at offset %" PRIu64
				    ": length %" PRIu64 " over the %u-byte limit",
				    r->f.name, r->count, r->off, *len, PF_TFRECORD_MAX_RECORD);
	if (left - PF_TFRECORD_HEADER < *len + PF_TFRECORD_FOOTER)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: record %" PRIu64 " at offset %" PRIu64
				    ": truncated (length %" PRIu64 ", %" PRIu64
				    " bytes left in the file)",
				    r->f.name, r->count, r->off, *len,
				    left - PF_TFRECORD_HEADER);
	return 0;
}

int pf_tfrecord_next(pf_tfrecord *r, const void **data, size_t *len,
		     pf_error *err)
{
	const unsigned char *d;
	uint64_t n;
	int rc;

	if ((rc = frame_head(r, &n, TFR_WIN, err)) != 0)
		goto out;
	if (r->f.fd < 0) {
		d = r->f.mem + r->off + PF_TFRECORD_HEADER;
	} else if (n + PF_TFRECORD_FOOTER <= TFR_WIN) {
		d = win_at(r, r->off + PF_TFRECORD_HEADER, (size_t)n + PF_TFRECORD_FOOTER, TFR_WIN,
			   err);
		if (!d) {
			rc = err && err->code ? err->code : PF_EIO;
			goto out;
		}
	} else {
		size_t need = (size_t)n + PF_TFRECORD_FOOTER;

		if (need > r->cap) {
			/* bounded: n was checked against the limit and the file */
			size_t cap = r->cap ? r->cap : 4096;
			unsigned char *nb;

			while (cap < need)
				cap *= 2;
			if (!(nb = realloc(r->buf, cap))) {
				rc = pf_error_set(err, PF_ENOMEM,
						  "%s: record %" PRIu64 ": out of memory",
						  r->f.name, r->count);
				goto out;
			}
			r->buf = nb;
			r->cap = cap;
		}
		rc = read_at(r, r->buf, need, r->off + PF_TFRECORD_HEADER, err);
		if (rc < 0)
			goto out;
		d = r->buf;
	}
	if (pf_crc32c_mask(pf_crc32c(0, d, (size_t)n)) != le32(d + n)) {
		rc = pf_error_set(err, PF_ECORRUPT,
				  "%s: record %" PRIu64 " at offset %" PRIu64
				  ": bad data crc (%" PRIu64 " data bytes at offset %" PRIu64 ")",
				  r->f.name, r->count, r->off, n,
				  r->off + PF_TFRECORD_HEADER);
		goto out;
	}
	*data = d;
	*len = (size_t)n;
	r->last_len = n;
	r->off += PF_TFRECORD_HEADER + n + PF_TFRECORD_FOOTER;
	r->count++;
out:
	if (rc < 0)
		r->failed = 1;
	return rc;
}

int pf_tfrecord_skip(pf_tfrecord *r, uint64_t *len, pf_error *err)
{
	int rc = frame_head(r, len, r->last_len <= TFR_SMALL ? TFR_SKIP_WIN : PF_TFRECORD_HEADER,
			    err);

	if (rc < 0)
		r->failed = 1;
	if (rc != 0)
		return rc;
	r->last_len = *len;
	r->off += PF_TFRECORD_HEADER + *len + PF_TFRECORD_FOOTER;
	r->count++;
	return 0;
}

void pf_tfrecord_rewind(pf_tfrecord *r)
{
	r->off = 0;
	r->count = 0;
	r->failed = 0;
}

uint64_t pf_tfrecord_offset(const pf_tfrecord *r)
{
	return r->off;
}

uint64_t pf_tfrecord_count(const pf_tfrecord *r)
{
	return r->count;
}

const char *pf_tfrecord_name(const pf_tfrecord *r)
{
	return r->f.name;
}

static int tf_new(pf_tfrecord **out, pf_error *err)
{
	pf_tfrecord *r = calloc(1, sizeof(*r));

	*out = r;
	if (!r)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	r->f.fd = -1;
	return 0;
}

int pf_tfrecord_open(pf_tfrecord **out, const char *path, pf_error *err)
{
	pf_tfrecord *r;
	int rc;

	*out = NULL;
	if ((rc = tf_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open(&r->f, path, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_tfrecord_close(r);
	return rc;
}

int pf_tfrecord_open_mem(pf_tfrecord **out, const void *buf, size_t len,
			 const char *name, pf_error *err)
{
	pf_tfrecord *r;
	int rc;

	*out = NULL;
	if ((rc = tf_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open_mem(&r->f, buf, len, name, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_tfrecord_close(r);
	return rc;
}

void pf_tfrecord_close(pf_tfrecord *r)
{
	if (!r)
		return;
	pf_file_close(&r->f);
	free(r->buf);
	free(r->win);
	free(r);
}
