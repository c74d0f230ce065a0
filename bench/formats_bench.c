/*
 * formats_bench - the same images through pipefeed from three containers,
 * and PNG decoding on one thread against all of them.
 *
 *   formats_bench [-r RUNS] [--png FILE.tfrecord] NAME=SPEC...
 *
 * Each NAME=SPEC is a whole pipeline (a spec string); every run iterates
 * one epoch of it and counts the samples (a batch counts its rows).  It
 * prints, per spec, the median images/s of RUNS runs (default 5, wall
 * time), its ratio to the first spec's, median of the per-run ratios
 * (the runs alternate between the specs, so the machine's drift cancels),
 * and the process's CPU time per image (all threads: what a busy, shared
 * machine does not change much).
 *
 * --png FILE: the "image" bytes feature of FILE's tf.train.Examples, held
 * in memory and decoded by libpng's simplified API (to gray u8) on one
 * thread, in every run right after the specs: the single-thread decode
 * rate that `decode_image` on N workers is measured against (the issue's
 * goal: >= 0.8 x cores; each spec's "x1T*cores" column is the median of
 * the per-run ratios).  Then the same on `cores` threads at once (every
 * thread decoding all of them): what the machine gives libpng itself on
 * all cores (`--cores N`, default the online CPUs).
 * bench/formats_bench.py makes the files and runs this with tf.data's
 * figures beside it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_PNG
#include <png.h>
#endif

#include "pf_spec.h"
#include "pipefeed.h"
#include "bench_median.h"
#include "bench_pngs.h"

#define MAXS 16
#define MAXRUNS 32

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread), user + system. */
static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* One epoch of spec: images/s, or -1 (message printed); *us: CPU
 * microseconds per image (all threads). */
static double one_run(const char *spec, uint64_t *count, double *us)
{
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error err = { 0 };
	pf_elem e;
	uint64_t n = 0;
	double t0 = now(), c0 = cpu();
	int rc = pf_pipeline_new(&p, NULL, &err);
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		n += e.batch ? e.batch : 1;
		pf_elem_release(&e);
	}
	double t = now() - t0;
	*us = n ? (cpu() - c0) / (double)n * 1e6 : 0;
	pf_iter_free(it);
	pf_pipeline_free(p);
	if (rc != PF_END) {
		fprintf(stderr, "formats_bench: %s\n", err.msg);
		return -1;
	}
	*count = n;
	return (double)n / t;
}

struct png_set {
	unsigned char **img;
	const size_t *len;
	size_t n;
	int fail;
};

/* Decode every image of the set with libpng's simplified API (to gray). */
static void *png_all(void *arg)
{
	struct png_set *ps = arg;
#ifdef HAVE_PNG
	unsigned char *px = malloc(1 << 20);
	for (size_t i = 0; px && i < ps->n; i++) {
		png_image im;
		memset(&im, 0, sizeof(im));
		im.version = PNG_IMAGE_VERSION;
		if (!png_image_begin_read_from_memory(&im, ps->img[i], ps->len[i])) {
			ps->fail = 1;
			break;
		}
		im.format = PNG_FORMAT_GRAY;
		if (PNG_IMAGE_SIZE(im) > (1 << 20) || !png_image_finish_read(&im, NULL, px, 0, NULL)) {
			ps->fail = 1;
			break;
		}
	}
	ps->fail |= !px;
	free(px);
#else
	ps->fail = 1;
#endif
	return NULL;
}

/* libpng on `threads` threads at once, each decoding the whole set:
 * images/s of them all, or -1; *us: CPU microseconds per image. */
static double png_rate(unsigned char **img, const size_t *len, size_t n, int threads, double *us)
{
	pthread_t th[64];
	struct png_set ps[64];
	double t0 = now(), c0 = cpu();
	int fail = 0, k;
	for (k = 0; k < threads && k < 64; k++) {
		ps[k] = (struct png_set){ img, len, n, 0 };
		if (pthread_create(&th[k], NULL, png_all, &ps[k]))
			break;
	}
	for (int j = 0; j < k; j++) {
		pthread_join(th[j], NULL);
		fail |= ps[j].fail;
	}
	if (fail || k < threads)
		return -1;
	*us = (cpu() - c0) / (double)n / threads * 1e6;
	return (double)n * threads / (now() - t0);
}

