/* t1010-ops-enumerate: enumerate pairs each element with its position in
 * the epoch (a field "index: i64" after the input's), from the C API
 * (pf_spec_apply) and the spec; it also proves that an op is one file,
 * one line of ops/Makemodule.am and this test. */
#include <string.h>

#include "pipefeed.h"
#include "pf_spec.h"
#include "tap.h"

static pf_error err;

static pf_pipeline *make(const char *spec)
{
	pf_pipeline *p;
	memset(&err, 0, sizeof(err));
	if (pf_pipeline_new(&p, NULL, &err))
		return NULL;
	if (pf_spec_apply(p, spec, &err)) {
		pf_pipeline_free(p);
		return NULL;
	}
	return p;
}

/* One epoch of it: value (field 0) and index (field `fi`) of each element. */
static long epoch(pf_iter *it, int fi, int64_t *val, int64_t *idx, long cap)
{
	pf_elem e;
	long n = 0;
	int rc;
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		if (n < cap) {
			val[n] = *(const int64_t *)e.data[0];
			idx[n] = *(const int64_t *)e.data[fi];
		}
		n++;
		pf_elem_release(&e);
	}
	return rc == PF_END ? n : rc;
}

int main(void)
{
	int64_t v[256], x[256];
	pf_iter *it;

	/* range -> enumerate: the values kept, indices 0.. in order */
	pf_pipeline *p = make("range(10, 20) | enumerate");
	ok(p != NULL, "range | enumerate builds from a spec");
	ok(p && pf_iter_new(&it, p, &err) == 0, "and starts");
	long n = epoch(it, 1, v, x, 256);
	is_int(n, 10, "10 elements");
	int good = 1;
	for (long i = 0; i < n; i++)
		good &= v[i] == 10 + i && x[i] == i;
	ok(good, "element i keeps its value and has index i");
	pf_op_stats st;
	ok(pf_iter_stats(it, 1, &st) == 0 && !strcmp(st.name, "enumerate"),
	   "its stage is called enumerate");
	n = epoch(it, 1, v, x, 256);
	ok(n == 10 && x[0] == 0 && x[9] == 9, "the next epoch counts from the start again");
	pf_iter_free(it);
	pf_pipeline_free(p);

	/* start=, and a shuffle after it: each value keeps its own index */
	p = make("range(0, 200) | enumerate(start=-5) | shuffle(64, seed=3)");
	ok(p && pf_iter_new(&it, p, &err) == 0, "enumerate(start=-5) | shuffle starts");
	n = epoch(it, 1, v, x, 256);
	good = n == 200;
	int moved = 0;
	for (long i = 0; i < n && i < 200; i++) {
		good &= x[i] == v[i] - 5;
		moved |= v[i] != i;
	}
	ok(good, "after the shuffle every element still has index value + start");
	ok(moved, "  and the shuffle did move them");
	pf_iter_free(it);

	/* the way back: a pipeline with enumerate prints as its spec */
	char buf[256];
	ok(pf_pipeline_format(p, buf, sizeof(buf), &err) == 0, "pf_pipeline_format");
	is_str(buf, "range(0, 200) | enumerate(-5) | shuffle(64, seed=3)", "  gives the canonical spec");
	pf_pipeline_free(p);

	/* records of variable length: the bytes copied, the index added */
	static const char *recs[] = { "a", "bcd", "", "efghij" };
	size_t lens[] = { 1, 3, 0, 6 };
	pf_pipeline_new(&p, NULL, &err);
	pf_records(p, (const void *const *)recs, lens, 4, NULL, &err);
	ok(pf_spec_apply(p, "enumerate(100)", &err) == 0, "records | enumerate(100)");
	ok(pf_iter_new(&it, p, &err) == 0, "  starts");
	pf_elem e;
	good = 1;
	for (int i = 0; i < 4; i++) {
		if (pf_iter_next(it, &e, &err)) {
			good = 0;
			break;
		}
		good &= e.schema->nfields == 2 && !strcmp(e.schema->fields[1].name, "index");
		good &= e.var_len[0] == (int64_t)lens[i] && !memcmp(e.data[0], recs[i], lens[i]);
		good &= *(const int64_t *)e.data[1] == 100 + i;
		pf_elem_release(&e);
	}
	ok(good, "  each record's bytes kept, with index 100..103");
	ok(pf_iter_next(it, &e, &err) == PF_END, "  then the end");
	pf_iter_free(it);
	pf_pipeline_free(p);

	/* what it refuses, naming itself */
	p = make("range(0, 8) | batch(4) | enumerate");
	it = NULL;
	ok(p && pf_iter_new(&it, p, &err) == PF_EINVAL && !it, "batch | enumerate is refused at start");
	like(err.msg, "enumerate#2: its input is batched", "  naming the op and why");
	pf_pipeline_free(p);
	p = make("range(0, 8) | enumerate | enumerate");
	ok(p && pf_iter_new(&it, p, &err) == PF_EINVAL, "enumerate twice is refused at start");
	like(err.msg, "enumerate#2: its input has a field \"index\" already", "  naming the clash");
	pf_pipeline_free(p);
	ok(make("range(0, 8) | enumerate(1, 2)") == NULL, "a second argument is a spec error");
	like(err.msg, "too many arguments for enumerate", "  naming the op");
	return done_testing();
}
