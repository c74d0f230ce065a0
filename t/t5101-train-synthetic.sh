#!/bin/sh
# t5101-train-synthetic: pipe-train end to end on a small learnable dataset
# (label = argmax of 4 of 16 pixels) on the cpu backend: the loss falls and
# the test accuracy rises over the epochs, the same seed gives the same final
# loss with 1 and 4 map threads, --save writes a checkpoint, --json reports
# the figures, bad flags are usage errors.
. "$srcdir/t/tap.sh"
plan 10
tmp=`tap_tmp t5101`
b=$top_builddir
syn_shards "$tmp/syn-train" 4000 1 2
ok $? "synthetic training data generated and packed into shards"
syn_shards "$tmp/syn-test" 1000 2
ok $? "synthetic test data generated and packed"

train() {
	timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 \
		--lr 0.01 --seed 7 --shuffle 500 --eval "$tmp/syn-test-*.pfs" "$@" \
		"$tmp/syn-train-*.pfs"
}
train --epochs 6 --map-threads 1 --json --save "$tmp/model.ckpt" \
	>"$tmp/out1.json" 2>"$tmp/log1"
ok $? "pipe-train ran 6 epochs"
awk '/^epoch/ { for (i = 1; i < NF; i++) { if ($i == "loss") l = $(i+1); if ($i == "test_acc") a = $(i+1) }
     if (!n++) { l0 = l; a0 = a } } END { print l0, l, a0, a }' "$tmp/log1" >"$tmp/curve"
read l0 l1 a0 a1 <"$tmp/curve"
diag "loss $l0 -> $l1, test accuracy $a0 -> $a1"
awk -v x="$l0" -v y="$l1" 'BEGIN { exit !(y < 0.7 * x) }'
ok $? "training loss falls ($l0 -> $l1)"
awk -v x="$a0" -v y="$a1" 'BEGIN { exit !(y > x && y > 0.85) }'
ok $? "test accuracy rises above 0.85 ($a0 -> $a1)"
json=`cat "$tmp/out1.json"`
like "$json" '"images_per_sec":' "--json reports images_per_sec"
like "$json" '"stall_share":' "--json reports stall_share"
test -s "$tmp/model.ckpt"
ok $? "--save wrote a checkpoint"

# determinism: the same seed, 4 map threads, the same final loss
train --epochs 2 --map-threads 1 --json >"$tmp/d1.json" 2>/dev/null
train --epochs 2 --map-threads 4 --json >"$tmp/d4.json" 2>/dev/null
l_1=`sed 's/.*"train_loss":\([^,]*\).*/\1/' "$tmp/d1.json"`
l_4=`sed 's/.*"train_loss":\([^,]*\).*/\1/' "$tmp/d4.json"`
is "$l_4" "$l_1" "same seed: same final loss with 1 and 4 map threads"

"$b/pipe-train" --model cnn:3 "$tmp/syn-train-*.pfs" >/dev/null 2>&1
is $? 2 "an unknown model is a usage error"
