#!/bin/sh
# t0010-tree-shape: the source tree keeps the shape the house rules ask for.
#   (a) no .c/.h/.cu file under lib ops pipeline cuda serve tools is over 800 lines;
#   (b) no function there is over 120 lines (from its column-0 `{` to its
#       column-0 `}`, both counted);
#   (c) no quoted #include goes up a layer: lib <- ops <- pipeline <- cuda <-
#       serve <- tools (a header is placed by the folder that holds its file name;
#       names found in none, such as config.h, are not checked).
# Exceptions live in t/tree-shape.allow, one per line, each with a reason:
#   FILE REASON             a file over 800 lines
#   FILE:FUNCTION REASON    a function over 120 lines
#   FILE->HEADER REASON     an include that goes up a layer
# An entry that no longer matches anything fails too, so the list only
# shrinks.  Set TREE_SHAPE_ROOT to check another tree (the test of this test).
. "$srcdir/t/tap.sh"
root=${TREE_SHAPE_ROOT:-$top_srcdir}
allow=$root/t/tree-shape.allow
max_lines=800
max_fn=120
if [ -z "$TREE_SHAPE_ROOT" ]; then
	plan 7
	tmp=$(tap_tmp t0010)
else
	plan 6
	tmp=$(tap_tmp t0010-self)
fi
tmp=$(cd "$tmp" && pwd)  # absolute: the checks run from $root

# the files checked, relative to the root, one a line, sorted
(cd "$root" && find lib ops pipeline cuda serve tools -type f \
	\( -name '*.c' -o -name '*.h' -o -name '*.cu' \) 2>/dev/null) |
	LC_ALL=C sort >"$tmp/files"
test -s "$tmp/files"
ok $? "found the sources under $root ($(wc -l <"$tmp/files") files)"

# the allowlist: key and reason; comments and blank lines skipped
if [ -r "$allow" ]; then
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$allow" >"$tmp/allow"
else
	: >"$tmp/allow"
fi
awk 'NF < 2' "$tmp/allow" >"$tmp/noreason"
test ! -s "$tmp/noreason"
ok $? "every allowlist entry gives a reason"
sed 's/^/#   no reason: /' "$tmp/noreason"
awk '{ print $1 }' "$tmp/allow" | LC_ALL=C sort >"$tmp/keys"

# findings, one a line: "KEY message", the key as the allowlist writes it
while read -r f; do
	n=$(wc -l <"$root/$f")
	if [ "$n" -gt "$max_lines" ]; then
		echo "$f $f: $n lines (limit $max_lines)"
	fi
done <"$tmp/files" >"$tmp/size"

(cd "$root" && awk -v max="$max_fn" '
	# a signature is the run of lines before a column-0 "{"; the name
	# is the first identifier followed by "(" in it (none: not a function)
	FNR == 1 { sig = ""; infn = 0 }
	infn {
		if ($0 ~ /^}/) {
			n = FNR - start + 1
			if (n > max)
				printf "%s:%s %s:%d: function %s is %d lines (limit %d)\n",
					FILENAME, name, FILENAME, start, name, n, max
			infn = 0; sig = ""
		}
		next
	}
	/^\{/ {
		if (match(sig, /[A-Za-z_][A-Za-z_0-9]*[ \t]*\(/)) {
			name = substr(sig, RSTART, RLENGTH); sub(/[ \t]*\($/, "", name)
			infn = 1; start = FNR
		}
		sig = ""; next
	}
	/^[ \t]*$/ || /^#/ || /;[ \t]*$/ || /^}/ || /\*\/[ \t]*$/ { sig = ""; next }
	{ sig = sig " " $0 }
' $(cat "$tmp/files")) >"$tmp/func"

(cd "$root" && awk '
	BEGIN { r["lib"] = 0; r["ops"] = 1; r["pipeline"] = 2; r["cuda"] = 3; r["serve"] = 4; r["tools"] = 5 }
	FILENAME == ARGV[1] {  # the list of files: where each header name lives
		n = split($0, p, "/"); rank[p[n]] = r[p[1]]; dir[p[n]] = p[1]; next
	}
	/^[ \t]*#[ \t]*include[ \t]*"/ {
		h = $0; sub(/^[^"]*"/, "", h); sub(/".*/, "", h)
		b = h; sub(/.*\//, "", b)
		split(FILENAME, p, "/")
		if ((b in rank) && rank[b] > r[p[1]])
			printf "%s->%s %s:%d: includes \"%s\" from %s/, a layer above %s/\n",
				FILENAME, h, FILENAME, FNR, h, dir[b], p[1]
	}
' "$tmp/files" $(cat "$tmp/files")) >"$tmp/layer"

# a finding passes when the allowlist names its key
check() { # FINDINGS TITLE
	awk 'FILENAME == ARGV[1] { allowed[$1] = 1; next } !($1 in allowed)' "$tmp/keys" "$1" >"$1.new"
	test ! -s "$1.new"
	ok $? "$2"
	sed 's/^[^ ]* /#   /' "$1.new"
}
check "$tmp/size" "no file over $max_lines lines but those allowed"
check "$tmp/func" "no function over $max_fn lines but those allowed"
check "$tmp/layer" "no include goes up a layer but those allowed"

cat "$tmp/size" "$tmp/func" "$tmp/layer" | awk '{ print $1 }' | LC_ALL=C sort -u >"$tmp/seen"
LC_ALL=C comm -23 "$tmp/keys" "$tmp/seen" >"$tmp/stale"
test ! -s "$tmp/stale"
ok $? "every allowlist entry is still needed"
sed 's/^/#   matches nothing now, delete it from t\/tree-shape.allow: /' "$tmp/stale"

# the check itself can fail: a made-up tree with one of each fault
[ -n "$TREE_SHAPE_ROOT" ] && exit $tap_fail
bad=$tmp/bad
mkdir -p "$bad/lib" "$bad/ops" "$bad/t"
awk 'BEGIN { for (i = 0; i < 801; i++) print "/* line */" }' >"$bad/lib/long.c"
{ echo '#include "up.h"'; echo 'int f(void)'; echo '{'
  awk 'BEGIN { for (i = 0; i < 119; i++) print "\t;" }'; echo '}'; } >"$bad/lib/fn.c"
echo 'int up;' >"$bad/ops/up.h"
echo 'lib/gone.c being split (issue 12)' >"$bad/t/tree-shape.allow"
out=$(TREE_SHAPE_ROOT=$bad sh "$0" 2>&1)
rc=$?
case "$rc:$out" in
0:*) ok 1 "a tree with faults fails" ;;
*"lib/long.c: 801 lines"*"lib/fn.c:3: function f is 121 lines"*"lib/fn.c:1: includes \"up.h\" from ops/"*"delete it from t/tree-shape.allow: lib/gone.c"*)
	ok 0 "a tree with faults fails, naming each (size, function, include, stale entry)" ;;
*) ok 1 "a tree with faults fails, naming each"; printf '%s\n' "$out" | sed 's/^/#   /' ;;
esac
