/*
 * t5103-devfeed-user: a program outside the tree, built by
 * t/t5103-installed-devfeed.sh against the INSTALLED library only
 * (pkg-config pipefeed-device), as a user's own training loop would be.
 *
 * It runs range(0, N) | batch(B) through the device feed on the cpu device
 * for two epochs with the library's default depth (PF_AUTOTUNE), batches
 * built in the device's pinned memory, copies each batch back from the
 * device and checks its values.  Prints one line per finding and a last
 * line "batches NB values OK|BAD"; exits 0 when everything was right.
 * With an argument "auto", it also opens the "auto" device and prints
 * "note: ..." (why it is not cuda, if it is not).
 */
#include <pipefeed/pf_devfeed.h>
#include <pipefeed/pipefeed.h>
#include <stdio.h>
#include <string.h>

enum { N = 1000, B = 32, EPOCHS = 2 };

static int fail(const char *what, const pf_error *e)
{
	printf("error: %s: %s\n", what, e->msg);
	return 1;
}

/* Check device batch b (values first..first+rows-1) by copying it back. */
static int check_batch(pf_device *d, pf_stream *cs, const pf_devbatch *b,
		       int64_t first, pf_error *err)
{
	int64_t host[B];
	if (b->nitems[0] > B || b->schema->fields[0].dtype != PF_I64)
		return 0;
	if (pf_memcpy_async(d, cs, host, b->data[0], (size_t)b->nitems[0] * 8,
			    PF_D2H, err) < 0 || pf_stream_sync(d, cs, err) < 0)
		return 0;
	for (int64_t i = 0; i < b->nitems[0]; i++)
		if (host[i] != first + i)
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	pf_error err = { 0 };
	pf_device *d;
	if (argc > 1 && !strcmp(argv[1], "auto")) {
		if (pf_device_open(&d, "auto", NULL, &err) < 0)
			return fail("auto device", &err);
		printf("auto: %s\nnote: %s\n", pf_device_kind(d), pf_device_note(d));
		pf_device_close(d);
	}
	if (pf_device_open(&d, "cpu", NULL, &err) < 0)
		return fail("cpu device", &err);
	printf("depth %d read_threads(16) %d map_threads(16) %d\n",
	       pf_devfeed_default_depth(d), pf_devfeed_read_threads(16),
	       pf_devfeed_map_threads(16));
	pf_options po = { .batch_alloc = pf_devfeed_pinned_alloc,
			  .batch_free = pf_devfeed_pinned_free, .alloc_user = d };
	pf_pipeline *p;
	pf_iter *it;
	pf_stream *cs;
	if (pf_pipeline_new(&p, &po, &err) < 0 || pf_range(p, 0, N, 1, &err) < 0 ||
	    pf_batch(p, B, 0, &err) < 0 || pf_iter_new(&it, p, &err) < 0 ||
	    pf_stream_new(d, &cs, &err) < 0)
		return fail("pipeline", &err);
	pf_devfeed *f;
	pf_devfeed_opts fo = { .depth = PF_AUTOTUNE, .epochs = EPOCHS, .pinned_batches = 1 };
	if (pf_devfeed_new(&f, d, it, cs, &fo, &err) < 0)
		return fail("pf_devfeed_new", &err);
	int nb = 0, good = 1, ends = 0, rc;
	int64_t expect = 0;
	pf_devbatch b;
	while (ends < EPOCHS && (rc = pf_devfeed_next(f, &b, &err)) >= 0) {
		if (rc == PF_END) {
			good &= expect == N;
			expect = 0;
			ends++;
			continue;
		}
		good &= b.epoch == (uint64_t)ends && check_batch(d, cs, &b, expect, &err);
		expect += b.nitems[0];
		nb++;
		pf_devfeed_release(f, &b, &err);
	}
	if (ends < EPOCHS)
		return fail("pf_devfeed_next", &err);
	pf_devfeed_free(f);
	pf_iter_free(it);
	pf_pipeline_free(p);
	pf_stream_free(d, cs);
	pf_device_close(d);
	printf("batches %d values %s\n", nb, good ? "OK" : "BAD");
	return good ? 0 : 1;
}
