/* t1001-ops-tfrecord: the TFRecord source interleaves files, delivers each
 * record once, and a damaged frame fails naming the file. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"

static pf_error err;

static int write_file(const char *path, int first, int n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	for (int i = first; i < first + n; i++) {
		char rec[32];
		int len = snprintf(rec, sizeof(rec), "rec-%d", i);
		unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
		pf_tfrecord_frame(rec, (uint64_t)len, h, t);
		fwrite(h, 1, sizeof(h), f);
		fwrite(rec, 1, (size_t)len, f);
		fwrite(t, 1, sizeof(t), f);
	}
	return fclose(f);
}

static int collect(const char *const *paths, int n, int cycle, int *seen, int *order, pf_error *e)
{
	pf_pipeline *p;
	pf_pipeline_new(&p, NULL, e);
	pf_source_opts so = { .cycle_length = cycle };
	int rc = pf_tfrecords(p, paths, (size_t)n, &so, e);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, e);
	int k = 0;
	pf_elem el;
	while (!rc && (rc = pf_iter_next(it, &el, e)) == 0) {
		char buf[32] = { 0 };
		memcpy(buf, el.data[0], (size_t)el.nitems[0] < 31 ? (size_t)el.nitems[0] : 31);
		int v = -1;
		sscanf(buf, "rec-%d", &v);
		if (v >= 0 && v < 100)
			seen[v]++;
		if (k < 100)
			order[k] = v;
		k++;
		pf_elem_release(&el);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? k : rc;
}

int main(void)
{
	alarm(30);
	plan(5);
	const char *d = tap_tmpdir("t1001");
	char a[600], b[600], c[600];
	snprintf(a, sizeof(a), "%s/a.tfrecord", d);
	snprintf(b, sizeof(b), "%s/b.tfrecord", d);
	snprintf(c, sizeof(c), "%s/empty.tfrecord", d);
	write_file(a, 0, 5);
	write_file(b, 5, 2);
	write_file(c, 0, 0);
	const char *paths[] = { a, c, b };
	int seen[100] = { 0 }, order[100];
	int n = collect(paths, 3, 3, seen, order, &err);
	int once = n == 7;
	for (int i = 0; i < 7; i++)
		once &= seen[i] == 1;
	ok(once, "7 records, each once (with an empty file)");
	ok(n == 7 && order[0] == 0 && order[1] == 5 && order[2] == 1 && order[3] == 6 && order[4] == 2,
	   "cycle 3: round robin between the files");
	memset(seen, 0, sizeof(seen));
	char pat[620];
	snprintf(pat, sizeof(pat), "%s/*.tfrecord", d);
	const char *globv[] = { pat };
	n = collect(globv, 1, 1, seen, order, &err);
	ok(n == 7 && order[0] == 0 && order[4] == 4 && order[5] == 5, "glob, cycle 1: file after file");

	/* flip a data byte in b: its data crc fails */
	FILE *f = fopen(b, "r+b");
	fseek(f, 12 + 2, SEEK_SET);
	fputc('X', f);
	fclose(f);
	pf_error_clear(&err);
	n = collect(paths, 3, 1, seen, order, &err);
	is_int(n, PF_ECORRUPT, "a damaged frame fails the epoch");
	like(err.msg, "b.tfrecord", "the error names the file: %s", err.msg);
	return done_testing();
}
