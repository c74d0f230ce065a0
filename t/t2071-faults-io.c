/* t2071-faults-io: files that go missing or cannot be read, through the
 * pipeline (shards + map(decode) + batch): a file removed after the glob
 * was expanded, a directory where a shard was, a file cut short after its
 * index was read (short reads), a directory given as a shard, and EIO and
 * short reads injected into the shards op's reader (its fault hook, through
 * pf_shards_set_test_fault).  Each gives a
 * clear error naming the file (and the offset, for reads), never a hang;
 * data read before the fault is intact; the iterator is freed cleanly
 * afterwards (ASan checks that).  Read errors are not "damage": skip_corrupt
 * does not hide them, while a cut file's lost blocks are skipped. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_op.h"
#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define NR 600

static pf_error err;
static char dir[512], files[NF][600], pattern[700];

static void make_shard(int f)
{
	pf_schema s;
	pf_schema_parse(&s, "v: u32", &err);
	pf_shard_writer *w;
	pf_shard_write_opts o = { .block_size = 400, .codec = PF_CODEC_NONE, .codec_set = 1 };
	pf_shard_writer_open(&w, files[f], &s, &o, &err);
	for (uint32_t i = 0; i < NR; i++) {
		uint32_t v = (uint32_t)f * 10000 + i;
		pf_shard_writer_add(w, &v, 4, &err);
	}
	pf_shard_writer_close(w, &err);
}

typedef struct res {
	int rc;
	char msg[PF_ERROR_MSG_MAX];
	long n, bad;          /* delivered; delivered but not a value of the files */
	long per_file[NF];
	uint64_t corrupt;
} res;

enum fault { F_NONE, F_REMOVE, F_DIR, F_CUT, F_EIO, F_SHORT };

/* The injected fault: the read of file 1 that covers byte `hit` fails with
 * EIO or comes back 10 bytes short of it. */
static struct { int eio; uint64_t hit; long calls; } inject;

static long fault_fn(void *user, const char *path, uint64_t offset, size_t len)
{
	(void)user;
	if (strcmp(path, files[1]) || inject.hit < offset || inject.hit >= offset + len)
		return (long)len + 1;   /* left alone */
	__atomic_add_fetch(&inject.calls, 1, __ATOMIC_RELAXED);
	return inject.eio ? -EIO : (long)(inject.hit - offset) + 10;
}

/* Build the pipeline over the glob, start it, apply the fault to file 2
 * (file 1 for F_CUT), then read the epoch. */
static void run(enum fault fault, int skip, int par, uint64_t cut_at, res *r)
{
	memset(r, 0, sizeof(*r));
	pf_error_clear(&err);
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	/* one file at a time: file 2 is not opened for reading before the fault */
	pf_source_opts so = { .cycle_length = 1, .num_parallel_reads = par, .skip_corrupt = skip };
	const char *pat[1] = { pattern };
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = pf_shards(p, pat, 1, &so, &err);
	if (!rc)
		rc = pf_map(p, "decode", "", &mo, &err);
	if (!rc)
		rc = pf_batch(p, 16, 0, &err);
	pf_iter *it = NULL;
	if (fault == F_EIO || fault == F_SHORT) {
		inject.eio = fault == F_EIO;
		inject.hit = cut_at;
		inject.calls = 0;
		pf_shards_set_test_fault(fault_fn, NULL);
	}
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	char aside[700];
	snprintf(aside, sizeof(aside), "%s.aside", files[2]);
	if (fault == F_REMOVE)
		unlink(files[2]);
	if (fault == F_DIR) {
		rename(files[2], aside);
		mkdir(files[2], 0755);
	}
	if (fault == F_CUT && truncate(files[1], (off_t)cut_at))
		diag("truncate failed");
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		const uint32_t *v = e.data[0];
		for (uint32_t j = 0; j < e.batch; j++) {
			uint32_t f = v[j] / 10000, i = v[j] % 10000;
			if (f < NF && i < NR)
				r->per_file[f]++;
			else
				r->bad++;
			r->n++;
		}
		pf_elem_release(&e);
	}
	r->rc = rc == PF_END ? 0 : rc;
	snprintf(r->msg, sizeof(r->msg), "%s", rc == PF_END ? "" : err.msg);
	pf_op_stats st;
	if (it && pf_iter_stats(it, 0, &st) == 0)
		r->corrupt = st.corrupt_blocks;
	/* after an error the iterator keeps failing, the same way */
	if (rc < 0 && it) {
		pf_error e2 = { 0 };
		int rc2 = pf_iter_next(it, &e, &e2);
		if (rc2 != rc || strcmp(e2.msg, r->msg))
			r->rc = 999;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	pf_shards_set_test_fault(NULL, NULL);
	/* undo the fault */
	if (fault == F_DIR) {
		rmdir(files[2]);
		rename(aside, files[2]);
	}
	if (fault == F_REMOVE)
		make_shard(2);
	if (fault == F_CUT)
		make_shard(1);
}

