/* stat_report.c - pipe-stat's text report and its JSON form. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stat.h"

static const char *stage_name(const pf_stats_snap *s, int i)
{
	return i >= 0 && i < s->nstages ? s->stages[i].name : "consumer";
}

/*
 * The never-starves ratio of the run, when its writer measured one: the
 * latest consumer event "never_starves" (doc/STATS.md: old = the step over
 * preloaded batches, new = the step through the pipeline, in ns).  NULL
 * when there is none (or it is not usable).
 */
static const pf_stats_eventrec *never_starves(const pf_stats_snap *s)
{
	for (size_t k = s->nevents; k-- > 0;) {
		const pf_stats_eventrec *e = &s->events[k];
		if (e->stage < 0 && !strcmp(e->knob, "never_starves") && e->old_value > 0 &&
		    e->new_value > 0)
			return e;
	}
	return NULL;
}

/* Event ns's ratio without the start-up (the first step's wait, spread
 * over the run's steps): what a longer run would show. */
static double steady_ratio(const pf_stats_snap *s, const pf_stats_eventrec *ns)
{
	double first = s->steps ? (double)s->first_stall_ns / (double)s->steps : 0;
	double pipe = (double)ns->new_value - first;
	return pipe > 0 ? pipe / (double)ns->old_value : 0;
}

