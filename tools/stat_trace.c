/*
 * stat_trace.c - Chrome trace events (the JSON object format that
 * chrome://tracing and Perfetto load): the recent steps as stall / compute
 * slices on the consumer's track (and, for steps whose copy was placed,
 * pf_stats_step_copy, the copy on a copy-stream track: a serving run
 * through the device feed shows batch n+1's copy beside batch n's compute),
 * the time series as counters (stall share,
 * each stage's throughput and busy share), knob changes as instant events.
 * Times are microseconds since the stats file was created.
 */
#include "config.h"

#include <stdio.h>

#include "stat.h"

static void slice(FILE *f, int *first, const char *name, int tid, double ts_us, double dur_us)
{
	fprintf(f, "%s{\"name\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f}",
		*first ? "" : ",\n", name, tid, ts_us, dur_us);
	*first = 0;
}

int stat_trace(FILE *f, const pf_stats_snap *s)
{
	int first = 1;
	fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
	fputs("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":", f);
	stat_json_str(f, s->label[0] ? s->label : "pipefeed", sizeof(s->label));
	fputs("}},\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"consumer\"}}", f);
	first = 0;
	int copies = 0;
	for (size_t k = 0; k < s->nsteps; k++)
		copies |= s->steprecs[k].copy_lead_us > 0;
	if (copies)
		fputs(",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":2,\"args\":{\"name\":\"copy stream (h2d)\"}}", f);
	for (size_t k = 0; k < s->nsteps; k++) {
		const pf_stats_steprec *r = &s->steprecs[k];
		double end = r->t_ns * 1e-3, comp = r->compute_ns * 1e-3, st = r->stall_ns * 1e-3;
		double start = end - comp - st;
		if (start < 0)
			start = 0;
		if (r->stall_ns)
			slice(f, &first, "stall", 1, start, st);
		slice(f, &first, "compute", 1, start + st, comp);
		if (r->copy_lead_us) {
			double c0 = end - r->copy_lead_us;
			slice(f, &first, "h2d copy", 2, c0 < 0 ? 0 : c0, r->h2d_ns * 1e-3);
		}
	}
	for (size_t k = 1; k < s->nsamples; k++) {
		const pf_stats_sample *a = &s->samples_ts[k - 1], *b = &s->samples_ts[k];
		double dt = (b->t_ns - a->t_ns) * 1e-9;
		if (!(dt > 0))
			continue;
		double ts = b->t_ns * 1e-3;
		double ds = (double)b->stall_ns - (double)a->stall_ns;
		double dc = (double)b->compute_ns - (double)a->compute_ns;
		if (ds + dc > 0)
			fprintf(f, ",\n{\"name\":\"stall share\",\"ph\":\"C\",\"pid\":1,\"ts\":%.3f,\"args\":{\"stall\":%.4f}}",
				ts, ds / (ds + dc));
		fprintf(f, ",\n{\"name\":\"throughput (elements/s)\",\"ph\":\"C\",\"pid\":1,\"ts\":%.3f,\"args\":{",
			ts);
		for (int i = 0; i < s->nstages; i++) {
			char key[48];
			snprintf(key, sizeof(key), "%d:%s", i, s->stages[i].name);
			fputs(i ? "," : "", f);
			stat_json_str(f, key, sizeof(key));
			fprintf(f, ":%.1f", ((double)b->st[i].elements - (double)a->st[i].elements) / dt);
		}
		fprintf(f, "}},\n{\"name\":\"busy share\",\"ph\":\"C\",\"pid\":1,\"ts\":%.3f,\"args\":{", ts);
		for (int i = 0; i < s->nstages; i++) {
			char key[48];
			int par = b->st[i].parallelism > 0 ? b->st[i].parallelism : 1;
			snprintf(key, sizeof(key), "%d:%s", i, s->stages[i].name);
			fputs(i ? "," : "", f);
			stat_json_str(f, key, sizeof(key));
			fprintf(f, ":%.4f", ((double)b->st[i].busy_ns - (double)a->st[i].busy_ns) /
				(dt * 1e9 * par));
		}
		fputs("}}", f);
	}
	for (size_t k = 0; k < s->nevents; k++) {
		const pf_stats_eventrec *e = &s->events[k];
		char name[96];
		snprintf(name, sizeof(name), "%s %s %lld->%lld",
			 e->stage >= 0 && e->stage < s->nstages ? s->stages[e->stage].name : "consumer",
			 e->knob, (long long)e->old_value, (long long)e->new_value);
		fputs(",\n{\"name\":", f);
		stat_json_str(f, name, sizeof(name));
		fprintf(f, ",\"ph\":\"i\",\"s\":\"g\",\"pid\":1,\"tid\":1,\"ts\":%.3f,\"args\":{\"reason\":",
			e->t_ns * 1e-3);
		stat_json_str(f, e->reason, sizeof(e->reason));
		fputs("}}", f);
	}
	fputs("\n]}\n", f);
	return ferror(f) ? -1 : 0;
}
