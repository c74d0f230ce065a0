#!/bin/sh
# t0005-fuzz-shard: the shard fuzz target replays its corpus and runs seeded
# mutants of it without a crash (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 1
t="$top_builddir/fuzz/fuzz_shard"
runs=${PF_FUZZ_RUNS:-50000}
if out=$("$t" -runs="$runs" -seed=1 "$srcdir/fuzz/corpus/shard" 2>&1); then
	ok 0 "fuzz_shard: corpus + $runs mutants clean"
else
	printf '%s\n' "$out" | tail -20 | sed 's/^/# /'
	ok 1 "fuzz_shard: corpus + $runs mutants clean"
fi
