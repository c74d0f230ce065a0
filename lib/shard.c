/*
 * shard.c - the shard file format (doc/FORMAT.md): codec names, the
 * validating reader (header, index, recovery scan) and the block decoder.
 * See pf_shard.h for the contracts; the writer is in shard_write.c.
 *
 * Everything read from a file is untrusted: each length and offset is
 * checked against the file size and the limits in pf_shard.h before it is
 * used for an allocation or an access.
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

const char *pf_codec_name(int codec)
{
	switch (codec) {
	case PF_CODEC_NONE: return "none";
	case PF_CODEC_ZSTD: return "zstd";
	default: return NULL;
	}
}

int pf_codec_parse(const char *name)
{
	if (!strcmp(name, "none"))
		return PF_CODEC_NONE;
	if (!strcmp(name, "zstd"))
		return PF_CODEC_ZSTD;
	return -1;
}

int pf_shard_name(char *buf, size_t cap, const char *prefix, unsigned index,
		  unsigned count)
{
	return snprintf(buf, cap, "%s-%05u-of-%05u%s", prefix, index, count, PF_SHARD_EXT);
}

/* ======================================================================
 * Reader
 * ==================================================================== */

struct pf_shard {
	pf_file file;             /* the bytes: a file or a buffer */
	const char *path;         /* file.name */
	const unsigned char *mem; /* file.mem: a memory shard */
	uint64_t size;            /* file.size */
	int version, codec, checksum;
	uint32_t block_target;
	pf_schema schema;
	uint64_t data_start;      /* first block offset */
	uint32_t nblocks;
	pf_block_info *blocks;
	unsigned char *codecs;    /* per-block codec */
	uint64_t nrecords, raw_bytes;
	int recovered;
	uint64_t lost_at;
};

/* Read exactly n bytes at off, or fail naming the file and offset. */
static int read_at(const pf_shard *s, void *buf, size_t n, uint64_t off, pf_error *err)
{
	return pf_file_read(&s->file, buf, n, off, err);
}

void pf_shard_close(pf_shard *s)
{
	if (!s)
		return;
	pf_file_close(&s->file);
	free(s->blocks);
	free(s->codecs);
	free(s);
}

static int parse_header(pf_shard *s, pf_error *err)
{
	unsigned char h[PF_SHARD_HEADER_SIZE];
	unsigned char sch[PF_SHARD_MAX_SCHEMA];
	uint32_t slen;
	int rc;

	if (s->size < PF_SHARD_HEADER_SIZE)
		return pf_error_set(err, s->size >= 8 && (!s->mem || !memcmp(s->mem, header_magic, 8)) ? PF_ETRUNC : PF_EFORMAT,
				    "%s: offset 0: file is %llu bytes, smaller than a shard header (%d)",
				    s->path, (unsigned long long)s->size, PF_SHARD_HEADER_SIZE);
	if ((rc = read_at(s, h, sizeof(h), 0, err)))
		return rc;
	if (memcmp(h, header_magic, 8))
		return pf_error_set(err, PF_EFORMAT, "%s: offset 0: not a pipefeed shard (bad magic)", s->path);
	s->version = rd16(h + 8);
	if (s->version != PF_SHARD_VERSION)
		return pf_error_set(err, PF_EVERSION,
				    "%s: offset 8: shard format version %d, this reader knows version %d",
				    s->path, s->version, PF_SHARD_VERSION);
	s->codec = h[10];
	s->checksum = h[11];
	slen = rd32(h + 16);
	s->block_target = rd32(h + 20);
	if (slen > PF_SHARD_MAX_SCHEMA)
		return pf_error_set(err, PF_ECORRUPT, "%s: offset 16: schema length %u exceeds %u",
				    s->path, slen, PF_SHARD_MAX_SCHEMA);
	if (PF_SHARD_HEADER_SIZE + (uint64_t)slen > s->size)
		return pf_error_set(err, PF_ETRUNC, "%s: offset %d: schema of %u bytes runs past the end (file is %llu bytes)",
				    s->path, PF_SHARD_HEADER_SIZE, slen, (unsigned long long)s->size);
	if ((rc = read_at(s, sch, slen, PF_SHARD_HEADER_SIZE, err)))
		return rc;
	if (rd32(h + 32) != pf_crc32c(pf_crc32c(0, h, 32), sch, slen))
		return pf_error_set(err, PF_ECORRUPT, "%s: offset 0: header checksum mismatch (header bytes 0..%u damaged)",
				    s->path, PF_SHARD_HEADER_SIZE + slen);
	if (rd32(h + 36) != 0)
		return pf_error_set(err, PF_ECORRUPT, "%s: offset 36: reserved header bytes are not zero", s->path);
	if (!pf_codec_name(s->codec) || !pf_checksum_name(s->checksum))
		return pf_error_set(err, PF_ECORRUPT, "%s: offset 10: unknown codec %d or checksum %d",
				    s->path, s->codec, s->checksum);
	{
		pf_error e2 = {0};
		if ((rc = pf_schema_decode(&s->schema, sch, slen, &e2)))
			return pf_error_set(err, rc, "%s: offset %d: %.400s", s->path,
					    PF_SHARD_HEADER_SIZE, e2.msg);
	}
	s->data_start = PF_SHARD_HEADER_SIZE + (uint64_t)slen;
	return 0;
}