int main(int argc, char **argv)
{
	int runs = 5, ns = 0, cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	const char *png = NULL;
	char *name[MAXS], *spec[MAXS];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-r") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--png") && i + 1 < argc)
			png = argv[++i];
		else if (!strcmp(argv[i], "--cores") && i + 1 < argc)
			cores = atoi(argv[++i]);
		else if (strchr(argv[i], '=') && ns < MAXS) {
			name[ns] = argv[i];
			spec[ns] = strchr(argv[i], '=') + 1;
			spec[ns][-1] = '\0';
			ns++;
		} else {
			fprintf(stderr, "usage: formats_bench [-r RUNS] [--png FILE.tfrecord [--cores N]] NAME=SPEC...\n");
			return 2;
		}
	}
	if (runs < 1 || runs > MAXRUNS || cores < 1 || cores > 64)
		return 2;
	unsigned char **img = NULL;
	size_t *len = NULL, n = 0;
	double pr[MAXRUNS], pu[MAXRUNS], pn[MAXRUNS], pnu[MAXRUNS], goal[MAXS][MAXRUNS];
	if (png) {
		char q[4200];
		snprintf(q, sizeof(q), "\"%s\"", png);
		if (bench_load_pngs("formats_bench", q, (size_t)-1, &img, &len, &n))
			return 1;
	}
	double rate[MAXS][MAXRUNS], ratio[MAXS][MAXRUNS], us[MAXS][MAXRUNS];
	uint64_t count[MAXS] = { 0 };
	for (int r = 0; r < runs; r++) {
		for (int s = 0; s < ns; s++) {
			if ((rate[s][r] = one_run(spec[s], &count[s], &us[s][r])) < 0)
				return 1;
			ratio[s][r] = rate[s][r] / rate[0][r];
		}
		if (png && ((pr[r] = png_rate(img, len, n, 1, &pu[r])) < 0 ||
			    (pn[r] = png_rate(img, len, n, cores, &pnu[r])) < 0)) {
			fprintf(stderr, "formats_bench: libpng failed on %s\n", png);
			return 1;
		}
		for (int s = 0; png && s < ns; s++)
			goal[s][r] = rate[s][r] / (pr[r] * cores);
	}
	for (int s = 0; s < ns; s++) {
		printf("%-12s %8llu images  %10.0f images/s  x%-5.2f vs %-10s %6.2f us CPU/image   ",
		       name[s], (unsigned long long)count[s], bench_median(rate[s], runs),
		       bench_median(ratio[s], runs), name[0], bench_median(us[s], runs));
		if (png)
			printf("x%.2f of 1T*cores   ", bench_median(goal[s], runs));
		printf("%s\n", spec[s]);
	}
	if (png) {
		double pg[MAXRUNS];
		for (int r = 0; r < runs; r++)
			pg[r] = pn[r] / (pr[r] * cores); /* per-run: what the machine gives */
		printf("%-12s %8zu images  %10.0f images/s  %-19s %6.2f us CPU/image   (libpng, one thread, in memory)\n",
		       "png-1thread", n, bench_median(pr, runs), "", bench_median(pu, runs));
		char nm[32];
		snprintf(nm, sizeof(nm), "png-%dthreads", cores);
		printf("%-12s %8zu images  %10.0f images/s  %-19s %6.2f us CPU/image   x%.2f of 1T*cores (libpng on %d threads at once: what the machine gives)\n",
		       nm, n * (size_t)cores, bench_median(pn, runs), "", bench_median(pnu, runs),
		       bench_median(pg, runs), cores);
		for (size_t i = 0; i < n; i++)
			free(img[i]);
		free(img);
		free(len);
	}
	return 0;
}
