#!/bin/sh
# t4103-stat-watch: pipe-stat --watch started before the run waits for the
# file, refreshes while the run goes on (the file reads consistently while it
# is written), and exits 0 once the run has finished.
. "$srcdir/t/tap.sh"
plan 4
tmp=`tap_tmp t4103`
b=$top_builddir
timeout 60 "$b/pipe-stat" --watch --json --interval 0.1 "$tmp/run.pfstat" \
	>"$tmp/watch.out" 2>"$tmp/watch.err" &
w=$!
sleep 0.3
"$b/t/stats-gen" "$tmp/run.pfstat" \
	"range(0, 1000000) | map(slowmap(200), par=1) | batch(4) | prefetch(2)" 10000 150 20
ok $? "the run finished"
wait $w
is $? 0 "--watch exited 0 after the run finished"
n=`grep -c '"finished":false' "$tmp/watch.out"`
test "$n" -ge 3
ok $? "refreshed while running ($n reports of the running file)"
is "`tail -n 1 "$tmp/watch.out" | sed 's/.*"finished":\([a-z]*\).*/\1/'`" true "the last report is of the finished run"
