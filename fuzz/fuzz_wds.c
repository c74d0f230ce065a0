/*
 * fuzz_wds - the webdataset source (libarchive's tar reader, the grouping
 * of members into samples, the counting pass and the damage policy) on
 * arbitrary bytes: each input is written to a scratch file and read through
 * a pipeline, once stopping at damage and once with skip_corrupt.  Must
 * never crash, leak or hang; the skip_corrupt run delivers no more samples
 * than its counting pass found.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_spec.h"
#include "pipefeed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const char *path, int skip)
{
	char spec[600];
	snprintf(spec, sizeof(spec), "webdataset(\"%s\", skip_corrupt=%s) | take(1000)", path,
		 skip ? "true" : "false");
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error e = { 0 };
	pf_options o = { .memory_budget = 64u << 20 };
	int rc = pf_pipeline_new(&p, &o, &e);
	if (!rc)
		rc = pf_spec_apply(p, spec, &e);
	if (!rc)
		rc = pf_iter_new(&it, p, &e);
	pf_elem el;
	while (!rc && (rc = pf_iter_next(it, &el, &e)) == 0) {
		volatile unsigned char s = 0;
		for (int i = 0; i < el.schema->nfields; i++)
			for (int64_t k = 0; k < el.nitems[i]; k++)
				s ^= ((const unsigned char *)el.data[i])[k];
		(void)s;
		pf_elem_release(&el);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[256];
	if (!path[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(path, sizeof(path), "%s/pf-fuzz-wds-%ld.tar", t ? t : "/tmp", (long)getpid());
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	run(path, 0);
	run(path, 1);
	unlink(path);
	return 0;
}
