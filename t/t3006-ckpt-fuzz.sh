#!/bin/sh
# t3006-ckpt-fuzz: pipe-train's checkpoint reader (file checks, model load,
# run section parser) replays its seed corpus and seeded mutants of it,
# checksums recomputed, without a crash (briefly here; `make fuzz` runs
# longer).
. "$srcdir/t/tap.sh"
t="$top_builddir/fuzz/fuzz_ckpt"
test -x "$t" || skip_all "fuzz/fuzz_ckpt not built"
plan 2
runs=${PF_FUZZ_RUNS:-4000}
n=`ls "$srcdir/fuzz/corpus/ckpt" | wc -l`
test "$n" -ge 4
ok $? "seed corpus has $n files"
if out=$("$t" -runs="$runs" -seed=13 "$srcdir/fuzz/corpus/ckpt" 2>&1); then
	ok 0 "fuzz_ckpt: corpus + $runs mutants clean"
else
	printf '%s\n' "$out" | tail -20 | sed 's/^/# /'
	ok 1 "fuzz_ckpt: corpus + $runs mutants clean"
fi
