#!/bin/sh
# t1025-fuzz-image: decode_image's fuzz target (format sniffing, the
# libraries' error paths, max_pixels, crop/resize placement) replays its
# corpus and runs seeded mutants of it without a crash (briefly here;
# `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
[ -x "$top_builddir/fuzz/fuzz_image" ] || skip_all "built without libpng or libjpeg-turbo"
plan 1
fuzz_replay image 20000 3
