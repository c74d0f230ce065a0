#!/bin/sh
# t2016-spec-doc: doc/PIPELINE.md's op tables and the op descriptors list
# the same ops and the same spec parameters (the descriptors are the one
# source of truth; a new op or parameter needs its row in the doc).
helper=${top_builddir:-.}/t/spec-helper
doc=${top_srcdir:-.}/doc/PIPELINE.md
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

"$helper" ops >"$tmp/ops" || { echo "1..0 # SKIP spec-helper ops failed"; exit 0; }
# The doc's op rows: the first cell of each table row between "## Ops" and
# the next "## " section.
sed -n '/^## Ops/,/^## Map functions/p' "$doc" | grep '^| ' | grep -v '^| spec |' |
	sed 's/^| \([^|]*\(\\|[^|]*\)*\) |.*/\1/' >"$tmp/cells"

n=0 failed=0
check() { # title, then a condition command
	title=$1; shift
	n=$((n + 1))
	if "$@"; then echo "ok $n - $title"; else echo "not ok $n - $title"; failed=1; fi
}

# Ops of the table: each has a row whose first code span starts with its
# name (C-only ops: a row whose C call names pf_KIND).
while IFS= read -r line; do
	kind=${line%%:*}
	params=${line#*:}
	case $kind in
	*" C")
		kind=${kind% C}
		check "op $kind (C only) has a row" grep -q "^| (C only) | \`pf_$kind(" "$doc"
		continue ;;
	esac
	grep -E "^\`$kind(\(|\`)" "$tmp/cells" >"$tmp/cell"
	check "op $kind has a row in doc/PIPELINE.md" test -s "$tmp/cell"
	for prm in $params; do
		check "  its parameter $prm is in that row" grep -Eq "[(, ]$prm([=,)]|\[|\]|$)" "$tmp/cell"
	done
	# every name= the doc gives is a parameter of the op
	for named in $(grep -o '[a-z_]*=' "$tmp/cell" | tr -d = | sort -u); do
		case " $params " in
		*" $named "*) ;;
		*) check "  the doc's $named= is a parameter of $kind" false ;;
		esac
	done
done <"$tmp/ops"

# Rows of the doc: each names an op of the table.
while IFS= read -r cell; do
	case $cell in "(C only)") continue ;; esac
	kind=$(printf '%s\n' "$cell" | sed 's/^`\([a-z_]*\).*/\1/')
	check "doc row $kind is an op of the table" grep -q "^$kind:" "$tmp/ops"
done <"$tmp/cells"
echo "1..$n"
exit $failed