/* Validate one index entry / block header's numbers against the file. */
static int check_block_numbers(const pf_shard *s, uint32_t i, uint64_t off, int codec,
			       uint32_t nrec, uint32_t raw, uint32_t stored,
			       uint64_t end, pf_error *err)
{
	if (!pf_codec_name(codec))
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: unknown codec %d",
				    s->path, i, (unsigned long long)off, codec);
	if (off + PF_SHARD_BLOCK_HEADER_SIZE + (uint64_t)stored > end)
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: %u stored bytes run past offset %llu",
				    s->path, i, (unsigned long long)off, stored, (unsigned long long)end);
	if (raw > PF_SHARD_MAX_BLOCK_RAW || raw > max_raw_for(codec, stored))
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: raw size %u impossible for %u stored bytes",
				    s->path, i, (unsigned long long)off, raw, stored);
	if ((uint64_t)nrec * 4 > raw)
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: %u records cannot fit %u bytes",
				    s->path, i, (unsigned long long)off, nrec, raw);
	return 0;
}

static int parse_index(pf_shard *s, pf_error *err)
{
	unsigned char ft[PF_SHARD_FOOTER_SIZE];
	uint64_t foot_off, index_off, nblocks, ilen, off, rec = 0, raw = 0;
	unsigned char *idx = NULL;
	int rc;

	if (s->size < s->data_start + PF_SHARD_FOOTER_SIZE)
		return pf_error_set(err, PF_ETRUNC, "%s: offset %llu: file ends before its footer (truncated?)",
				    s->path, (unsigned long long)s->size);
	foot_off = s->size - PF_SHARD_FOOTER_SIZE;
	if ((rc = read_at(s, ft, sizeof(ft), foot_off, err)))
		return rc;
	if (memcmp(ft + 40, footer_magic, 8))
		return pf_error_set(err, PF_ETRUNC, "%s: offset %llu: no footer magic at the end of the file (truncated or damaged)",
				    s->path, (unsigned long long)foot_off);
	if (rd32(ft + 36) != pf_crc32c(0, ft, 36))
		return pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: footer checksum mismatch",
				    s->path, (unsigned long long)foot_off);
	index_off = rd64(ft);
	nblocks = rd64(ft + 8);
	/* Every block needs at least a block header and an index entry. */
	if (nblocks > (foot_off - s->data_start) / (PF_SHARD_BLOCK_HEADER_SIZE + PF_SHARD_INDEX_ENTRY_SIZE) ||
	    nblocks > UINT32_MAX)
		return pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: footer claims %llu blocks, more than the file can hold",
				    s->path, (unsigned long long)foot_off, (unsigned long long)nblocks);
	ilen = nblocks * PF_SHARD_INDEX_ENTRY_SIZE;
	if (index_off != foot_off - ilen || index_off < s->data_start)
		return pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: index offset %llu does not match the file layout",
				    s->path, (unsigned long long)foot_off, (unsigned long long)index_off);
	idx = malloc(ilen ? ilen : 1);
	s->blocks = calloc(nblocks ? nblocks : 1, sizeof(*s->blocks));
	s->codecs = calloc(nblocks ? nblocks : 1, 1);
	if (!idx || !s->blocks || !s->codecs) {
		free(idx);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory for %llu index entries",
				    s->path, (unsigned long long)nblocks);
	}
	if ((rc = read_at(s, idx, ilen, index_off, err)))
		goto out;
	if (rd32(ft + 32) != pf_crc32c(0, idx, ilen)) {
		rc = pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: index checksum mismatch",
				  s->path, (unsigned long long)index_off);
		goto out;
	}
	off = s->data_start;
	for (uint32_t i = 0; i < nblocks; i++) {
		const unsigned char *e = idx + (size_t)i * PF_SHARD_INDEX_ENTRY_SIZE;
		pf_block_info *b = &s->blocks[i];
		b->offset = rd64(e);
		b->stored_len = rd32(e + 8);
		b->raw_len = rd32(e + 12);
		b->nrecords = rd32(e + 16);
		s->codecs[i] = e[20];
		b->codec = e[20];
		b->first_record = rd64(e + 24);
		if (b->offset != off || b->first_record != rec) {
			rc = pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: index entry %u does not follow block %u",
					  s->path, (unsigned long long)(index_off + (uint64_t)i * PF_SHARD_INDEX_ENTRY_SIZE), i, i ? i - 1 : 0);
			goto out;
		}
		if ((rc = check_block_numbers(s, i, b->offset, e[20], b->nrecords, b->raw_len,
					      b->stored_len, index_off, err)))
			goto out;
		off += PF_SHARD_BLOCK_HEADER_SIZE + (uint64_t)b->stored_len;
		rec += b->nrecords;
		raw += b->raw_len;
	}
	if (off != index_off || rec != rd64(ft + 16) || raw != rd64(ft + 24)) {
		rc = pf_error_set(err, PF_ECORRUPT, "%s: offset %llu: footer totals do not match the index",
				  s->path, (unsigned long long)foot_off);
		goto out;
	}
	s->nblocks = (uint32_t)nblocks;
	s->nrecords = rec;
	s->raw_bytes = raw;
	rc = 0;
