#!/bin/sh
# t5102-train-resume: pipe-train interrupted (--stop-after-steps, a real
# SIGINT, SIGTERM) and resumed with --resume FILE alone (other thread
# counts) trains on exactly the batches of the uninterrupted run: the
# concatenated --fingerprint files are equal, and so are the final model
# (bit for bit, cpu backend) and the reported loss and test accuracy.  A
# checkpoint at an epoch's end resumes too, a run can be interrupted again
# after a resume, flags that contradict the checkpoint are refused, a
# damaged checkpoint is an error naming the file and offset, a mid-epoch
# checkpoint of an older build (the older interleave order: no pos_order)
# is refused saying so while its epoch-end one resumes, and the
# --on-corrupt / --max-corrupt / --isolate-map flags parse.
. "$srcdir/t/tap.sh"
plan 46
tmp=`tap_tmp t5102`
b=$top_builddir
"$b/t/train-gen" "$tmp/train.raw" 4000 1 && "$b/t/train-gen" "$tmp/test.raw" 1000 2 &&
"$b/pipe-pack" raw --record-size 17 --field image:u8[16] --field label:u8 \
	-o "$tmp/syn-train" --shards 2 "$tmp/train.raw" >/dev/null &&
"$b/pipe-pack" raw --record-size 17 --field image:u8[16] --field label:u8 \
	-o "$tmp/syn-test" "$tmp/test.raw" >/dev/null
ok $? "synthetic shards packed"

# 4000 records, batch 32: 125 steps per epoch, 375 in 3 epochs
train() {
	timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 \
		--lr 0.01 --seed 7 --shuffle 500 --epochs 3 \
		--eval "$tmp/syn-test-*.pfs" "$@" "$tmp/syn-train-*.pfs"
}
resume() {
	timeout 120 "$b/pipe-train" --resume "$@"
}
field() { # field NAME FILE: a number from a --json object
	sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"
}

train --map-threads 1 --json --fingerprint "$tmp/full.fp" --save "$tmp/full.model" \
	>"$tmp/full.json" 2>"$tmp/full.log"
ok $? "uninterrupted run"
is "`wc -l <"$tmp/full.fp" | tr -d ' '`" 375 "one fingerprint line per training batch"

# --- interrupted mid epoch (--stop-after-steps), resumed with other threads
train --map-threads 1 --checkpoint "$tmp/a.ckpt" --stop-after-steps 200 \
	--fingerprint "$tmp/a1.fp" >/dev/null 2>"$tmp/a1.log"
is $? 130 "--stop-after-steps 200: exit status 130"
like "`cat "$tmp/a1.log"`" "interrupted at epoch 2 step 75; checkpoint written to $tmp/a.ckpt; resume with: pipe-train --resume $tmp/a.ckpt" \
	"the message says where it stopped and how to resume"
test -s "$tmp/a.ckpt" && ! ls "$tmp"/a.ckpt.tmp.* >/dev/null 2>&1
ok $? "the checkpoint is written, no temporary file left"
size=`wc -c <"$tmp/a.ckpt" | tr -d ' '`
test "$size" -lt 16384
ok $? "the checkpoint is small ($size bytes: counters, not buffers)"
resume "$tmp/a.ckpt" --map-threads 3 --read-threads 1 --json \
	--fingerprint "$tmp/a2.fp" --save "$tmp/a.model" >"$tmp/a.json" 2>"$tmp/a2.log"
ok $? "resumed with --map-threads 3 --read-threads 1"
like "`cat "$tmp/a2.log"`" "resuming $tmp/a.ckpt at epoch 2 step 75" "the resume says where it starts"
cat "$tmp/a1.fp" "$tmp/a2.fp" | cmp -s - "$tmp/full.fp"
ok $? "interrupted + resumed fingerprints equal the uninterrupted run's"
cmp -s "$tmp/a.model" "$tmp/full.model"
ok $? "the final model is bit for bit the uninterrupted run's"
is "`field train_loss "$tmp/a.json"`" "`field train_loss "$tmp/full.json"`" "the same final train loss"
is "`field test_accuracy "$tmp/a.json"`" "`field test_accuracy "$tmp/full.json"`" "the same final test accuracy"
is "`field steps "$tmp/a.json"`" 375 "steps count the whole run"

