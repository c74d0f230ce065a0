/*
 * shard_write.c - the shard file format (doc/FORMAT.md): the writer, which
 * gathers records into blocks, compresses and checksums each, and closes
 * the file with the block index and footer.  See pf_shard.h for the
 * contracts; the reader and decoder are in shard.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "pf_checksum.h"
#include "pf_file.h"
#include "pf_shard.h"
#include "pf_shard_int.h"

/* ======================================================================
 * Writer
 * ==================================================================== */

struct pf_shard_writer {
	int fd;
	char *path, *tmp;
	pf_shard_write_opts o;
	ZSTD_CCtx *cctx;
	uint64_t off;                 /* bytes written so far */
	/* current block */
	uint32_t *lens;
	size_t nlens, lens_cap;
	unsigned char *data;
	size_t data_len, data_cap;
	/* scratch for assembling and compressing */
	unsigned char *raw, *out;
	size_t raw_cap, out_cap;
	/* index */
	unsigned char *index;
	size_t nblocks, index_cap;
	uint64_t nrecords, raw_bytes;
};

static int write_all(pf_shard_writer *w, const void *buf, size_t n, pf_error *err)
{
	size_t done;
	int e = pf_write_full(w->fd, buf, n, &done);

	w->off += done;
	if (e < 0)
		return pf_error_set(err, pf_error_from_errno(e), "%s: offset %llu: write: %s",
				    w->path, (unsigned long long)w->off, strerror(-e));
	return 0;
}

void pf_shard_writer_abort(pf_shard_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->tmp);
	}
	ZSTD_freeCCtx(w->cctx);
	free(w->path);
	free(w->tmp);
	free(w->lens);
	free(w->data);
	free(w->raw);
	free(w->out);
	free(w->index);
	free(w);
}

