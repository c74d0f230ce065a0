/* t1027-ops-webdataset-builder: pf_webdataset(), the C builder call of the
 * webdataset source, gives the same samples in the same order as the
 * spec's webdataset(...) with the same options (brace expansion, cycle,
 * file shuffle, one seed), takes NULL options, keeps the damage policy of
 * its options (a cut tar fails naming the file, or is read up to the cut
 * under skip_corrupt), and refuses what a source call refuses. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

static char dir[1024];

/* FNV-1a of every field's name and bytes of each element, in order, into
 * h[] (at most cap); returns the count, or -1 (err filled). */
static int run(pf_pipeline *p, uint64_t *h, int cap, pf_error *err)
{
	pf_iter *it = NULL;
	pf_elem e;
	int n = 0, rc = pf_iter_new(&it, p, err);
	while (!rc && (rc = pf_iter_next(it, &e, err)) == 0) {
		uint64_t x = 1469598103934665603ull;
		for (int i = 0; i < e.schema->nfields; i++) {
			const unsigned char *b = e.data[i];
			for (const char *c = e.schema->fields[i].name; *c; c++)
				x = (x ^ (unsigned char)*c) * 1099511628211ull;
			for (int64_t k = 0; k < e.nitems[i]; k++)
				x = (x ^ b[k]) * 1099511628211ull;
		}
		if (n < cap)
			h[n] = x;
		n++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	return rc == PF_END ? n : -1;
}

static pf_pipeline *new_pipeline(uint64_t seed)
{
	pf_pipeline *p = NULL;
	pf_options o = { 0 };
	pf_error e = { 0 };
	o.seed = seed;
	if (pf_pipeline_new(&p, &o, &e))
		diag("%s", e.msg);
	return p;
}

int main(void)
{
	alarm(60);
	const char *src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s/t/data/wds", src ? src : ".");
#ifndef HAVE_LIBARCHIVE
	{
		pf_pipeline *p = new_pipeline(1);
		pf_error e = { 0 };
		const char *paths[] = { "x.tar" };
		int rc = pf_webdataset(p, paths, 1, NULL, &e);
		pf_pipeline_free(p);
		if (rc == PF_EINVAL && strstr(e.msg, "libarchive"))
			plan_skip_all("built without libarchive (pf_webdataset says so)");
		plan_skip_all("built without libarchive");
	}
#endif
	plan(8);
	pf_error err = { 0 };
	char pat[1100];
	snprintf(pat, sizeof(pat), "%s/shards-{000..003}.tar", dir);
	const char *paths[] = { pat };

	/* the builder against the spec, same options and seed */
	uint64_t a[64], b[64];
	pf_source_opts so = { .cycle_length = 2, .block_length = 2, .shuffle_files = 1 };
	pf_pipeline *p = new_pipeline(7);
	int rc = pf_webdataset(p, paths, 1, &so, &err);
	int na = rc ? -1 : run(p, a, 64, &err);
	pf_pipeline_free(p);
	char spec[1400];
	snprintf(spec, sizeof(spec), "webdataset(\"%s\", cycle=2, block=2, shuffle_files=true)", pat);
	p = new_pipeline(7);
	rc = pf_spec_apply(p, spec, &err);
	int nb = rc ? -1 : run(p, b, 64, &err);
	pf_pipeline_free(p);
	ok(na > 0 && na == nb && na <= 64 && !memcmp(a, b, sizeof(a[0]) * (size_t)na),
	   "pf_webdataset and webdataset(...): the same %d samples in the same order (cycle 2, block 2, shuffled files, seed 7)",
	   na);
	if (na < 0 || nb < 0)
		diag("%s", err.msg);

	/* NULL options: the defaults; every sample of the four tars once */
	uint64_t c[64];
	p = new_pipeline(7);
	rc = pf_webdataset(p, paths, 1, NULL, &err);
	int nc = rc ? -1 : run(p, c, 64, &err);
	pf_pipeline_free(p);
	int same = nc == na;
	for (int i = 0; same && i < na; i++) {
		int found = 0;
		for (int j = 0; j < nc; j++)
			found += c[j] == a[i];
		same = found == 1;
	}
	ok(same, "NULL options: the same %d samples, each once", nc);

	/* a cut tar: fails naming the file; skip_corrupt reads up to the cut */
	char cut[1100], cmd[2400];
	snprintf(cut, sizeof(cut), "%s/t/tmp-t1027", getenv("top_builddir") ? getenv("top_builddir") : ".");
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && head -c 8000 '%s/shards-000.tar' >'%s/cut.tar'", cut,
		 dir, cut);
	int sys = system(cmd);
	snprintf(pat, sizeof(pat), "%s/cut.tar", cut);
	p = new_pipeline(1);
	err = (pf_error){ 0 };
	rc = pf_webdataset(p, paths, 1, NULL, &err);
	int nd = rc ? -2 : run(p, c, 64, &err);
	ok(sys == 0 && nd == -1 && strstr(err.msg, "cut.tar") && !strstr(err.msg, "(null)"),
	   "a cut tar fails naming the file: %s", err.msg);
	pf_pipeline_free(p);
	so = (pf_source_opts){ .skip_corrupt = 1 };
	err = (pf_error){ 0 };
	p = new_pipeline(1);
	rc = pf_webdataset(p, paths, 1, &so, &err);
	nd = rc ? -2 : run(p, c, 64, &err);
	ok(nd == 0, "skip_corrupt, the cut in the first sample: no sample, no error (%d)", nd);
	if (nd < 0)
		diag("%s", err.msg);
	pf_pipeline_free(p);
	snprintf(cmd, sizeof(cmd), "head -c 30000 '%s/shards-000.tar' >'%s/cut.tar'", dir, cut);
	sys = system(cmd);
	p = new_pipeline(1);
	err = (pf_error){ 0 };
	rc = pf_webdataset(p, paths, 1, &so, &err);
	nd = rc ? -2 : run(p, c, 64, &err);
	ok(sys == 0 && nd > 0 && nd < 5, "skip_corrupt, cut later: the %d samples before the cut", nd);
	if (nd < 0)
		diag("%s", err.msg);
	pf_pipeline_free(p);

	/* refusals */
	p = new_pipeline(1);
	err = (pf_error){ 0 };
	rc = pf_webdataset(p, paths, 0, NULL, &err);
	ok(rc == PF_EINVAL, "no paths: PF_EINVAL (%s)", err.msg);
	pf_pipeline_free(p);
	p = new_pipeline(1);
	snprintf(pat, sizeof(pat), "%s/shards-{0..999999}.tar", dir);
	err = (pf_error){ 0 };
	rc = pf_webdataset(p, paths, 1, NULL, &err);
	ok(rc < 0 && strstr(err.msg, "more than"), "braces past the bound are refused: %s", err.msg);
	pf_pipeline_free(p);
	p = new_pipeline(1);
	snprintf(pat, sizeof(pat), "%s/shards-000.tar", dir);
	err = (pf_error){ 0 };
	rc = pf_range(p, 0, 3, 1, &err);
	rc = rc ? rc : pf_webdataset(p, paths, 1, NULL, &err);
	ok(rc == PF_EINVAL, "a second source: PF_EINVAL (%s)", err.msg);
	pf_pipeline_free(p);
	return done_testing();
}