out:
	free(idx);
	return rc;
}

/* Rebuild the index by walking block headers; keep blocks whose header and
 * payload checksums hold, up to the first that does not. */
static int scan_blocks(pf_shard *s, pf_error *err)
{
	uint64_t off = s->data_start, rec = 0, raw = 0;
	size_t cap = 0;
	unsigned char *buf = NULL;
	size_t buf_cap = 0;

	free(s->blocks);
	free(s->codecs);
	s->blocks = NULL;
	s->codecs = NULL;
	s->nblocks = 0;
	for (;;) {
		unsigned char bh[PF_SHARD_BLOCK_HEADER_SIZE];
		uint32_t nrec, rawl, stored;
		pf_error e2 = {0};

		if (s->size - off < PF_SHARD_BLOCK_HEADER_SIZE || read_at(s, bh, sizeof(bh), off, NULL))
			break;
		if (memcmp(bh, block_magic, 4) || rd32(bh + 20) != pf_crc32c(0, bh, 20))
			break;
		nrec = rd32(bh + 8);
		rawl = rd32(bh + 12);
		stored = rd32(bh + 16);
		if (check_block_numbers(s, s->nblocks, off, bh[4], nrec, rawl, stored, s->size, &e2))
			break;
		if (grow((void **)&buf, &buf_cap, stored ? stored : 1, 1) ||
		    read_at(s, buf, stored, off + PF_SHARD_BLOCK_HEADER_SIZE, NULL) ||
		    pf_checksum(s->checksum, buf, stored) != rd64(bh + 24))
			break;
		if (s->nblocks == cap) {
			size_t nc = cap ? cap * 2 : 16;
			pf_block_info *nb = realloc(s->blocks, nc * sizeof(*nb));
			unsigned char *ncd;
			if (!nb)
				break;
			s->blocks = nb;
			ncd = realloc(s->codecs, nc);
			if (!ncd)
				break;
			s->codecs = ncd;
			cap = nc;
		}
		s->blocks[s->nblocks] = (pf_block_info){off, stored, rawl, nrec, rec, bh[4]};
		s->codecs[s->nblocks] = bh[4];
		s->nblocks++;
		rec += nrec;
		raw += rawl;
		off += PF_SHARD_BLOCK_HEADER_SIZE + (uint64_t)stored;
	}
	free(buf);
	s->nrecords = rec;
	s->raw_bytes = raw;
	s->recovered = 1;
	s->lost_at = off;
	if (!s->blocks) {
		s->blocks = calloc(1, sizeof(*s->blocks));
		s->codecs = calloc(1, 1);
		if (!s->blocks || !s->codecs)
			return pf_error_set(err, PF_ENOMEM, "%s: out of memory", s->path);
	}
	return 0;
}

