/*
 * format_bench - how the shard format's choices set the decode limit:
 * zstd's decode rate on Fashion-MNIST by block size, level, dictionary and
 * long mode, against zstd on the whole data set as one frame.
 *
 *   format_bench [-r RUNS] [-n RECORDS] [-b SIZES] [-l LEVELS] [-d SIZES]
 *                [-L SIZES] [DIR]
 *
 * DIR holds train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz
 * (default /usr/share/datasets/fashion-mnist).  The records are built as
 * `pipe-pack idx` builds them (784 image bytes + 1 label byte) and gathered
 * into blocks by the writer's rule (a u32 length per record, then the
 * records; a block closes at the target size), all in memory.  For each
 * configuration it prints, medians of RUNS passes (default 7), every time
 * being the thread's CPU time (a rate per core, whatever else runs):
 *
 *   ratio      raw bytes / stored bytes (payloads + 64 bytes of block header
 *              and index entry per block; a dictionary's bytes not included)
 *   comp MB/s  ZSTD compression of the blocks, 1 thread, one pass
 *   zstd MB/s  ZSTD_decompressDCtx of every block with one reused context
 *              into one reused buffer (as the shards reader decodes), raw
 *              MB/s per core; img/s = records per second per core
 *   x def      the same pass's images/s against the library's default
 *              (PF_SHARD_DEFAULT_BLOCK, PF_SHARD_DEFAULT_LEVEL) in the same
 *              pass, median of the per-pass ratios (the machine is shared:
 *              pairs cancel its drift)
 *   reader     pf_shard_read_block on a real shard written by the library
 *              with the same options, from memory: checksum + zstd + the
 *              record table, the rate the pipeline's decode stage can reach
 *   rand us    the cost of random access: one record needs its whole block
 *              decoded, raw block KiB and microseconds (median) for that
 *
 * Configurations: plain blocks at every SIZE x LEVEL (-b, -l; default
 * 16K,64K,256K,1M,4M x 1,3,9,19), a ZDICT dictionary (112640 bytes, trained
 * on the first 10000 records) at level 3 for the sizes in -d (default
 * 16K,64K,256K), long-distance matching at level 3 for the sizes in -L
 * (default 1M,4M).  The ceiling rows are one zstd frame over all the
 * records, and over the raw images alone (what `zstd -b3` on the unpacked
 * image file measures).  Every pass decodes every configuration in turn.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <zdict.h>
#include <zstd.h>

#include "pf_error.h"
#include "pf_idx.h"
#include "pf_schema.h"
#include "pf_shard.h"
#include "bench_median.h"

#define MAXCFG 64
#define MAXRUNS 64
#define DICT_SIZE 112640
#define DICT_SAMPLES 10000

enum mode { PLAIN, DICT, LONG, FRAME_RECORDS, FRAME_IMAGES };

struct cfg {
	enum mode mode;
	size_t block;            /* target raw bytes (0 for a frame) */
	int level;
	/* the stored blocks */
	unsigned char *stored;
	size_t *off, *slen, *rlen, nblocks;
	size_t raw_total, stored_total, max_raw;
	double comp_s;
	ZSTD_DDict *ddict;
	/* the same data as a real shard, in memory (PLAIN only) */
	unsigned char *file;
	pf_shard *shard;
	/* per-pass results */
	double t_zstd[MAXRUNS], t_reader[MAXRUNS], rel[MAXRUNS];
};

static unsigned char *records;   /* nrec x RECLEN */
static size_t nrec;
static size_t reclen;
static struct cfg cfgs[MAXCFG];
static int ncfg;
static unsigned char *dict;
static size_t dict_len;

