/*
 * fuzz_stats - the stats-file reader on arbitrary bytes, then pipe-stat's
 * analysis and every output (report, JSON, trace, SVG) on what it accepted.
 * Must never crash, read out of bounds, or allocate without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>

#include "../tools/stat.h"
#include "pf_stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *null;
	pf_stats_snap *s;
	pf_error err = { 0 };
	if (!null && !(null = fopen("/dev/null", "w")))
		return 0;
	if (pf_stats_parse(&s, data, size, "fuzz", &err) < 0)
		return 0;
	stat_analysis a;
	stat_analyze(s, 3.0, &a);
	stat_report(null, s, &a);
	stat_json(null, s, &a);
	stat_trace(null, s);
	stat_svg(null, s);
	pf_stats_snap_free(s);
	return 0;
}
