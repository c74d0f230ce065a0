#!/bin/sh
# t4200-man-coverage: the section 3 manual (doc/man3) covers the installed
# library and says nothing stale.
#  - every pf_* function of the installed API is named in the NAME section
#    of a page: each exported (T/D) pf_* symbol of every installed library
#    (lib_LTLIBRARIES) that an installed header (pkginclude_HEADERS) names,
#    and every function those headers declare (static inline ones too);
#    one check per name, titled with it.  An exported pf_* symbol that no
#    installed header names is internal: reported as a skip;
#  - every name a NAME section lists exists (in a library or an installed
#    header) and is listed by one page only (it becomes an alias page);
#  - every page is installed, has its sections, declares each function it
#    names in its SYNOPSIS, and that SYNOPSIS compiles against the installed
#    headers as the page includes them (so prototypes and #include lines are
#    right); its pf_*(3) / pipe-*(1) references name real pages;
#  - every page and every alias page (.so) renders without a groff warning.
# The library and header lists come from make (doc/man3.am); new installed
# headers, functions and libraries are picked up without editing this test.
. "$srcdir/t/tap.sh"
LC_ALL=C   # sort and comm must agree on the order
export LC_ALL

if [ -z "${pf_public_headers+set}" ] || [ -z "${pf_public_libs+set}" ]; then
	skip_all "run through make check (it passes the installed header and library lists)"
fi
command -v nm >/dev/null || skip_all "nm not found (binutils)"
CC=${CC:-cc}
tmp=`tap_tmp t4200`
man3=$top_srcdir/doc/man3
aliases="sh $top_srcdir/doc/man3-aliases.sh"
pages=`ls "$man3"/*.3 2>/dev/null`

# ---- what the library exports and the headers declare -------------------
: >"$tmp/exported"
nlibs=0
for la in $pf_public_libs; do
	nlibs=$((nlibs + 1))
	so=$top_builddir/`dirname "$la"`/.libs/`basename "$la" .la`
	# the shared library; the static archive of a --disable-shared build
	if [ -f "$so.so" ] || [ ! -f "$so.a" ]; then so=$so.so; else so=$so.a; fi
	echo "$so" >>"$tmp/libs"
done
: >"$tmp/words"
: >"$tmp/decls"
mkdir -p "$tmp/include/pipefeed"
for h in $pf_public_headers; do
	f=$top_srcdir/$h
	[ -f "$f" ] || f=$top_builddir/$h
	cp "$f" "$tmp/include/pipefeed/"
	# comments out (a name in a comment declares nothing); plain text if
	# the compiler cannot do it
	"$CC" -fpreprocessed -dD -E -P -x c "$f" 2>/dev/null >"$tmp/h.c" || cat "$f" >"$tmp/h.c"
	grep -ow 'pf_[A-Za-z0-9_]*' "$tmp/h.c" >>"$tmp/words" || :
	grep -o 'pf_[a-z0-9_]*[ 	]*(' "$tmp/h.c" | tr -d ' 	(' >>"$tmp/decls" || :
done
sort -u -o "$tmp/words" "$tmp/words"
sort -u -o "$tmp/decls" "$tmp/decls"
# one NAME -> page line per listed name
$aliases names $pages >"$tmp/names"
cut -d' ' -f1 "$tmp/names" | sort >"$tmp/listed"

nsyms=0
while read -r so; do
	[ -f "$so" ] || continue
	case $so in *.a) nmflags=-g ;; *) nmflags=-D ;; esac
	nm $nmflags --defined-only "$so" 2>/dev/null | awk '($2 == "T" || $2 == "D") && $3 ~ /^pf_/ { sub(/@.*/, "", $3); print $3 }'
done <"$tmp/libs" | sort -u >"$tmp/exported"
comm -12 "$tmp/exported" "$tmp/words" >"$tmp/public"
cat "$tmp/decls" >>"$tmp/public"
sort -u -o "$tmp/public" "$tmp/public"
comm -23 "$tmp/exported" "$tmp/words" >"$tmp/internal"

nchecks=$((nlibs + `wc -l <"$tmp/public"` + `wc -l <"$tmp/internal"` + 1))
for p in $pages; do nchecks=$((nchecks + 6)); done
nchecks=$((nchecks + 1))
plan $nchecks

while read -r so; do
	test -f "$so"
	ok $? "library built: ${so#$top_builddir/}"
done <"$tmp/libs"

# ---- every public function is documented --------------------------------
while read -r sym; do
	page=`awk -v s="$sym" '$1 == s { print $2; exit }' "$tmp/names"`
	if [ -n "$page" ]; then
		ok 0 "$sym: in NAME of $page(3)"
	else
		ok 1 "$sym: in no page's NAME (add it to its family's page in doc/man3)"
	fi
done <"$tmp/public"
while read -r sym; do
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $sym # SKIP exported, but no installed header names it (internal)"
done <"$tmp/internal"

dups=`sort "$tmp/listed" | uniq -d | tr '\n' ' '`
is "$dups" "" "no name is listed by two pages (each becomes one alias)"

