#!/bin/sh
# t0407-pack-fuzz: the IDX, .npy and TFRecord fuzz targets replay their seed
# corpora and run seeded mutants of them without a crash (briefly here;
# `make fuzz` runs longer).
. "$srcdir/t/tap.sh"
plan 3
for c in idx npy tfrecord; do
	fuzz_replay $c 20000 7
done
