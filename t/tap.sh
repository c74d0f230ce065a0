# tap.sh - TAP helpers for the shell tests in t/ (sourced).
#   plan N | skip_all "why";  ok STATUS "title";  is GOT WANT "title";
#   like TEXT PATTERN "title";  diag "..."
#   fuzz_replay NAME RUNS SEED: one check, fuzz/fuzz_NAME on its corpus
#   fuzz/corpus/NAME plus RUNS seeded mutants ($PF_FUZZ_RUNS overrides)
tap_n=0
tap_fail=0
plan() { echo "1..$1"; }
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
diag() { printf '# %s\n' "$*"; }
ok() {
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $tap_n - $2"; else echo "not ok $tap_n - $2"; tap_fail=$((tap_fail + 1)); fi
}
is() {
	if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; diag "  got '$1', want '$2'"; fi
}
like() {
	case "$1" in *$2*) ok 0 "$3" ;; *) ok 1 "$3"; diag "  '$1' does not contain '$2'" ;; esac
}
tap_tmp() {
	d="$top_builddir/t/tmp-$1"; rm -rf "$d"; mkdir -p "$d"; echo "$d"
}
# syn_shards OUT N SEED [SHARDS]: N synthetic samples (train-gen: 16 pixels,
# a label) packed as OUT-*.pfs, in SHARDS files (default 1).
syn_shards() {
	"$top_builddir/t/train-gen" "$1.raw" "$2" "$3" &&
	"$top_builddir/pipe-pack" raw --record-size 17 --field image:u8[16] --field label:u8 \
		-o "$1" --shards "${4:-1}" "$1.raw" >/dev/null
}
fuzz_replay() {
	fz_runs=${PF_FUZZ_RUNS:-$2}
	if fz_out=$("$top_builddir/fuzz/fuzz_$1" -runs="$fz_runs" -seed="$3" \
			"$srcdir/fuzz/corpus/$1" 2>&1); then
		ok 0 "fuzz_$1: corpus + $fz_runs mutants clean"
	else
		printf '%s\n' "$fz_out" | tail -20 | sed 's/^/# /'
		ok 1 "fuzz_$1: corpus + $fz_runs mutants clean"
	fi
}
trap 'exit $tap_fail' EXIT
