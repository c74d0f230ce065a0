/* t2060-iter-resume: an iterator started at a recorded position
 * (pf_iter_new_at) delivers exactly the elements (ids and bytes) that the
 * uninterrupted iterator delivered from there on, through the next epoch
 * boundary: shuffle on/off, in-memory cache off/on (a resumed epoch > 0
 * must rebuild the cache from the input's epoch 0), map parallelism 1 and
 * 4 (the resumed run uses the other one), cut at an epoch's start, mid
 * epoch, before its last batch, after its last batch and after its PF_END.
 * A repeat pipeline (op epochs differ from the iterator's) resumes too, and
 * one whose shuffle buffer holds a whole epoch (it begins its input's next
 * epoch at its first draw, while the prefetch thread may run ahead of the
 * consumer: a position must still record the epoch the input is in for
 * the iterator's epoch).
 * Positions past the end and of another pipeline are errors, not crashes. */
#include <stdlib.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"
#include "value_shards.h"

#define NSHARDS 4
static const int shard_sizes[NSHARDS] = { 61, 140, 3, 97 };
static vs_set set;
static char dir[600];
static pf_error err;

#define EPOCHS 3
#define MAXB 128

/* map "decode": record -> value: i64, tag: u8[4] (bytes from the record) */
static int dec_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "value: i64, tag: u8[4]", e);
}

static int dec_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	(void)st;
	const unsigned char *r = in->data[0];
	int64_t v;
	uint32_t pad;
	if (in->nitems[0] < 12)
		return pf_error_set(e, PF_ECORRUPT, "short record");
	memcpy(&v, r, 8);
	memcpy(&pad, r + 8, 4);
	*(int64_t *)out->data[0] = v;
	unsigned char *t = out->data[1];
	for (int i = 0; i < 4; i++)
		t[i] = (unsigned char)(pad ? r[12] + i : i * 3);
	if (v % 11 == 0)
		usleep(20); /* uneven work: completion order differs from delivery */
	return 0;
}

typedef struct cfg {
	int par, shuffle, cache, repeat;
} cfg;

/* One delivered batch: its id and a hash of its fields' bytes. */
typedef struct rec {
	uint64_t id, hash;
} rec;

static uint64_t hash_elem(const pf_elem *e)
{
	uint64_t h = 1469598103934665603ull;
	for (int f = 0; f < e->schema->nfields; f++) {
		const unsigned char *p = e->data[f];
		size_t n = (size_t)e->nitems[f] * pf_dtype_size(e->schema->fields[f].dtype);
		for (size_t i = 0; i < n; i++)
			h = (h ^ p[i]) * 1099511628211ull;
		h = (h ^ (uint64_t)n) * 1099511628211ull;
	}
	return h;
}

static pf_pipeline *build(const cfg *c, int par)
{
	pf_options o = { .seed = 99, .cpu_budget = 4 };
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &o, &err))
		return NULL;
	pf_source_opts so = { .cycle_length = 3, .num_parallel_reads = 2,
			      .shuffle_files = 1 };
	pf_map_opts mo = { .num_parallel_calls = par };
	int rc = pf_shards(p, set.pathv, NSHARDS, &so, &err);
	rc = rc ? rc : pf_map_func(p, "decode", dec_prepare, dec_fn, NULL, "", &mo, &err);
	if (c->cache && !rc)
		rc = pf_cache(p, NULL, 0, &err);
	if (c->shuffle && !rc)
		rc = pf_shuffle(p, c->shuffle == 2 ? 400 : 50, NULL, &err);
	if (c->repeat && !rc)
		rc = pf_repeat(p, 2, &err);
	rc = rc ? rc : pf_batch(p, 6, 0, &err);
	rc = rc ? rc : pf_prefetch(p, 2, &err);
	if (rc) {
		pf_pipeline_free(p);
		return NULL;
	}
	return p;
}

/* The reference: EPOCHS epochs of batches; ref[e][0..n[e]). */
static rec ref[EPOCHS][MAXB];
static long nref[EPOCHS];

/* Cut points of the reference run, positions taken while it ran. */
#define MAXCUT 16
static struct cut {
	int epoch;
	long k;               /* batches of the epoch delivered before the cut */
	int at_end;
	pf_iter_pos pos;
	const char *what;
} cuts[MAXCUT];
static int ncut;

