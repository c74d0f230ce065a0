#!/bin/sh
# t4102-stat-errors: pipe-stat on a missing, empty, truncated, foreign,
# corrupt or newer-version file exits 1 with a message that says so (never
# a crash); usage errors exit 2.
. "$srcdir/t/tap.sh"
plan 16
tmp=`tap_tmp t4102`
b=$top_builddir
"$b/t/stats-gen" "$tmp/good.pfstat" "range(0, 1000) | batch(4)" 0 20 1
ok $? "a good stats file written"
"$b/pipe-stat" "$tmp/good.pfstat" >/dev/null
ok $? "the good file reads"

check() { # file pattern title
	"$b/pipe-stat" "$1" >/dev/null 2>"$tmp/err"
	is $? 1 "$3: exit status 1"
	like "`cat "$tmp/err"`" "$2" "$3: says '$2'"
}
check "$tmp/missing.pfstat" "cannot open" "missing file"
: >"$tmp/empty.pfstat"
check "$tmp/empty.pfstat" "truncated" "empty file"
head -c 5000 "$tmp/good.pfstat" >"$tmp/trunc.pfstat"
check "$tmp/trunc.pfstat" "truncated" "truncated file"
printf 'this is not a stats file at all, just some text\n' >"$tmp/foreign.pfstat"
check "$tmp/foreign.pfstat" "not a pipefeed stats file" "foreign file"
cp "$tmp/good.pfstat" "$tmp/newer.pfstat"
printf '\011' | dd of="$tmp/newer.pfstat" bs=1 seek=8 conv=notrunc 2>/dev/null
check "$tmp/newer.pfstat" "newer" "newer version"
cp "$tmp/good.pfstat" "$tmp/flip.pfstat"
printf 'Z' | dd of="$tmp/flip.pfstat" bs=1 seek=3000 conv=notrunc 2>/dev/null
check "$tmp/flip.pfstat" "checksum" "corrupt finished file"
"$b/pipe-stat" >/dev/null 2>&1
is $? 2 "no file: usage error"
"$b/pipe-stat" --usd-per-hour abc "$tmp/good.pfstat" >/dev/null 2>&1
is $? 2 "a bad price: usage error"
