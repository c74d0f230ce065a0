#!/bin/sh
# t0400-pack-usage: pipe-pack's command line: --help, exit code 2 and a short
# usage for usage errors, exit 1 for bad data.
. "$srcdir/t/tap.sh"
plan 10
pp="$top_builddir/pipe-pack"
tmp=$(tap_tmp t0400)

out=$("$pp" --help 2>&1); ok $? "--help exits 0"
like "$out" "pipe-pack verify" "--help lists verify"
like "$out" "--records-per-shard" "--help lists the common options"
"$pp" >/dev/null 2>"$tmp/err"; is $? 2 "no command: exit 2"
like "$(cat "$tmp/err")" "usage:" "no command: short usage"
"$pp" frobnicate >/dev/null 2>&1; is $? 2 "unknown command: exit 2"
"$pp" idx --labels x -o "$tmp/p" >/dev/null 2>&1; is $? 2 "idx without --images: exit 2"
"$pp" raw --record-size 4 --block-size 12Q -o "$tmp/p" x >/dev/null 2>&1; is $? 2 "bad --block-size: exit 2"
"$pp" idx --images "$tmp/missing" -o "$tmp/p" >/dev/null 2>"$tmp/err"; is $? 1 "missing input: exit 1"
like "$(cat "$tmp/err")" "missing" "missing input: names the file"