# --- at an epoch's end, then again after the resume
train --map-threads 2 --checkpoint "$tmp/e.ckpt" --stop-after-steps 125 \
	--fingerprint "$tmp/e1.fp" >"$tmp/e1.log" 2>&1
is $? 130 "stopped at the end of epoch 1: exit status 130"
like "`cat "$tmp/e1.log"`" "epoch 1/3: loss" "the epoch was finished (its line printed) before stopping"
resume "$tmp/e.ckpt" --map-threads 1 --stop-after-steps 300 \
	--fingerprint "$tmp/e2.fp" >/dev/null 2>"$tmp/e2.log"
is $? 130 "resumed at epoch 2 and interrupted again at step 300"
like "`cat "$tmp/e2.log"`" "resuming $tmp/e.ckpt at epoch 2 step 0" "the epoch-end checkpoint resumes at the next epoch's start"
resume "$tmp/e.ckpt" --read-threads 2 --fingerprint "$tmp/e3.fp" --save "$tmp/e.model" \
	>/dev/null 2>&1
ok $? "resumed a second time, ran to the end"
cat "$tmp/e1.fp" "$tmp/e2.fp" "$tmp/e3.fp" | cmp -s - "$tmp/full.fp"
ok $? "three pieces of fingerprints equal the uninterrupted run's"
cmp -s "$tmp/e.model" "$tmp/full.model"
ok $? "and the final model too"
resume "$tmp/e.ckpt" >"$tmp/done.out" 2>&1
ok $? "resuming a complete run exits 0"
like "`cat "$tmp/done.out"`" "the run is complete" "and says the run is complete"

# --- a finished run trained on: 2 epochs, then --epochs 3 from its
# checkpoint, equals the 3-epoch run
train --epochs 2 --checkpoint "$tmp/x.ckpt" --fingerprint "$tmp/x1.fp" >/dev/null 2>&1
ok $? "a 2-epoch run with --checkpoint"
resume "$tmp/x.ckpt" --epochs 3 --map-threads 3 --fingerprint "$tmp/x2.fp" \
	--save "$tmp/x.model" >/dev/null 2>"$tmp/x2.log"
ok $? "resumed with --epochs 3"
like "`cat "$tmp/x2.log"`" "resuming $tmp/x.ckpt at epoch 3 step 0" "it trains on from epoch 3"
cat "$tmp/x1.fp" "$tmp/x2.fp" | cmp -s - "$tmp/full.fp" && cmp -s "$tmp/x.model" "$tmp/full.model"
ok $? "the same batches and the same final model as the 3-epoch run"

