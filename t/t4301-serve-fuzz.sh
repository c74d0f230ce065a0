#!/bin/sh
# t4301-serve-fuzz: pipe-serve's request path (TF Serving and KServe v2
# body parsers, the rows through a pf_batcher, the answer's encoding)
# replays its seed corpus and seeded mutants of it without a crash, a lost
# row or a refusal without a reason (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
test -x "$top_builddir/fuzz/fuzz_serve_json" || skip_all "fuzz/fuzz_serve_json not built (no jansson)"
plan 2
n=`ls "$srcdir/fuzz/corpus/serve_json" | wc -l`
test "$n" -ge 6
ok $? "seed corpus has $n files"
fuzz_replay serve_json 20000 17
