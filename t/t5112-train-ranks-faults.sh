#!/bin/sh
# t5112-train-ranks-faults: over 3 ranks, a rank that hangs (SIGSTOP)
# makes the others fail within --rank-timeout, each naming it ("no answer
# within 3 s from rank(s) 1"), and the job ends; a rank that dies
# (SIGKILL) ends the job within the same bound, the launcher naming it.
# Nothing waits for ever.  Skips without OpenMPI.
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
plan 8
tmp=`tap_tmp t5112`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"

# start 3 ranks training for long; $job: mpirun's pid, $victim: rank 1's,
# once it trains (its stats file exists: MPI_Init is behind it, which has
# no timeout of ours)
start() {
	rm -f "$tmp/st"*
	ASAN_OPTIONS=$MPI_ASAN timeout --foreground 120 mpirun --oversubscribe -np 3 "$b/pipe-train" --device cpu \
		--model mlp:16-32-4 --batch 30 --epochs 100000 --quiet --rank-timeout 3 \
		--stats "$tmp/st" "$tmp/syn-*.pfs" </dev/null >/dev/null 2>"$1" &
	job=$!
	victim=
	i=0
	while { [ -z "$victim" ] || [ ! -s "$tmp/st.rank1" ]; } && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
		for p in `ps -o pid= --ppid \`ps -o pid= --ppid $job\` 2>/dev/null`; do
			if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
			   grep -q '^OMPI_COMM_WORLD_RANK=1$'; then
				victim=$p
			fi
		done
	done
	sleep 1 # training
}
# wait_job: seconds until mpirun exits (at most 60, then it is killed)
wait_job() {
	t0=`date +%s`
	i=0
	while kill -0 $job 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	kill -0 $job 2>/dev/null && kill -KILL $job
	wait $job
	st=$?
	echo $((`date +%s` - t0))
}

start "$tmp/hang.log"
test -n "$victim"
ok $? "3 ranks training, rank 1 is pid $victim"
kill -STOP "$victim"
took=`wait_job`
kill -KILL "$victim" 2>/dev/null
test "$took" -le 20
ok $? "rank 1 stopped (SIGSTOP): the job ended after ${took} s (--rank-timeout 3)"
# (the first live rank to time out says it; mpirun may end the other before
# its own deadline, and a stop at an epoch's end names that sum instead)
like "`cat "$tmp/hang.log"`" "rank [02]: [at]*: no answer within 3 s" \
	"  a live rank says which all-reduce it waited in"
like "`cat "$tmp/hang.log"`" "no answer within 3 s from rank(s) 1" "  and names rank 1"
! grep -q "from rank(s) [02]" "$tmp/hang.log"
ok $? "  no rank names a live rank (0 or 2) as missing"

start "$tmp/kill.log"
kill -KILL "$victim"
took=`wait_job`
test "$took" -le 20
ok $? "rank 1 killed (SIGKILL): the job ended after ${took} s"
like "`cat "$tmp/kill.log"`" "rank 1" "  the message names rank 1"