/* The calling thread's CPU time: the host is shared, and a pass that loses
 * the CPU to another tenant would otherwise count the wait as decoding. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double median(const double *v, int n)
{
	double s[MAXRUNS];
	memcpy(s, v, sizeof(*v) * (size_t)n);
	return bench_median(s, n);
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "format_bench: %s: %s\n", what, why);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("malloc", "out of memory");
	return p;
}

/* Load images and labels into `records` as pipe-pack idx lays them out. */
static void load(const char *dir, size_t limit)
{
	char ip[4096], lp[4096];
	pf_idx *im = NULL, *lb = NULL;
	pf_error err = {0};
	size_t isz;
	unsigned char *ib, *lbuf;

	snprintf(ip, sizeof(ip), "%s/train-images-idx3-ubyte.gz", dir);
	snprintf(lp, sizeof(lp), "%s/train-labels-idx1-ubyte.gz", dir);
	if (pf_idx_open(&im, ip, &err) < 0 || pf_idx_open(&lb, lp, &err) < 0)
		die("open", err.msg);
	nrec = (size_t)pf_idx_info(im)->count;
	if (limit && limit < nrec)
		nrec = limit;
	isz = pf_idx_info(im)->record_bytes;
	reclen = isz + 1;
	ib = xmalloc(nrec * isz);
	lbuf = xmalloc(nrec);
	if (pf_idx_read(im, ib, nrec, &err) != (int64_t)nrec ||
	    pf_idx_read(lb, lbuf, nrec, &err) != (int64_t)nrec)
		die("read", err.msg[0] ? err.msg : "short read");
	records = xmalloc(nrec * reclen);
	for (size_t i = 0; i < nrec; i++) {
		memcpy(records + i * reclen, ib + i * isz, isz);
		records[i * reclen + isz] = lbuf[i];
	}
	free(ib);
	free(lbuf);
	pf_idx_close(im);
	pf_idx_close(lb);
}

/* Records per block by the writer's rule for fixed-size records: a block
 * closes when one more record (and its u32 length) would pass the target. */
static size_t per_block(size_t block)
{
	size_t n = block / (reclen + 4);
	return n ? n : 1;
}

/* Append one compressed block (or frame) to c. */
static void push(struct cfg *c, size_t *cap, const void *z, size_t zlen, size_t raw)
{
	if (c->nblocks % 1024 == 0) {
		size_t n = c->nblocks + 1024;
		c->off = realloc(c->off, n * sizeof(size_t));
		c->slen = realloc(c->slen, n * sizeof(size_t));
		c->rlen = realloc(c->rlen, n * sizeof(size_t));
		if (!c->off || !c->slen || !c->rlen)
			die("realloc", "out of memory");
	}
	while (c->stored_total + zlen > *cap) {
		*cap = *cap ? *cap * 2 : (1u << 20);
		if (!(c->stored = realloc(c->stored, *cap)))
			die("realloc", "out of memory");
	}
	memcpy(c->stored + c->stored_total, z, zlen);
	c->off[c->nblocks] = c->stored_total;
	c->slen[c->nblocks] = zlen;
	c->rlen[c->nblocks] = raw;
	c->nblocks++;
	c->stored_total += zlen;
	c->raw_total += raw;
	if (raw > c->max_raw)
		c->max_raw = raw;
}

/* Compress with the configuration's parameters; returns the frame size. */
static size_t compress_one(struct cfg *c, ZSTD_CCtx *cc, ZSTD_CDict *cd,
			   void *dst, size_t cap, const void *src, size_t len)
{
	size_t z;
	if (c->mode == DICT) {
		z = ZSTD_compress_usingCDict(cc, dst, cap, src, len, cd);
	} else {
		ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, c->level);
		if (c->mode == LONG) {
			int wlog = 10;
			while (((size_t)1 << wlog) < len && wlog < 27)
				wlog++;
			ZSTD_CCtx_setParameter(cc, ZSTD_c_enableLongDistanceMatching, 1);
			ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, wlog);
		}
		z = ZSTD_compress2(cc, dst, cap, src, len);
	}
	if (ZSTD_isError(z))
		die("zstd compress", ZSTD_getErrorName(z));
	return z;
}