# ---- each page ------------------------------------------------------------
have_groff=0
command -v groff >/dev/null && have_groff=1
for page in $pages; do
	base=`basename "$page" .3`

	mynames=`awk -v b="$base" '$2 == b { print $1 }' "$tmp/names"`
	fnpage=0
	case " `echo $mynames` " in *" pf_"*) fnpage=1 ;; esac

	# names it lists exist; the page's own name may be a topic (pipefeed)
	stale=
	for n in $mynames; do
		case $n in pf_*) ;; *) [ "$n" = "$base" ] && continue ;; esac
		grep -qx "$n" "$tmp/exported" || grep -qx "$n" "$tmp/words" ||
			stale="$stale $n"
	done
	is "$stale" "" "$base.3: every name in its NAME exists (library or installed header)"

	# installed by make install
	case " $pf_man_pages " in
	*" doc/man3/$base.3 "*) ok 0 "$base.3: installed (listed in doc/man3.am)" ;;
	*) ok 1 "$base.3: installed (listed in doc/man3.am)" ;;
	esac

	# sections; SYNOPSIS and RETURN VALUE for pages of functions
	want="NAME DESCRIPTION SEE_ALSO"
	[ $fnpage = 1 ] && want="NAME SYNOPSIS DESCRIPTION RETURN_VALUE SEE_ALSO"
	missing=
	for sec in $want; do
		grep -q "^\.SH \"*`echo $sec | tr _ ' '`\"*\$" "$page" || missing="$missing $sec"
	done
	is "$missing" "" "$base.3: has its sections (`echo $want | tr _ ' '`)"

	# SYNOPSIS (its .nf blocks): a prototype of each function it names,
	# and it compiles
	sed -n '/^\.SH "*SYNOPSIS"*$/,/^\.SH/p' "$page" |
	awk '/^\.nf/ { on = 1; next } /^\.fi/ { on = 0; next } on && !/^\./' |
	sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\e/\\/g' -e 's/\\&//g' \
		-e 's/\\(aq/'"'"'/g' >"$tmp/syn.c"
	nodecl=
	for n in $mynames; do
		case $n in pf_*) ;; *) continue ;; esac
		grep -q "[ *]$n(" "$tmp/syn.c" || nodecl="$nodecl $n"
	done
	if [ -z "$nodecl" ] && grep -q '^#include' "$tmp/syn.c"; then
		"$CC" -std=c11 -Wall -Werror -fsyntax-only -I"$tmp/include" -x c \
			"$tmp/syn.c" >"$tmp/cc.err" 2>&1
		rc=$?
		[ $rc -eq 0 ] || sed 's/^/#   /' "$tmp/cc.err" | head -20
		ok $rc "$base.3: SYNOPSIS declares its functions and compiles against the installed headers"
	elif [ $fnpage = 1 ]; then
		ok 1 "$base.3: SYNOPSIS declares its functions and compiles against the installed headers"
		diag "  no #include, or no prototype of:$nodecl"
	else
		ok 0 "$base.3: SYNOPSIS declares its functions (a topic page: none)"
	fi

	# references: NAME(3) and NAME(1) of ours name real pages
	bad=
	for r in `sed -e 's/\\\\f[BIRP]//g' -e 's/\\\\-/-/g' -e 's/ "*(\([13]\))/(\1)/g' "$page" |
		  grep -o '\(pf_[a-z0-9_]*\|pipefeed\|pipe-[a-z]*\)([13])' | sort -u`; do
		n=${r%(*}
		case $r in
		*"(3)") grep -qx "$n" "$tmp/listed" || [ -f "$man3/$n.3" ] || bad="$bad $r" ;;
		*"(1)") [ -f "$top_srcdir/doc/$n.1" ] || bad="$bad $r" ;;
		esac
	done
	is "$bad" "" "$base.3: its pf_*(3) and pipe-*(1) references name real pages"

	# renders without warnings
	if [ $have_groff = 1 ]; then
		LC_ALL=C groff -t -man -ww -z -Tutf8 "$page" >"$tmp/groff.err" 2>&1
		rc=$?
		[ -s "$tmp/groff.err" ] && rc=1
		[ $rc -eq 0 ] || sed 's/^/#   /' "$tmp/groff.err" | head -20
		ok $rc "$base.3: renders without warnings (groff -man -ww)"
	else
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $base.3: renders # SKIP groff not installed (groff-base)"
	fi
done

# ---- the alias pages, as make install writes them, resolve and render -----
mkdir -p "$tmp/man/man3"
cp $pages "$tmp/man/man3/"
$aliases install "$tmp/man/man3" $pages
if [ $have_groff = 1 ]; then
	fails=0
	for a in "$tmp"/man/man3/*.3; do
		grep -q '^\.so ' "$a" || continue
		( cd "$tmp/man" && LC_ALL=C groff -s -t -man -ww -z -Tutf8 "man3/`basename "$a"`" ) \
			>"$tmp/groff.err" 2>&1
		if [ $? -ne 0 ] || [ -s "$tmp/groff.err" ]; then
			fails=$((fails + 1))
			diag "  `basename "$a"`: `head -1 "$tmp/groff.err"`"
		fi
	done
	nal=`grep -l '^\.so ' "$tmp"/man/man3/*.3 | wc -l`
	[ "$nal" -gt 0 ]
	ok $(( fails + $? )) "the $nal alias pages (.so) resolve and render"
else
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - alias pages render # SKIP groff not installed (groff-base)"
fi
