/*
 * t1003-ops-interleave-order: the file sources (shards, tfrecord) deliver
 * their records in exactly the order of tf.data's Dataset.interleave
 * (deterministic mode) for every cycle_length 1..6 x block_length 1..5,
 * over files of uneven lengths, empty ones included, and in a second
 * epoch too (shards reads it ahead through its next-epoch plan).
 *
 * The reference is a small model of tf.data's algorithm written here: a
 * cycle of slots visited in turn; a slot with an open file gives up to
 * block_length records then passes the turn; a file found at its end is
 * closed and the turn passes (the slot takes the next file only at its
 * next visit); an empty slot takes the next file and reads from it in the
 * same visit; once the files are used up empty slots pass.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_id.h"
#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"
#include "value_shards.h"

#define MAXREC 256
#define NCYCLE 6
#define NBLOCK 5

typedef struct fileset {
	const char *name;
	int n;
	int len[VS_MAX_SHARDS];
} fileset;

static const fileset sets[] = {
	{ "uneven", 7, { 3, 0, 5, 1, 8, 2, 4 } },
	{ "empties first and last", 6, { 0, 1, 2, 1, 0, 3 } },
	{ "few files, long", 3, { 0, 9, 4 } },
};
#define NSETS ((int)(sizeof(sets) / sizeof(sets[0])))

/* tf.data's interleave over files of len[] records: the (file, record)
 * order into of[]/orec[]; returns the count. */
static int model(const int *len, int nfiles, int cycle, int block, int *of, int *orec)
{
	int file[16], pos[16];
	int ci = 0, bi = 0, next = 0, end_of_input = 0, open = 0, n = 0;
	for (int k = 0; k < cycle; k++)
		file[k] = -1;
	while (!end_of_input || open > 0) {
		if (file[ci] >= 0) {
			if (pos[ci] < len[file[ci]]) {
				of[n] = file[ci];
				orec[n++] = pos[ci]++;
				if (++bi == block) {
					bi = 0;
					ci = (ci + 1) % cycle;
				}
				continue;
			}
			file[ci] = -1; /* end of this file: the turn passes */
			open--;
			bi = 0;
			ci = (ci + 1) % cycle;
		} else if (!end_of_input) {
			if (next < nfiles) {
				file[ci] = next++;
				pos[ci] = 0;
				open++;
			} else {
				end_of_input = 1;
			}
		} else {
			bi = 0;
			ci = (ci + 1) % cycle;
		}
	}
	return n;
}

/* Records delivered in `epochs` epochs: (file, record) from the ids.
 * Returns the count, or a negative code. */
static int collect(int tfr, const char *const *paths, int n, int cycle, int block,
		   int epochs, int *of, int *orec, pf_error *e)
{
	pf_pipeline *p;
	int rc = pf_pipeline_new(&p, NULL, e);
	if (rc)
		return rc;
	pf_source_opts so = { .cycle_length = cycle, .block_length = block,
			      .num_parallel_reads = 2 };
	rc = tfr ? pf_tfrecords(p, paths, (size_t)n, &so, e) :
		   pf_shards(p, paths, (size_t)n, &so, e);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, e);
	int k = 0;
	for (int ep = 0; ep < epochs && !rc; ep++) {
		pf_elem el;
		while ((rc = pf_iter_next(it, &el, e)) == 0) {
			if (k < MAXREC * 2) {
				of[k] = (int)pf_id_file(el.id);
				orec[k] = (int)pf_id_rec(el.id);
			}
			k++;
			pf_elem_release(&el);
		}
		if (rc == PF_END)
			rc = 0;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc ? rc : k;
}

static int write_tfrecords(const char *dir, const fileset *s, char paths[][600])
{
	for (int i = 0; i < s->n; i++) {
		snprintf(paths[i], 600, "%.500s/f-%02d.tfrecord", dir, i);
		FILE *f = fopen(paths[i], "wb");
		if (!f)
			return -1;
		for (int r = 0; r < s->len[i]; r++) {
			char rec[32];
			int len = snprintf(rec, sizeof(rec), "file %d record %d", i, r);
			unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
			pf_tfrecord_frame(rec, (uint64_t)len, h, t);
			fwrite(h, 1, sizeof(h), f);
			fwrite(rec, 1, (size_t)len, f);
			fwrite(t, 1, sizeof(t), f);
		}
		if (fclose(f))
			return -1;
	}
	return 0;
}

