#!/bin/sh
# t4106-train-usage: pipe-train's usage errors, as doc/pipe-train.1 says:
# exit 2 and one line on stderr naming what is wrong (an unknown option
# says "try --help" instead of printing the help), checked before any work
# starts, with or without a model: a bad --device, --eval with --model none,
# an unknown, ambiguous or valueless option, a --pipeline or --eval-pipeline
# that does not parse or build, no shards.  An --eval glob that matches
# nothing is an error naming it (exit 1, like SHARDS that match nothing).
. "$srcdir/t/tap.sh"
plan 37
tmp=`tap_tmp t4106`
b=$top_builddir
syn_shards "$tmp/syn" 400 1
ok $? "synthetic shards packed"
shards="$tmp/syn-*.pfs"

# run ARGS...: pipe-train with a time limit; status in $st, stderr in $err,
# its line count in $nerr, stdout in $out
run() {
	timeout 60 "$b/pipe-train" "$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
	err=`cat "$tmp/err"`
	out=`cat "$tmp/out"`
	nerr=`wc -l <"$tmp/err" | tr -d ' '`
}
# usage TITLE PATTERN ARGS...: exit 2, one line on stderr containing PATTERN
usage() {
	t=$1 pat=$2
	shift 2
	run "$@"
	is "$st" 2 "$t: exit 2"
	if [ "$nerr" = 1 ]; then like "$err" "$pat" "$t: one line naming $pat"
	else ok 1 "$t: one line naming $pat"; diag "  stderr ($nerr lines): $err"; fi
}

run --model none --epochs 1 --quiet "$shards"
is "$st" 0 "sanity: --model none runs"

usage "--model none --device tpu" "'tpu'" --model none --device tpu --epochs 1 --quiet "$shards"
usage "--device tpu with a model" "'tpu'" --device tpu --model mlp:16-4 --epochs 1 --quiet "$shards"
usage "--graph=maybe" "--graph: expected on or off" --graph=maybe --model mlp:16-4 --epochs 1 --quiet "$shards"

usage "--model none --eval GLOB" "$tmp/nomatch-*.pfs" --model none --eval "$tmp/nomatch-*.pfs" \
	--epochs 1 --quiet "$shards"
run --device cpu --model mlp:16-4 --epochs 1 --eval "$tmp/nomatch-*.pfs" "$shards"
is "$st" 1 "--eval GLOB matching nothing, with a model: exit 1"
like "$err" "$tmp/nomatch-*.pfs: no file matches" "and names the glob"
is "$out" "" "before any training"

usage "an unknown option" "'--bogus'; try --help" --bogus "$shards"
usage "an unknown option with a value" "'--bogus'; try --help" --bogus=3 "$shards"
usage "an unknown short option" "'-x'; try --help" -x "$shards"
usage "an ambiguous abbreviation" "'--s'" --s 3 "$shards"
usage "a value for a flag that takes none" "--json" --json=yes "$shards"
usage "a flag without its value" "--batch" "$shards" --batch

usage "a --pipeline that does not parse" "column 7" --model none --pipeline 'batch(' "$shards"
usage "a --pipeline that does not build" "nosuchfn" --model none \
	--pipeline 'map(nosuchfn) | batch(8)' "$shards"
usage "a --pipeline that does not parse, with a model" "column 7" --device cpu \
	--model mlp:16-4 --pipeline 'batch(' "$shards"
usage "an --eval-pipeline that does not parse" "--eval-pipeline" --device cpu \
	--model mlp:16-4 --eval "$shards" --eval-pipeline 'map(decode) |' "$shards"

usage "no shards" "no shards given; try --help" --model none

run --help
is "$st" 0 "--help: exit 0"
like "$out" "usage: pipe-train" "--help prints the usage on stdout"
