/*
 * stat_svg.c - pipe-stat --svg: the stall share and each stage's
 * throughput over the run, from the stats file's time series.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "stat.h"
#include "svg_chart.h"

int stat_svg(FILE *f, const pf_stats_snap *s)
{
	size_t n = s->nsamples > 1 ? s->nsamples - 1 : 0;
	int ns = s->nstages;
	double *buf = calloc((2 + (size_t)ns) * (n ? n : 1), sizeof(double));
	if (!buf)
		return -1;
	double *t = buf, *stall = buf + (n ? n : 1), *rate = stall + (n ? n : 1);
	for (size_t k = 0; k < n; k++) {
		const pf_stats_sample *a = &s->samples_ts[k], *b = &s->samples_ts[k + 1];
		double dt = (b->t_ns - a->t_ns) * 1e-9;
		double ds = (double)b->stall_ns - (double)a->stall_ns;
		double dc = (double)b->compute_ns - (double)a->compute_ns;
		t[k] = b->t_ns * 1e-9;
		stall[k] = ds + dc > 0 ? 100 * ds / (ds + dc) : NAN;
		for (int i = 0; i < ns; i++)
			rate[(size_t)i * n + k] = dt > 0
				? ((double)b->st[i].elements - (double)a->st[i].elements) / dt : NAN;
	}
	svg_series st = { "stall %", n, t, stall };
	svg_series rs[PF_STATS_MAX_STAGES];
	char names[PF_STATS_MAX_STAGES][48];
	for (int i = 0; i < ns; i++) {
		snprintf(names[i], sizeof(names[i]), "%d: %s", i, s->stages[i].name);
		rs[i] = (svg_series){ names[i], n, t, rate + (size_t)i * n };
	}
	svg_panel p[2] = {
		{ "stall share of the training loop", "time (s)", "stall %", 1, &st, 0, NAN, NULL },
		{ "throughput per stage", "time (s)", "elements/s", ns, rs, 0, NAN, NULL },
	};
	int rc = svg_write(f, s->label[0] ? s->label : "pipefeed run", 2, p);
	free(buf);
	return rc;
}
