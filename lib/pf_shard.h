/*
 * pf_shard.h - the shard file format: writer, reader, block decoder.
 *
 * A shard holds records in blocks; each block is compressed on its own
 * (zstd or none) and checksummed (crc32c or xxh64).  A header carries the
 * magic, the format version and the element schema; a footer index lists
 * every block's offset and record count, so a reader can count, seek and
 * split work without reading the data.  The byte layout is specified in
 * doc/FORMAT.md (format version PF_SHARD_VERSION).
 *
 * Safety: pf_shard_open checks every length and offset against the file
 * size and the limits below before it allocates anything, and decoding a
 * block allocates at most PF_SHARD_MAX_RATIO times the block's stored size,
 * so a hostile file cannot make the reader allocate more than a small
 * multiple of its own size, nor read out of bounds.
 *
 * Threads: a pf_shard is read-only after open and may be shared by threads
 * (pread only).  A pf_decoder and a pf_block belong to one thread at a time.
 */
#ifndef PF_SHARD_H
#define PF_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_SHARD_VERSION 1
#define PF_SHARD_EXT ".pfs"
#define PF_SHARD_HEADER_SIZE 40      /* fixed part, before the schema */
#define PF_SHARD_BLOCK_HEADER_SIZE 32
#define PF_SHARD_INDEX_ENTRY_SIZE 32
#define PF_SHARD_FOOTER_SIZE 48
#define PF_SHARD_MAX_SCHEMA (64u << 10)
#define PF_SHARD_MAX_BLOCK_RAW (1u << 30)  /* 1 GiB: largest decoded block */
#define PF_SHARD_MAX_RATIO 256u            /* raw <= stored * 256 + 64 KiB */
#define PF_SHARD_DEFAULT_BLOCK (256u << 10)
/* zstd level when none is asked for.  6, not zstd's own 3: on
 * Fashion-MNIST its blocks decode 9-13% faster per core (fewer, longer
 * matches) and are 1.6% smaller, for half the compression speed (about
 * 75 MB/s a core); levels above 12 decode slower again.  The table is
 * README's "zstd decode rate vs block size and level" (bench/format_bench). */
#define PF_SHARD_DEFAULT_LEVEL 6

enum pf_codec { PF_CODEC_NONE = 0, PF_CODEC_ZSTD = 1 };
const char *pf_codec_name(int codec);      /* "none" / "zstd" / NULL */
int pf_codec_parse(const char *name);      /* -1 when unknown */

/* ---- writing ---------------------------------------------------------- */

typedef struct pf_shard_write_opts {
	int codec;          /* PF_CODEC_ZSTD (default when the struct is zeroed: see below) */
	int level;          /* zstd level; 0 = PF_SHARD_DEFAULT_LEVEL (6) */
	int checksum;       /* PF_CHECKSUM_CRC32C (0 = crc32c) or PF_CHECKSUM_XXH64 */
	size_t block_size;  /* target raw bytes per block; 0 = PF_SHARD_DEFAULT_BLOCK */
	int codec_set;      /* nonzero: `codec` was chosen (so PF_CODEC_NONE can be asked for) */
} pf_shard_write_opts;

typedef struct pf_shard_writer pf_shard_writer;

/*
 * Create `path` for writing (through "path.tmp.PID", renamed on close, so a
 * reader never sees a half-written shard).  opts may be NULL for defaults.
 */
int pf_shard_writer_open(pf_shard_writer **w, const char *path,
			 const pf_schema *schema,
			 const pf_shard_write_opts *opts, pf_error *err);

/* Append one record (len may be 0).  A record larger than the block size
 * gets a block of its own.  Records over PF_SHARD_MAX_BLOCK_RAW - 8 fail
 * with PF_ELIMIT. */
int pf_shard_writer_add(pf_shard_writer *w, const void *rec, size_t len,
			pf_error *err);

/* Flush the last block, write the index and footer, fsync, rename into
 * place, and free w (also on error, after removing the temp file). */
int pf_shard_writer_close(pf_shard_writer *w, pf_error *err);

/* Discard: remove the temp file and free w.  NULL is a no-op. */
void pf_shard_writer_abort(pf_shard_writer *w);

/* Totals so far (records, raw bytes, stored bytes incl. headers). */
void pf_shard_writer_stats(const pf_shard_writer *w, uint64_t *records,
			   uint64_t *raw_bytes, uint64_t *file_bytes);

/* "PREFIX-00003-of-00016.pfs" into buf; returns snprintf's result. */
int pf_shard_name(char *buf, size_t cap, const char *prefix, unsigned index,
		  unsigned count);

