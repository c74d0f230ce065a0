#!/bin/sh
# t4105-stat-train: pipe-train --stats records every training step and the
# stages of its pipeline (with a model on the cpu backend, and with --model
# none); --sweep runs each batch size and prints the table with the knee;
# --svg draws it; misused flags are usage errors.
. "$srcdir/t/tap.sh"
plan 18
tmp=`tap_tmp t4105`
b=$top_builddir
syn_shards "$tmp/syn" 4000 1 2
ok $? "synthetic shards packed"
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"]*\).*/\1/p" "$2"; }

timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 --epochs 2 \
	--zero-copy=off --quiet --stats "$tmp/train.pfstat" "$tmp/syn-*.pfs" >/dev/null
ok $? "pipe-train --stats ran 2 epochs"
"$b/pipe-stat" --json "$tmp/train.pfstat" >"$tmp/train.json"
ok $? "pipe-stat reads its stats file"
is "`field steps "$tmp/train.json"`" 250 "every step recorded (2 x 125)"
is "`field samples "$tmp/train.json"`" 8000 "every sample counted"
is "`field finished "$tmp/train.json"`" true "the file is marked finished"
like "`cat "$tmp/train.json"`" '"name":"prefetch"' "the pipeline's stages are listed"
h2d=`field h2d_s "$tmp/train.json"`
test -n "$h2d" && awk "BEGIN { exit !($h2d > 0) }"
ok $? "host-to-device copy time recorded ($h2d s, batches copied: --zero-copy=off)"

timeout 120 "$b/pipe-train" --model none --batch 50 --epochs 3 --quiet \
	--stats "$tmp/none.pfstat" "$tmp/syn-*.pfs" >/dev/null &&
"$b/pipe-stat" --json "$tmp/none.pfstat" >"$tmp/none.json"
ok $? "--model none --stats"
is "`field steps "$tmp/none.json"`" 240 "--model none: one step per batch (3 x 80)"

timeout 300 "$b/pipe-train" --device cpu --model mlp:16-32-4 --sweep 1,8,64 --steps 20 \
	--slo-ms 10000 --svg "$tmp/sweep.svg" "$tmp/syn-*.pfs" >"$tmp/sweep.txt" 2>/dev/null
ok $? "--sweep ran three batch sizes"
is "`grep -c '^ *[0-9]' "$tmp/sweep.txt"`" 3 "one table row per batch size"
like "`cat "$tmp/sweep.txt"`" "<- knee" "the knee is marked"
if command -v python3 >/dev/null 2>&1; then
	python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); assert r.tag.endswith("svg")' "$tmp/sweep.svg"
	ok $? "--svg: well-formed SVG"
else
	ok 0 "--svg: well-formed SVG # SKIP python3 missing"
fi
timeout 300 "$b/pipe-train" --device cpu --model mlp:16-32-4 --sweep 4,16 --steps 10 \
	--slo-ms 0.000001 "$tmp/syn-*.pfs" >"$tmp/none.txt" 2>/dev/null
like "`cat "$tmp/none.txt"`" "knee: none" "an SLO no batch size meets: no knee"
timeout 300 "$b/pipe-train" --device cpu --model mlp:16-32-4 --sweep 4,16 --steps 10 --json \
	"$tmp/syn-*.pfs" >"$tmp/sweep.json" 2>/dev/null
k=`sed -n 's/.*"knee":\([0-9a-z]*\)}$/\1/p' "$tmp/sweep.json"`
case "$k" in 4|16) ok 0 "--json: the knee ($k) is one of the batch sizes" ;;
	*) ok 1 "--json: the knee ($k) is one of the batch sizes" ;; esac
"$b/pipe-train" --sweep 8,32 --pipeline 'batch(8)' "$tmp/syn-*.pfs" >/dev/null 2>&1
is $? 2 "--sweep with --pipeline: usage error"
"$b/pipe-train" --slo-ms 5 "$tmp/syn-*.pfs" >/dev/null 2>&1
is $? 2 "--slo-ms without --sweep: usage error"