static int run_reference(const cfg *c)
{
	pf_pipeline *p = build(c, c->par);
	pf_iter *it = NULL;
	int rc = p ? pf_iter_new(&it, p, &err) : -1;
	ncut = 0;
	for (int e = 0; e < EPOCHS && !rc; e++) {
		pf_elem b;
		nref[e] = 0;
		long mid = -1;
		while ((rc = pf_iter_next(it, &b, &err)) == 0) {
			long k = nref[e];
			if (k < MAXB)
				ref[e][k] = (rec){ b.id, hash_elem(&b) };
			nref[e]++;
			pf_elem_release(&b);
			if (e < 2 && k == 0) {
				/* the epoch's start, known once it has begun */
				struct cut *ct = &cuts[ncut++];
				*ct = (struct cut){ e, 0, 0, { 0 }, "epoch start" };
				if (pf_iter_epoch_start(it, e, 0, &ct->pos, &err))
					return -1;
				mid = 7;
			}
			if (e < 2 && nref[e] == mid) {
				struct cut *ct = &cuts[ncut++];
				*ct = (struct cut){ e, mid, 0, { 0 }, "mid epoch" };
				if (pf_iter_position(it, &ct->pos, &err))
					return -1;
				pf_iter_pos q;
				if (pf_iter_epoch_start(it, e, mid, &q, &err) ||
				    memcmp(&q, &ct->pos, sizeof(q)))
					return -2;
			}
		}
		if (rc != PF_END)
			break;
		rc = 0;
		if (e < 2) {
			/* before the last batch; after it; after PF_END */
			struct cut *ct = &cuts[ncut++];
			*ct = (struct cut){ e, nref[e] - 1, 0, { 0 }, "before the last batch" };
			if (pf_iter_epoch_start(it, e, nref[e] - 1, &ct->pos, &err))
				return -1;
			ct = &cuts[ncut++];
			*ct = (struct cut){ e, nref[e], 0, { 0 }, "after the last batch" };
			if (pf_iter_epoch_start(it, e, nref[e], &ct->pos, &err))
				return -1;
			ct = &cuts[ncut++];
			*ct = (struct cut){ e, nref[e], 1, { 0 }, "after PF_END" };
			if (pf_iter_position(it, &ct->pos, &err) || !ct->pos.at_end)
				return -1;
		}
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

/* The first batch an iterator started at pos delivers equals want (and
 * the start succeeds). */
static int first_is(const cfg *c, const pf_iter_pos *pos, const rec *want)
{
	pf_pipeline *p = build(c, 1);
	pf_iter *it = NULL;
	pf_elem b;
	int rc = pf_iter_new_at(&it, p, pos, &err);
	rc = rc ? rc : pf_iter_next(it, &b, &err);
	int same = rc == 0 && b.id == want->id && hash_elem(&b) == want->hash;
	if (rc == 0)
		pf_elem_release(&b);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return same;
}

/* Positions counted in another element order (pf_iter_pos.order: an
 * older build's interleave): refused mid epoch, same meaning at an epoch's
 * start or end.  The reference run of c is the current one. */
static void order_checks(const cfg *c)
{
	ok(cuts[1].pos.order == PF_POS_ORDER && cuts[0].pos.order == PF_POS_ORDER,
	   "positions record the element order they count in (%u)", cuts[1].pos.order);
	pf_pipeline *p = build(c, 1);
	pf_iter *it = NULL;
	pf_iter_pos old = cuts[1].pos; /* mid epoch */
	old.order = 1;
	pf_error e = { 0 };
	is_int(pf_iter_new_at(&it, p, &old, &e), PF_EVERSION,
	       "a mid-epoch position of the older interleave order is refused (PF_EVERSION)");
	like(e.msg, "older interleave order (version 1",
	     "the message says the position is of an older interleave order");
	old.order = 0; /* stored before the field existed */
	pf_error e2 = { 0 };
	is_int(pf_iter_new_at(&it, p, &old, &e2), PF_EVERSION,
	       "... and one stored without the order field (0)");
	pf_pipeline_free(p);
	old = cuts[0].pos; /* epoch 0's start */
	old.order = 0;
	ok(first_is(c, &old, &ref[0][0]), "an older order's epoch start resumes the same");
	old = cuts[4].pos; /* after epoch 0's PF_END */
	old.order = 1;
	ok(old.at_end && first_is(c, &old, &ref[1][0]),
	   "an older order's epoch end resumes at the next epoch's first batch");
}

/* Resume at cut ct with par threads: the rest of its epoch and the whole
 * next epoch equal the reference. */
static int resume(const cfg *c, const struct cut *ct, int par, char *why, size_t cap)
{
	pf_pipeline *p = build(c, par);
	pf_iter *it = NULL;
	int rc = p ? pf_iter_new_at(&it, p, &ct->pos, &err) : -1;
	int good = !rc;
	if (rc)
		snprintf(why, cap, "pf_iter_new_at: %.200s", err.msg);
	if (good && pf_iter_epoch(it) != (uint64_t)ct->epoch) {
		snprintf(why, cap, "epoch %llu", (unsigned long long)pf_iter_epoch(it));
		good = 0;
	}
	for (int e = ct->epoch; good && e <= ct->epoch + 1; e++) {
		long k = e == ct->epoch ? ct->k : 0;
		pf_elem b;
		if (e == ct->epoch && ct->at_end)
			continue;
		while ((rc = pf_iter_next(it, &b, &err)) == 0) {
			rec r = { b.id, hash_elem(&b) };
			pf_elem_release(&b);
			if (k >= nref[e] || r.id != ref[e][k].id || r.hash != ref[e][k].hash) {
				snprintf(why, cap, "epoch %d batch %ld differs (id %llx)", e, k,
					 (unsigned long long)r.id);
				good = 0;
				break;
			}
			k++;
		}
		if (good && (rc != PF_END || k != nref[e])) {
			snprintf(why, cap, "epoch %d: rc %d after %ld batches of %ld: %.120s", e, rc, k,
				 nref[e], err.msg);
			good = 0;
		}
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return good;
}

int main(void)
{
	alarm(240);
	const char *d = tap_tmpdir("t2060");
	if (!d)
		plan_skip_all("no scratch directory");
	snprintf(dir, sizeof(dir), "%s/s", d);
	if (vs_write(&set, dir, shard_sizes, NSHARDS, 5000, 40, 500, &err)) {
		printf("1..0 # SKIP cannot write shards: %s\n", err.msg);
		return 1;
	}
	static const cfg cfgs[] = {
		{ 1, 0, 0, 0 }, { 4, 0, 0, 0 }, { 1, 1, 0, 0 }, { 4, 1, 0, 0 },
		{ 1, 0, 1, 0 }, { 4, 0, 1, 0 }, { 1, 1, 1, 0 }, { 4, 1, 1, 0 },
		{ 4, 1, 0, 1 }, { 1, 2, 0, 0 }, { 4, 2, 0, 0 },
	};
	int ncfg = (int)(sizeof(cfgs) / sizeof(cfgs[0]));
	plan(ncfg * (1 + 10) + 7 + 6);
	for (int ci = 0; ci < ncfg; ci++) {
		const cfg *c = &cfgs[ci];
		char name[96];
		snprintf(name, sizeof(name), "par %d, shuffle %s, cache %s%s", c->par,
			 c->shuffle == 2 ? "400 (> the epoch)" : c->shuffle ? "50" : "off",
			 c->cache ? "memory" : "off",
			 c->repeat ? ", repeat(2)" : "");
		pf_error_clear(&err);
		int rc = run_reference(c);
		ok(!rc && ncut == 10 && nref[0] > 20, "%s: reference run, %d cut points", name, ncut);
		if (rc) {
			diag("rc %d: %s", rc, err.msg);
			skip(10, "no reference");
			continue;
		}
		for (int k = 0; k < 10; k++) {
			char why[256] = "";
			pf_error_clear(&err);
			int par = c->par == 1 ? 4 : 1;
			ok(resume(c, &cuts[k], par, why, sizeof(why)),
			   "%s: resumed at epoch %d %s (%ld of %ld) with par %d: same batches through epoch %d",
			   name, cuts[k].epoch, cuts[k].what, cuts[k].k, nref[cuts[k].epoch], par,
			   cuts[k].epoch + 1);
			if (why[0])
				diag("%s", why);
		}
	}

	/* errors */
	cfg c = { 1, 1, 0, 0 };
	run_reference(&c);
	pf_pipeline *p = build(&c, 1);
	pf_iter *it;
	pf_iter_pos bad = cuts[1].pos;
	bad.delivered = (uint64_t)nref[bad.epoch] + 3;
	pf_error e1 = { 0 };
	is_int(pf_iter_new_at(&it, p, &bad, &e1), PF_EINVAL, "a position past the end of its epoch is PF_EINVAL");
	like(e1.msg, "has", "the message names the epoch's element count");
	ok(it == NULL, "no iterator on failure");
	bad = cuts[1].pos;
	bad.nops = 3;
	pf_error e2 = { 0 };
	is_int(pf_iter_new_at(&it, p, &bad, &e2), PF_EINVAL, "a position of a pipeline with other ops is PF_EINVAL");
	bad = cuts[1].pos;
	bad.at_end = 1; /* mid epoch, but says the epoch ended there */
	pf_error e3 = { 0 };
	is_int(pf_iter_new_at(&it, p, &bad, &e3), PF_EINVAL, "a position claiming an early end is PF_EINVAL");
	pf_error e4 = { 0 };
	pf_iter_pos q;
	int rc = pf_iter_new(&it, p, &e4);
	is_int(rc ? rc : pf_iter_epoch_start(it, 1, 0, &q, &e4), PF_ESTATE,
	       "the start of an epoch not begun yet is PF_ESTATE");
	pf_iter_free(it);
	pf_pipeline_free(p);
	p = build(&c, 1);
	rc = pf_iter_new_at(&it, p, &cuts[0].pos, &err);
	pf_elem b;
	rc = rc ? rc : pf_iter_next(it, &b, &err);
	ok(rc == 0 && b.id == ref[0][0].id && hash_elem(&b) == ref[0][0].hash,
	   "after failed starts, the same pipeline resumes at an epoch start");
	pf_elem_release(&b);
	pf_iter_free(it);
	pf_pipeline_free(p);
	order_checks(&c);
	return done_testing();
}
