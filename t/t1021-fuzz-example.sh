#!/bin/sh
# t1021-fuzz-example: the tf.train.Example reader's fuzz target replays its
# corpus (records of t/data/example) and runs seeded mutants of it without
# a crash (briefly here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 1
fuzz_replay example 50000 11