int pf_shard_writer_open(pf_shard_writer **wp, const char *path,
			 const pf_schema *schema,
			 const pf_shard_write_opts *opts, pf_error *err)
{
	pf_shard_writer *w;
	unsigned char hdr[PF_SHARD_HEADER_SIZE] = {0};
	unsigned char sch[PF_SHARD_MAX_SCHEMA];
	size_t slen;
	int rc;

	*wp = NULL;
	slen = pf_schema_encode(schema, sch, sizeof(sch));
	if (slen > sizeof(sch))
		return pf_error_set(err, PF_ELIMIT, "%s: schema too large", path);
	w = calloc(1, sizeof(*w));
	if (!w)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	w->fd = -1;
	if (opts)
		w->o = *opts;
	if (!w->o.codec_set)
		w->o.codec = PF_CODEC_ZSTD;
	if (!w->o.level)
		w->o.level = PF_SHARD_DEFAULT_LEVEL;
	if (!w->o.checksum)
		w->o.checksum = PF_CHECKSUM_CRC32C;
	if (!w->o.block_size)
		w->o.block_size = PF_SHARD_DEFAULT_BLOCK;
	if (!pf_codec_name(w->o.codec) || !pf_checksum_name(w->o.checksum) ||
	    w->o.block_size > PF_SHARD_MAX_BLOCK_RAW / 2) {
		pf_shard_writer_abort(w);
		return pf_error_set(err, PF_EINVAL, "%s: invalid codec, checksum or block size", path);
	}
	w->path = strdup(path);
	w->tmp = malloc(strlen(path) + 32);
	if (!w->path || !w->tmp) {
		pf_shard_writer_abort(w);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	sprintf(w->tmp, "%s.tmp.%ld", path, (long)getpid());
	if (w->o.codec == PF_CODEC_ZSTD && !(w->cctx = ZSTD_createCCtx())) {
		pf_shard_writer_abort(w);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = pf_error_set(err, pf_error_from_errno(-errno), "%s: cannot create: %s",
				  w->tmp, strerror(errno));
		pf_shard_writer_abort(w);
		return rc;
	}
	memcpy(hdr, header_magic, 8);
	wr16(hdr + 8, PF_SHARD_VERSION);
	hdr[10] = (unsigned char)w->o.codec;
	hdr[11] = (unsigned char)w->o.checksum;
	wr32(hdr + 16, (uint32_t)slen);
	wr32(hdr + 20, (uint32_t)w->o.block_size);
	wr32(hdr + 32, pf_crc32c(pf_crc32c(0, hdr, 32), sch, slen));
	if ((rc = write_all(w, hdr, sizeof(hdr), err)) || (rc = write_all(w, sch, slen, err))) {
		pf_shard_writer_abort(w);
		return rc;
	}
	*wp = w;
	return 0;
}

/* Compress and write the records gathered so far as one block. */
static int flush_block(pf_shard_writer *w, pf_error *err)
{
	size_t raw_len, stored;
	const unsigned char *payload;
	unsigned char bh[PF_SHARD_BLOCK_HEADER_SIZE] = {0};
	unsigned char *ie;
	int codec = w->o.codec, rc;

	if (w->nlens == 0)
		return 0;
	raw_len = 4 * w->nlens + w->data_len;
	if (grow((void **)&w->raw, &w->raw_cap, raw_len, 1))
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", w->path);
	for (size_t i = 0; i < w->nlens; i++)
		wr32(w->raw + 4 * i, w->lens[i]);
	if (w->data_len)
		memcpy(w->raw + 4 * w->nlens, w->data, w->data_len);
	payload = w->raw;
	stored = raw_len;
	if (codec == PF_CODEC_ZSTD) {
		size_t bound = ZSTD_compressBound(raw_len), z;
		if (grow((void **)&w->out, &w->out_cap, bound, 1))
			return pf_error_set(err, PF_ENOMEM, "%s: out of memory", w->path);
		z = ZSTD_compressCCtx(w->cctx, w->out, bound, w->raw, raw_len, w->o.level);
		if (ZSTD_isError(z))
			return pf_error_set(err, PF_EIO, "%s: zstd: %s", w->path, ZSTD_getErrorName(z));
		/* Store raw when compression does not pay, or when the ratio is
		 * beyond what readers accept (they bound allocations by it). */
		if (z < raw_len && raw_len <= max_raw_for(PF_CODEC_ZSTD, z)) {
			payload = w->out;
			stored = z;
		} else {
			codec = PF_CODEC_NONE;
		}
	}
	memcpy(bh, block_magic, 4);
	bh[4] = (unsigned char)codec;
	wr32(bh + 8, (uint32_t)w->nlens);
	wr32(bh + 12, (uint32_t)raw_len);
	wr32(bh + 16, (uint32_t)stored);
	wr32(bh + 20, pf_crc32c(0, bh, 20));
	wr64(bh + 24, pf_checksum(w->o.checksum, payload, stored));

	if (grow((void **)&w->index, &w->index_cap, (w->nblocks + 1) * PF_SHARD_INDEX_ENTRY_SIZE, 1))
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", w->path);
	ie = w->index + w->nblocks * PF_SHARD_INDEX_ENTRY_SIZE;
	memset(ie, 0, PF_SHARD_INDEX_ENTRY_SIZE);
	wr64(ie, w->off);
	wr32(ie + 8, (uint32_t)stored);
	wr32(ie + 12, (uint32_t)raw_len);
	wr32(ie + 16, (uint32_t)w->nlens);
	ie[20] = (unsigned char)codec;
	wr64(ie + 24, w->nrecords);

	if ((rc = write_all(w, bh, sizeof(bh), err)) || (rc = write_all(w, payload, stored, err)))
		return rc;
	w->nblocks++;
	w->nrecords += w->nlens;
	w->raw_bytes += raw_len;
	w->nlens = 0;
	w->data_len = 0;
	return 0;
}

int pf_shard_writer_add(pf_shard_writer *w, const void *rec, size_t len, pf_error *err)
{
	int rc;

	if (len > PF_SHARD_MAX_BLOCK_RAW - 8)
		return pf_error_set(err, PF_ELIMIT, "%s: record %llu is %zu bytes (max %u)",
				    w->path, (unsigned long long)(w->nrecords + w->nlens), len,
				    PF_SHARD_MAX_BLOCK_RAW - 8);
	/* Close the current block when this record would take it past the
	 * target; a record bigger than the target gets a block of its own. */
	if (w->nlens && 4 * (w->nlens + 1) + w->data_len + len > w->o.block_size)
		if ((rc = flush_block(w, err)))
			return rc;
	if (w->nlens >= UINT32_MAX / 8)
		if ((rc = flush_block(w, err)))
			return rc;
	if (grow((void **)&w->lens, &w->lens_cap, w->nlens + 1, sizeof(uint32_t)) ||
	    grow((void **)&w->data, &w->data_cap, w->data_len + len, 1))
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", w->path);
	w->lens[w->nlens++] = (uint32_t)len;
	if (len)
		memcpy(w->data + w->data_len, rec, len);
	w->data_len += len;
	if (4 * w->nlens + w->data_len >= w->o.block_size)
		return flush_block(w, err);
	return 0;
}

void pf_shard_writer_stats(const pf_shard_writer *w, uint64_t *records,
			   uint64_t *raw_bytes, uint64_t *file_bytes)
{
	if (records)
		*records = w->nrecords + w->nlens;
	if (raw_bytes)
		*raw_bytes = w->raw_bytes + 4 * w->nlens + w->data_len;
	if (file_bytes)
		*file_bytes = w->off;
}

int pf_shard_writer_close(pf_shard_writer *w, pf_error *err)
{
	unsigned char ft[PF_SHARD_FOOTER_SIZE] = {0};
	size_t ilen;
	int rc;

	if (!w)
		return pf_error_set(err, PF_EINVAL, "pf_shard_writer_close: NULL writer");
	if ((rc = flush_block(w, err)))
		goto fail;
	ilen = w->nblocks * PF_SHARD_INDEX_ENTRY_SIZE;
	wr64(ft, w->off);
	wr64(ft + 8, w->nblocks);
	wr64(ft + 16, w->nrecords);
	wr64(ft + 24, w->raw_bytes);
	wr32(ft + 32, pf_crc32c(0, w->index, ilen));
	wr32(ft + 36, pf_crc32c(0, ft, 36));
	memcpy(ft + 40, footer_magic, 8);
	if ((rc = write_all(w, w->index, ilen, err)) || (rc = write_all(w, ft, sizeof(ft), err)))
		goto fail;
	if (fsync(w->fd) < 0) {
		rc = pf_error_set(err, pf_error_from_errno(-errno), "%s: fsync: %s", w->tmp, strerror(errno));
		goto fail;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		unlink(w->tmp);
		rc = pf_error_set(err, pf_error_from_errno(-errno), "%s: close: %s", w->tmp, strerror(errno));
		goto fail;
	}
	w->fd = -1;
	if (rename(w->tmp, w->path) < 0) {
		rc = pf_error_set(err, pf_error_from_errno(-errno), "%s: rename into place: %s",
				  w->path, strerror(errno));
		unlink(w->tmp);
		goto fail;
	}
	pf_shard_writer_abort(w); /* frees; the file is in place */
	return 0;
fail:
	pf_shard_writer_abort(w);
	return rc;
}
