/*
 * copy_bench - host-to-device copy rate through the device layer, the limit
 * device prefetch works against (PCIe on a GPU, memory bandwidth on cpu).
 *
 *   bench/copy_bench [DEVICE=cpu] [RUNS=7]
 *
 * For each size (one batch of 64 and of 1024 Fashion-MNIST u8 images, and
 * 16 MiB, 64 MiB), times REPS back-to-back pf_memcpy_async H2D copies on one
 * stream followed by one sync, from pinned memory (pf_host_alloc, what
 * pf_devfeed copies from) and from pageable memory (malloc), and a pinned
 * copy on two streams at once (the devfeed's double buffering).  Prints
 * each run's GB/s and the median; the source is filled with random bytes
 * and the last copy is read back and compared, so a copy that did nothing
 * fails instead of looking fast.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_device.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check(int rc, const char *what, const pf_error *e)
{
	if (rc < 0) {
		fprintf(stderr, "copy_bench: %s: %s\n", what, e->msg);
		exit(1);
	}
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* GB/s of reps copies of n bytes from src, split over nstreams streams. */
static double rate(pf_device *d, pf_stream **s, int nstreams, uint8_t *dst,
		   const uint8_t *src, size_t n, int reps)
{
	pf_error err = { 0 };
	double t = now_s();
	for (int r = 0; r < reps; r++) {
		size_t half = nstreams > 1 ? n / 2 : n;
		check(pf_memcpy_async(d, s[0], dst, src, half, PF_H2D, &err),
		      "copy", &err);
		if (nstreams > 1)
			check(pf_memcpy_async(d, s[1], dst + half, src + half,
					      n - half, PF_H2D, &err), "copy", &err);
	}
	for (int k = 0; k < nstreams; k++)
		check(pf_stream_sync(d, s[k], &err), "sync", &err);
	return (double)n * reps / (now_s() - t) / 1e9;
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "cpu";
	int runs = argc > 2 ? atoi(argv[2]) : 7;
	if (runs < 1 || runs > 99)
		return 2;
	static const size_t sizes[] = { 64 * 784, 1024 * 784, 16 << 20, 64 << 20 };
	const size_t maxn = 64 << 20;
	pf_error err = { 0 };
	pf_device *d;
	pf_stream *s[2];
	uint8_t *pinned, *pageable, *dev, *back;
	check(pf_device_open(&d, kind, NULL, &err), "open", &err);
	check(pf_stream_new(d, &s[0], &err), "stream", &err);
	check(pf_stream_new(d, &s[1], &err), "stream", &err);
	check(pf_host_alloc(d, (void **)&pinned, maxn, &err), "pinned", &err);
	check(pf_host_alloc(d, (void **)&back, maxn, &err), "pinned", &err);
	check(pf_dev_alloc(d, (void **)&dev, maxn, &err), "device", &err);
	pageable = malloc(maxn);
	if (!pageable)
		return 1;
	srand(7);
	for (size_t i = 0; i < maxn; i++)
		pinned[i] = pageable[i] = (uint8_t)rand();
	printf("copy_bench: %s (%s), median of %d runs\n", pf_device_kind(d),
	       pf_device_info(d), runs);
	printf("%12s %10s %10s %10s  GB/s\n", "bytes", "pinned", "pageable",
	       "pinned x2");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		int reps = (int)((256u << 20) / n);
		if (reps < 4)
			reps = 4;
		double v[3][99];
		rate(d, s, 1, dev, pinned, n, 2);               /* warm up */
		for (int r = 0; r < runs; r++) {
			v[0][r] = rate(d, s, 1, dev, pinned, n, reps);
			v[1][r] = rate(d, s, 1, dev, pageable, n, reps);
			v[2][r] = rate(d, s, 2, dev, pinned, n, reps);
		}
		memset(back, 0, n);
		check(pf_memcpy_async(d, s[0], back, dev, n, PF_D2H, &err), "back", &err);
		check(pf_stream_sync(d, s[0], &err), "sync", &err);
		if (memcmp(back, pinned, n)) {
			fprintf(stderr, "copy_bench: %zu bytes came back different\n", n);
			return 1;
		}
		for (int j = 0; j < 3; j++)
			qsort(v[j], runs, sizeof(double), cmp);
		printf("%12zu %10.2f %10.2f %10.2f\n", n, v[0][runs / 2],
		       v[1][runs / 2], v[2][runs / 2]);
	}
	free(pageable);
	pf_dev_free(d, dev);
	pf_host_free(d, pinned);
	pf_host_free(d, back);
	pf_stream_free(d, s[0]);
	pf_stream_free(d, s[1]);
	pf_device_close(d);
	return 0;
}
