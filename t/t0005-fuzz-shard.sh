#!/bin/sh
# t0005-fuzz-shard: the shard fuzz target replays its corpus and runs seeded
# mutants of it without a crash (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 1
fuzz_replay shard 50000 1
