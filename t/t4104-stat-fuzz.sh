#!/bin/sh
# t4104-stat-fuzz: the stats-file reader, with pipe-stat's analysis and
# outputs, replays its seed corpus and seeded mutants of it without a crash
# (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
t="$top_builddir/fuzz/fuzz_stats"
test -x "$t" || skip_all "fuzz/fuzz_stats not built (fuzz/stats.am not included by fuzz/Makemodule.am)"
plan 2
runs=${PF_FUZZ_RUNS:-20000}
n=`ls "$srcdir/fuzz/corpus/stats" | wc -l`
test "$n" -ge 3
ok $? "seed corpus has $n files"
if out=$("$t" -runs="$runs" -seed=11 "$srcdir/fuzz/corpus/stats" 2>&1); then
	ok 0 "fuzz_stats: corpus + $runs mutants clean"
else
	printf '%s\n' "$out" | tail -20 | sed 's/^/# /'
	ok 1 "fuzz_stats: corpus + $runs mutants clean"
fi