static int open_common(pf_shard *s, int flags, pf_error *err)
{
	int rc = parse_header(s, err);
	if (rc)
		return rc;
	rc = parse_index(s, err);
	if (rc && (flags & PF_SHARD_OPEN_SCAN) && rc != PF_ENOMEM) {
		pf_error_clear(err);
		return scan_blocks(s, err);
	}
	return rc;
}

/* Take over an opened pf_file and validate it as a shard. */
static int open_file(pf_shard **sp, pf_file *f, int flags, pf_error *err)
{
	pf_shard *s = calloc(1, sizeof(*s));
	int rc;

	*sp = NULL;
	if (!s) {
		rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", f->name);
		pf_file_close(f);
		return rc;
	}
	s->file = *f;
	s->path = f->name;
	s->mem = f->mem;
	s->size = f->size;
	if ((rc = open_common(s, flags, err))) {
		pf_shard_close(s);
		return rc;
	}
	*sp = s;
	return 0;
}

int pf_shard_open(pf_shard **sp, const char *path, int flags, pf_error *err)
{
	pf_file f;
	int rc;

	*sp = NULL;
	if ((rc = pf_file_open(&f, path, err)))
		return rc;
	return open_file(sp, &f, flags, err);
}

int pf_shard_open_mem(pf_shard **sp, const void *buf, size_t len,
		      const char *name, int flags, pf_error *err)
{
	pf_file f;
	int rc;

	*sp = NULL;
	if ((rc = pf_file_open_mem(&f, buf, len, name, err)))
		return rc;
	return open_file(sp, &f, flags, err);
}

const char *pf_shard_path(const pf_shard *s) { return s->path; }
int pf_shard_fd(const pf_shard *s) { return s->file.fd; }
const pf_schema *pf_shard_schema(const pf_shard *s) { return &s->schema; }
int pf_shard_codec(const pf_shard *s) { return s->codec; }
int pf_shard_checksum_kind(const pf_shard *s) { return s->checksum; }
uint64_t pf_shard_size(const pf_shard *s) { return s->size; }
uint64_t pf_shard_nrecords(const pf_shard *s) { return s->nrecords; }
uint64_t pf_shard_raw_bytes(const pf_shard *s) { return s->raw_bytes; }
uint32_t pf_shard_nblocks(const pf_shard *s) { return s->nblocks; }

const pf_block_info *pf_shard_block(const pf_shard *s, uint32_t i)
{
	return i < s->nblocks ? &s->blocks[i] : NULL;
}

int64_t pf_shard_find_record(const pf_shard *s, uint64_t r)
{
	uint32_t lo = 0, hi = s->nblocks;
	if (r >= s->nrecords)
		return -1;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->blocks[mid].first_record <= r)
			lo = mid;
		else
			hi = mid;
	}
	/* skip empty blocks that share a first_record */
	while (lo + 1 < s->nblocks && s->blocks[lo].first_record + s->blocks[lo].nrecords <= r)
		lo++;
	return lo;
}

int pf_shard_recovered(const pf_shard *s, uint64_t *lost_at)
{
	if (lost_at)
		*lost_at = s->lost_at;
	return s->recovered;
}

/* ======================================================================
 * Decoding
 * ==================================================================== */

struct pf_decoder {
	ZSTD_DCtx *dctx;
	unsigned char *scratch;   /* stored bytes for pf_shard_read_block */
	size_t scratch_cap;
	pf_block tmp;             /* for pf_shard_verify_block */
};

pf_decoder *pf_decoder_new(void)
{
	pf_decoder *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->dctx = ZSTD_createDCtx();
	if (!d->dctx) {
		free(d);
		return NULL;
	}
	pf_block_init(&d->tmp);
	return d;
}

void pf_decoder_free(pf_decoder *d)
{
	if (!d)
		return;
	ZSTD_freeDCtx(d->dctx);
	free(d->scratch);
	pf_block_free(&d->tmp);
	free(d);
}

void pf_block_init(pf_block *b)
{
	memset(b, 0, sizeof(*b));
}

void pf_block_free(pf_block *b)
{
	if (!b)
		return;
	free(b->raw);
	free(b->offs);
	pf_block_init(b);
}

