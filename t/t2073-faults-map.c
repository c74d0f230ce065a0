/* t2073-faults-map: a map function that fails on chosen samples.  Default:
 * the run stops with a message naming the op, the sample, its file and
 * record.  isolate: exactly those samples are dropped, the others arrive in
 * the same order as without failures, batches stay full, the dropped ids
 * are listed (pf_iter_dropped) and counted; with 1, 4 and autotuned threads, with the
 * map fused into the shards' workers, into batch (map+batch), and alone. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_id.h"
#include "pf_shard.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

#define NF 3
#define NR 300
#define B 8

static pf_error err;
static char files[NF][600];

/* the chosen failures: values v with v % 13 == 5 (when failing is on) */
static int bad(uint32_t v)
{
	return v % 13 == 5;
}

static int twice_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "x: u32[2]", e);
}

static int twice_var_prepare(pf_map_ctx *ctx, pf_error *e)
{
	ctx->max_out_bytes = 64;
	return pf_schema_parse(&ctx->out, "x: u32[?]", e);
}

static int twice_fn(void *user, const pf_elem *in, pf_elem *out, pf_error *e)
{
	const int *failing = user;
	uint32_t v;
	memcpy(&v, in->data[0], 4);
	if (*failing && bad(v))
		return pf_error_set(e, PF_EINVAL, "bad value %u", v);
	uint32_t o[2] = { v, 2 * v };
	void *dst = out->data[0] ? out->data[0] : pf_elem_alloc(out, 0, 2, e);
	if (!dst)
		return PF_ELIMIT;
	memcpy(dst, o, 8);
	return 0;
}

static int keep_all(void *user, const pf_elem *e, pf_error *er)
{
	(void)user, (void)e, (void)er;
	return 1;
}

enum shape { S_SHARDS_MAP, S_SHARDS_MAP_VAR, S_MAPBATCH, S_MAP_ALONE, S_RECORDS_MAPBATCH, NSHAPES };
static const char *shape_name[] = { "shards+map", "shards+map (var)", "map+batch", "map alone",
				    "records map+batch" };

static uint32_t mem_vals[NR];
static const void *mem_recs[NR];
static size_t mem_lens[NR];

typedef struct run_out {
	int rc;
	char msg[PF_ERROR_MSG_MAX];
	char plan[256];
	uint32_t *vals;         /* delivered samples' first field, in order */
	size_t n, cap;
	int short_batches;      /* batches under B before the last one */
	int last_batch;
	uint64_t dropped_stat, ndropped;
	pf_dropped_sample *drops;
	size_t ndrops;
} run_out;

static void run(enum shape sh, int threads, int failing, int isolate, run_out *r)
{
	memset(r, 0, sizeof(*r));
	pf_error_clear(&err);
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = threads };
	const char *paths[NF];
	for (int f = 0; f < NF; f++)
		paths[f] = files[f];
	pf_map_opts mo = { .num_parallel_calls = threads, .isolate = isolate };
	static int fail_on, fail_off;
	fail_on = 1;
	fail_off = 0;
	void *user = failing ? &fail_on : &fail_off;
	int rc;
	if (sh == S_RECORDS_MAPBATCH) {
		pf_schema rs;
		pf_schema_parse(&rs, "v: u32", &err);
		rc = pf_records(p, mem_recs, mem_lens, NR, &rs, &err);
	} else {
		rc = pf_shards(p, paths, NF, &so, &err);
	}
	if (!rc && (sh == S_MAPBATCH || sh == S_MAP_ALONE))
		rc = pf_filter(p, "all", keep_all, NULL, &err);
	if (!rc)
		rc = pf_map_func(p, "twice", sh == S_SHARDS_MAP_VAR ? twice_var_prepare : twice_prepare,
				 twice_fn, user, NULL, &mo, &err);
	if (!rc && sh == S_MAP_ALONE)
		rc = pf_filter(p, "all2", keep_all, NULL, &err);
	pf_padded_opts po = { .max_len = 2 };
	if (!rc && sh == S_SHARDS_MAP_VAR)
		rc = pf_padded_batch(p, B, &po, &err);
	else if (!rc)
		rc = pf_batch(p, B, 0, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (it)
		pf_iter_describe(it, r->plan, sizeof(r->plan));
	pf_elem e;
	int prev_short = 0;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		if (prev_short)
			r->short_batches++;
		prev_short = e.batch < B;
		r->last_batch = (int)e.batch;
		for (uint32_t j = 0; j < e.batch; j++) {
			if (r->n == r->cap) {
				r->cap = r->cap ? 2 * r->cap : 256;
				r->vals = realloc(r->vals, r->cap * sizeof(*r->vals));
			}
			uint32_t o[2];
			memcpy(o, (const unsigned char *)e.data[0] + 8 * j, 8);
			r->vals[r->n++] = o[1] == 2 * o[0] ? o[0] : ~0u;
		}
		pf_elem_release(&e);
	}
	r->rc = rc == PF_END ? 0 : rc;
	snprintf(r->msg, sizeof(r->msg), "%s", rc == PF_END ? "" : err.msg);
	for (int i = 0; it && i < pf_iter_nstages(it); i++) {
		pf_op_stats st;
		if (pf_iter_stats(it, i, &st) == 0)
			r->dropped_stat += st.dropped_samples;
	}
	r->ndropped = pf_iter_ndropped(it);
	pf_dropped_sample d;
	while (it && pf_iter_dropped(it, r->ndrops, &d) == 0) {
		r->drops = realloc(r->drops, (r->ndrops + 1) * sizeof(d));
		r->drops[r->ndrops++] = d;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
}