int main(void)
{
	alarm(60);
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir("t2071"));
	for (int f = 0; f < NF; f++) {
		snprintf(files[f], sizeof(files[f]), "%s/io-%d.pfs", dir, f);
		make_shard(f);
	}
	snprintf(pattern, sizeof(pattern), "%s/io-*.pfs", dir);
	res r;
	run(F_NONE, 0, 2, 0, &r);
	ok(r.rc == 0 && r.n == NF * NR && !r.bad, "no fault: %d records", NF * NR);

	for (int par = 1; par <= 3; par += 2) {
		/* removed after the glob was expanded (and its index read) */
		run(F_REMOVE, 0, par, 0, &r);
		ok(r.rc == PF_ENOENT && strstr(r.msg, files[2]),
		   "par %d: file removed after glob expansion: error names it (%s)", par, r.msg);
		ok(r.per_file[0] == NR && r.per_file[1] == NR && !r.bad,
		   "par %d: the files before it were delivered whole (%ld, %ld)", par, r.per_file[0], r.per_file[1]);
		run(F_REMOVE, 1, par, 0, &r);
		ok(r.rc == PF_ENOENT && strstr(r.msg, files[2]),
		   "par %d: skip_corrupt does not hide a missing file (%s)", par, r.msg);

		/* a directory where the shard was: every read fails */
		run(F_DIR, 0, par, 0, &r);
		ok(r.rc < 0 && r.rc != 999 && strstr(r.msg, files[2]) && strstr(r.msg, "offset "),
		   "par %d: unreadable file (a directory): error names file and offset (%s)", par, r.msg);
		ok(r.per_file[0] == NR && r.per_file[1] == NR && r.per_file[2] == 0 && !r.bad,
		   "par %d: nothing of it delivered, the others whole", par);
		run(F_DIR, 1, par, 0, &r);
		ok(r.rc < 0 && r.rc != PF_ECORRUPT && r.rc != 999 && strstr(r.msg, files[2]),
		   "par %d: skip_corrupt does not hide a read error (%s)", par, r.msg);
	}

	/* cut short after its index was read: the reads past the end come
	 * back short */
	pf_shard *sh;
	pf_shard_open(&sh, files[1], 0, &err);
	const pf_block_info b5 = *pf_shard_block(sh, 5);
	uint32_t nb = pf_shard_nblocks(sh);
	pf_shard_close(sh);
	uint64_t cut = b5.offset + PF_SHARD_BLOCK_HEADER_SIZE + 10;
	for (int par = 1; par <= 3; par += 2) {
		run(F_CUT, 0, par, cut, &r);
		char at[64];
		snprintf(at, sizeof(at), "offset %llu", (unsigned long long)b5.offset);
		ok(r.rc == PF_ETRUNC && strstr(r.msg, files[1]) && strstr(r.msg, at) && strstr(r.msg, "short read"),
		   "par %d: file cut after open: the short read is named (file, block 5's offset) (%s)", par, r.msg);
		/* the batch the error cut short is not delivered: up to 15 records */
		ok(r.per_file[0] == NR && r.per_file[1] <= (long)b5.first_record &&
		   r.per_file[1] > (long)b5.first_record - 16 && !r.bad,
		   "par %d: the records before the cut were delivered, less the unfinished batch (%ld of %llu)",
		   par, r.per_file[1], (unsigned long long)b5.first_record);
		run(F_CUT, 1, par, cut, &r);
		ok(r.rc == 0 && r.per_file[1] == (long)b5.first_record && r.per_file[0] == NR &&
		   r.per_file[2] == NR && r.corrupt == nb - 5,
		   "par %d: skip_corrupt: the cut blocks skipped (%llu of %u), every other record delivered (%ld)",
		   par, (unsigned long long)r.corrupt, nb - 5, r.n);
	}

	/* EIO and a short read injected on block 5 of file 1 */
	for (int par = 1; par <= 3; par += 2) {
		char at[64];
		snprintf(at, sizeof(at), "offset %llu", (unsigned long long)b5.offset);
		run(F_EIO, 0, par, b5.offset, &r);
		ok(inject.calls > 0 && r.rc == PF_EIO && strstr(r.msg, files[1]) && strstr(r.msg, at),
		   "par %d: injected EIO: PF_EIO naming the file and block 5's offset (%s)", par, r.msg);
		ok(r.per_file[0] == NR && r.per_file[1] <= (long)b5.first_record && !r.bad,
		   "par %d: the records before it were delivered, nothing garbled (%ld)", par, r.per_file[1]);
		run(F_EIO, 1, par, b5.offset, &r);
		ok(r.rc == PF_EIO && strstr(r.msg, files[1]),
		   "par %d: skip_corrupt does not hide an EIO (%s)", par, r.msg);
		run(F_SHORT, 0, par, b5.offset, &r);
		ok(inject.calls > 0 && r.rc == PF_ETRUNC && strstr(r.msg, files[1]) && strstr(r.msg, at),
		   "par %d: injected short read: PF_ETRUNC naming the file and offset (%s)", par, r.msg);
		run(F_SHORT, 1, par, b5.offset, &r);
		ok(r.rc == 0 && r.corrupt == 1 && r.per_file[0] == NR && r.per_file[2] == NR &&
		   r.per_file[1] == NR - (long)b5.nrecords && !r.bad,
		   "par %d: skip_corrupt: the short block skipped (1), every other record delivered (%ld of file 1)",
		   par, r.per_file[1]);
	}

	/* a directory named as a shard: fails at start, naming it */
	{
		pf_error_clear(&err);
		pf_pipeline *p;
		pf_pipeline_new(&p, NULL, &err);
		const char *paths[2] = { files[0], dir };
		pf_shards(p, paths, 2, NULL, &err);
		pf_iter *it = NULL;
		int rc = pf_iter_new(&it, p, &err);
		ok(rc < 0 && strstr(err.msg, dir), "a directory as a shard: pf_iter_new fails naming it (%s)", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	/* a file missing before start, and a glob matching nothing */
	{
		char gone[700], none[700];
		snprintf(gone, sizeof(gone), "%s/gone.pfs", dir);
		snprintf(none, sizeof(none), "%s/nothing-*.pfs", dir);
		const char *cases[2] = { gone, none };
		for (int k = 0; k < 2; k++) {
			pf_error_clear(&err);
			pf_pipeline *p;
			pf_pipeline_new(&p, NULL, &err);
			pf_shards(p, &cases[k], 1, NULL, &err);
			pf_iter *it = NULL;
			int rc = pf_iter_new(&it, p, &err);
			ok(rc < 0 && !it && strstr(err.msg, cases[k]), "%s: pf_iter_new fails naming it (%s)",
			   k ? "a glob matching nothing" : "a missing file", err.msg);
			pf_pipeline_free(p);
		}
	}
	return done_testing();
}