int pf_shard_decode(const pf_shard *s, uint32_t i, const void *stored,
		    size_t len, pf_decoder *d, pf_block *out, pf_error *err)
{
	const pf_block_info *b = pf_shard_block(s, i);
	const unsigned char *bh = stored, *payload;
	unsigned long long off;
	uint32_t pos;
	int codec;

	if (!b)
		return pf_error_set(err, PF_EINVAL, "%s: block %u does not exist (%u blocks)", s->path, i, s->nblocks);
	off = (unsigned long long)b->offset;
	codec = s->codecs[i];
	if (len != PF_SHARD_BLOCK_HEADER_SIZE + (size_t)b->stored_len)
		return pf_error_set(err, PF_ETRUNC, "%s: block %u at offset %llu: got %zu bytes, expected %zu",
				    s->path, i, off, len, PF_SHARD_BLOCK_HEADER_SIZE + (size_t)b->stored_len);
	if (memcmp(bh, block_magic, 4) || rd32(bh + 20) != pf_crc32c(0, bh, 20))
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: block header damaged",
				    s->path, i, off);
	if (bh[4] != codec || rd32(bh + 8) != b->nrecords || rd32(bh + 12) != b->raw_len ||
	    rd32(bh + 16) != b->stored_len)
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: block header does not match the index",
				    s->path, i, off);
	payload = bh + PF_SHARD_BLOCK_HEADER_SIZE;
	if (pf_checksum(s->checksum, payload, b->stored_len) != rd64(bh + 24))
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: %s checksum mismatch in bytes %llu..%llu",
				    s->path, i, off, pf_checksum_name(s->checksum),
				    off + PF_SHARD_BLOCK_HEADER_SIZE, off + PF_SHARD_BLOCK_HEADER_SIZE + b->stored_len);
	if (grow((void **)&out->raw, &out->raw_cap, b->raw_len ? b->raw_len : 1, 1) ||
	    grow((void **)&out->offs, &out->offs_cap, (size_t)b->nrecords + 1, sizeof(uint32_t)))
		return pf_error_set(err, PF_ENOMEM, "%s: block %u: out of memory for %u bytes", s->path, i, b->raw_len);
	if (codec == PF_CODEC_NONE) {
		memcpy(out->raw, payload, b->raw_len);
	} else {
		size_t z = ZSTD_decompressDCtx(d->dctx, out->raw, b->raw_len, payload, b->stored_len);
		if (ZSTD_isError(z) || z != b->raw_len)
			return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: zstd: %s",
					    s->path, i, off, ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong decoded size");
	}
	/* Record lengths table, then the records: the lengths must add up exactly. */
	pos = 4 * b->nrecords;
	for (uint32_t j = 0; j < b->nrecords; j++) {
		uint32_t l = rd32(out->raw + 4 * (size_t)j);
		out->offs[j] = pos;
		if (l > b->raw_len - pos)
			return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: record %u length %u runs past the block",
					    s->path, i, off, j, l);
		pos += l;
	}
	out->offs[b->nrecords] = pos;
	if (pos != b->raw_len)
		return pf_error_set(err, PF_ECORRUPT, "%s: block %u at offset %llu: record lengths cover %u of %u bytes",
				    s->path, i, off, pos, b->raw_len);
	out->index = i;
	out->nrecords = b->nrecords;
	out->first_record = b->first_record;
	out->raw_len = b->raw_len;
	return 0;
}

int pf_shard_read_block(const pf_shard *s, uint32_t i, pf_decoder *d,
			pf_block *out, pf_error *err)
{
	const pf_block_info *b = pf_shard_block(s, i);
	size_t n;
	int rc;

	if (!b)
		return pf_error_set(err, PF_EINVAL, "%s: block %u does not exist (%u blocks)", s->path, i, s->nblocks);
	n = PF_SHARD_BLOCK_HEADER_SIZE + (size_t)b->stored_len;
	if (s->mem)
		return pf_shard_decode(s, i, s->mem + b->offset, n, d, out, err);
	if (grow((void **)&d->scratch, &d->scratch_cap, n, 1))
		return pf_error_set(err, PF_ENOMEM, "%s: block %u: out of memory", s->path, i);
	if ((rc = read_at(s, d->scratch, n, b->offset, err)))
		return rc;
	return pf_shard_decode(s, i, d->scratch, n, d, out, err);
}

int pf_shard_verify_block(const pf_shard *s, uint32_t i, pf_decoder *d, pf_error *err)
{
	return pf_shard_read_block(s, i, d, &d->tmp, err);
}
