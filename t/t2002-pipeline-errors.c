/* t2002-pipeline-errors: a damaged shard block stops the pipeline with an
 * error naming the file (default) or is skipped (skip_corrupt) with every
 * intact record delivered; a missing file names the path; builder misuse. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

static pf_error err;
static uint64_t corrupt; /* stage 0's corrupt_blocks after the last run */

static long run(const char *const *paths, int n, int skip, int par, long *sum)
{
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = par, .skip_corrupt = skip };
	int rc = pf_shards(p, paths, (size_t)n, &so, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	long k = 0;
	*sum = 0;
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		uint32_t v;
		memcpy(&v, e.data[0], 4);
		*sum += v;
		k++;
		pf_elem_release(&e);
	}
	pf_op_stats st;
	corrupt = it && pf_iter_stats(it, 0, &st) == 0 ? st.corrupt_blocks : ~0ull;
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? k : rc;
}

int main(void)
{
	alarm(60);
	plan(12);
	const char *d = tap_tmpdir("t2002");
	char a[600], b[600];
	snprintf(a, sizeof(a), "%s/a.pfs", d);
	snprintf(b, sizeof(b), "%s/b.pfs", d);
	pf_schema s;
	pf_schema_parse(&s, "v: u32", &err);
	const char *files[2] = { a, b };
	for (int f = 0; f < 2; f++) {
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = 400, .codec = PF_CODEC_NONE, .codec_set = 1 };
		pf_shard_writer_open(&w, files[f], &s, &o, &err);
		for (uint32_t i = 0; i < 500; i++) {
			uint32_t v = (uint32_t)f * 1000 + i;
			pf_shard_writer_add(w, &v, 4, &err);
		}
		pf_shard_writer_close(w, &err);
	}
	long sum, want = 0;
	for (int f = 0; f < 2; f++)
		for (long i = 0; i < 500; i++)
			want += f * 1000 + i;
	long n = run(files, 2, 0, 2, &sum);
	ok(n == 1000 && sum == want, "intact shards: 1000 records");

	/* damage block 1 of b.pfs */
	pf_shard *sh;
	pf_shard_open(&sh, b, 0, &err);
	const pf_block_info *bi = pf_shard_block(sh, 1);
	uint64_t off = bi->offset + PF_SHARD_BLOCK_HEADER_SIZE + 8;
	uint32_t lost = bi->nrecords;
	uint64_t first = bi->first_record;
	pf_shard_close(sh);
	FILE *f = fopen(b, "r+b");
	fseek(f, (long)off, SEEK_SET);
	int ch = fgetc(f);
	fseek(f, (long)off, SEEK_SET);
	fputc(ch ^ 0x55, f);
	fclose(f);

	pf_error_clear(&err);
	n = run(files, 2, 0, 2, &sum);
	ok(n < 0, "damaged block fails by default (rc %ld)", n);
	like(err.msg, "b.pfs", "error names the file: %s", err.msg);
	like(err.msg, "shards#0", "error names the op");
	long lost_sum = 0;
	for (uint64_t i = first; i < first + lost; i++)
		lost_sum += 1000 + (long)i;
	for (int par = 1; par <= 3; par += 2) {
		n = run(files, 2, 1, par, &sum);
		ok(n == 1000 - (long)lost && sum == want - lost_sum,
		   "skip_corrupt (%d readers): every intact record, the %u damaged ones dropped", par, lost);
	}

	ok(corrupt == 1, "stats: 1 corrupt block counted (%llu)", (unsigned long long)corrupt);

	/* a second damaged block in the same file: counted, warned about once */
	pf_shard_open(&sh, b, 0, &err);
	bi = pf_shard_block(sh, 3);
	off = bi->offset + PF_SHARD_BLOCK_HEADER_SIZE + 8;
	pf_shard_close(sh);
	f = fopen(b, "r+b");
	fseek(f, (long)off, SEEK_SET);
	ch = fgetc(f);
	fseek(f, (long)off, SEEK_SET);
	fputc(ch ^ 0x55, f);
	fclose(f);
	char errpath[700];
	snprintf(errpath, sizeof(errpath), "%s/stderr.txt", d);
	fflush(stderr);
	int saved = dup(2);
	FILE *ef = fopen(errpath, "w");
	dup2(fileno(ef), 2);
	n = run(files, 2, 1, 2, &sum);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	fclose(ef);
	ok(n > 0 && corrupt == 2, "two damaged blocks skipped and counted (%llu)",
	   (unsigned long long)corrupt);
	ef = fopen(errpath, "r");
	char line[1024];
	int lines = 0, named = 0;
	while (ef && fgets(line, sizeof(line), ef)) {
		lines++;
		named += strstr(line, "b.pfs") != NULL;
	}
	if (ef)
		fclose(ef);
	ok(lines == 1 && named == 1, "skip warns once per file on stderr (%d lines)", lines);

	const char *missing[] = { a, "/nonexistent/x.pfs" };
	pf_error_clear(&err);
	n = run(missing, 2, 0, 1, &sum);
	ok(n < 0 && strstr(err.msg, "/nonexistent/x.pfs"), "missing file named: %s", err.msg);

	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_error_clear(&err);
	int rc = pf_batch(p, 4, 0, &err);
	ok(rc == PF_EINVAL && strstr(err.msg, "no source"), "an op before any source is refused");
	pf_range(p, 0, 3, 1, &err);
	pf_error_clear(&err);
	rc = pf_map(p, "no-such-function", NULL, NULL, &err);
	ok(rc == PF_EINVAL && strstr(err.msg, "no-such-function"), "unknown map function named");
	pf_pipeline_free(p);
	return done_testing();
}
