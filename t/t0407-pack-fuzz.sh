#!/bin/sh
# t0407-pack-fuzz: the IDX, .npy and TFRecord fuzz targets replay their seed
# corpora and run seeded mutants of them without a crash (briefly here;
# `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 3
runs=${PF_FUZZ_RUNS:-20000}
for c in idx npy tfrecord; do
	t="$top_builddir/fuzz/fuzz_$c"
	if out=$("$t" -runs="$runs" -seed=7 "$srcdir/fuzz/corpus/$c" 2>&1); then
		ok 0 "fuzz_$c: corpus + $runs mutants clean"
	else
		printf '%s\n' "$out" | tail -20 | sed 's/^/# /'
		ok 1 "fuzz_$c: corpus + $runs mutants clean"
	fi
done
