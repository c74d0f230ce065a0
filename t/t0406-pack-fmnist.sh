#!/bin/sh
# t0406-pack-fmnist: the real Fashion-MNIST (gzip'd IDX) packs into 60000 +
# 10000 records and verifies (skipped when the dataset is not installed);
# the default zstd level is 6 (README: zstd decode rate vs block size and level).
. "$srcdir/t/tap.sh"
d=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -r "$d/train-images-idx3-ubyte.gz" ] && [ -r "$d/t10k-labels-idx1-ubyte.gz" ] ||
	skip_all "Fashion-MNIST not found in $d"
plan 12
pp="$top_builddir/pipe-pack"
tmp=$(tap_tmp t0406)

out=$("$pp" idx --images "$d/train-images-idx3-ubyte.gz" --labels "$d/train-labels-idx1-ubyte.gz" \
	-o "$tmp/train" --shards 4 2>&1); ok $? "pack the training set into 4 shards"
like "$out" "total: 4 shards, 60000 records" "60000 training records"
like "$out" "train-00003-of-00004.pfs: 15000 records" "15000 records per shard"
out=$("$pp" idx --images "$d/t10k-images-idx3-ubyte.gz" --labels "$d/t10k-labels-idx1-ubyte.gz" \
	-o "$tmp/test" 2>&1); ok $? "pack the test set"
like "$out" "total: 1 shard, 10000 records" "10000 test records"
out=$("$pp" verify "$tmp"/train-*.pfs "$tmp/test-00000-of-00001.pfs" 2>&1); ok $? "verify all five shards"
like "$out" "5 files, 0 damaged; 70000 records" "verify counts 70000 records"
diag "$(printf '%s\n' "$out" | tail -1)"
out=$("$pp" info "$tmp/test-00000-of-00001.pfs" 2>&1); ok $? "info on the test shard"
like "$out" "schema:    image: u8?28,28?, label: u8" "schema image: u8[28,28], label: u8"
"$pp" idx -q --images "$d/t10k-images-idx3-ubyte.gz" --labels "$d/t10k-labels-idx1-ubyte.gz" \
	-o "$tmp/l6" --level 6 >/dev/null 2>&1 &&
"$pp" idx -q --images "$d/t10k-images-idx3-ubyte.gz" --labels "$d/t10k-labels-idx1-ubyte.gz" \
	-o "$tmp/l3" --level 3 >/dev/null 2>&1
cmp -s "$tmp/test-00000-of-00001.pfs" "$tmp/l6-00000-of-00001.pfs"; ok $? "the default level is 6: same bytes as --level 6"
! cmp -s "$tmp/test-00000-of-00001.pfs" "$tmp/l3-00000-of-00001.pfs"; ok $? "--level 3 writes other bytes"
s6=$(wc -c < "$tmp/l6-00000-of-00001.pfs"); s3=$(wc -c < "$tmp/l3-00000-of-00001.pfs")
[ "$s6" -lt "$s3" ]; ok $? "level 6 stores less than level 3 ($s6 < $s3 bytes)"