/* ---- reading ---------------------------------------------------------- */

/* One entry of the footer index. */
typedef struct pf_block_info {
	uint64_t offset;        /* file offset of the block header */
	uint32_t stored_len;    /* payload bytes after the 32-byte block header */
	uint32_t raw_len;       /* decoded payload bytes */
	uint32_t nrecords;
	uint64_t first_record;  /* index of its first record within the shard */
	int codec;              /* PF_CODEC_*: the codec this block was stored with */
} pf_block_info;

typedef struct pf_shard pf_shard;

enum pf_shard_open_flags {
	/* When the footer or index is damaged or missing (a truncated file),
	 * rebuild the index by walking the block headers from the start and
	 * keep every block up to the first damaged one; pf_shard_recovered()
	 * then says what was lost.  Without it such a file fails to open. */
	PF_SHARD_OPEN_SCAN = 1,
};

/* Open and validate header, footer and index.  Errors name file, offset, reason. */
int pf_shard_open(pf_shard **s, const char *path, int flags, pf_error *err);

/* The same over a file already in memory (the fuzz harness uses this);
 * the buffer must outlive the pf_shard. `name` is used in messages. */
int pf_shard_open_mem(pf_shard **s, const void *buf, size_t len,
		      const char *name, int flags, pf_error *err);

void pf_shard_close(pf_shard *s); /* NULL is a no-op */

const char *pf_shard_path(const pf_shard *s);
int pf_shard_fd(const pf_shard *s);               /* -1 for a memory shard */
const pf_schema *pf_shard_schema(const pf_shard *s);
int pf_shard_codec(const pf_shard *s);
int pf_shard_checksum_kind(const pf_shard *s);
uint64_t pf_shard_size(const pf_shard *s);        /* file bytes */
uint64_t pf_shard_nrecords(const pf_shard *s);
uint64_t pf_shard_raw_bytes(const pf_shard *s);
uint32_t pf_shard_nblocks(const pf_shard *s);
const pf_block_info *pf_shard_block(const pf_shard *s, uint32_t i);
/* Index of the block holding record r (binary search), or -1. */
int64_t pf_shard_find_record(const pf_shard *s, uint64_t r);
/* After PF_SHARD_OPEN_SCAN: nonzero when the index was rebuilt; *lost_at is
 * the offset of the first byte not recovered. */
int pf_shard_recovered(const pf_shard *s, uint64_t *lost_at);

/* ---- decoding blocks -------------------------------------------------- */

/* A decoded block: records are views into `raw`, valid until the block is
 * reused or freed. */
typedef struct pf_block {
	uint32_t index;         /* block number in its shard */
	uint32_t nrecords;
	uint64_t first_record;
	unsigned char *raw;     /* raw payload (lengths table, then records) */
	size_t raw_len, raw_cap;
	uint32_t *offs;         /* nrecords + 1 record offsets into raw */
	size_t offs_cap;
} pf_block;

/* Reusable per-thread decoding state (a zstd context and scratch space). */
typedef struct pf_decoder pf_decoder;
pf_decoder *pf_decoder_new(void);       /* NULL when out of memory */
void pf_decoder_free(pf_decoder *d);    /* NULL is a no-op */

void pf_block_init(pf_block *b);
void pf_block_free(pf_block *b);        /* frees buffers; b itself is the caller's */

static inline const void *pf_block_record(const pf_block *b, uint32_t j,
					  size_t *len)
{
	*len = b->offs[j + 1] - b->offs[j];
	return b->raw + b->offs[j];
}

/*
 * Verify and decode block i from `stored`, which holds the block's bytes as
 * they are in the file (32-byte block header + payload, i.e.
 * PF_SHARD_BLOCK_HEADER_SIZE + info->stored_len bytes).  Used by readers that
 * fetched the bytes themselves (io_uring).  The checksum is verified before
 * anything is decompressed.
 */
int pf_shard_decode(const pf_shard *s, uint32_t i, const void *stored,
		    size_t len, pf_decoder *d, pf_block *out, pf_error *err);

/* pread + pf_shard_decode. */
int pf_shard_read_block(const pf_shard *s, uint32_t i, pf_decoder *d,
			pf_block *out, pf_error *err);

/* Verify block i's checksum and structure without keeping the records
 * (decodes into the decoder's scratch). */
int pf_shard_verify_block(const pf_shard *s, uint32_t i, pf_decoder *d,
			  pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_SHARD_H */