int stat_report(FILE *f, const pf_stats_snap *s, const stat_analysis *a)
{
	fprintf(f, "run:         %s%s\n", s->label[0] ? s->label : "(no label)",
		s->finished ? "" : "  [running]");
	const pf_stats_eventrec *sv = stat_serving(s);
	if (sv)
		return stat_serve_report(f, s, a, sv);
	fprintf(f, "wall time:   %.2f s (consumer loop), %.2f s since the file was created\n",
		a->wall_s, a->file_s);
	fprintf(f, "steps:       %llu steps, %llu samples, %.0f samples/s\n",
		(unsigned long long)a->steps, (unsigned long long)a->samples, a->samples_per_s);
	if (a->stall_share >= 0)
		fprintf(f, "stall:       %.1f%% of the loop: %s\n", 100 * a->stall_share,
			stat_verdict_name(a->verdict));
	else
		fprintf(f, "stall:       %s\n", stat_verdict_name(a->verdict));
	if (a->steps)
		fprintf(f, "start-up:    first batch waited %.1f ms; stall without it %.1f%%\n",
			a->startup_ms, 100 * a->steady_stall_share);
	fprintf(f, "per step:    stall p50 %.3f ms p99 %.3f ms; step p50 %.3f ms p99 %.3f ms; compute p50 %.3f ms\n",
		a->stall_p50_ms, a->stall_p99_ms, a->step_p50_ms, a->step_p99_ms,
		a->compute_p50_ms);
	if (s->h2d_ns)
		fprintf(f, "h2d copies:  %.3f s in all, %.1f us per step (device time on the copy stream)\n",
			s->h2d_ns * 1e-9, s->steps ? s->h2d_ns * 1e-3 / (double)s->steps : 0.0);
	const pf_stats_eventrec *ns = never_starves(s);
	if (ns)
		fprintf(f, "never-starves: ratio %.3f: step %.3f ms through the pipeline, %.3f ms over preloaded batches; %.3f without the start-up\n",
			(double)ns->new_value / (double)ns->old_value, ns->new_value * 1e-6,
			ns->old_value * 1e-6, steady_ratio(s, ns));
	fprintf(f, "\n %-2s %-16s %12s %9s %7s %7s %7s %8s %5s %5s %6s %6s\n", "#", "stage", "rate/s",
		"self s", "busy", "input", "wait", "blocked", "par", "depth", "fill", "cpu");
	for (int i = 0; i < a->nops; i++) {
		const stat_op *o = &a->ops[i];
		char fill[16] = "     -";
		char cpu[16] = "     -";
		if (o->fill >= 0)
			snprintf(fill, sizeof(fill), "%5.1f%%", 100 * o->fill);
		if (s->stages[i].cpu_ns && o->self_s > 0)
			snprintf(cpu, sizeof(cpu), "%5.1f%%", 100 * fmin(1.0, s->stages[i].cpu_ns * 1e-9 / o->self_s));
		fprintf(f, " %-2d %-16.16s %12.1f %9.3f %6.1f%% %6.1f%% %6.1f%% %7.1f%% %5d %5d %6s %6s%s%s\n",
			i, o->name, o->rate, o->self_s, 100 * o->util, 100 * o->input_share,
			100 * o->wait_share, 100 * o->blocked_share, o->parallelism, o->depth,
			fill, cpu, o->autotuned ? " auto" : "", i == a->bottleneck ? "  <- bottleneck" : "");
	}
	fprintf(f, "  (busy: self time over wall x parallelism; input: share of all stages' self time;\n"
		   "   fill: mean elements in the stage's buffer over its depth, sampled;\n"
		   "   cpu: CPU time over self time, where measured: low means its work waits)\n");
	for (int i = 0; i < s->nstages; i++) {
		if (s->stages[i].corrupt_blocks)
			fprintf(f, "corrupt:     %s skipped %llu damaged blocks (%llu records)\n",
				s->stages[i].name, (unsigned long long)s->stages[i].corrupt_blocks,
				(unsigned long long)s->stages[i].skipped_records);
		if (s->stages[i].dropped_samples)
			fprintf(f, "dropped:     %s dropped %llu samples its map function failed on\n",
				s->stages[i].name, (unsigned long long)s->stages[i].dropped_samples);
	}
	if (s->drops_total) {
		fprintf(f, "dropped samples: %llu%s\n", (unsigned long long)s->drops_total,
			s->drops_total > s->ndrops ? " (the first ones recorded)" : "");
		for (size_t k = 0; k < s->ndrops && k < 10; k++) {
			const pf_stats_droprec *d = &s->drops[k];
			if (d->path[0])
				fprintf(f, "  %s record %llu (sample %llu) in %s: %s\n", d->path,
					(unsigned long long)d->record, (unsigned long long)d->id, d->op, d->msg);
			else
				fprintf(f, "  sample %llu in %s: %s\n", (unsigned long long)d->id, d->op, d->msg);
		}
		if (s->ndrops > 10)
			fprintf(f, "  ... %zu more recorded (--json lists them)\n", s->ndrops - 10);
	}
	fputc('\n', f);
	const char *busiest = a->busiest >= 0 ? a->ops[a->busiest].name : "none";
	double bu = a->busiest >= 0 ? 100 * a->ops[a->busiest].util : 0.0;
	if (a->bottleneck >= 0)
		fprintf(f, "bottleneck:  %s (stage %d, %.0f%% busy)\n", a->ops[a->bottleneck].name,
			a->bottleneck, 100 * a->ops[a->bottleneck].util);
	else if (a->bottleneck == B_CONSUMER)
		fprintf(f, "bottleneck:  the consumer (busiest stage: %s, %.0f%% busy)\n", busiest, bu);
	else if (a->bottleneck == B_STARTUP)
		fprintf(f, "bottleneck:  start-up (the first batch took %.1f ms; after it the stall is %.1f%%)\n",
			a->startup_ms, 100 * a->steady_stall_share);
	else if (a->bottleneck == B_FEED)
		fprintf(f, "bottleneck:  the device feed, after the pipeline (%s blocked %.0f%% of the time)\n",
			a->ops[a->nops - 1].name, 100 * a->ops[a->nops - 1].blocked_share);
	else if (a->bottleneck == B_BURSTS)
		fprintf(f, "bottleneck:  no stage saturated (busiest %s %.0f%%): bursts\n", busiest, bu);
	fprintf(f, "suggestion:  %s\n", a->suggestion);
	fprintf(f, "knobs:      ");
	int any = 0;
	for (int i = 0; i < a->nops; i++)
		if (a->ops[i].parallelism > 1 || a->ops[i].depth || a->ops[i].autotuned) {
			fprintf(f, " %s: par %d depth %d%s;", a->ops[i].name, a->ops[i].parallelism,
				a->ops[i].depth, a->ops[i].autotuned ? " (AUTOTUNE)" : "");
			any = 1;
		}
	fprintf(f, "%s\n", any ? "" : " (none)");
	if (s->events_total) {
		fprintf(f, "knob changes: %llu%s\n", (unsigned long long)s->events_total,
			s->events_total > s->nevents ? " (latest shown)" : "");
		size_t from = s->nevents > 10 ? s->nevents - 10 : 0;
		for (size_t k = from; k < s->nevents; k++) {
			const pf_stats_eventrec *e = &s->events[k];
			fprintf(f, "  %8.3f s  %s %s %lld -> %lld  (%s)\n", e->t_ns * 1e-9,
				stage_name(s, e->stage), e->knob, (long long)e->old_value,
				(long long)e->new_value, e->reason);
		}
	}
	if (a->file_s > 0)
		fprintf(f, "stats cost:  sampler %.1f ms CPU (%.3f%% of one core over the run)\n",
			s->sampler_cpu_ns * 1e-6, 100 * s->sampler_cpu_ns * 1e-9 / a->file_s);
	if (isfinite(a->usd_per_msample))
		fprintf(f, "cost:        $%.4f per million samples at $%.2f/hour\n",
			a->usd_per_msample, a->usd_per_hour);
	return ferror(f) ? -1 : 0;
}

