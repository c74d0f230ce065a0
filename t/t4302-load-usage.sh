#!/bin/sh
# t4302-load-usage: pipe-load against pipe-serve: a short closed-loop run at
# concurrency 1:4 prints one line per level with requests/s, the
# percentiles and the server's batch figures from /metrics, with no error;
# --json and --binary (KServe v2) work; bad flags are usage errors (exit 2);
# a server that refuses gives exit 1; --sweep runs the server per setting
# and marks the best under the SLO.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need load serve
plan 8
tmp=`tap_tmp t4302`
syn_shards "$tmp/syn" 1000 1 1 && serve_model "$tmp"
ok $? "a model to serve"
serve_start "$tmp" --max-batch-size 8 --batch-timeout-us 500
url=http://127.0.0.1:$port/v1/models/syn:predict
timeout 60 "$b/pipe-load" --concurrency 1:4 --duration 0.5 --warmup 0.2 --dim 16 "$url" >"$tmp/table"
rc=$?
n=$(awk 'NR > 1 && $2 > 0 && $7 == 0 && /batch [0-9.]+ rows/' "$tmp/table" | wc -l)
ok $([ $rc = 0 ] && [ "$n" = 3 ]; echo $?) "--concurrency 1:4: levels 1, 2, 4 with req/s, no error, the server's batch size ($n lines, exit $rc)"
cat "$tmp/table" | sed 's/^/# /'
timeout 60 "$b/pipe-load" --concurrency 2 --duration 0.5 --warmup 0.1 --dim 16 --json --binary \
	"http://127.0.0.1:$port/v2/models/syn/infer" >"$tmp/json"
ok $? "--binary --json (KServe v2 binary tensors): exit 0"
grep -q '"concurrency":2,"requests":[1-9][0-9]*,"errors":0,"rps":' "$tmp/json"
ok $? "... one JSON object with requests and rps"
timeout 60 "$b/pipe-load" --concurrency 1 --duration 0.3 --warmup 0 --dim 3 "$url" >/dev/null
is $? 1 "requests the server refuses (wrong width): exit 1"
kill -TERM $pid
wait $pid
# --sweep: the server once per setting, the table, the best marked
timeout 120 "$b/pipe-load" --sweep 'max_batch_size=1,8 batch_timeout_us=500' \
	--serve "$b/pipe-serve --model-dir $tmp/models" --slo-p99-ms 1000 \
	--concurrency 8 --duration 0.4 --warmup 0.1 --dim 16 /v1/models/syn:predict \
	>"$tmp/sweep" 2>"$tmp/sweep.err"
rc=$?
n=$(awk '$1 ~ /^[0-9]+$/ && $2 == 500 && $3 > 0' "$tmp/sweep" | wc -l)
ok $([ $rc = 0 ] && [ "$n" = 2 ]; echo $?) "--sweep: one row per setting with req/s ($n rows, exit $rc)"
sed 's/^/# /' "$tmp/sweep"
grep -q '^best under the SLO: max_batch_size [18], batch_timeout_us 500:' "$tmp/sweep"
ok $? "... and the best setting under the SLO marked"
"$b/pipe-load" --concurrency 0 "$url" 2>/dev/null
is $? 2 "--concurrency 0: usage error, exit 2"