/* Every (cycle, block) pair for one source over one file set: one check. */
static void check_set(int tfr, const fileset *s, const char *const *pathv)
{
	static int wf[MAXREC], wr[MAXREC], gf[MAXREC * 2], gr[MAXREC * 2];
	int bad = 0, pairs = 0;
	char first[1024] = "";
	for (int cycle = 1; cycle <= NCYCLE; cycle++)
		for (int block = 1; block <= NBLOCK; block++) {
			pairs++;
			int want = model(s->len, s->n, cycle, block, wf, wr);
			pf_error e = { 0 };
			/* shards: a second epoch, read ahead by idle workers */
			int epochs = tfr ? 1 : 2;
			int got = collect(tfr, pathv, s->n, cycle, block, epochs, gf, gr, &e);
			int diff = got != want * epochs;
			int at = -1;
			for (int i = 0; !diff && i < got; i++)
				if (gf[i] != wf[i % want] || gr[i] != wr[i % want]) {
					diff = 1;
					at = i;
				}
			if (!diff)
				continue;
			if (!bad++) {
				if (got < 0)
					snprintf(first, sizeof(first), "cycle %d block %d: %.400s", cycle,
						 block, e.msg);
				else if (at < 0)
					snprintf(first, sizeof(first), "cycle %d block %d: %d records, want %d",
						 cycle, block, got, want * epochs);
				else
					snprintf(first, sizeof(first),
						 "cycle %d block %d, record %d (epoch %d): got (%d,%d), tf.data gives (%d,%d)",
						 cycle, block, at, at / want, gf[at], gr[at],
						 wf[at % want], wr[at % want]);
			}
		}
	ok(bad == 0, "%s, files \"%s\": tf.data's order for each cycle 1..%d x block 1..%d%s (%d of %d pairs differ%s%s)",
	   tfr ? "tfrecord" : "shards", s->name, NCYCLE, NBLOCK, tfr ? "" : ", 2 epochs",
	   bad, pairs, bad ? "; first: " : "", first);
}

/* The model itself, on the example: cycle 2, block 1 over files
 * of 0, 1, 2 (and more) records gives (1,0),(2,0),(2,1),(3,0). */
static void check_model(void)
{
	int len[] = { 0, 1, 2, 3 }, of[16], orec[16];
	int n = model(len, 4, 2, 1, of, orec);
	ok(n == 6 && of[0] == 1 && orec[0] == 0 && of[1] == 2 && orec[1] == 0 &&
	   of[2] == 2 && orec[2] == 1 && of[3] == 3 && orec[3] == 0,
	   "the model: cycle 2, block 1 passes the turn at a file's end ((1,0),(2,0),(2,1),(3,0))");
}

int main(void)
{
	alarm(120);
	plan(1 + 2 * NSETS);
	check_model();
	const char *dir = tap_tmpdir("t1003");
	static char tpaths[VS_MAX_SHARDS][600];
	for (int i = 0; i < NSETS; i++) {
		const fileset *s = &sets[i];
		char sub[600];
		snprintf(sub, sizeof(sub), "%s/set%d", dir, i);
		mkdir(sub, 0755);
		/* shards of ~3 records a block: files of several blocks */
		vs_set vs;
		pf_error e = { 0 };
		int rc = vs_write(&vs, sub, s->len, s->n, 0, 7, 64, &e);
		if (rc) {
			ok(0, "shards, files \"%s\": written (%s)", s->name, e.msg);
		} else {
			check_set(0, s, vs.pathv);
		}
		const char *tv[VS_MAX_SHARDS];
		if (write_tfrecords(sub, s, tpaths)) {
			ok(0, "tfrecord, files \"%s\": written", s->name);
			continue;
		}
		for (int f = 0; f < s->n; f++)
			tv[f] = tpaths[f];
		check_set(1, s, tv);
	}
	return done_testing();
}
