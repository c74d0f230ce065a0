#!/bin/sh
# t4308-serve-stats: pipe-serve --stats writes a serving run in the stats
# file format and pipe-stat shows it as one: each batch a step (its oldest
# request's queue wait, its compute, its rows), the rows equal to those
# pipe-serve answered (/metrics), the batcher's settings, queue wait vs
# compute, batch fill and a suggestion; --json has a "serving" member; in
# adaptive mode the batch limit's changes are in the file as events; a
# stats file that cannot be created stops pipe-serve at start (exit 1).
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need load serve curl
plan 10
tmp=`tap_tmp t4308`
syn_shards "$tmp/syn" 500 1 1 && serve_model "$tmp"
ok $? "a model to serve"
serve_start "$tmp" --max-batch-size 8 --batch-timeout-us 500 --stats "$tmp/serve.pfstat"
url=http://127.0.0.1:$port/v1/models/syn:predict
timeout 60 "$b/pipe-load" --concurrency 8 --duration 0.5 --warmup 0.1 --dim 16 "$url" >/dev/null
ok $? "8 clients served with --stats FILE"
rows=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^pf_serve_rows_total / { print $2 }')
kill -TERM $pid
wait $pid
is $? 0 "SIGTERM: exit 0"
"$b/pipe-stat" "$tmp/serve.pfstat" >"$tmp/report"
ok $? "pipe-stat reads the file"
sed 's/^/# /' "$tmp/report"
n=$(awk '/^serving:/ { print $4 }' "$tmp/report")
is "$n" "$rows" "its rows are the rows pipe-serve answered ($rows)"
grep -q '^batcher:     max_batch_size 8, batch_timeout_us 500$' "$tmp/report" &&
grep -q '^batch fill:  [0-9.]* rows a batch' "$tmp/report" &&
grep -q '^queue wait:  p50 [0-9.]* ms p99' "$tmp/report" &&
grep -q '^split:       queue wait [0-9.]*%, compute' "$tmp/report" &&
grep -q '^suggestion:  ' "$tmp/report"
ok $? "... the batcher's settings, batch fill, queue wait vs compute, a suggestion"
"$b/pipe-stat" --json "$tmp/serve.pfstat" >"$tmp/json"
grep -q '"serving":{"batches":[1-9][0-9]*,"rows":'"$rows"',"max_batch_size":8,"batch_timeout_us":500,' "$tmp/json"
ok $? "--json: a serving member"

serve_start "$tmp" --max-batch-size 16 --slo-p99-ms 20 --stats "$tmp/adaptive.pfstat"
timeout 60 "$b/pipe-load" --concurrency 12 --duration 0.6 --warmup 0.1 --dim 16 \
	"http://127.0.0.1:$port/v1/models/syn:predict" >/dev/null
kill -TERM $pid
wait $pid
"$b/pipe-stat" --json "$tmp/adaptive.pfstat" >"$tmp/ajson"
grep -q '"batch_timeout_us":-1' "$tmp/ajson" && grep -q '"knob":"batch_limit","old":1,"new":2,' "$tmp/ajson"
ok $? "adaptive mode: marked, the batch limit's changes are events (1 -> 2 first)"
"$b/pipe-stat" "$tmp/adaptive.pfstat" | grep -q '^batch limit changes: [1-9]'
ok $? "... listed by pipe-stat"
"$b/pipe-serve" --model-dir "$tmp/models" --port 0 --stats "$tmp/no/such/dir/x.pfstat" >/dev/null 2>"$tmp/e"
r=$?
ok $([ $r = 1 ] && grep -q 'pipe-serve: --stats: ' "$tmp/e"; echo $?) "--stats in a missing directory: exit 1 with the reason ($(head -c 120 "$tmp/e"))"
