/*
 * t2010-spec-roundtrip: every op parses into its canonical text, the
 * canonical text parses back to itself, and a spec builds the same pipeline
 * (the same elements, in the same order) as its canonical form and as the
 * builder calls written by hand.
 */
#include "config.h"

#include <stdint.h>

#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

/* input text -> canonical text */
static const struct { const char *in, *canon; } cases[] = {
	{ "shards(\"data/fmnist-train-*.pfs\", cycle=4) | map(decode, par=auto) | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)",
	  "shards(\"data/fmnist-train-*.pfs\", cycle=4) | map(decode, par=auto) | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)" },
	{ "shards(a.pfs, \"b c.pfs\", cycle=auto, block=2, reads=3, shuffle_files=true, skip_corrupt=false)",
	  "shards(\"a.pfs\", \"b c.pfs\", cycle=auto, block=2, reads=3, shuffle_files=true, skip_corrupt=false)" },
	{ "shards(paths=[\"x\", 'y'])", "shards(\"x\", \"y\")" },
	{ "shards(a.pfs, skip_corrupt=true, max_corrupt=100) | map(decode, par=2, isolate=true)",
	  "shards(\"a.pfs\", skip_corrupt=true, max_corrupt=100) | map(decode, par=2, isolate=true)" },
	{ "shards(a.pfs, max_corrupt=0) | map(fn=decode, isolate=false)",
	  "shards(\"a.pfs\", max_corrupt=0) | map(decode, isolate=false)" },
	{ "tfrecord(t.tfrecord, skip_corrupt=true, max_corrupt=9223372036854775807)",
	  "tfrecord(\"t.tfrecord\", skip_corrupt=true, max_corrupt=9223372036854775807)" },
	{ "shards([\"x\"], reads=auto)", "shards(\"x\", reads=auto)" },
	{ "shards(x, reads=1, consumer_waits=true)", "shards(\"x\", reads=1, consumer_waits=true)" },
	{ "tfrecord('t.tfrecord',cycle=2)", "tfrecord(\"t.tfrecord\", cycle=2)" },
	{ "range(0,10,2)", "range(0, 10, 2)" },
	{ "range(stop=5, start=-5)", "range(-5, 5)" },
	{ "range(0, 3) | map(decode(scale=f32), par=4, ordered=false)",
	  "range(0, 3) | map(decode(scale=f32), par=4, ordered=false)" },
	{ "range(0, 3) | map(fn=normalize(mean=0.2860, std=.3530))",
	  "range(0, 3) | map(normalize(mean=0.286, std=0.353))" },
	{ "range(0, 3) | map(normalize(mean=[0.5,0.25,1e-3], std=[1, 2, 3]), ordered=true)",
	  "range(0, 3) | map(normalize(mean=[0.5, 0.25, 0.001], std=[1, 2, 3]), ordered=true)" },
	{ "range(0, 3) | map(./plug.so:times3)", "range(0, 3) | map(./plug.so:times3)" },
	{ "range(0, 3) | map(\"my lib.so:fn\", par=1)", "range(0, 3) | map(\"my lib.so:fn\", par=1)" },
	{ "range(0, 3) | map('true')", "range(0, 3) | map(\"true\")" },
	{ "range(0, 3) | filter(is_even)", "range(0, 3) | filter(is_even)" },
	{ "range(0, 3) | take(5) | skip(0)", "range(0, 3) | take(5) | skip(0)" },
	{ "range(0, 3) | repeat | repeat(3) | repeat(count=2)",
	  "range(0, 3) | repeat | repeat(3) | repeat(2)" },
	{ "range(0, 3) | shard(4, 1) | shard(index=0, num=2)",
	  "range(0, 3) | shard(4, 1) | shard(2, 0)" },
	{ "range(0, 3) | sleep(us=100)", "range(0, 3) | sleep(100)" },
	{ "range(0, 3) | cache(\"/tmp/c.cache\") | cache(max_bytes=1048576) | cache()",
	  "range(0, 3) | cache(\"/tmp/c.cache\") | cache(max_bytes=1048576) | cache" },
	{ "range(0, 3) | cache(path=\"p\", max_bytes=10)", "range(0, 3) | cache(\"p\", max_bytes=10)" },
	{ "range(0, 3) | shuffle(buffer=100, reshuffle=false)",
	  "range(0, 3) | shuffle(100, reshuffle=false)" },
	{ "range(0, 3) | shuffle(7, seed=18446744073, reshuffle=true)",
	  "range(0, 3) | shuffle(7, seed=18446744073, reshuffle=true)" },
	{ "range(0, 3) | batch(32, drop=true) | batch(size=2)",
	  "range(0, 3) | batch(32, drop=true) | batch(2)" },
	{ "range(0, 3) | padded_batch(8, max_len=128, over=reject, drop=true)",
	  "range(0, 3) | padded_batch(8, max_len=128, over=reject, drop=true)" },
	{ "range(0, 3) | padded_batch(max_len=16, size=8, over='truncate')",
	  "range(0, 3) | padded_batch(8, max_len=16, over=truncate)" },
	{ "range(0, 3) | prefetch | prefetch(2) | prefetch(depth=auto)",
	  "range(0, 3) | prefetch | prefetch(2) | prefetch(auto)" },
	{ "  range( 0 ,\n 10 )\n|take( 3 ) \t", "range(0, 10) | take(3)" },
	{ "range(0, 3) | cache(\"a\\\"b\\\\c\\n\")", "range(0, 3) | cache(\"a\\\"b\\\\c\\n\")" },
	{ "map(decode)", "map(decode)" },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* Run p for one epoch; write the i64 values it yields into v; return count or <0. */
static int collect(pf_pipeline *p, int64_t *v, int cap)
{
	pf_iter *it;
	pf_error err = { 0 };
	pf_elem e;
	int n = 0, rc;

	if (pf_iter_new(&it, p, &err)) {
		diag("pf_iter_new: %s", err.msg);
		return -1;
	}
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		const int64_t *d = e.data[0];
		for (int64_t j = 0; j < e.nitems[0] && n < cap; j++)
			v[n++] = d[j];
		if (e.batch)
			v[n < cap ? n++ : n - 1] = -1000 - (int64_t)e.batch; /* batch boundary */
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	if (rc != PF_END) {
		diag("pf_iter_next: %s", err.msg);
		return -1;
	}
	return n;
}

static int run_spec(const char *text, int64_t *v, int cap)
{
	pf_pipeline *p;
	pf_error err = { 0 };
	int n;

	if (pf_pipeline_new(&p, NULL, &err))
		return -1;
	if (pf_spec_apply(p, text, &err)) {
		diag("%s: %s", text, err.msg);
		pf_pipeline_free(p);
		return -1;
	}
	n = collect(p, v, cap);
	pf_pipeline_free(p);
	return n;
}

static int same_seq(const int64_t *a, int na, const int64_t *b, int nb)
{
	return na >= 0 && na == nb && !memcmp(a, b, sizeof(*a) * (size_t)na);
}

int main(void)
{
	char buf[1024], buf2[1024];

	for (int i = 0; i < NCASES; i++) {
		pf_spec *s = NULL, *s2 = NULL;
		pf_error err = { 0 };
		int rc = pf_spec_parse(&s, cases[i].in, &err);

		if (!ok(rc == 0, "case %d parses", i)) {
			diag("%s -> %s", cases[i].in, err.msg);
			skip(3, "did not parse");
			continue;
		}
		size_t need = pf_spec_format(s, buf, sizeof(buf));
		is_str(buf, cases[i].canon, "case %d: canonical text", i);
		rc = pf_spec_parse(&s2, buf, &err);
		ok(rc == 0 && pf_spec_nstages(s2) == pf_spec_nstages(s),
		   "case %d: canonical text parses to as many ops (%d)", i, pf_spec_nstages(s));
		pf_spec_format(s2, buf2, sizeof(buf2));
		int same_ops = 1;
		for (int k = 0; k < pf_spec_nstages(s); k++)
			same_ops &= !strcmp(pf_spec_stage_op(s, k), pf_spec_stage_op(s2, k));
		ok(same_ops && !strcmp(buf, buf2) && need == strlen(buf),
		   "case %d: parse(format(x)) formats to the same text, same ops", i);
		pf_spec_free(s);
		pf_spec_free(s2);
	}

	/* The formatter reports the length it needs and never overruns. */
	{
		pf_spec *s;
		char small[8];
		memset(small, 'x', sizeof(small));
		pf_spec_parse(&s, cases[0].in, NULL);
		size_t need = pf_spec_format(s, small, 5);
		ok(need == strlen(cases[0].canon) && small[4] == '\0' && small[5] == 'x',
		   "format into a short buffer: truncated, NUL-terminated, full length returned");
		pf_spec_free(s);
	}

	/* Every op of the table appears in the usage text and in a case above. */
	{
		size_t need = pf_spec_usage(NULL, 0);
		char *u = malloc(need + 1);
		pf_spec_usage(u, need + 1);
		const char *ops[] = { "shards", "tfrecord", "range", "map", "filter", "take",
				      "skip", "repeat", "shard", "sleep", "cache", "shuffle",
				      "batch", "padded_batch", "prefetch" };
		int all = 1;
		for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
			char pat[32];
			snprintf(pat, sizeof(pat), "\n%s", ops[k]);
			all &= strncmp(u, ops[k], strlen(ops[k])) == 0 || strstr(u, pat) != NULL;
		}
		ok(all && strlen(u) == need, "usage text lists every op (%zu bytes)", need);
		free(u);
	}

	/* Behaviour: the spec, its canonical text and the hand-written builder
	 * calls give the same elements in the same order. */
	{
		static int64_t a[4096], b[4096], c[4096];
		const char *text = "range(0,100) | shuffle(16, seed=3) | batch(8, drop=true)";
		int na = run_spec(text, a, 4096), nb, nc = -1;
		pf_spec *s;
		pf_spec_parse(&s, text, NULL);
		pf_spec_format(s, buf, sizeof(buf));
		pf_spec_free(s);
		nb = run_spec(buf, b, 4096);
		ok(na == 12 * 9 && same_seq(a, na, b, nb),
		   "shuffle+batch: spec and its canonical text give the same batches (%d values)", na);

		pf_pipeline *p;
		pf_shuffle_opts so = { .seed_set = 1, .seed = 3 };
		if (pf_pipeline_new(&p, NULL, NULL) == 0) {
			if (!pf_range(p, 0, 100, 1, NULL) && !pf_shuffle(p, 16, &so, NULL) &&
			    !pf_batch(p, 8, 1, NULL))
				nc = collect(p, c, 4096);
			pf_pipeline_free(p);
		}
		ok(same_seq(a, na, c, nc), "shuffle+batch: spec equals the builder calls");
		int sorted = 1;
		for (int k = 1; k < na; k++)
			sorted &= a[k] >= 0 && a[k - 1] >= 0 ? a[k] > a[k - 1] : 1;
		ok(!sorted, "shuffle(16, seed=3) changed the order");

		text = "range(0, 50)|skip(5)|take(20)|repeat(2)|shard(3, 1)|prefetch(2)";
		na = run_spec(text, a, 4096);
		int want[] = { 6, 9, 12, 15, 18, 21, 24, 7, 10, 13, 16, 19, 22 };
		int good = na == 13;
		for (int k = 0; good && k < 13; k++)
			good = a[k] == want[k];
		ok(good, "skip/take/repeat/shard/prefetch: exactly the expected values (%d)", na);
		if (!good)
			for (int k = 0; k < na && k < 20; k++)
				diag("  [%d] = %lld", k, (long long)a[k]);

		text = "range(0, 10) | repeat(3) | take(25)";
		na = run_spec(text, a, 4096);
		ok(na == 25 && a[24] == 4 && a[10] == 0, "repeat(3) | take(25): 25 values, wraps at 10");

		text = "range(0, 10, 3) | cache | repeat(2)";
		na = run_spec(text, a, 4096);
		ok(na == 8 && a[0] == 0 && a[3] == 9 && a[4] == 0 && a[7] == 9,
		   "range step / cache / repeat from a spec");
	}
	return done_testing();
}
