/* t1011-ops-batched-input: ops after a batch see batches, whole, or refuse
 * them by name; nothing is silently cut to one sample per batch (cache
 * used to lend a batch as one sample to a shuffle after it, and replay
 * batches as elements; batch of batches kept one sample of each). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "pipefeed.h"
#include "pf_spec.h"
#include "tap.h"
#include "identity_map.h"

static pf_error err;

/* Run spec for 3 epochs: every epoch must give `nb` batches of 4 holding
 * 0..4*nb-1 once each.  Returns 1 when so. */
static int whole_batches(const char *spec, int nb)
{
	pf_pipeline *p;
	pf_iter *it;
	pf_elem e;
	int good = 1;
	memset(&err, 0, sizeof(err));
	pf_pipeline_new(&p, NULL, &err);
	if (pf_spec_apply(p, spec, &err) || pf_iter_new(&it, p, &err)) {
		diag("%s: %s", spec, err.msg);
		pf_pipeline_free(p);
		return 0;
	}
	for (int ep = 0; ep < 3; ep++) {
		unsigned char seen[64] = { 0 };
		int n = 0;
		while (pf_iter_next(it, &e, &err) == 0) {
			good &= e.batch == 4 && e.nitems[0] == 4;
			for (int k = 0; k < e.nitems[0] && k < 4; k++) {
				int64_t v = ((const int64_t *)e.data[0])[k];
				good &= v >= 0 && v < 4 * nb && !seen[v];
				if (v >= 0 && v < 64)
					seen[v] = 1;
			}
			n++;
			pf_elem_release(&e);
		}
		if (n != nb || !good)
			diag("%s: epoch %d: %d batches", spec, ep, n);
		good &= n == nb;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return good;
}

/* spec must be refused at pf_iter_new with a message containing want. */
static void refused(const char *spec, const char *want, const char *title)
{
	pf_pipeline *p;
	pf_iter *it = NULL;
	memset(&err, 0, sizeof(err));
	pf_pipeline_new(&p, NULL, &err);
	pf_map_register("t1011_same", id_prepare, id_fn, NULL, &err);
	memset(&err, 0, sizeof(err));
	int rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	ok(rc == PF_EINVAL && !it, "%s: refused at start", title);
	like(err.msg, want, "  naming the op and why");
	pf_iter_free(it);
	pf_pipeline_free(p);
}

int main(void)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/b.cache", tap_tmpdir("t1011"));

	ok(whole_batches("range(0, 16) | batch(4) | cache", 4),
	   "batch | cache (memory): every epoch replays whole batches");
	char spec[800];
	snprintf(spec, sizeof(spec), "range(0, 16) | batch(4) | cache(\"%s\")", path);
	ok(whole_batches(spec, 4), "batch | cache (file): the same");
	ok(access(path, F_OK) == 0, "  and the cache file was kept");
	ok(whole_batches(spec, 4), "  a later run replays that file as batches");
	ok(whole_batches("range(0, 16) | batch(4) | cache | shuffle(3, seed=1)", 4),
	   "batch | cache | shuffle: shuffles whole batches, all values once");
	ok(whole_batches("range(0, 16) | batch(4) | shuffle(3, seed=1) | prefetch(2)", 4),
	   "batch | shuffle | prefetch: whole batches");

	refused("range(0, 16) | batch(4) | batch(2)", "batch#2: its input is batched already",
		"batch | batch");
	refused("range(0, 16) | map(t1011_same) | batch(4) | take(3) | batch(2)",
		"batch#4: its input is batched already", "map+batch | take | batch (fused)");
	refused("range(0, 16) | batch(4) | padded_batch(2, max_len=4)",
		"padded_batch#2: its input is batched already", "batch | padded_batch");
	refused("range(0, 16) | batch(4) | enumerate", "enumerate#2: its input is batched",
		"batch | enumerate");
	return done_testing();
}
