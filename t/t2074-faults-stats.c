/* t2074-faults-stats: the stats file records what was lost: a run over a
 * damaged shard (skip_corrupt) with a map that fails on some samples
 * (isolate) writes each stage's corrupt_blocks / skipped_records /
 * dropped_samples and the dropped samples (id, file, record, op, message)
 * into the file (version 2); pipe-stat prints them (text and --json); a
 * version 1 file (the fuzz corpus) still reads, with those as zeros. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pf_stats.h"
#include "pipefeed.h"
#include "tap.h"

static pf_error err;

static int fail_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "x: u32", e);
}

/* fails on values v % 50 == 7 */
static int fail_fn(void *user, const pf_elem *in, pf_elem *out, pf_error *e)
{
	(void)user;
	uint32_t v;
	memcpy(&v, in->data[0], 4);
	if (v % 50 == 7)
		return pf_error_set(e, PF_EINVAL, "cannot decode value %u", v);
	memcpy(out->data[0], &v, 4);
	return 0;
}

static char *slurp_cmd(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	size_t cap = 1 << 16, n = 0;
	char *b = calloc(1, cap + 1);
	if (!p)
		return b;
	size_t k;
	while (b && (k = fread(b + n, 1, cap - n, p)) > 0)
		n += k;
	pclose(p);
	return b;
}

int main(void)
{
	alarm(60);
	const char *dir = tap_tmpdir("t2074");
	char shard[700], stats[700];
	snprintf(shard, sizeof(shard), "%s/s.pfs", dir);
	snprintf(stats, sizeof(stats), "%s/run.pfstat", dir);
	pf_schema s;
	pf_schema_parse(&s, "v: u32", &err);
	pf_shard_writer *w;
	pf_shard_write_opts o = { .block_size = 400, .codec = PF_CODEC_NONE, .codec_set = 1 };
	pf_shard_writer_open(&w, shard, &s, &o, &err);
	for (uint32_t i = 0; i < 1000; i++)
		pf_shard_writer_add(w, &i, 4, &err);
	pf_shard_writer_close(w, &err);
	/* damage block 3 */
	pf_shard *sh;
	pf_shard_open(&sh, shard, 0, &err);
	pf_block_info b3 = *pf_shard_block(sh, 3);
	pf_shard_close(sh);
	FILE *f = fopen(shard, "r+b");
	fseek(f, (long)(b3.offset + PF_SHARD_BLOCK_HEADER_SIZE + 20), SEEK_SET);
	fputc(0x5a, f);
	fclose(f);
	/* the values that fail, outside the damaged block */
	long want_drops = 0;
	for (uint32_t v = 0; v < 1000; v++)
		if (v % 50 == 7 && !(v >= b3.first_record && v < b3.first_record + b3.nrecords))
			want_drops++;

	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	const char *paths[1] = { shard };
	pf_source_opts so = { .skip_corrupt = 1 };
	pf_map_opts mo = { .num_parallel_calls = 2, .isolate = 1 };
	pf_shards(p, paths, 1, &so, &err);
	pf_map_func(p, "fail50", fail_prepare, fail_fn, NULL, NULL, &mo, &err);
	pf_batch(p, 10, 0, &err);
	pf_iter *it;
	int rc = pf_iter_new(&it, p, &err);
	pf_stats *st;
	pf_stats_opts sto = { .interval_ms = 5, .drop_cap = 8, .label = "t2074" };
	if (!rc)
		rc = pf_stats_create(&st, stats, &sto, &err);
	if (!rc)
		rc = pf_stats_attach(st, it, &err);
	ok(rc == 0, "pipeline and stats file started (%s)", err.msg);
	pf_elem e;
	long n = 0;
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		n += e.batch;
		pf_stats_step(st, 1000, 1000, 0, e.batch);
		pf_elem_release(&e);
	}
	ok(rc == PF_END && n == 1000 - (long)b3.nrecords - want_drops, "the run delivered %ld samples", n);
	pf_stats_close(st, &err);
	pf_iter_free(it);
	pf_pipeline_free(p);

	pf_stats_snap *snap = NULL;
	rc = pf_stats_read_file(&snap, stats, &err);
	ok(rc == 0 && snap && snap->version == 2, "the file reads, version 2 (%s)", err.msg);
	uint64_t cb = 0, sr = 0, ds = 0;
	for (int i = 0; snap && i < snap->nstages; i++) {
		cb += snap->stages[i].corrupt_blocks;
		sr += snap->stages[i].skipped_records;
		ds += snap->stages[i].dropped_samples;
	}
	ok(cb == 1 && sr == b3.nrecords && ds == (uint64_t)want_drops,
	   "stage counters: 1 corrupt block, %u skipped records, %ld dropped samples (%llu, %llu, %llu)",
	   b3.nrecords, want_drops, (unsigned long long)cb, (unsigned long long)sr, (unsigned long long)ds);
	ok(snap && snap->drops_total == (uint64_t)want_drops && snap->ndrops == 8,
	   "dropped samples: all counted, the first 8 recorded (%llu, %zu)",
	   snap ? (unsigned long long)snap->drops_total : 0ull, snap ? snap->ndrops : 0);
	int recs_ok = snap && snap->ndrops == 8;
	for (size_t k = 0; recs_ok && k < snap->ndrops; k++) {
		const pf_stats_droprec *d = &snap->drops[k];
		char m[64];
		snprintf(m, sizeof(m), "cannot decode value %llu", (unsigned long long)d->record);
		recs_ok = d->file == 0 && d->id == d->record && d->record % 50 == 7 &&
			!strcmp(d->path, shard) && strstr(d->op, "fail50") && !strcmp(d->msg, m);
	}
	ok(recs_ok, "each recorded drop names its file, record, op and message");
	pf_stats_snap_free(snap);

	/* pipe-stat shows them */
	const char *b = getenv("top_builddir");
	char cmd[2000];
	snprintf(cmd, sizeof(cmd), "'%s/pipe-stat' '%s' 2>&1", b ? b : ".", stats);
	char *out = slurp_cmd(cmd);
	char line[200];
	snprintf(line, sizeof(line), "skipped 1 damaged blocks (%u records)", b3.nrecords);
	ok(out && strstr(out, line), "pipe-stat: the corrupt line with the records");
	snprintf(line, sizeof(line), "dropped %ld samples", want_drops);
	ok(out && strstr(out, line) && strstr(out, "record 7 (sample 7)") &&
	   strstr(out, "cannot decode value 7"), "pipe-stat: the dropped samples, named");
	free(out);
	snprintf(cmd, sizeof(cmd), "'%s/pipe-stat' --json '%s' 2>&1", b ? b : ".", stats);
	out = slurp_cmd(cmd);
	snprintf(line, sizeof(line), "\"dropped_total\":%ld", want_drops);
	ok(out && strstr(out, line) && strstr(out, "\"skipped_records\":") &&
	   strstr(out, "\"msg\":\"cannot decode value 7\""), "pipe-stat --json: counters and the list");
	free(out);

	/* a version 1 file still reads */
	const char *src = getenv("srcdir");
	char v1[1000];
	snprintf(v1, sizeof(v1), "%s/fuzz/corpus/stats/finished.pfstat", src ? src : ".");
	rc = pf_stats_read_file(&snap, v1, &err);
	ok(rc == 0 && snap->version == 1 && snap->drops_total == 0 && snap->ndrops == 0 &&
	   snap->nstages > 0 && snap->stages[0].skipped_records == 0,
	   "a version 1 file reads: no drops, zero new counters (%s)", rc ? err.msg : "ok");
	pf_stats_snap_free(snap);
	return done_testing();
}