/* Build c's stored blocks from the records (timed: comp_s). */
static void build(struct cfg *c)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_CDict *cd = NULL;
	size_t cap = 0, per, maxraw, bound;
	unsigned char *raw, *z;
	double t;

	if (c->mode == FRAME_RECORDS || c->mode == FRAME_IMAGES)
		per = nrec;
	else
		per = per_block(c->block);
	maxraw = per * (reclen + 4);
	bound = ZSTD_compressBound(maxraw);
	raw = xmalloc(maxraw);
	z = xmalloc(bound);
	if (c->mode == DICT) {
		cd = ZSTD_createCDict(dict, dict_len, c->level);
		c->ddict = ZSTD_createDDict(dict, dict_len);
		if (!cd || !c->ddict)
			die("zstd dictionary", "cannot load");
	}
	t = now();
	for (size_t r = 0; r < nrec; r += per) {
		size_t n = nrec - r < per ? nrec - r : per, len = 0;
		if (c->mode == FRAME_IMAGES) {
			for (size_t i = 0; i < n; i++, len += reclen - 1)
				memcpy(raw + len, records + (r + i) * reclen, reclen - 1);
		} else {
			/* the writer's payload: the lengths table, then the records */
			for (size_t i = 0; i < n; i++) {
				uint32_t l = (uint32_t)reclen;
				memcpy(raw + 4 * i, &l, 4); /* LE hosts; the bytes' values do not matter here */
			}
			len = 4 * n;
			memcpy(raw + len, records + r * reclen, n * reclen);
			len += n * reclen;
		}
		push(c, &cap, z, compress_one(c, cc, cd, z, bound, raw, len), len);
	}
	c->comp_s = now() - t;
	ZSTD_freeCDict(cd);
	ZSTD_freeCCtx(cc);
	free(raw);
	free(z);
}

/* Write c's data as a real shard with the library's writer, load it into
 * memory and open it there (for the reader column). */
