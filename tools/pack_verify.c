/*
 * pack_verify.c - `pipe-pack verify`: check shards end to end, fast.
 *
 * Every file is opened (header, schema, footer, index checked by
 * pf_shard_open; when that fails, PF_SHARD_OPEN_SCAN rebuilds the index to
 * say how far the file is intact), then every block of every file is a work
 * item for a pool of threads, each with its own decoder: the block's
 * checksum is verified, it is decoded, and every record is checked against
 * the schema.  Items are handed out in file order, so the threads sweep the
 * files one after the other, and a file's MB/s is its raw bytes over the
 * wall time from its first block's start to its last block's end.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pack_common.h"

struct vfile {
	const char *path;
	pf_shard *s;
	int damaged;            /* err holds the first damage */
	uint32_t bad_block;     /* lowest damaged block (UINT32_MAX: none/open) */
	pf_error err;
	int scanned;            /* opened by scanning: the index was rebuilt */
	uint64_t lost_at;
	double t_first, t_last; /* wall span of its blocks */
	uint64_t nrecords;      /* records in blocks that checked out */
};

struct vitem {
	uint32_t file, block;
};

struct vctx {
	struct vfile *f;
	struct vitem *items;
	size_t nitems;
	atomic_size_t next;
	pthread_mutex_t lock;
};

/* Note damage in block b of file f; the lowest block wins. */
static void note_damage(struct vctx *v, struct vfile *f, uint32_t b,
			const pf_error *e)
{
	pthread_mutex_lock(&v->lock);
	if (!f->damaged || b < f->bad_block) {
		f->damaged = 1;
		f->bad_block = b;
		f->err = *e;
	}
	pthread_mutex_unlock(&v->lock);
}

static int check_records(const pf_shard *s, const pf_block *blk, pf_error *e)
{
	const pf_schema *sc = pf_shard_schema(s);
	size_t off[PF_MAX_FIELDS];
	int64_t cnt[PF_MAX_FIELDS];

	for (uint32_t j = 0; j < blk->nrecords; j++) {
		size_t len;
		const void *rec = pf_block_record(blk, j, &len);
		pf_error se = { 0 };

		if (pf_schema_split(sc, rec, len, off, cnt, &se) < 0)
			return pf_error_set(e, PF_ECORRUPT,
					    "%s: block %u at offset %" PRIu64 ": record %" PRIu64
					    " does not match the schema: %s",
					    pf_shard_path(s), blk->index,
					    pf_shard_block(s, blk->index)->offset,
					    blk->first_record + j, se.msg);
	}
	return 0;
}

static void *worker(void *arg)
{
	struct vctx *v = arg;
	pf_decoder *d = pf_decoder_new();
	pf_block blk;
	size_t i;

	pf_block_init(&blk);
	while ((i = atomic_fetch_add(&v->next, 1)) < v->nitems) {
		struct vitem it = v->items[i];
		struct vfile *f = &v->f[it.file];
		const pf_block_info *bi = pf_shard_block(f->s, it.block);
		pf_error e = { 0 };
		double t0 = pack_now(), t1;
		int rc;

		if (!d) {
			pf_error_set(&e, PF_ENOMEM, "out of memory");
			note_damage(v, f, it.block, &e);
			continue;
		}
		rc = pf_shard_read_block(f->s, it.block, d, &blk, &e);
		if (rc == 0 && (blk.nrecords != bi->nrecords ||
				blk.first_record != bi->first_record))
			rc = pf_error_set(&e, PF_ECORRUPT,
					  "%s: block %u at offset %" PRIu64
					  ": holds %u records from %" PRIu64
					  ", the index says %u from %" PRIu64,
					  f->path, it.block, bi->offset, blk.nrecords,
					  blk.first_record, bi->nrecords, bi->first_record);
		if (rc == 0)
			rc = check_records(f->s, &blk, &e);
		t1 = pack_now();
		if (rc < 0)
			note_damage(v, f, it.block, &e);
		pthread_mutex_lock(&v->lock);
		if (f->t_first == 0 || t0 < f->t_first)
			f->t_first = t0;
		if (t1 > f->t_last)
			f->t_last = t1;
		if (rc == 0)
			f->nrecords += blk.nrecords;
		pthread_mutex_unlock(&v->lock);
	}
	pf_block_free(&blk);
	pf_decoder_free(d);
	return NULL;
}

/* Open f; on failure retry by scanning so the report can say how much is
 * intact.  Returns 0 when there are blocks to check (possibly recovered). */
static int open_file(struct vfile *f)
{
	pf_error e = { 0 };

	f->bad_block = UINT32_MAX;
	if (pf_shard_open(&f->s, f->path, 0, &e) == 0)
		return 0;
	f->damaged = 1;
	f->err = e;
	pf_error_clear(&e);
	if (pf_shard_open(&f->s, f->path, PF_SHARD_OPEN_SCAN, &e) == 0) {
		f->scanned = pf_shard_recovered(f->s, &f->lost_at);
		return 0;
	}
	f->s = NULL;
	return -1;
}

/* The index must add up: blocks back to back in record order. */
static void check_index(struct vfile *f)
{
	uint64_t next = 0;
	uint32_t nb = pf_shard_nblocks(f->s);
	pf_error e = { 0 };

	for (uint32_t b = 0; b < nb; b++) {
		const pf_block_info *bi = pf_shard_block(f->s, b);

		if (bi->first_record != next) {
			pf_error_set(&e, PF_ECORRUPT,
				     "%s: index entry %u: block at offset %" PRIu64
				     " starts at record %" PRIu64 ", expected %" PRIu64,
				     f->path, b, bi->offset, bi->first_record, next);
			break;
		}
		next += bi->nrecords;
	}
	if (!e.code && !f->scanned && next != pf_shard_nrecords(f->s))
		pf_error_set(&e, PF_ECORRUPT,
			     "%s: the index's blocks hold %" PRIu64
			     " records, the footer says %" PRIu64,
			     f->path, next, pf_shard_nrecords(f->s));
	if (e.code && !f->damaged) {
		f->damaged = 1;
		f->err = e;
	}
}

