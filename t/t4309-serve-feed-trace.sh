#!/bin/sh
# t4309-serve-feed-trace: pipe-serve's batches go through the training
# device feed (--feed-depth, default 2) and the stats file shows the
# copy/compute overlap: under load from 32 clients, pipe-stat reports the
# device feed (copy per batch, batches copied while the one before
# computed, more than none), --json has the counts, and the Chrome trace
# (--trace) has a copy-stream track with an h2d slice per timed batch, at
# least one starting before the previous compute slice ends; with
# --feed-depth 0 (the direct path) no copy is placed; a bad --feed-depth is
# refused naming it.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need load serve curl
plan 8
tmp=`tap_tmp t4309`
syn_shards "$tmp/syn" 500 1 1 && serve_model "$tmp"
ok $? "a model to serve"
serve_start "$tmp" --max-batch-size 8 --batch-timeout-us 300 --stats "$tmp/feed.pfstat"
timeout 60 "$b/pipe-load" --concurrency 32 --duration 0.8 --warmup 0.1 --dim 16 \
	"http://127.0.0.1:$port/v1/models/syn:predict" >/dev/null
ok $? "32 clients served through the device feed with --stats"
kill -TERM $pid
wait $pid
"$b/pipe-stat" "$tmp/feed.pfstat" >"$tmp/report"
sed 's/^/# /' "$tmp/report"
line=$(grep '^device feed: copy [0-9.]* us a batch; [0-9]* of [0-9]* recent batches were copied while the batch before computed' "$tmp/report")
n=$(echo "$line" | awk '{ print $8 }')
ok $([ -n "$line" ] && [ "${n:-0}" -gt 0 ]; echo $?) "pipe-stat: the device feed's copies, $n overlapping the batch before"
"$b/pipe-stat" --json "$tmp/feed.pfstat" | grep -q '"copies_timed":[1-9][0-9]*,"copies_overlapped":[1-9]'
ok $? "--json: copies_timed and copies_overlapped"
"$b/pipe-stat" --trace "$tmp/trace.json" "$tmp/feed.pfstat" >/dev/null
# each h2d slice's start against the compute slice before it (same thread)
ov=$(awk -F'[:,}]' '
	function field(name,   i) { for (i = 1; i < NF; i++) if ($i == "\"" name "\"") return $(i+1) + 0; return 0 }
	/"name":"compute"/ { prevend = curend; curend = field("ts") + field("dur"); nc++ }
	/"name":"h2d copy"/ { n++; if (nc > 1 && field("ts") < prevend) o++ }
	END { printf "%d %d\n", n, o }' "$tmp/trace.json")
set -- $ov
grep -q '"copy stream (h2d)"' "$tmp/trace.json"
ok $([ $? = 0 ] && [ "$1" -gt 0 ] && [ "$2" -gt 0 ]; echo $?) "--trace: a copy-stream track, $1 h2d slices, $2 begin before the compute slice before them ends"

serve_start "$tmp" --max-batch-size 8 --batch-timeout-us 300 --feed-depth 0 --stats "$tmp/direct.pfstat"
timeout 60 "$b/pipe-load" --concurrency 8 --duration 0.3 --warmup 0.1 --dim 16 \
	"http://127.0.0.1:$port/v1/models/syn:predict" >/dev/null
ok $? "--feed-depth 0: served on the direct path" || sed 's/^/# /' "$tmp/err"
kill -TERM $pid
wait $pid
! "$b/pipe-stat" "$tmp/direct.pfstat" | grep -q '^device feed:'
ok $? "... no copy placed, no device feed line"
"$b/pipe-serve" --model-dir "$tmp/models" --port 0 --feed-depth 17 >/dev/null 2>"$tmp/e"
r=$?
ok $([ $r = 2 ] && grep -q 'feed-depth' "$tmp/e"; echo $?) "--feed-depth 17 is refused ($(head -c 100 "$tmp/e"))"