void stat_json_str(FILE *f, const char *str, size_t max)
{
	fputc('"', f);
	for (size_t i = 0; str && i < max && str[i]; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* A finite number, or null. */
static void num(FILE *f, const char *key, double v, int comma)
{
	if (isfinite(v))
		fprintf(f, "\"%s\":%.6g%s", key, v, comma ? "," : "");
	else
		fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
}

int stat_json(FILE *f, const pf_stats_snap *s, const stat_analysis *a)
{
	fputs("{\"label\":", f);
	stat_json_str(f, s->label, sizeof(s->label));
	fprintf(f, ",\"finished\":%s,\"steps\":%llu,\"samples\":%llu,", s->finished ? "true" : "false",
		(unsigned long long)a->steps, (unsigned long long)a->samples);
	num(f, "wall_s", a->wall_s, 1);
	num(f, "samples_per_s", a->samples_per_s, 1);
	if (a->stall_share >= 0)
		num(f, "stall_share", a->stall_share, 1);
	else
		fputs("\"stall_share\":null,", f);
	fputs("\"verdict\":", f);
	stat_json_str(f, stat_verdict_name(a->verdict), 64);
	fprintf(f, ",\"input_bound\":%s,", a->verdict == V_MODERATE || a->verdict == V_HIGH
		? "true" : a->verdict == V_NOT ? "false" : "null");
	num(f, "stall_p50_ms", a->stall_p50_ms, 1);
	num(f, "stall_p99_ms", a->stall_p99_ms, 1);
	num(f, "step_p50_ms", a->step_p50_ms, 1);
	num(f, "step_p99_ms", a->step_p99_ms, 1);
	num(f, "h2d_s", s->h2d_ns * 1e-9, 1);
	num(f, "startup_ms", a->startup_ms, 1);
	num(f, "steady_stall_share", a->steady_stall_share, 1);
	stat_serve_json(f, s);
	const pf_stats_eventrec *ns = never_starves(s);
	if (ns)
		fprintf(f, "\"never_starves_ratio\":%.6g,\"step_s\":%.6g,\"preloaded_step_s\":%.6g,"
			"\"never_starves_ratio_steady\":%.6g,",
			(double)ns->new_value / (double)ns->old_value, ns->new_value * 1e-9,
			ns->old_value * 1e-9, steady_ratio(s, ns));
	else
		fputs("\"never_starves_ratio\":null,\"step_s\":null,\"preloaded_step_s\":null,"
		      "\"never_starves_ratio_steady\":null,", f);
	fputs("\"bottleneck\":", f);
	stat_json_str(f, stat_bottleneck_name(a), 32);
	fputs(",\"busiest_stage\":", f);
	if (a->busiest >= 0)
		stat_json_str(f, a->ops[a->busiest].name, 32);
	else
		fputs("null", f);
	fputs(",\"suggestion\":", f);
	stat_json_str(f, a->suggestion, sizeof(a->suggestion));
	fputc(',', f);
	num(f, "usd_per_hour", a->usd_per_hour, 1);
	num(f, "usd_per_million_samples", a->usd_per_msample, 1);
	fputs("\"ops\":[", f);
	for (int i = 0; i < a->nops; i++) {
		const stat_op *o = &a->ops[i];
		fprintf(f, "%s{\"stage\":%d,\"name\":", i ? "," : "", i);
		stat_json_str(f, o->name, 32);
		fprintf(f, ",\"elements\":%llu,\"bytes\":%llu,", (unsigned long long)s->stages[i].now.elements,
			(unsigned long long)s->stages[i].now.bytes);
		num(f, "rate_per_s", o->rate, 1);
		num(f, "self_s", o->self_s, 1);
		num(f, "busy_share", o->util, 1);
		num(f, "input_share", o->input_share, 1);
		num(f, "wait_share", o->wait_share, 1);
		num(f, "blocked_share", o->blocked_share, 1);
		num(f, "occupancy", o->occupancy, 1);
		num(f, "cpu_s", s->stages[i].cpu_ns * 1e-9, 1);
		fprintf(f, "\"parallelism\":%d,\"depth\":%d,\"autotuned\":%s,\"buffer_bytes\":%llu,"
			"\"corrupt_blocks\":%llu,\"skipped_records\":%llu,\"dropped_samples\":%llu}",
			o->parallelism, o->depth, o->autotuned ? "true" : "false",
			(unsigned long long)s->stages[i].buffer_bytes,
			(unsigned long long)s->stages[i].corrupt_blocks,
			(unsigned long long)s->stages[i].skipped_records,
			(unsigned long long)s->stages[i].dropped_samples);
	}
	fprintf(f, "],\"dropped_total\":%llu,\"dropped\":[", (unsigned long long)s->drops_total);
	for (size_t k = 0; k < s->ndrops; k++) {
		const pf_stats_droprec *d = &s->drops[k];
		fprintf(f, "%s{\"id\":%llu,\"file\":%u,\"record\":%llu,\"path\":", k ? "," : "",
			(unsigned long long)d->id, d->file, (unsigned long long)d->record);
		stat_json_str(f, d->path, sizeof(d->path));
		fputs(",\"op\":", f);
		stat_json_str(f, d->op, sizeof(d->op));
		fputs(",\"msg\":", f);
		stat_json_str(f, d->msg, sizeof(d->msg));
		fputc('}', f);
	}
	fprintf(f, "],\"sampler_cpu_s\":%.6f,\"events_total\":%llu,\"events\":[",
		s->sampler_cpu_ns * 1e-9, (unsigned long long)s->events_total);
	for (size_t k = 0; k < s->nevents; k++) {
		const pf_stats_eventrec *e = &s->events[k];
		fprintf(f, "%s{\"t_s\":%.6f,\"stage\":", k ? "," : "", e->t_ns * 1e-9);
		stat_json_str(f, stage_name(s, e->stage), 32);
		fputs(",\"knob\":", f);
		stat_json_str(f, e->knob, sizeof(e->knob));
		fprintf(f, ",\"old\":%lld,\"new\":%lld,\"reason\":", (long long)e->old_value,
			(long long)e->new_value);
		stat_json_str(f, e->reason, sizeof(e->reason));
		fputc('}', f);
	}
	fputs("]}\n", f);
	return ferror(f) ? -1 : 0;
}