/* Check every block of v on up to `threads` threads (in this one when a
 * single thread will do, or none could start); returns the count used. */
static size_t run_workers(struct vctx *v, uint64_t threads)
{
	size_t nt = threads < v->nitems ? (size_t)threads : v->nitems;
	pthread_t *th;

	if (nt <= 1) {
		worker(v);
	} else {
		th = calloc(nt, sizeof(*th));
		size_t started = 0;

		for (; th && started < nt; started++)
			if (pthread_create(&th[started], NULL, worker, v))
				break;
		if (started == 0)
			worker(v);
		for (size_t k = 0; k < started; k++)
			pthread_join(th[k], NULL);
		free(th);
	}
	return nt;
}

/* Print each file's verdict (damaged ones always, good ones unless quiet)
 * and the totals; returns the number of damaged files. */
static int report(struct vfile *files, int nfiles, int quiet, size_t nt, double dt)
{
	uint64_t t_raw = 0, t_stored = 0, t_recs = 0, t_blocks = 0;
	int nbad = 0;

	for (int i = 0; i < nfiles; i++) {
		struct vfile *f = &files[i];
		uint64_t raw = 0, nb = f->s ? pf_shard_nblocks(f->s) : 0;
		double span = f->t_last - f->t_first;

		for (uint32_t b = 0; b < nb; b++)
			raw += pf_shard_block(f->s, b)->raw_len;
		if (f->damaged) {
			nbad++;
			printf("%s: DAMAGED: %s\n", f->path, f->err.msg);
			if (f->scanned)
				printf("%s: index rebuilt by scanning: %" PRIu64
				       " blocks, %" PRIu64 " records intact up to offset %"
				       PRIu64 "%s\n", f->path, nb, f->nrecords, f->lost_at,
				       f->bad_block != UINT32_MAX ? " (before the damaged block)" : "");
			continue;
		}
		t_recs += f->nrecords;
		t_blocks += nb;
		t_raw += raw;
		t_stored += f->s ? pf_shard_size(f->s) : 0;
		if (!quiet)
			printf("%s: ok, %" PRIu64 " records, %" PRIu64 " blocks, raw %" PRIu64
			       " B, stored %" PRIu64 " B, ratio %.2f, %.1f MB/s\n",
			       f->path, f->nrecords, nb, raw, pf_shard_size(f->s),
			       pf_shard_size(f->s) ? (double)raw / (double)pf_shard_size(f->s) : 0.0,
			       span > 0 ? (double)raw / span / 1e6 : 0.0);
	}
	if (!quiet || nbad)
		printf("verify: %d file%s, %d damaged; %" PRIu64 " records, %" PRIu64
		       " blocks, raw %" PRIu64 " B, stored %" PRIu64
		       " B, ratio %.2f, %.1f MB/s (%zu thread%s, %.3f s)\n",
		       nfiles, nfiles == 1 ? "" : "s", nbad, t_recs, t_blocks, t_raw,
		       t_stored, t_stored ? (double)t_raw / (double)t_stored : 0.0,
		       dt > 0 ? (double)t_raw / dt / 1e6 : 0.0, nt ? nt : 1,
		       nt == 1 ? "" : "s", dt);
	return nbad;
}

int pack_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vctx v = { 0 };
	struct vfile *files;
	uint64_t threads = 0;
	int c, quiet = 0, nfiles, nbad = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double t0, dt;
	size_t nt;

	while ((c = getopt_long(argc, argv, "j:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			if (pack_parse_u64(optarg, &threads) < 0 || threads == 0 ||
			    threads > 256)
				return pack_usage("verify", "verify: -j wants 1..256, not '%s'",
						  optarg);
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			pack_usage_full();
			return PACK_OK;
		default:
			return pack_usage("verify", NULL);
		}
	}
	nfiles = argc - optind;
	if (nfiles == 0)
		return pack_usage("verify", "verify: no shard FILE");
	if (!threads)
		threads = ncpu > 0 ? (uint64_t)ncpu : 1;

	files = calloc((size_t)nfiles, sizeof(*files));
	if (!files) {
		fprintf(stderr, "pipe-pack: out of memory\n");
		return PACK_BAD;
	}
	t0 = pack_now();
	for (int i = 0; i < nfiles; i++) {
		files[i].path = argv[optind + i];
		if (open_file(&files[i]) == 0) {
			check_index(&files[i]);
			v.nitems += pf_shard_nblocks(files[i].s);
		}
	}
	v.f = files;
	v.items = calloc(v.nitems ? v.nitems : 1, sizeof(*v.items));
	if (!v.items) {
		fprintf(stderr, "pipe-pack: out of memory\n");
		return PACK_BAD;
	}
	v.nitems = 0;
	for (int i = 0; i < nfiles; i++)
		for (uint32_t b = 0; files[i].s && b < pf_shard_nblocks(files[i].s); b++)
			v.items[v.nitems++] = (struct vitem){ (uint32_t)i, b };
	pthread_mutex_init(&v.lock, NULL);
	atomic_init(&v.next, 0);
	nt = run_workers(&v, threads);
	dt = pack_now() - t0;

	nbad = report(files, nfiles, quiet, nt, dt);
	for (int i = 0; i < nfiles; i++)
		pf_shard_close(files[i].s);
	pthread_mutex_destroy(&v.lock);
	free(v.items);
	free(files);
	return nbad ? PACK_BAD : PACK_OK;
}
