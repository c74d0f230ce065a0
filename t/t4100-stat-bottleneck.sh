#!/bin/sh
# t4100-stat-bottleneck: pipe-stat names the stage that holds the run back.
# A map of parallelism 1 that sleeps 1 ms per element, and the pipeline's
# sleep(1000) op, each feeding a consumer that does not compute: the run is
# input-bound and that stage is the bottleneck.  The same pipeline before a
# consumer that computes 20 ms per batch: not input-bound, the consumer is
# the bottleneck.  A shuffle buffer that takes 20 ms to fill before a
# consumer that then never waits: the stall is the start-up.  An autotuned
# map that sleeps shows its CPU time (stats file version 2's cpu_ns) as a
# small share of its self time: its work waits.
. "$srcdir/t/tap.sh"
plan 17
tmp=`tap_tmp t4100`
b=$top_builddir
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"]*\).*/\1/p" "$2"; }
# the prefetch stage's buffer fill (%) from the text report's table
fill_of() { "$b/pipe-stat" "$1" | awk '$2 == "prefetch" { sub("%", "", $11); print $11 }'; }

"$b/t/stats-gen" "$tmp/map.pfstat" \
	"range(0, 1000000) | map(slowmap(1000), par=1) | batch(4) | prefetch(2)" 0 60 &&
"$b/pipe-stat" --json "$tmp/map.pfstat" >"$tmp/map.json"
ok $? "slow map run recorded and read"
is "`field input_bound "$tmp/map.json"`" true "slow map: input-bound"
is "`field verdict "$tmp/map.json"`" "highly input-bound" "slow map: highly input-bound (stall >= 20%)"
like "`field bottleneck "$tmp/map.json"`" map "slow map: the map stage is the bottleneck"
like "`field suggestion "$tmp/map.json"`" "raise map parallelism" "slow map: suggests raising map parallelism"

"$b/t/stats-gen" "$tmp/sleep.pfstat" \
	"range(0, 1000000) | sleep(1000) | batch(4) | prefetch(2)" 0 60 &&
"$b/pipe-stat" "$tmp/sleep.pfstat" >"$tmp/sleep.txt"
ok $? "sleep op run recorded and read"
like "`grep '^bottleneck:' "$tmp/sleep.txt"`" "sleep (stage 1" "sleep op: the report names the sleep stage as the bottleneck"
like "`grep '^stall:' "$tmp/sleep.txt"`" "highly input-bound" "sleep op: the report says input-bound"

"$b/t/stats-gen" "$tmp/slowc.pfstat" \
	"range(0, 1000000) | map(slowmap(1000), par=1) | batch(4) | prefetch(2)" 20000 30 &&
"$b/pipe-stat" --json "$tmp/slowc.pfstat" >"$tmp/slowc.json"
ok $? "slow consumer run recorded and read"
is "`field verdict "$tmp/slowc.json"`" "not input-bound" "slow consumer: not input-bound"
is "`field bottleneck "$tmp/slowc.json"`" consumer "slow consumer: the consumer is the bottleneck"
f=`fill_of "$tmp/map.pfstat"`
test -n "$f" && awk "BEGIN { exit !($f < 50) }"
ok $? "slow map: the prefetch buffer runs near empty (fill $f%)"
f=`fill_of "$tmp/slowc.pfstat"`
test -n "$f" && awk "BEGIN { exit !($f > 50) }"
ok $? "slow consumer: the prefetch buffer stays full (fill $f%)"

# the shuffle's fill (1000 x 100 us) must dwarf the time stats-gen takes
# between starting the iterator and its first pull (the prefetch thread
# fills meanwhile): 200 x 100 us was within reach of a loaded TSan build
"$b/t/stats-gen" "$tmp/startup.pfstat" \
	"range(0, 1000000) | map(slowmap(100), par=1) | shuffle(1000) | batch(4) | prefetch(2)" 10000 15 &&
"$b/pipe-stat" --json "$tmp/startup.pfstat" >"$tmp/startup.json"
ok $? "slow start-up run recorded and read"
is "`field bottleneck "$tmp/startup.json"`" start-up "slow start-up: the start-up is named, not a stage"

# the autotuned map's CPU over its self time (the table's cpu column)
"$b/t/stats-gen" "$tmp/cpu.pfstat" \
	"range(0, 1000000) | map(slowmap(1000), par=auto) | batch(4) | prefetch(2)" 0 60 &&
"$b/pipe-stat" "$tmp/cpu.pfstat" >"$tmp/cpu.txt"
ok $? "waiting map run recorded and read"
c=`awk '$1 ~ /^[0-9]+$/ && $2 ~ /^map/ { sub("%", "", $12); print $12 }' "$tmp/cpu.txt"`
test -n "$c" && test "$c" != "-" && awk "BEGIN { exit !($c < 30) }"
ok $? "waiting map: its CPU is a small share of its self time (cpu $c percent)"
