#!/bin/sh
# t1029-fuzz-png: decode_image's PNG decoders against libpng: fuzz_png
# replays fuzz/corpus/png (every color type and bit depth, interlaced or
# not, every row filter, the chunks libpng acts on, split IDATs, small zlib
# windows; written by fuzz/mkcorpus_png.py) and seeded mutants of it, and
# aborts if the fast path or libspng gives other pixels than libpng's, or
# succeeds where libpng fails, or png=auto differs from libpng in any way.
. "$srcdir/t/tap.sh"
[ -x "$top_builddir/fuzz/fuzz_png" ] || skip_all "built without libpng"
plan 1
fuzz_replay png 30000 18
