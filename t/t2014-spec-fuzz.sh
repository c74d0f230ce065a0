#!/bin/sh
# t2014-spec-fuzz: the spec-string parser (and the builder calls it makes)
# replays its seed corpus and seeded mutants of it without a crash (briefly
# here; `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 1
fuzz_replay spec 20000 5
