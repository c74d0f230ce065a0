/* t2101-pipeline-read-world: pf_source_opts.read_world / read_rank, the
 * shards source reading only one rank's blocks.  Files of uneven sizes in
 * small blocks (zstd and uncompressed), decode(id=1), shuffle on and off,
 * two epochs, several read threads: over 1..4 ranks every rank's pipeline
 * gives the same elements in the same order with the same ids as a run
 * that reads everything; a record's bytes are its own on the rank that
 * owns its block ((file + block) % world) and zeros elsewhere; so the
 * owners' rows together are every record of an epoch exactly once.  The
 * ranks' decoded_records add up to one read of the data (plus what is
 * read ahead), each rank's about 1/world of it.  A bad rank, and a
 * tfrecord source, are refused. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_id.h"
#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define REC 12
static const int sizes[NF] = { 700, 301, 1000 };
static char paths[NF][256];
static pf_shard *sh[NF];
static pf_error err;

/* Record r of file f: its 12 bytes, never all zero. */
static void record(int f, int r, unsigned char *b)
{
	for (int i = 0; i < REC; i++)
		b[i] = (unsigned char)(1 + (f * 131 + r * 7 + i * 13) % 251);
}

static int write_files(const char *dir)
{
	pf_schema s;
	if (pf_schema_parse(&s, "v: u8[12]", &err) < 0)
		return -1;
	for (int f = 0; f < NF; f++) {
		pf_shard_write_opts wo = { .block_size = 40 * REC, .codec_set = 1,
					   .codec = f == 1 ? PF_CODEC_NONE : PF_CODEC_ZSTD };
		pf_shard_writer *w;
		snprintf(paths[f], sizeof(paths[f]), "%s/f%d.pfs", dir, f);
		if (pf_shard_writer_open(&w, paths[f], &s, &wo, &err) < 0)
			return -1;
		for (int r = 0; r < sizes[f]; r++) {
			unsigned char b[REC];
			record(f, r, b);
			if (pf_shard_writer_add(w, b, REC, &err) < 0)
				return -1;
		}
		if (pf_shard_writer_close(w, &err) < 0 || pf_shard_open(&sh[f], paths[f], 0, &err) < 0)
			return -1;
	}
	return 0;
}

typedef struct run {
	long n;                 /* elements over both epochs */
	int64_t *id;
	unsigned char *v;       /* n x REC */
	uint64_t decoded;
} run;

