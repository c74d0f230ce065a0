#!/bin/sh
# t1024-fuzz-wds: the webdataset source's fuzz target (tar via libarchive,
# samples grouped by key, both damage policies) replays its corpus and runs
# seeded mutants of it without a crash (briefly here; `make fuzz` runs
# longer).
. "$srcdir/t/tap.sh"
[ -x "$top_builddir/fuzz/fuzz_wds" ] || skip_all "built without libarchive"
plan 1
fuzz_replay wds 3000 5