static void build_shard(struct cfg *c)
{
	char path[256];
	pf_shard_write_opts o = {0};
	pf_shard_writer *w;
	pf_schema sch = {0};
	pf_error err = {0};
	FILE *f;
	long len;

	sch.nfields = 2;
	snprintf(sch.fields[0].name, sizeof(sch.fields[0].name), "image");
	sch.fields[0].dtype = PF_U8;
	sch.fields[0].ndim = 1;
	sch.fields[0].dims[0] = (int64_t)reclen - 1;
	snprintf(sch.fields[1].name, sizeof(sch.fields[1].name), "label");
	sch.fields[1].dtype = PF_U8;
	o.level = c->level;
	o.block_size = c->block;
	snprintf(path, sizeof(path), "%s/format_bench.%ld.pfs",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
	if (pf_shard_writer_open(&w, path, &sch, &o, &err) < 0)
		die("shard writer", err.msg);
	for (size_t r = 0; r < nrec; r++)
		if (pf_shard_writer_add(w, records + r * reclen, reclen, &err) < 0)
			die("shard writer", err.msg);
	if (pf_shard_writer_close(w, &err) < 0)
		die("shard writer", err.msg);
	if (!(f = fopen(path, "rb")) || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0)
		die(path, "cannot read back");
	rewind(f);
	c->file = xmalloc((size_t)len);
	if (fread(c->file, 1, (size_t)len, f) != (size_t)len)
		die(path, "short read");
	fclose(f);
	unlink(path);
	if (pf_shard_open_mem(&c->shard, c->file, (size_t)len, "format_bench", 0, &err) < 0)
		die("shard open", err.msg);
	if (pf_shard_nblocks(c->shard) != c->nblocks)
		die("shard", "the writer made a different number of blocks than the bench");
}

/* One pass of zstd over every stored block of c: seconds. */
static double pass_zstd(struct cfg *c, ZSTD_DCtx *dc, unsigned char *out)
{
	double t = now();
	for (size_t b = 0; b < c->nblocks; b++) {
		size_t z = c->ddict
			? ZSTD_decompress_usingDDict(dc, out, c->rlen[b], c->stored + c->off[b], c->slen[b], c->ddict)
			: ZSTD_decompressDCtx(dc, out, c->rlen[b], c->stored + c->off[b], c->slen[b]);
		if (ZSTD_isError(z) || z != c->rlen[b])
			die("zstd decompress", ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong size");
	}
	return now() - t;
}

/* One pass of the library's block decoder over c's shard: seconds. */
static double pass_reader(struct cfg *c, pf_decoder *d, pf_block *blk)
{
	pf_error err = {0};
	double t = now();
	for (uint32_t b = 0; b < pf_shard_nblocks(c->shard); b++)
		if (pf_shard_read_block(c->shard, b, d, blk, &err) < 0)
			die("pf_shard_read_block", err.msg);
	return now() - t;
}

static void train_dict(void)
{
	size_t n = nrec < DICT_SAMPLES ? nrec : DICT_SAMPLES;
	size_t *sizes = xmalloc(n * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		sizes[i] = reclen;
	dict = xmalloc(DICT_SIZE);
	dict_len = ZDICT_trainFromBuffer(dict, DICT_SIZE, records, sizes, (unsigned)n);
	if (ZDICT_isError(dict_len))
		die("ZDICT_trainFromBuffer", ZDICT_getErrorName(dict_len));
	free(sizes);
}

/* "16K,1M" -> sizes; returns the count. */
static int parse_list(const char *s, size_t *v, int max, int sizes)
{
	int n = 0;
	while (*s && n < max) {
		char *e;
		unsigned long long x = strtoull(s, &e, 10);
		if (sizes && (*e == 'K' || *e == 'k'))
			x <<= 10, e++;
		else if (sizes && (*e == 'M' || *e == 'm'))
			x <<= 20, e++;
		if (e == s || (*e && *e != ','))
			die("list", s);
		v[n++] = (size_t)x;
		s = *e ? e + 1 : e;
	}
	return n;
}

static struct cfg *add(enum mode m, size_t block, int level)
{
	struct cfg *c;
	if (ncfg == MAXCFG)
		die("configurations", "too many");
	c = &cfgs[ncfg++];
	memset(c, 0, sizeof(*c));
	c->mode = m;
	c->block = block;
	c->level = level;
	return c;
}

static const char *mode_name(enum mode m)
{
	switch (m) {
	case PLAIN: return "plain";
	case DICT: return "dict";
	case LONG: return "long";
	case FRAME_RECORDS: return "1 frame, records";
	case FRAME_IMAGES: return "1 frame, images";
	}
	return "?";
}

static void size_str(char *buf, size_t cap, size_t b)
{
	if (b >= (1u << 20) && b % (1u << 20) == 0)
		snprintf(buf, cap, "%zuM", b >> 20);
	else if (b >= 1024 && b % 1024 == 0)
		snprintf(buf, cap, "%zuK", b >> 10);
	else
		snprintf(buf, cap, "%zu", b);
}

static void report(int runs, int base)
{
	printf("\n%-18s %6s %5s %7s %6s %9s %9s %11s %6s %9s %8s %8s\n", "config", "block", "level",
	       "blocks", "ratio", "comp MB/s", "zstd MB/s", "img/s/core", "x def", "reader MB/s",
	       "rand KiB", "rand us");
	for (int i = 0; i < ncfg; i++) {
		struct cfg *c = &cfgs[i];
		double tz = median(c->t_zstd, runs), rel = median(c->rel, runs);
		double stored = (double)c->stored_total + 64.0 * (double)c->nblocks;
		char bs[32] = "-", rd[32] = "-", rk[32] = "-", ru[32] = "-";
		if (c->block)
			size_str(bs, sizeof(bs), c->block);
		if (c->shard)
			snprintf(rd, sizeof(rd), "%.0f", c->raw_total / median(c->t_reader, runs) / 1e6);
		if (c->block) {
			snprintf(rk, sizeof(rk), "%.0f", c->raw_total / (double)c->nblocks / 1024);
			snprintf(ru, sizeof(ru), "%.0f", tz / (double)c->nblocks * 1e6);
		}
		printf("%-18s %6s %5d %7zu %6.3f %9.1f %9.0f %11.0f %6.3f %9s %8s %8s%s\n",
		       mode_name(c->mode), bs, c->level, c->nblocks, c->raw_total / stored,
		       c->raw_total / c->comp_s / 1e6, c->raw_total / tz / 1e6, nrec / tz, rel, rd, rk, ru,
		       i == base ? "  <- default" : "");
	}
	printf("\nmedians of %d passes; img/s/core x cores = the decode limit; ratio excludes a dictionary's %zu bytes\n",
	       runs, dict_len);
}

int main(int argc, char **argv)
{
	const char *dir = "/usr/share/datasets/fashion-mnist";
	size_t bsz[16], lv[16], dsz[16], lsz[16], limit = 0;
	int nb, nl, nd, nlong, runs = 7, opt, base = -1;
	ZSTD_DCtx *dc;
	pf_decoder *dec;
	pf_block blk;
	unsigned char *out;
	size_t maxraw = 0;

	nb = parse_list("16K,64K,256K,1M,4M", bsz, 16, 1);
	nl = parse_list("1,3,9,19", lv, 16, 0);
	nd = parse_list("16K,64K,256K", dsz, 16, 1);
	nlong = parse_list("1M,4M", lsz, 16, 1);
	while ((opt = getopt(argc, argv, "r:n:b:l:d:L:")) != -1) {
		switch (opt) {
		case 'r': runs = atoi(optarg); break;
		case 'n': limit = (size_t)strtoull(optarg, NULL, 10); break;
		case 'b': nb = parse_list(optarg, bsz, 16, 1); break;
		case 'l': nl = parse_list(optarg, lv, 16, 0); break;
		case 'd': nd = strcmp(optarg, "-") ? parse_list(optarg, dsz, 16, 1) : 0; break;
		case 'L': nlong = strcmp(optarg, "-") ? parse_list(optarg, lsz, 16, 1) : 0; break;
		default:
			fprintf(stderr, "usage: format_bench [-r RUNS] [-n RECORDS] [-b SIZES] [-l LEVELS] "
				"[-d SIZES|-] [-L SIZES|-] [DIR]\n");
			return 2;
		}
	}
	if (optind < argc)
		dir = argv[optind];
	if (runs < 1 || runs > MAXRUNS)
		die("-r", "wants 1..64");
	load(dir, limit);
	printf("format_bench: %zu records of %zu bytes (%s), zstd %s, %d passes\n", nrec, reclen, dir,
	       ZSTD_versionString(), runs);

	/* the default first, so every pass has its baseline */
	add(PLAIN, PF_SHARD_DEFAULT_BLOCK, PF_SHARD_DEFAULT_LEVEL);
	base = 0;
	for (int i = 0; i < nb; i++)
		for (int j = 0; j < nl; j++)
			if (bsz[i] != PF_SHARD_DEFAULT_BLOCK || lv[j] != PF_SHARD_DEFAULT_LEVEL)
				add(PLAIN, bsz[i], (int)lv[j]);
	if (nd)
		train_dict();
	for (int i = 0; i < nd; i++)
		add(DICT, dsz[i], 3);
	for (int i = 0; i < nlong; i++)
		add(LONG, lsz[i], 3);
	add(FRAME_RECORDS, 0, 3);
	add(FRAME_IMAGES, 0, 3);

	for (int i = 0; i < ncfg; i++) {
		build(&cfgs[i]);
		if (cfgs[i].mode == PLAIN)
			build_shard(&cfgs[i]);
		if (cfgs[i].max_raw > maxraw)
			maxraw = cfgs[i].max_raw;
		fprintf(stderr, "\rbuilt %d/%d", i + 1, ncfg);
	}
	fprintf(stderr, "\n");

	dc = ZSTD_createDCtx();
	dec = pf_decoder_new();
	out = xmalloc(maxraw);
	pf_block_init(&blk);
	/* Every pass decodes every configuration in turn, so each sees the
	 * same share of the host's noise; its ratio to the default is taken
	 * within the pass. */
	for (int r = 0; r < runs; r++) {
		for (int i = 0; i < ncfg; i++) {
			struct cfg *c = &cfgs[i];
			c->t_zstd[r] = pass_zstd(c, dc, out);
			if (c->shard)
				c->t_reader[r] = pass_reader(c, dec, &blk);
		}
		for (int i = 0; i < ncfg; i++)
			cfgs[i].rel[r] = cfgs[base].t_zstd[r] / cfgs[i].t_zstd[r];
		fprintf(stderr, "\rpass %d/%d", r + 1, runs);
	}
	fprintf(stderr, "\n");
	report(runs, base);
	pf_block_free(&blk);
	pf_decoder_free(dec);
	ZSTD_freeDCtx(dc);
	free(out);
	return 0;
}
