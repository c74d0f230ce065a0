#!/bin/sh
# man3-aliases.sh - the alias pages of the section 3 manual.
#
# Each page in doc/man3 documents a family of functions and lists all of
# them in its NAME section ("pf_take, pf_skip, pf_repeat \- ...").  So that
# `man pf_skip` finds pf_take(3), every other name gets a one-line page
# ".so man3/pf_take.3" at install time; nothing is kept in the tree that
# could fall out of step with the NAME lines.
#
#   man3-aliases.sh names PAGE...          "NAME PAGE-BASENAME" per listed name
#   man3-aliases.sh install DIR PAGE...    write DIR/NAME.3 for every alias
#   man3-aliases.sh uninstall DIR PAGE...  remove them
#
# t/t4200-man-coverage.sh reads the NAME sections through `names` too.
set -e

# The names a page's NAME section lists: the text of the lines between
# ".SH NAME" and the next ".SH", up to the "\-", split at commas and
# blanks, with font escapes (\fB, \fR) removed.
names() {
	for page in "$@"; do
		base=`basename "$page" .3`
		sed -n '/^\.SH  *"*NAME"*[ 	]*$/,/^\.SH/p' "$page" |
		sed -e '1d' -e '/^\.SH/d' -e '/^\.\\"/d' |
		tr '\n' ' ' |
		sed -e 's/\\-.*//' -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' |
		tr ', ' '\n\n' |
		sed -e '/^$/d' -e "s|\$| $base|"
	done
}

usage() {
	echo "usage: $0 names PAGE... | install DIR PAGE... | uninstall DIR PAGE..." >&2
	exit 2
}
[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
names)
	names "$@"
	;;
install|uninstall)
	[ $# -ge 1 ] || usage
	dir=$1
	shift
	[ "$cmd" = install ] && mkdir -p "$dir"
	names "$@" | while read -r name base; do
		[ "$name" = "$base" ] && continue
		if [ "$cmd" = install ]; then
			echo ".so man3/$base.3" >"$dir/$name.3"
		else
			rm -f "$dir/$name.3"
		fi
	done
	;;
*)
	usage
	;;
esac
