/*
 * t2051-stats-autotune: with a slow map and a prefetch left to AUTOTUNE,
 * the autotuner's decisions reach the stats file's event ring with their
 * knob, old and new values, reason and a time inside the run, and no
 * change of an autotuned stage is logged twice as "observed".
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pf_stats.h"
#include "tap.h"

static int prep(pf_map_ctx *ctx, pf_error *err)
{
	(void)err;
	ctx->out = *ctx->in;
	return 0;
}

static int slow(void *st, const pf_elem *in, pf_elem *out, pf_error *err)
{
	(void)st;
	(void)err;
	memcpy(out->data[0], in->data[0], 8);
	struct timespec ts = { 0, 300000 };
	nanosleep(&ts, NULL);
	return 0;
}

int main(void)
{
	plan(7);
	char path[600];
	snprintf(path, sizeof(path), "%s/run.pfstat", tap_tmpdir("t2051"));
	pf_error err = { 0 };
	pf_pipeline *p;
	pf_iter *it;
	pf_stats *st;
	pf_options po = { .cpu_budget = 4 };
	pf_map_opts mo = { .num_parallel_calls = PF_AUTOTUNE };
	pf_pipeline_new(&p, &po, &err);
	pf_range(p, 0, 1 << 30, 1, &err);
	pf_map_func(p, "slow", prep, slow, NULL, "", &mo, &err);
	pf_prefetch(p, PF_AUTOTUNE, &err);
	ok(pf_iter_new(&it, p, &err) == 0, "pipeline with AUTOTUNE knobs starts: %s", err.msg);
	pf_stats_opts so = { .interval_ms = 20 };
	ok(pf_stats_create(&st, path, &so, &err) == 0 && pf_stats_attach(st, it, &err) == 0,
	   "stats attached");
	uint64_t t0 = pf_stats_elapsed_ns(st);
	/* a consumer that never computes: the map is the bottleneck */
	while (pf_stats_elapsed_ns(st) - t0 < 1500000000ull) {
		pf_elem e;
		uint64_t a = pf_stats_elapsed_ns(st);
		if (pf_iter_next(it, &e, &err) != 0)
			break;
		pf_elem_release(&e);
		pf_stats_step(st, pf_stats_elapsed_ns(st) - a, 0, 0, 1);
	}
	uint64_t t_end = pf_stats_elapsed_ns(st);
	pf_stats_close(st, &err);
	pf_autotune_event ev;
	int logged = pf_iter_autotune_log(it, 0, &ev) == 0;
	pf_iter_free(it);
	pf_pipeline_free(p);

	pf_stats_snap *s;
	ok(pf_stats_read_file(&s, path, &err) == 0, "file reads: %s", err.msg);
	if (!s)
		return done_testing();
	ok(logged && s->events_total >= 1, "the autotuner decided (%llu events in the file)",
	   (unsigned long long)s->events_total);
	int from_at = 0, observed_auto = 0, sane = 1;
	for (size_t k = 0; k < s->nevents; k++) {
		const pf_stats_eventrec *e = &s->events[k];
		diag("%.3f s stage %d %s %lld -> %lld (%s)", e->t_ns * 1e-9, e->stage, e->knob,
		     (long long)e->old_value, (long long)e->new_value, e->reason);
		if (strcmp(e->reason, "observed by the sampler") != 0)
			from_at++;
		else if (e->stage >= 0 && s->stages[e->stage].autotuned)
			observed_auto++;
		if (e->stage < 0 || e->stage >= s->nstages || e->t_ns > t_end ||
		    (strcmp(e->knob, "parallelism") && strcmp(e->knob, "depth")))
			sane = 0;
	}
	ok(from_at >= 1, "decisions carry the autotuner's reasons (%d)", from_at);
	ok(sane, "each names a stage of the plan, a tuned knob and a time inside the run");
	is_int(observed_auto, 0, "no autotuned change is logged again as observed");
	pf_stats_snap_free(s);
	return done_testing();
}
