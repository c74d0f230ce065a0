#!/bin/sh
# bench/serve-overload.sh - pipe-serve at 3x its capacity, in one
# invocation: a model big enough that the server's compute, not the client,
# is the limit (mlp:16-2048-2048-4 on synthetic data, cpu backend), served
# with --max-batch-size MBS (4) --batch-timeout-us 1000 --max-enqueued
# MAXQ (16) --http-threads HTTP (4, pipe-serve's default).  The capacity is what CONCURRENCY (16) closed-loop clients
# get answered; then REPEAT (3) alternated pairs of open-loop runs
# (pipe-load --rate, Poisson arrivals, latency from the scheduled time) at
# 1x and 3x that rate.  Prints each run, then the medians: the accepted
# p99 at 3x against 1x (goal <= 2x), the refusals answered within 1 ms by
# the server (goal: all), the queue's maximum, the resident memory before
# and after.
#   usage: bench/serve-overload.sh [BUILDDIR]  (env: MBS MAXQ HTTP CONCURRENCY DURATION REPEAT)
set -e
b=${1:-.}
mbs=${MBS:-4}
maxq=${MAXQ:-16}
ht=${HTTP:-4}
c=${CONCURRENCY:-16}
d=${DURATION:-3}
rep=${REPEAT:-3}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
pid=
"$b/t/train-gen" "$tmp/syn.raw" 2000 1
"$b/pipe-pack" raw --record-size 17 --field image:u8[16] --field label:u8 -o "$tmp/syn" \
	--shards 1 "$tmp/syn.raw" >/dev/null
mkdir -p "$tmp/models/big/1"
"$b/pipe-train" --device cpu --model mlp:16-2048-2048-4 --batch 32 --epochs 1 --seed 1 \
	--save "$tmp/models/big/1/model.ckpt" "$tmp/syn-*.pfs" >/dev/null 2>&1
"$b/pipe-serve" --model-dir "$tmp/models" --port 0 --access-log none --max-batch-size "$mbs" \
	--batch-timeout-us 1000 --max-enqueued "$maxq" --http-threads "$ht" >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for i in $(seq 100); do
	port=$(awk '/listening/ { print $NF }' "$tmp/out" 2>/dev/null || true)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { echo "pipe-serve did not start: $(tail -1 "$tmp/err")"; exit 1; }
url=http://127.0.0.1:$port/v2/models/big/infer
load() { "$b/pipe-load" --dim 16 --binary --json --warmup 0.5 --duration "$d" "$@" "$url"; }
jf() { echo "$1" | sed -n "s/.*\"$2\":\"*\([-0-9.]*\).*/\1/p"; }
line=$(load --concurrency "$c")
cap=$(jf "$line" rps)
echo "pipe-serve --max-batch-size $mbs --batch-timeout-us 1000 --max-enqueued $maxq --http-threads $ht"
echo "capacity ($c clients, closed loop): $line"
r3=$(awk -v c="$cap" 'BEGIN { printf "%.0f", 3 * c }')
rss0=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^process_resident_memory_bytes/ { printf "%.1f", $2 / 1048576 }')
for r in $(seq "$rep"); do
	l1=$(load --rate "$cap" --seed "$r")
	l3=$(load --rate "$r3" --seed "$r")
	echo "1x: $l1"
	echo "3x: $l3"
	echo "$(jf "$l1" p99_ms) $(jf "$l3" p99_ms) $(jf "$l3" server_refused_1ms_pct) $(jf "$l3" server_queued_max) $(jf "$l3" server_rss_max_mb) $(jf "$l3" sent_rps) $(jf "$l3" ok_rps) $(jf "$l3" refused_p99_ms) $(jf "$l3" late_p99_ms)" >>"$tmp/rows"
done
kill -TERM $pid
wait $pid && rc=0 || rc=$?
pid=
med() { sort -n -k"$1" "$tmp/rows" | awk -v k="$1" '{ v[NR] = $k } END { print v[int((NR + 1) / 2)] }'; }
awk -v cap="$cap" -v p1="$(med 1)" -v p3="$(med 2)" -v fast="$(med 3)" -v qm="$(med 4)" \
	-v rss0="$rss0" -v rss="$(med 5)" -v sent="$(med 6)" -v okr="$(med 7)" -v rp="$(med 8)" \
	-v late="$(med 9)" -v maxq="$maxq" -v rc="$rc" 'BEGIN {
	printf "capacity %.0f req/s; at 3x: %.0f req/s sent, %.0f answered (medians of the runs)\n", cap, sent, okr
	printf "accepted p99: %.2f ms at 1x, %.2f ms at 3x: %.2fx (goal <= 2x)\n", p1, p3, p3 / p1
	printf "refusals answered by the server within 1 ms: %.1f%%; client-side refusal p99 %.2f ms (client lateness p99 %.2f ms)\n", fast, rp, late
	printf "queue at most %d requests (--max-enqueued %d); resident memory %.1f MB before the runs, %.1f MB at 3x\n", qm, maxq, rss0, rss
	printf "pipe-serve exit status after SIGTERM: %d\n", rc }'
