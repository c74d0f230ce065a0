/*
 * t3007-devfeed-defaults: the defaults pipe-train's "auto" takes from the
 * library (pf_devfeed.h): read and map threads by CPU count, device slots
 * by backend, and depth = PF_AUTOTUNE in pf_devfeed_opts.
 */
#include "config.h"

#include <unistd.h>

#include "pf_devfeed.h"
#include "tap.h"

static void threads(void)
{
	static const struct {
		int ncpus, read, map;
	} want[] = {
		{ 1, PF_AUTOTUNE, PF_AUTOTUNE }, { 4, PF_AUTOTUNE, PF_AUTOTUNE },
		{ 5, 2, 2 }, { 8, 4, 2 }, { 12, 6, 3 }, { 16, 8, 4 }, { 64, 8, 8 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		is_int(pf_devfeed_read_threads(want[i].ncpus), want[i].read,
		       "%d CPUs: read threads", want[i].ncpus);
		is_int(pf_devfeed_map_threads(want[i].ncpus), want[i].map,
		       "%d CPUs: map threads", want[i].ncpus);
	}
	int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	is_int(pf_devfeed_read_threads(0), pf_devfeed_read_threads(n),
	       "0: the CPUs online (%d)", n);
	is_int(pf_devfeed_map_threads(-1), pf_devfeed_map_threads(n),
	       "-1: the CPUs online (%d)", n);
}

/* A feed of depth `depth` over range(0, 100) | batch(10): the batches of
 * two epochs, in order, or -1 when the feed refused to start. */
static int feed(pf_device *dev, int depth, pf_error *err)
{
	pf_pipeline *p;
	pf_iter *it;
	pf_stream *cs;
	pf_devfeed *f;
	if (pf_pipeline_new(&p, NULL, err) < 0 || pf_range(p, 0, 100, 1, err) < 0 ||
	    pf_batch(p, 10, 0, err) < 0 || pf_iter_new(&it, p, err) < 0)
		return -2;
	pf_stream_new(dev, &cs, err);
	pf_devfeed_opts o = { .depth = depth, .epochs = 2 };
	int n = -1;
	if (pf_devfeed_new(&f, dev, it, cs, &o, err) == 0) {
		pf_devbatch b;
		int rc, ends = 0;
		n = 0;
		while (ends < 2 && (rc = pf_devfeed_next(f, &b, err)) >= 0) {
			if (rc == PF_END) {
				ends++;
				continue;
			}
			n += b.seq == (uint64_t)n && b.batch == 10;
			pf_devfeed_release(f, &b, err);
		}
		pf_devfeed_free(f);
	}
	pf_iter_free(it);
	pf_stream_free(dev, cs);
	pf_pipeline_free(p);
	return n;
}

int main(void)
{
	plan(20);
	threads();

	pf_error err = { 0 };
	pf_device *dev;
	if (pf_device_open(&dev, "cpu", NULL, &err) < 0) {
		diag("cpu device: %s", err.msg);
		return done_testing();
	}
	is_int(pf_devfeed_default_depth(dev), 16, "cpu backend: 16 device slots");
	is_int(feed(dev, PF_AUTOTUNE, &err), 20,
	       "depth PF_AUTOTUNE: the feed starts and delivers 2 x 10 batches (%s)", err.msg);
	ok(feed(dev, -5, &err) == -1 && err.code == PF_EINVAL,
	   "depth -5 is refused (%s)", err.msg);
	pf_device_close(dev);

	pf_device *cu;
	if (pf_device_open(&cu, "cuda", NULL, &err) == 0) {
		is_int(pf_devfeed_default_depth(cu), 3, "cuda backend: 3 device slots");
		pf_device_close(cu);
	} else {
		skip(1, "no CUDA device");
	}
	return done_testing();
}
