#!/bin/sh
# t4104-stat-fuzz: the stats-file reader, with pipe-stat's analysis and
# outputs, replays its seed corpus and seeded mutants of it without a crash
# (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
test -x "$top_builddir/fuzz/fuzz_stats" || skip_all "fuzz/fuzz_stats not built (fuzz/stats.am not included by fuzz/Makemodule.am)"
plan 2
n=`ls "$srcdir/fuzz/corpus/stats" | wc -l`
test "$n" -ge 3
ok $? "seed corpus has $n files"
fuzz_replay stats 20000 11
