/* t2015-pipeline-format: a pipeline built with the C calls prints as a spec
 * (pf_pipeline_format) that builds the same ops: same text again, same
 * elements; ops with no spec form are refused, named. */
#include <stdint.h>
#include <string.h>

#include "pipefeed.h"
#include "pf_spec.h"
#include "tap.h"
#include "identity_map.h"

static pf_error err;

static int keep_even(void *user, const pf_elem *e, pf_error *er)
{
	(void)user, (void)er;
	return (*(const int64_t *)e->data[0] & 1) == 0;
}

/* Sum and count of field 0 over one epoch (i64 elements or batches). */
static uint64_t digest(pf_pipeline *p, long *count)
{
	pf_iter *it;
	pf_elem e;
	uint64_t h = 0;
	*count = -1;
	if (pf_iter_new(&it, p, &err))
		return 0;
	*count = 0;
	while (pf_iter_next(it, &e, &err) == 0) {
		for (int64_t k = 0; k < e.nitems[0]; k++) {
			h = h * 1000003u + (uint64_t)((const int64_t *)e.data[0])[k];
			++*count;
		}
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	return h;
}

/* p's spec builds a pipeline that prints the same and gives the same
 * elements; want: the text expected. */
static void round_trip(pf_pipeline *p, const char *want, const char *what)
{
	char a[1024], b[1024];
	pf_pipeline *q;
	ok(pf_pipeline_format(p, a, sizeof(a), &err) == 0, "%s: formats", what);
	is_str(a, want, "  as the canonical spec");
	pf_pipeline_new(&q, NULL, &err);
	ok(pf_spec_apply(q, a, &err) == 0, "  which builds");
	ok(pf_pipeline_format(q, b, sizeof(b), &err) == 0 && !strcmp(a, b),
	   "  into a pipeline that prints the same");
	long na, nb;
	uint64_t ha = digest(p, &na), hb = digest(q, &nb);
	ok(na > 0 && na == nb && ha == hb, "  and gives the same %ld elements", na);
	pf_pipeline_free(q);
}

int main(void)
{
	pf_pipeline *p;
	char buf[1024];

	pf_filter_register("t2015_even", keep_even, NULL, &err);
	pf_map_register("t2015_same", id_prepare, id_fn, NULL, &err);

	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, 100, 3, &err);
	pf_map(p, "t2015_same", NULL, &(pf_map_opts){ .num_parallel_calls = 2 }, &err);
	pf_filter(p, "t2015_even", keep_even, NULL, &err);
	pf_skip(p, 2, &err);
	pf_take(p, 20, &err);
	pf_repeat(p, 2, &err);
	pf_rank_shard(p, 3, 1, &err);
	pf_cache(p, NULL, 64 << 20, &err);
	pf_shuffle(p, 7, &(pf_shuffle_opts){ .seed_set = 1, .seed = 42, .no_reshuffle = 1 }, &err);
	pf_batch(p, 4, 1, &err);
	pf_prefetch(p, 3, &err);
	round_trip(p, "range(0, 100, 3) | map(t2015_same, par=2) | filter(t2015_even) | skip(2)"
		   " | take(20) | repeat(2) | shard(3, 1) | cache(max_bytes=67108864)"
		   " | shuffle(7, seed=42, reshuffle=false) | batch(4, drop=true) | prefetch(3)",
		   "every typed call on range");
	pf_pipeline_free(p);

	/* defaults are not written; auto is */
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, -5, 5, 1, &err);
	pf_map(p, "t2015_same", NULL, &(pf_map_opts){ .num_parallel_calls = PF_AUTOTUNE }, &err);
	pf_repeat(p, -1, &err);
	pf_take(p, 30, &err);
	pf_shuffle(p, 4, NULL, &err);
	pf_prefetch(p, PF_AUTOTUNE, &err);
	round_trip(p, "range(-5, 5) | map(t2015_same, par=auto) | repeat | take(30) | shuffle(4)"
		   " | prefetch", "defaults and auto");
	pf_pipeline_free(p);

	/* a spec-built pipeline prints as pf_spec_normalize of its text */
	const char *text = "range(1,9) |shuffle(3 , seed = 5)| batch(size=2, drop=false)";
	char norm[256];
	pf_spec_normalize(text, norm, sizeof(norm), &err);
	pf_pipeline_new(&p, NULL, &err);
	pf_spec_apply(p, text, &err);
	ok(pf_pipeline_format(p, buf, sizeof(buf), &err) == 0, "a spec-built pipeline formats");
	is_str(buf, "range(1, 9) | shuffle(3, seed=5) | batch(2)", "  as its normalized text less defaults");
	ok(strstr(norm, "drop=false") != NULL, "  (normalize keeps what was written)");
	memset(&err, 0, sizeof(err));
	ok(pf_pipeline_format(p, buf, 10, &err) == PF_ELIMIT, "a short buffer is PF_ELIMIT");
	like(err.msg, "needs 44 bytes, buffer has 10", "  saying how many bytes");
	pf_pipeline_free(p);

	/* no spec form */
	static const char *recs[] = { "x" };
	size_t lens[] = { 1 };
	pf_pipeline_new(&p, NULL, &err);
	pf_records(p, (const void *const *)recs, lens, 1, NULL, &err);
	memset(&err, 0, sizeof(err));
	ok(pf_pipeline_format(p, buf, sizeof(buf), &err) == PF_EINVAL, "records: refused");
	like(err.msg, "records#0: has no spec form", "  naming the op");
	pf_pipeline_free(p);
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, 4, 1, &err);
	pf_map_func(p, "anon", id_prepare, id_fn, NULL, "", NULL, &err);
	memset(&err, 0, sizeof(err));
	ok(pf_pipeline_format(p, buf, sizeof(buf), &err) == PF_EINVAL,
	   "a map function given by pointer: refused");
	like(err.msg, "map#1(anon): a map function given by pointer has no spec form", "  naming the op");
	pf_pipeline_free(p);
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, 4, 1, &err);
	pf_filter(p, "t2015_even", keep_even, (void *)1, &err);  /* not the registered user */
	memset(&err, 0, sizeof(err));
	ok(pf_pipeline_format(p, buf, sizeof(buf), &err) == PF_EINVAL,
	   "a filter that is not the one registered under its name: refused");
	like(err.msg, "filter#1(t2015_even): a predicate given by pointer", "  naming the op");
	pf_pipeline_free(p);
	return done_testing();
}
