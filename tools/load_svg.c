/* load_svg.c - pipe-load --svg: the latency/throughput curve of the levels
 * (concurrencies, rates or sweep settings) a run measured (see load.h). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "load.h"
#include "svg_chart.h"

int load_svg(const char *path, const char *title, const char *xname,
	     const load_point *pt, int n)
{
	double *x = malloc((size_t)(n ? n : 1) * 4 * sizeof(double));
	if (!x) {
		fprintf(stderr, "pipe-load: --svg: out of memory\n");
		return -1;
	}
	double *p50 = x + n, *p99 = x + 2 * n, *off = x + 3 * n;
	for (int i = 0; i < n; i++) {
		x[i] = pt[i].x_rps;
		p50[i] = pt[i].p50;
		p99[i] = pt[i].p99;
		off[i] = pt[i].offered;
	}
	svg_series lat[2] = { { "p50 ms", (size_t)n, x, p50 }, { "p99 ms", (size_t)n, x, p99 } };
	svg_series thr[1] = { { "answered req/s", (size_t)n, off, x } };
	svg_panel p[2] = {
		{ "latency against throughput", "answered requests/s", "ms", 2, lat, 0, NAN, NULL },
		{ "throughput against offered load", xname, "answered requests/s", 1, thr, 0, NAN, NULL },
	};
	FILE *f = fopen(path, "w");
	int rc = f ? svg_write(f, title, 2, p) : -1;
	if (f && fclose(f) != 0)
		rc = -1;
	if (rc < 0)
		fprintf(stderr, "pipe-load: --svg %s: cannot write\n", path);
	free(x);
	return rc;
}