/* The pipeline of rank `rank` of `world` (0: read everything). */
static int run_rank(int world, int rank, int shuffle, run *out)
{
	pf_options o = { .seed = 3, .cpu_budget = 2 };
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	const char *pv[NF] = { paths[0], paths[1], paths[2] };
	int rc = pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 2,
			      .read_world = world, .read_rank = rank };
	rc = rc ? rc : pf_shards(p, pv, NF, &so, &err);
	rc = rc ? rc : pf_map(p, "decode", "id=1", NULL, &err);
	if (!rc && shuffle)
		rc = pf_shuffle(p, 100, NULL, &err);
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	long cap = 2 * 2001;
	out->n = 0;
	out->id = malloc((size_t)cap * sizeof(*out->id));
	out->v = malloc((size_t)cap * REC);
	for (int e = 0; !rc && e < 2; e++) {
		pf_elem el;
		int r;
		while ((r = pf_iter_next(it, &el, &err)) == 0) {
			if (out->n < cap) {
				memcpy(out->v + out->n * REC, el.data[0], REC);
				out->id[out->n] = *(const int64_t *)el.data[1];
			}
			out->n++;
			pf_elem_release(&el);
		}
		if (r != PF_END)
			rc = r;
	}
	out->decoded = 0;
	for (int i = 0; it && i < pf_iter_nstages(it); i++) {
		pf_op_stats st;
		if (pf_iter_stats(it, i, &st) == 0)
			out->decoded += st.decoded_records;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

static int owner(int64_t id, int world)
{
	uint64_t f = pf_id_file((uint64_t)id);
	int64_t b = pf_shard_find_record(sh[f], pf_id_rec((uint64_t)id));
	return (int)((f + (uint64_t)b) % (uint64_t)world);
}

/* Compare the ranks of `world` with the full read `all`. */
static void check_world(const run *all, int world, int shuffle)
{
	run r[4];
	int rc = 0, same = 1, bytes = 1;
	long used = 0;
	uint64_t dec = 0, most = 0;
	for (int k = 0; k < world; k++)
		rc |= run_rank(world, k, shuffle, &r[k]);
	ok(rc == 0, "world %d, shuffle %d: every rank ran (%s)", world, shuffle, err.msg);
	for (int k = 0; k < world && !rc; k++) {
		same &= r[k].n == all->n &&
			!memcmp(r[k].id, all->id, (size_t)all->n * sizeof(*all->id));
		for (long i = 0; same && i < all->n; i++) {
			int mine = owner(all->id[i], world) == k;
			static const unsigned char zero[REC];
			const unsigned char *v = r[k].v + i * REC;
			if (mine)
				used++;
			if (mine ? memcmp(v, all->v + i * REC, REC) : memcmp(v, zero, REC))
				bytes = 0;
		}
		dec += r[k].decoded;
		most = r[k].decoded > most ? r[k].decoded : most;
	}
	ok(same, "  every rank: the elements, their order and ids of the full read");
	ok(bytes, "  a record's bytes on its block's owner, zeros elsewhere");
	is_int(used, all->n, "  the owners' rows: every record of both epochs once");
	/* each block once an epoch by its owner, and what was read ahead of
	 * a third epoch (a few blocks a rank, timing-dependent) */
	uint64_t once = 2 * (700 + 301 + 1000), ahead = 32 * 40 * (uint64_t)world;
	ok(dec >= once && dec <= once + ahead && most <= once / (uint64_t)world * 13 / 10 + 32 * 40,
	   "  decoded: %llu records over the ranks (the data twice: %llu; the full read %llu), the most on one rank %llu",
	   (unsigned long long)dec, (unsigned long long)once, (unsigned long long)all->decoded,
	   (unsigned long long)most);
	for (int k = 0; k < world; k++) {
		free(r[k].id);
		free(r[k].v);
	}
}

int main(void)
{
	char dir[] = "/tmp/t2101XXXXXX";
	plan(2 + 2 * 4 * 5 + 2);
	ok(mkdtemp(dir) != NULL, "temp dir");
	ok(write_files(dir) == 0, "3 files of 700, 301 and 1000 records, 40 a block (%s)", err.msg);
	for (int shuffle = 0; shuffle < 2; shuffle++) {
		run all;
		int rc = run_rank(0, 0, shuffle, &all);
		if (rc)
			diag("full read: %s", err.msg);
		for (int w = 1; w <= 4; w++)
			check_world(&all, w, shuffle);
		free(all.id);
		free(all.v);
	}
	pf_pipeline *p;
	pf_options o = { .seed = 1 };
	const char *pv[1] = { paths[0] };
	pf_source_opts bad = { .read_world = 2, .read_rank = 2 };
	pf_pipeline_new(&p, &o, &err);
	ok(pf_shards(p, pv, 1, &bad, &err) == PF_EINVAL && strstr(err.msg, "read_rank 2"),
	   "read_rank 2 of 2 is refused: %s", err.msg);
	bad.read_rank = 0;
	pf_error_clear(&err);
	int rc = pf_tfrecords(p, pv, 1, &bad, &err);
	ok(rc == PF_EINVAL && strstr(err.msg, "tfrecord"), "a tfrecord source with read_world is refused");
	diag("  rc %d: %s", rc, err.msg);
	pf_pipeline_free(p);
	for (int f = 0; f < NF; f++) {
		pf_shard_close(sh[f]);
		unlink(paths[f]);
	}
	rmdir(dir);
	return done_testing();
}