# --- a real SIGINT while a slow pipeline runs (sleep 150 us per sample:
# at least 1.2 s for 2 epochs), and SIGTERM without --checkpoint
slow='map(decode) | sleep(150) | shuffle(500) | batch(32) | prefetch(2)'
strain() {
	"$b/pipe-train" --device cpu --model mlp:16-32-4 --lr 0.01 --seed 7 --epochs 2 \
		--pipeline "$slow" --quiet "$@" "$tmp/syn-train-*.pfs"
}
strain --fingerprint "$tmp/sfull.fp" --save "$tmp/sfull.model" >/dev/null 2>&1
ok $? "uninterrupted run of the slow pipeline"
# (started without the function: $! must be pipe-train itself)
# (the signal goes once its handler is in place: after the "pipe-train:
# cpu: ..." line; a background job of sh starts with SIGINT ignored)
started() {
	n=0
	while ! grep -q "^pipe-train: cpu" "$1" 2>/dev/null && [ $n -lt 200 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	sleep 0.2
}
"$b/pipe-train" --device cpu --model mlp:16-32-4 --lr 0.01 --seed 7 --epochs 2 \
	--pipeline "$slow" --fingerprint "$tmp/s1.fp" --checkpoint "$tmp/s.ckpt" \
	"$tmp/syn-train-*.pfs" >/dev/null 2>"$tmp/s1.log" &
pid=$!
started "$tmp/s1.log"
kill -INT $pid
wait $pid
is $? 130 "SIGINT: exit status 130"
like "`cat "$tmp/s1.log"`" "checkpoint written to $tmp/s.ckpt; resume with: pipe-train --resume $tmp/s.ckpt" \
	"SIGINT: the checkpoint message"
resume "$tmp/s.ckpt" --quiet --fingerprint "$tmp/s2.fp" --save "$tmp/s.model" >/dev/null 2>&1
ok $? "resumed after SIGINT"
cat "$tmp/s1.fp" "$tmp/s2.fp" | cmp -s - "$tmp/sfull.fp" && cmp -s "$tmp/s.model" "$tmp/sfull.model"
ok $? "after SIGINT: the same batches and the same final model"
"$b/pipe-train" --device cpu --model mlp:16-32-4 --epochs 2 --pipeline "$slow" \
	"$tmp/syn-train-*.pfs" >/dev/null 2>"$tmp/t.log" &
pid=$!
started "$tmp/t.log"
kill -TERM $pid
wait $pid
is $? 130 "SIGTERM without --checkpoint: exit status 130"
like "`cat "$tmp/t.log"`" "no checkpoint written" "and it says no checkpoint was asked for"

# --- checkpoints of an older build: its run section has no pos_order (the
# position counts in the older interleave order, version 1)
train --map-threads 1 --checkpoint "$tmp/m.ckpt" --stop-after-steps 60 >/dev/null 2>&1
"$b/t/ckpt-run-edit" "$tmp/m.ckpt" "$tmp/old-mid.ckpt" pos_order
ok $? "an older build's mid-epoch checkpoint made (pos_order taken out)"
resume "$tmp/old-mid.ckpt" >/dev/null 2>"$tmp/old-mid.log"
is $? 1 "resuming it fails"
like "`cat "$tmp/old-mid.log"`" "position from an older interleave order (version 1" \
	"the message says it counts in an older interleave order"
train --map-threads 1 --checkpoint "$tmp/n.ckpt" --stop-after-steps 125 >/dev/null 2>&1
"$b/t/ckpt-run-edit" "$tmp/n.ckpt" "$tmp/old-end.ckpt" pos_order &&
resume "$tmp/old-end.ckpt" --fingerprint "$tmp/old-end.fp" >/dev/null 2>&1 &&
tail -n 250 "$tmp/full.fp" | cmp -s - "$tmp/old-end.fp"
ok $? "an older build's epoch-end checkpoint resumes, the same batches as the uninterrupted run"

# --- contradicting flags, damaged checkpoints
resume "$tmp/a.ckpt" --batch 64 >/dev/null 2>"$tmp/x.log"
is $? 2 "--resume with another --batch is a usage error"
like "`cat "$tmp/x.log"`" "--batch differs" "naming the flag"
cp "$tmp/a.ckpt" "$tmp/flip.ckpt"
printf 'Z' | dd of="$tmp/flip.ckpt" bs=1 seek=300 conv=notrunc 2>/dev/null
resume "$tmp/flip.ckpt" >/dev/null 2>"$tmp/flip.log"
st=$?
test $st -ne 0 && test $st -ne 130
ok $? "a flipped byte: exit status $st"
like "`cat "$tmp/flip.log"`" "$tmp/flip.ckpt: offset" "the message names the file and offset"
head -c 1000 "$tmp/a.ckpt" >"$tmp/short.ckpt"
resume "$tmp/short.ckpt" >/dev/null 2>"$tmp/short.log"
test $? -eq 1 && grep -q "short.ckpt: offset .*truncat" "$tmp/short.log"
ok $? "a truncated checkpoint: exit 1, file, offset and 'truncated' named"

# --- damaged-input flags
train --epochs 1 --on-corrupt skip --max-corrupt 5 --isolate-map --json \
	>"$tmp/c.json" 2>/dev/null
ok $? "--on-corrupt skip --max-corrupt 5 --isolate-map run"
c1=`field skipped_records "$tmp/c.json"`
c2=`field corrupt_blocks "$tmp/c.json"`
c3=`field dropped_samples "$tmp/c.json"`
is "$c1 $c2 $c3" "0 0 0" "--json reports skipped_records, corrupt_blocks, dropped_samples"
st=""
for bad in "--on-corrupt maybe" "--max-corrupt -1" "--on-corrupt fail --max-corrupt 3" \
	"--isolate-map --pipeline batch(4)"; do
	train $bad >/dev/null 2>&1
	st="$st$?"
done
is "$st" 2222 "bad --on-corrupt / --max-corrupt / --isolate-map uses are usage errors"
