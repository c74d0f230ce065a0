#!/bin/sh
# t4307-load-rate: pipe-load's open loop (--rate) and --svg against
# pipe-serve: fixed arrivals send the rate asked and report it; Poisson
# arrivals follow their seed; latency is counted from the scheduled time,
# so a server stalled for 300 ms shows in the open loop's p90 where one
# closed-loop client hides it (coordinated omission); with all
# --max-inflight connections busy, sends are dropped and counted
# (scheduled = sent + dropped); answers other than 200/429/503 are errors
# (exit 1); --svg draws the levels; bad flags are usage errors.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need load serve
plan 16
tmp=`tap_tmp t4307`
jf() { sed -n "s/.*\"$2\":\"*\([-0-9.a-z]*\).*/\1/p" "$1" | head -1; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
syn_shards "$tmp/syn" 500 1 1 && serve_model "$tmp"
ok $? "a model to serve"
serve_start "$tmp" --max-batch-size 8 --batch-timeout-us 200
url=http://127.0.0.1:$port/v1/models/syn:predict
L() { timeout 60 "$b/pipe-load" --dim 16 --warmup 0.2 "$@"; }

L --rate 200 --arrivals fixed --duration 1 --json "$url" >"$tmp/fixed"
rc=$?
s=$(jf "$tmp/fixed" scheduled)
ok $([ $rc = 0 ] && [ "$s" -ge 199 ] && [ "$s" -le 201 ]; echo $?) "--rate 200 --arrivals fixed, 1 s: $s scheduled, exit $rc"
ok $([ "$(jf "$tmp/fixed" sent)" = "$s" ] && [ "$(jf "$tmp/fixed" ok)" = "$s" ] &&
	[ "$(jf "$tmp/fixed" refused)" = 0 ] && [ "$(jf "$tmp/fixed" dropped)" = 0 ]; echo $?) \
	"... all sent and answered, none refused or dropped"
sr=$(jf "$tmp/fixed" sent_rps)
ok $(le 180 "$sr" && le "$sr" 220; echo $?) "... achieved $sr req/s; p99 $(jf "$tmp/fixed" p99_ms) ms from the scheduled time"
sed 's/^/# /' "$tmp/fixed"

L --rate 300 --seed 5 --duration 1 --json "$url" >"$tmp/p5a"
L --rate 300 --seed 5 --duration 1 --json "$url" >"$tmp/p5b"
L --rate 300 --seed 6 --duration 1 --json "$url" >"$tmp/p6"
a=$(jf "$tmp/p5a" scheduled); bb=$(jf "$tmp/p5b" scheduled); c=$(jf "$tmp/p6" scheduled)
ok $([ "$a" = "$bb" ] && [ "$a" != "$c" ] && [ "$(jf "$tmp/p5a" arrivals)" = poisson ]; echo $?) \
	"Poisson arrivals: seed 5 schedules $a twice, seed 6 $c"

# a 300 ms stall in the middle of a 1.5 s window
stall() { sleep 0.9; kill -STOP $pid; sleep 0.3; kill -CONT $pid; }
stall & st=$!
L --rate 200 --arrivals fixed --duration 1.5 --json "$url" >"$tmp/open"
wait $st
stall & st=$!
L --concurrency 1 --duration 1.5 --json "$url" >"$tmp/closed"
wait $st
po=$(jf "$tmp/open" p90_ms); pc=$(jf "$tmp/closed" p90_ms)
ok $(le 50 "$po"; echo $?) "server stalled 300 ms: the open loop's p90 shows it ($po ms from the scheduled time)"
ok $(le "$pc" 50; echo $?) "... one closed-loop client's p90 hides it ($pc ms): coordinated omission"
stall & st=$!
L --rate 200 --arrivals fixed --duration 1.5 --max-inflight 2 --json "$url" >"$tmp/drop"
wait $st
d=$(jf "$tmp/drop" dropped); s=$(jf "$tmp/drop" scheduled); n=$(jf "$tmp/drop" sent)
ok $([ "$d" -gt 0 ] && [ $((n + d)) = "$s" ]; echo $?) "--max-inflight 2 through the stall: $d dropped, $n sent, $s scheduled"

L --rate 100,200 --arrivals fixed --duration 0.5 --svg "$tmp/rate.svg" "$url" >"$tmp/table"
rc=$?
ok $([ $rc = 0 ] && [ "$(grep -c '^ *[12]00\.0 ' "$tmp/table")" = 2 ]; echo $?) "--rate 100,200: a table row per rate (exit $rc)"
sed 's/^/# /' "$tmp/table"
ok $(grep -q '<svg' "$tmp/rate.svg" && grep -q 'p99 ms' "$tmp/rate.svg" && grep -q 'offered requests/s' "$tmp/rate.svg"; echo $?) \
	"--svg: the latency/throughput chart of the rates"
L --concurrency 1:2 --duration 0.3 --svg "$tmp/conc.svg" "$url" >/dev/null
ok $(grep -q '<svg' "$tmp/conc.svg" && grep -q 'clients' "$tmp/conc.svg"; echo $?) "--svg with --concurrency 1:2"

L --rate 50 --duration 0.3 --dim 3 "$url" >/dev/null
is $? 1 "--rate: answers the server refuses as malformed (400) are errors: exit 1"
kill -TERM $pid
wait $pid
"$b/pipe-load" --rate 0 "$url" 2>/dev/null
is $? 2 "--rate 0: usage error"
"$b/pipe-load" --rate 10,x "$url" 2>/dev/null
is $? 2 "--rate 10,x: usage error"
"$b/pipe-load" --rate 10 --arrivals sometimes "$url" 2>/dev/null
is $? 2 "--arrivals sometimes: usage error"
"$b/pipe-load" --rate 10 --sweep 'max_batch_size=1 batch_timeout_us=0' --serve x /p 2>/dev/null
is $? 2 "--rate with --sweep: usage error"
