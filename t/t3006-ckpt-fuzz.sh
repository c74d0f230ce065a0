#!/bin/sh
# t3006-ckpt-fuzz: pipe-train's checkpoint reader (file checks, model load,
# run section parser) replays its seed corpus and seeded mutants of it,
# checksums recomputed, without a crash (briefly here; `make fuzz` runs
# longer).
. "$srcdir/t/tap.sh"
test -x "$top_builddir/fuzz/fuzz_ckpt" || skip_all "fuzz/fuzz_ckpt not built"
plan 2
n=`ls "$srcdir/fuzz/corpus/ckpt" | wc -l`
test "$n" -ge 4
ok $? "seed corpus has $n files"
fuzz_replay ckpt 4000 13