static void run_free(run_out *r)
{
	free(r->vals);
	free(r->drops);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(void)
{
	alarm(60);
	const char *d = tap_tmpdir("t2073");
	pf_schema s;
	pf_schema_parse(&s, "v: u32", &err);
	for (int f = 0; f < NF; f++) {
		snprintf(files[f], sizeof(files[f]), "%s/m-%d.pfs", d, f);
		pf_shard_writer *w;
		pf_shard_write_opts o = { .block_size = 200, .codec = PF_CODEC_NONE, .codec_set = 1 };
		pf_shard_writer_open(&w, files[f], &s, &o, &err);
		for (uint32_t i = 0; i < NR; i++) {
			uint32_t v = (uint32_t)f * 1000 + i;
			pf_shard_writer_add(w, &v, 4, &err);
		}
		pf_shard_writer_close(w, &err);
	}
	for (uint32_t i = 0; i < NR; i++) {
		mem_vals[i] = i;
		mem_recs[i] = &mem_vals[i];
		mem_lens[i] = 4;
	}

	for (int sh = 0; sh < NSHAPES; sh++) {
		/* the reference: no failures */
		run_out ref;
		run((enum shape)sh, 1, 0, 0, &ref);
		size_t total = sh == S_RECORDS_MAPBATCH ? NR : NF * NR;
		ok(ref.rc == 0 && ref.n == total, "%s: reference run delivers %zu samples (%zu; plan %s)",
		   shape_name[sh], total, ref.n, ref.plan);
		diag("%s: plan %s", shape_name[sh], ref.plan);
		/* what isolation must give: the reference less the bad values */
		uint32_t *want = malloc(ref.n * sizeof(*want));
		size_t nwant = 0, nbad = 0;
		for (size_t i = 0; i < ref.n; i++) {
			if (bad(ref.vals[i]))
				nbad++;
			else
				want[nwant++] = ref.vals[i];
		}

		for (int ti = 0; ti < 3; ti++) {
			int threads = ti == 0 ? 1 : ti == 1 ? 4 : PF_AUTOTUNE; /* -1: autotuned */
			/* default: the run stops, naming the first bad sample */
			run_out r;
			run((enum shape)sh, threads, 1, 0, &r);
			uint32_t first_bad = ~0u;
			for (size_t i = 0; i < ref.n && first_bad == ~0u; i++)
				if (bad(ref.vals[i]))
					first_bad = ref.vals[i];
			char want_v[64], want_where[700];
			snprintf(want_v, sizeof(want_v), "bad value %u", first_bad);
			if (sh == S_RECORDS_MAPBATCH)
				snprintf(want_where, sizeof(want_where), "sample %u: ", first_bad);
			else
				snprintf(want_where, sizeof(want_where), "sample %llu (%s, record %u): ",
					 (unsigned long long)pf_id_make((uint64_t)(first_bad / 1000), first_bad % 1000),
					 files[first_bad / 1000], first_bad % 1000);
			ok(r.rc == PF_EINVAL && strstr(r.msg, "(twice)") && strstr(r.msg, want_v) &&
			   strstr(r.msg, want_where),
			   "%s, %d threads, isolate off: stops at the first bad sample, named (rc %d: %s)",
			   shape_name[sh], threads, r.rc, r.msg);
			ok(r.n <= ref.n, "%s, %d threads, isolate off: nothing past the failure", shape_name[sh], threads);
			run_free(&r);

			/* isolate: exactly the bad ones dropped, order kept */
			run((enum shape)sh, threads, 1, 1, &r);
			ok(r.rc == 0, "%s, %d threads, isolate: runs to the end (%s)", shape_name[sh], threads, r.msg);
			int same = r.n == nwant;
			for (size_t i = 0; same && i < nwant; i++)
				same = r.vals[i] == want[i];
			ok(same, "%s, %d threads, isolate: %zu samples in the reference order (got %zu)",
			   shape_name[sh], threads, nwant, r.n);
			ok(r.short_batches == 0 && r.last_batch == (int)(nwant % B ? nwant % B : B),
			   "%s, %d threads, isolate: every batch full but the last (%d short, last %d)",
			   shape_name[sh], threads, r.short_batches, r.last_batch);
			is_int(r.ndropped, nbad, "%s, %d threads, isolate: pf_iter_ndropped", shape_name[sh], threads);
			is_int(r.dropped_stat, nbad, "%s, %d threads, isolate: dropped_samples in the stats",
			       shape_name[sh], threads);
			/* the log: the bad samples' ids, where they came from, why */
			uint64_t *ids = calloc(r.ndrops + 1, sizeof(*ids));
			int fields_ok = r.ndrops == nbad;
			for (size_t i = 0; i < r.ndrops; i++) {
				const pf_dropped_sample *x = &r.drops[i];
				ids[i] = x->id;
				uint32_t v = sh == S_RECORDS_MAPBATCH ? (uint32_t)x->id :
					x->file * 1000 + (uint32_t)x->record;
				char m[64];
				snprintf(m, sizeof(m), "bad value %u", v);
				if (!bad(v) || strcmp(x->msg, m) || strncmp(x->op, "map#", 4) ||
				    !strstr(x->op, "(twice)"))
					fields_ok = 0;
				if (sh != S_RECORDS_MAPBATCH &&
				    (strcmp(x->path, files[x->file]) || x->id != pf_id_make(x->file, x->record)))
					fields_ok = 0;
				if (sh == S_RECORDS_MAPBATCH && x->path[0])
					fields_ok = 0;
			}
			qsort(ids, r.ndrops, sizeof(*ids), cmp_u64);
			for (size_t i = 1; i < r.ndrops; i++)
				if (ids[i] == ids[i - 1])
					fields_ok = 0;
			ok(fields_ok, "%s, %d threads, isolate: the log lists each bad sample once, with file, record, op and message (%zu entries%s%s)",
			   shape_name[sh], threads, r.ndrops, r.ndrops ? ", first: " : "",
			   r.ndrops ? r.drops[0].msg : "");
			free(ids);
			run_free(&r);
		}
		/* isolate on, nothing fails: identical to the reference */
		run_out r;
		run((enum shape)sh, 4, 0, 1, &r);
		int same = r.rc == 0 && r.n == ref.n;
		for (size_t i = 0; same && i < ref.n; i++)
			same = r.vals[i] == ref.vals[i];
		ok(same && r.ndropped == 0, "%s: isolate with no failures changes nothing", shape_name[sh]);
		run_free(&r);
		free(want);
		run_free(&ref);
	}

	/* every sample fails: the epoch ends (no hang), all dropped */
	{
		pf_error_clear(&err);
		pf_pipeline *p;
		pf_pipeline_new(&p, NULL, &err);
		static uint32_t all_bad[50];
		static const void *recs[50];
		static size_t lens[50];
		for (int i = 0; i < 50; i++) {
			all_bad[i] = 13 * (uint32_t)i + 5;
			recs[i] = &all_bad[i];
			lens[i] = 4;
		}
		static int on = 1;
		pf_map_opts mo = { .num_parallel_calls = 4, .isolate = 1 };
		pf_records(p, recs, lens, 50, NULL, &err);
		pf_map_func(p, "twice", twice_prepare, twice_fn, &on, NULL, &mo, &err);
		pf_batch(p, B, 0, &err);
		pf_iter *it;
		int rc = pf_iter_new(&it, p, &err);
		pf_elem e;
		int nb = 0;
		for (int epoch = 0; epoch < 2 && (epoch == 0 ? !rc : rc == PF_END); epoch++)
			while ((rc = pf_iter_next(it, &e, &err)) == 0) {
				nb++;
				pf_elem_release(&e);
			}
		ok(rc == PF_END && nb == 0 && pf_iter_ndropped(it) == 100,
		   "all samples fail, 2 epochs: no batch, PF_END, 100 dropped (rc %d, %d batches, %llu)",
		   rc, nb, (unsigned long long)pf_iter_ndropped(it));
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	/* the spec key: map(..., isolate=true) */
	{
		static int on = 1;
		pf_error_clear(&err);
		pf_map_register("t2073_twice", twice_prepare, twice_fn, &on, &err);
		for (int iso = 0; iso < 2; iso++) {
			pf_error_clear(&err);
			pf_pipeline *p;
			pf_pipeline_new(&p, NULL, &err);
			int rc = pf_spec_apply(p, iso ? "range(0, 300) | map(t2073_twice, par=4, isolate=true) | batch(8)" :
					       "range(0, 300) | map(t2073_twice, par=4) | batch(8)", &err);
			pf_iter *it = NULL;
			if (!rc)
				rc = pf_iter_new(&it, p, &err);
			pf_elem e;
			long n = 0;
			while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
				n += e.batch;
				pf_elem_release(&e);
			}
			if (iso)
				ok(rc == PF_END && n == 300 - 23 && pf_iter_ndropped(it) == 23,
				   "spec map(..., isolate=true): 23 dropped, %ld delivered", n);
			else
				ok(rc == PF_EINVAL && strstr(err.msg, "sample 5: bad value 5"),
				   "spec map(...) without isolate: stops at sample 5 (%s)", err.msg);
			pf_iter_free(it);
			pf_pipeline_free(p);
		}
	}
	return done_testing();
}
