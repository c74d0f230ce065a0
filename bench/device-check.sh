#!/bin/sh
# bench/device-check.sh - every check and figure that needs a CUDA GPU, in
# ONE call of the device tool, under a total deadline it sets itself, with
# a summary (summary.json + summary.txt) and one log under $OUT.  Exit 0
# when no check failed, 1 when one did (or did not finish in time), 2 on a
# usage or set-up error.
#
#   bench/device-check.sh --prepare DIR   here: a static build into DIR
#   bench/device-check.sh DIR             on the GPU machine: the checks
#   bench/device-check.sh --dry-run DIR   anywhere: the same steps on the
#                                         cpu device (t/t5120 runs it)
#
# What it runs on: carried static builds, not a build there (the GPU
# machine's image has nvcc but not liburing, zstd, OpenBLAS or autotools,
# and nothing can be installed there).  --prepare, run here, copies the
# tracked files as they are in the work tree into DIR/build (a source tree
# configured in place refuses VPATH builds), runs autoreconf and configure
# --disable-shared --with-cuda there, builds the tools, the device tests, t/train-gen and bench/copy_bench, links the
# cuda module by hand (libtool will not make a -module .so with
# --disable-shared), and collects DIR/bin (programs), DIR/lib (pf_cuda.so,
# liburing, libzstd, libgfortran, libquadmath, and OpenBLAS xz-compressed);
# about 15 MiB (DIR/build is removed once they are collected).  The programs need glibc 2.36 (this Debian 12 machine's)
# or newer there, and CUDA 13 (libcublas.so.13) on the GPU machine.  DIR
# may also be a configured build tree (what the dry run uses): programs
# are then taken from their places in it.
#
# One call, from the repository root, with DIR in the repository and
# ignored (echo /.devcheck/ >> "$(git rev-parse --git-common-dir)/info/exclude"):
#   bench/device-check.sh --prepare .devcheck
#   device run: carry [".devcheck"], timeout_s 560,
#     command: sh bench/device-check.sh .devcheck
#
# Deadline: DC_BUDGET seconds (default 450, at most 480) from the start;
# each step runs under `timeout` with the smaller of its own limit and
# what is left; a step that cannot start in time is "not-run" and fails
# the run.  Statuses: pass, fail, timeout, not-run, refused (the sanitizer
# could not attach to the device: reported, not a failure of the code),
# skipped (a test that skips as a whole: a failure on cuda, expected for
# t3005 in the dry run).
#
# Steps, in order (the most wanted first, so a slow machine loses the
# least):
#   test-*       t3001-t3005, t3008 and t3009 with PF_TEST_DEVICE=cuda
#                (t3005: cuda vs cpu gradients with the fused epilogues on
#                and off, batch 32/256; t3009: the bias-gradient block
#                reduction vs the cpu backend at 64/256/1024 rows, and
#                the same bits twice)
#   memcheck-*   the same under compute-sanitizer --tool memcheck
#   graph-memcheck  a short pipe-train --graph under memcheck
#   math-*       step time and final loss of mlp:784-256-256-10
#                --preloaded (the preloaded step: compute alone) at batch
#                DC_MATH_BATCH (256) with --tf32 off/on x --epilogue
#                on/off; math-epilogue-agree: the fused and unfused runs'
#                losses agree (to 1e-3 relative; equal on cpu); figures
#                step_s_*, epilogue_speedup_*, tf32_speedup_*, and
#                fused_layers_* (how many layers cuBLASLt fused: 3 and 2
#                when it has algorithms for every shape, fewer when the
#                model fell back)
#   starve-*     never-starves ratio at batch 64/256/1024: --model mlp
#                --preloaded and --model synthetic:DC_SYNTH_US (1000),
#                over DC_SAMPLES (20000) synthetic 28x28 images
#   copy         bench/copy_bench: H2D pinned vs pageable
#   same-seed    two runs with one seed: the saved models compared (cmp)
#   resume       interrupted (--stop-after-steps) and resumed without
#                --fingerprint: the final model compared with an
#                uninterrupted run's
#   nccl-one     pipe-train --allreduce nccl alone (NCCL, a group of one)
#                against a plain run: losses agree, figure nccl_same_bits
#   initcheck-*  the device tests under compute-sanitizer --tool initcheck
# Environment: OUT (default DIR/out), DC_BUDGET, DC_SAMPLES, DC_SYNTH_US,
# DC_TESTS (test names to run instead of the seven), DC_COPY_RUNS (5),
# DC_MATH_BATCH (256),
# COMPUTE_SANITIZER (the sanitizer's path).
set -u
LC_ALL=C
export LC_ALL

die2() { echo "device-check: $*" >&2; exit 2; }

# ---- --prepare: the static build, here --------------------------------------
prepare() {
	D=$1
	src=$(cd "$(dirname "$0")/.." && pwd)
	mkdir -p "$D/build" "$D/bin" "$D/lib" || die2 "cannot create $D"
	D=$(cd "$D" && pwd)
	cuda=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")
	# the tracked files as they are in the work tree (a source tree that is
	# configured in place refuses VPATH builds), regenerated and configured
	(cd "$src" && git ls-files -z | xargs -0 tar cf -) | (cd "$D/build" && tar xf -) &&
	(cd "$D/build" && autoreconf -fi >autoreconf.log 2>&1) || die2 "copy/autoreconf failed"
	(cd "$D/build" &&
	 { [ -f Makefile ] || ./configure --disable-shared --with-cuda="$cuda" >configure.log; } &&
	 { make -j2 -k >make.log 2>&1; true; } &&   # all but pf_cuda.la (below)
	 make -j2 cuda/dev_cuda.lo cuda/kernels.lo cuda/lt_epilogue.lo pipe-train pipe-pack t/t3001-device-cpu t/t3002-model-grad t/t3003-checkpoint \
		t/t3004-devfeed t/t3005-cuda-vs-cpu t/t3008-devfeed-fifo t/t3009-bias-grad t/train-gen \
		bench/copy_bench >>make.log 2>&1 &&
	 gcc -shared -o cuda/.libs/pf_cuda.so cuda/.libs/dev_cuda.o cuda/.libs/kernels.o \
		cuda/.libs/lt_epilogue.o -L"$cuda/lib64" -lcublasLt -lcublas -lcudart -lstdc++) || die2 "build failed (see $D/build/make.log)"
	for p in pipe-train pipe-pack t/t3001-device-cpu t/t3002-model-grad t/t3003-checkpoint \
		 t/t3004-devfeed t/t3005-cuda-vs-cpu t/t3008-devfeed-fifo t/t3009-bias-grad \
		 t/train-gen bench/copy_bench; do
		cp "$D/build/$p" "$D/bin/" || die2 "no $p"
	done
	cp "$D/build/cuda/.libs/pf_cuda.so" "$D/lib/"
	ldd "$D/bin/pipe-train" "$D/bin/t3005-cuda-vs-cpu" |
	awk '/=> \// && /uring|zstd|openblas|blas|lapack|gfortran|quadmath/ { print $1, $3 }' |
	sort -u | while read -r so path; do
		case $so in
		libopenblas*|libblas*) xz -c "$path" > "$D/lib/$so.xz" ;;
		*) cp -L "$path" "$D/lib/$so" ;;
		esac
	done
	# the build tree (35 MiB of objects) stays here: only bin/ and lib/
	# travel, well inside the carry limit (64 MiB with the work tree)
	rm -rf "$D/build"
	du -sh "$D/bin" "$D/lib"
	echo "device-check: prepared $D (carry it; run: sh bench/device-check.sh $D)"
}

# ---- the run -----------------------------------------------------------------
DRY=0
case ${1:-} in
--prepare) [ $# = 2 ] || die2 "usage: --prepare DIR"; prepare "$2"; exit 0 ;;
--dry-run) DRY=1; shift ;;
esac
[ $# = 1 ] || die2 "usage: device-check.sh [--dry-run] DIR | --prepare DIR"
G=$(cd "$1" 2>/dev/null && pwd) || die2 "no directory $1"
O=${OUT:-$G/out}
mkdir -p "$O" || die2 "cannot create $O"
BUDGET=${DC_BUDGET:-450}
[ "$BUDGET" -le 480 ] 2>/dev/null || BUDGET=480
START=$(date +%s)
DEADLINE=$((START + BUDGET))
W=$(mktemp -d "${TMPDIR:-/tmp}/devcheck.XXXXXX") || die2 "mktemp"
trap 'rm -rf "$W"' EXIT
LOG=$O/log.txt
RES=$W/results
FIG=$W/figures
: > "$LOG"
: > "$RES"
: > "$FIG"
if [ $DRY = 1 ]; then DEV=cpu; MODE=dry-run-cpu; else DEV=cuda; MODE=cuda; fi
SAMPLES=${DC_SAMPLES:-20000}
SYNTH_US=${DC_SYNTH_US:-1000}

# Libraries and the module of a prepared DIR.
if [ -d "$G/bin" ] && [ -f "$G/lib/pf_cuda.so" ]; then
	for z in "$G"/lib/*.xz; do
		[ -e "$z" ] || continue
		[ -e "${z%.xz}" ] || xz -dc "$z" > "${z%.xz}" 2>/dev/null ||
		python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' \
			"$z" > "${z%.xz}"
	done
	CUBLAS=$(ls /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null ||
		 find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
	LD_LIBRARY_PATH="$G/lib:${CUBLAS%/*}:${LD_LIBRARY_PATH:-}"
	PF_CUDA_MODULE=$G/lib/pf_cuda.so
	export LD_LIBRARY_PATH PF_CUDA_MODULE
fi

# prog NAME: the program's path in a prepared DIR or a build tree
prog() {
	for p in "$G/bin/$1" "$G/$1" "$G/t/$1" "$G/bench/$1"; do
		[ -f "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
	done
	echo "$G/bin/$1"
	return 1
}

now() { date +%s; }
# record NAME STATUS SECONDS DETAIL
record() {
	d=$(printf '%s' "$4" | tr -d '"\\' | tr '\t\n\r' '   ' | cut -c1-300)
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$d" >> "$RES"
	printf '%-24s %-8s %4ss  %s\n' "$1" "$2" "$3" "$d"
}
figure() { printf '%s\t%s\n' "$1" "$2" >> "$FIG"; }

# run NAME LIMIT CMD...: CMD under the deadline, its output appended to the
# log and kept in $W/NAME.out; sets rc (124 = timed out, 125 = not run).
run() {
	name=$1 lim=$2
	shift 2
	left=$((DEADLINE - $(now) - 3))
	t0=$(now)
	: > "$W/$name.out"
	if [ $left -lt 5 ]; then
		rc=125
		el=0
		return
	fi
	[ $lim -gt $left ] && lim=$left
	printf '\n==== %s (limit %ss): %s\n' "$name" "$lim" "$*" >> "$LOG"
	timeout -k 5 "$lim" "$@" > "$W/$name.out" 2>&1
	rc=$?
	el=$(($(now) - t0))
	cat "$W/$name.out" >> "$LOG"
	printf '==== %s: exit %s after %ss\n' "$name" "$rc" "$el" >> "$LOG"
}

# A TAP test's verdict from $W/NAME.out and rc.
tap_verdict() {
	f=$W/$1.out
	nok=$(grep -c '^ok' "$f")
	nnot=$(grep -c '^not ok' "$f")
	plan=$(sed -n 's/^1\.\.\([0-9]*\).*/\1/p' "$f" | head -1)
	if [ $rc = 125 ]; then st=not-run det="deadline"
	elif [ $rc = 124 ] || [ $rc = 137 ]; then st=timeout det="$nok ok before the limit"
	elif [ "$plan" = 0 ]; then
		st=skipped det=$(grep -m1 '^1\.\.0' "$f")
	elif [ $rc = 0 ] && [ $nnot = 0 ] && [ "$nok" = "$plan" ]; then
		st=pass det="$nok/$plan ok"
	else
		st=fail det="exit $rc, $nok ok, $nnot not ok of ${plan:-?}: $(grep -m1 '^not ok' "$f")"
	fi
}

TESTS=${DC_TESTS:-"t3001-device-cpu t3002-model-grad t3003-checkpoint t3004-devfeed t3005-cuda-vs-cpu t3008-devfeed-fifo t3009-bias-grad"}
export PF_TEST_DEVICE=$DEV

step_tests() {
	for t in $TESTS; do
		p=$(prog "$t")
		run "test-$t" 120 "$p"
		tap_verdict "test-$t"
		# on cuda a whole-test skip means no device: a failure; the dry
		# run expects it of t3005 only
		[ $st = skipped ] && { [ $DRY = 0 ] || [ "$t" != t3005-cuda-vs-cpu ]; } && st=fail
		record "test-$t" $st $el "$det"
	done
}

SAN=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer ||
	ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)}

# sanitize TOOL NAME CMD...: CMD under compute-sanitizer --tool TOOL
sanitize() {
	tool=$1 name=$2
	shift 2
	if [ -z "$SAN" ] || [ ! -x "$SAN" ]; then
		record "$name" refused 0 "compute-sanitizer not found"
		return
	fi
	run "$name" 150 "$SAN" --tool "$tool" --error-exitcode 86 --print-limit 20 "$@"
	f=$W/$name.out
	sum=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$f" | tail -1)
	if [ $rc = 125 ]; then st=not-run det=deadline
	elif [ $rc = 124 ] || [ $rc = 137 ]; then st=timeout det="did not finish"
	elif [ -n "$sum" ] && [ "$sum" -gt 0 ]; then
		st=fail det="$sum errors: $(grep -m1 '^========= [A-Z]' "$f")"
	elif [ -n "$sum" ] && [ $rc = 0 ]; then st=pass det="0 errors"
	elif [ -n "$sum" ]; then st=fail det="0 sanitizer errors, but the program exited $rc"
	elif grep -qiE '^=+ .*(error|not supported|unable|failed)' "$f"; then
		st=refused det=$(grep -m1 -iE '^=+ .*(error|not supported|unable|failed)' "$f")
	else
		st=fail det="no ERROR SUMMARY, exit $rc"
	fi
	record "$name" $st $el "$det"
}

step_sanitize_tests() {
	for t in $TESTS; do
		sanitize "$1" "$1-$t" "$(prog "$t")"
	done
}

# The data: SAMPLES synthetic 28x28 u8 images with a learnable label (the
# argmax of the first ten pixels), packed into 4 shards.
make_data() {
	python3 - "$W/img.raw" "$SAMPLES" <<'EOF' &&
import random, sys
r = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        px = r.randbytes(784)
        f.write(px + bytes([max(range(10), key=lambda i: px[i])]))
EOF
	"$(prog pipe-pack)" raw --record-size 785 --field image:u8[784] --field label:u8 \
		-o "$W/img" --shards 4 "$W/img.raw" > /dev/null
}

# field NAME FILE: a number field of pipe-train's one-line JSON
field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2" | head -1; }

step_graph() {
	sanitize memcheck graph-memcheck "$(prog pipe-train)" --device $DEV --graph \
		--model mlp:784-128-10 --epochs 1 --batch 64 --quiet $SHARDS
}

# math-*: --tf32 off/on x --epilogue on/off, the preloaded step time
step_math() {
	b=${DC_MATH_BATCH:-256}
	for v in fp32_fused fp32_unfused tf32_fused tf32_unfused; do
		f=
		case $v in tf32_*) f=--tf32 ;; esac
		case $v in *_unfused) f="$f --epilogue=off" ;; esac
		name=math-$v
		# shellcheck disable=SC2086
		run $name 90 "$(prog pipe-train)" --device $DEV --model mlp:784-256-256-10 \
			--preloaded --epochs 1 --batch $b --seed 11 --json --quiet $f $SHARDS
		s=$(field preloaded_step_s "$W/$name.out")
		l=$(field train_loss "$W/$name.out")
		eval "step_$v=\$s loss_$v=\$l"
		if [ $rc = 125 ]; then st=not-run det=deadline
		elif [ $rc = 124 ]; then st=timeout det="did not finish"
		elif [ $rc = 0 ] && [ -n "$s" ]; then
			st=pass
			fw=$(field fused_layers_forward "$W/$name.out")
			bw=$(field fused_layers_backward "$W/$name.out")
			det="batch $b: preloaded step $s s, train_loss $l, fused layers $fw/3 forward $bw/2 backward, math $(sed -n 's/.*"math":"\([^"]*\)".*/\1/p' "$W/$name.out")"
			figure "step_s_${v}_$b" "$s"
			case $v in *_fused) figure "fused_layers_forward_$v" "${fw:-null}"
				figure "fused_layers_backward_$v" "${bw:-null}" ;; esac
		else st=fail det="exit $rc: $(tail -1 "$W/$name.out")"
		fi
		record $name $st $el "$det"
	done
	# speedups (unfused / fused, fp32 / tf32) as figures
	for p in "epilogue_speedup_fp32 $step_fp32_unfused $step_fp32_fused" \
		 "epilogue_speedup_tf32 $step_tf32_unfused $step_tf32_fused" \
		 "tf32_speedup_fused $step_fp32_fused $step_tf32_fused"; do
		set -- $p
		[ $# = 3 ] && figure "${1}_$b" "$(awk -v a="$2" -v b="$3" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print "null" }')"
	done
	if [ -z "$loss_fp32_fused" ] || [ -z "$loss_fp32_unfused" ]; then
		record math-epilogue-agree fail 0 "a run gave no loss"
	elif awk -v a="$loss_fp32_fused" -v b="$loss_fp32_unfused" \
		'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= 1e-3 * (m + 1e-3)) }'; then
		record math-epilogue-agree pass 0 "train_loss fused $loss_fp32_fused, unfused $loss_fp32_unfused"
	else
		record math-epilogue-agree fail 0 "train_loss fused $loss_fp32_fused vs unfused $loss_fp32_unfused: over 1e-3 relative"
	fi
}

step_starve() {
	for b in 64 256 1024; do
		for m in mlp synthetic; do
			name=starve-$m-$b
			if [ $m = mlp ]; then spec="mlp:784-128-10 --preloaded"; else spec=synthetic:$SYNTH_US; fi
			# shellcheck disable=SC2086
			run $name 90 "$(prog pipe-train)" --device $DEV --model $spec --epochs 1 \
				--batch $b --json --quiet $SHARDS
			r=$(field never_starves_ratio "$W/$name.out")
			if [ $rc = 125 ]; then st=not-run det=deadline
			elif [ $rc = 124 ]; then st=timeout det="did not finish"
			elif [ $rc = 0 ] && [ -n "$r" ]; then
				st=pass
				det="never_starves_ratio $r, step $(field step_s "$W/$name.out") s, preloaded $(field preloaded_step_s "$W/$name.out") s, $(field images_per_sec "$W/$name.out") images/s"
				figure "never_starves_ratio_${m}_$b" "$r"
			else st=fail det="exit $rc, no ratio: $(tail -1 "$W/$name.out")"
			fi
			record $name $st $el "$det"
		done
	done
}

step_copy() {
	run copy 90 "$(prog copy_bench)" $DEV "${DC_COPY_RUNS:-5}"
	if [ $rc = 0 ]; then
		# the 64 MiB row: bytes pinned pageable pinned-x2
		row=$(awk '$1 == 67108864' "$W/copy.out")
		set -- $row
		figure h2d_pinned_GBps_64MiB "${2:-null}"
		figure h2d_pageable_GBps_64MiB "${3:-null}"
		record copy pass $el "64 MiB: pinned ${2:-?} GB/s, pageable ${3:-?} GB/s, pinned on 2 streams ${4:-?}"
	else
		record copy "$([ $rc = 125 ] && echo not-run || echo fail)" $el "exit $rc: $(tail -1 "$W/copy.out")"
	fi
}

# verdict_cmp NAME A B WHAT: pass when the two files are equal
verdict_cmp() {
	if [ $rc = 125 ]; then record "$1" not-run 0 deadline
	elif [ -s "$2" ] && cmp -s "$2" "$3"; then record "$1" pass $el "$4: bit for bit equal"
	else record "$1" fail $el "$4: differ or missing ($(cmp "$2" "$3" 2>&1 | head -1))"
	fi
}

step_same_seed() {
	T=$(prog pipe-train)
	run same-seed-1 60 "$T" --device $DEV --epochs 1 --seed 3 --quiet --save "$W/s1.ckpt" $SHARDS
	r1=$rc
	run same-seed-2 60 "$T" --device $DEV --epochs 1 --seed 3 --quiet --save "$W/s2.ckpt" $SHARDS
	[ $r1 = 125 ] && rc=125
	verdict_cmp same-seed "$W/s1.ckpt" "$W/s2.ckpt" "two runs of seed 3, saved models"
}

step_resume() {
	T=$(prog pipe-train)
	half=$((SAMPLES / 64 / 2))
	run resume-all 60 "$T" --device $DEV --epochs 2 --seed 5 --quiet --save "$W/all.ckpt" $SHARDS
	run resume-stop 60 "$T" --device $DEV --epochs 2 --seed 5 --quiet \
		--checkpoint "$W/run.ckpt" --stop-after-steps $((half * 3)) $SHARDS
	stop=$rc
	run resume-go 60 "$T" --resume "$W/run.ckpt" --quiet --read-threads 3 --save "$W/res.ckpt"
	if [ $stop != 130 ] && [ $rc != 125 ]; then
		record resume fail $el "the interrupted run exited $stop, not 130"
	else
		verdict_cmp resume "$W/all.ckpt" "$W/res.ckpt" "stopped at step $((half * 3)), resumed, final model vs uninterrupted"
	fi
}

# nccl-one: --allreduce nccl alone (a group of one: NCCL's init, the
# bucketed all-reduce on the device, Adam after it) against a plain run
# of the same seed: the losses agree (1e-4 relative; the gradients are
# scaled by 1/rows at the loss instead of after it: equal bits expected,
# not required); figure nccl_same_bits.  libnccl.so.2 is not carried
# (218 MB): the machine's own is used (PF_NCCL_LIBRARY when found); a
# machine without it is "refused", not a failure.  The dry run checks
# the cpu side: NCCL declined with its one line, the same model.
step_nccl() {
	T=$(prog pipe-train)
	if [ $DRY = 0 ] && [ -z "${PF_NCCL_LIBRARY:-}" ]; then
		n=$(ls /usr/local/cuda/lib/libnccl.so.2 /usr/local/cuda/lib64/libnccl.so.2 2>/dev/null | head -1)
		[ -n "$n" ] || n=$(find / -name libnccl.so.2 -not -path '/proc/*' 2>/dev/null | head -1)
		[ -n "$n" ] && { PF_NCCL_LIBRARY=$n; export PF_NCCL_LIBRARY; }
	fi
	run nccl-plain 60 "$T" --device $DEV --model mlp:784-128-10 --epochs 1 --batch 256 --seed 9 \
		--json --save "$W/np.ckpt" $SHARDS
	r1=$rc
	run nccl-one 60 "$T" --device $DEV --model mlp:784-128-10 --epochs 1 --batch 256 --seed 9 \
		--json --allreduce nccl --save "$W/nn.ckpt" $SHARDS
	f=$W/nccl-one.out
	a=$(field train_loss "$W/nccl-plain.out")
	l=$(field train_loss "$f")
	ar=$(sed -n 's/.*"allreduce":"\([a-z]*\)".*/\1/p' "$f")
	same=0
	cmp -s "$W/np.ckpt" "$W/nn.ckpt" && same=1
	agree=$(awk -v a="$a" -v b="$l" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; print (a != "" && b != "" && d <= 1e-4 * (m + 1e-3)) }')
	det="allreduce ${ar:-?}, train_loss $l (plain $a), same model bits $same, $(field images_per_sec "$f") images/s (plain $(field images_per_sec "$W/nccl-plain.out"))"
	if [ $rc = 125 ] || [ $r1 = 125 ]; then st=not-run det=deadline
	elif [ $rc = 124 ] || [ $r1 = 124 ]; then st=timeout det="did not finish"
	elif [ $rc != 0 ] || [ $r1 != 0 ]; then st=fail det="exit $r1/$rc: $(grep -m1 'pipe-train:' "$f")"
	elif [ $DRY = 1 ]; then
		if [ "$ar" = none ] && grep -q 'NCCL needs the cuda device' "$f" && [ $same = 1 ]; then
			st=pass det="cpu: NCCL declined in one line, trained alone, the same model"
		else st=fail det="cpu: $det; $(grep -m1 NCCL "$f")"
		fi
	elif [ "$ar" != nccl ]; then
		st=refused det="no NCCL here: $(grep -m1 'NCCL' "$f")"
	elif [ "$agree" = 1 ]; then st=pass; figure nccl_same_bits $same
	else st=fail det="losses differ: $det"
	fi
	record nccl-one $st $el "$det"
}

echo "device-check: $MODE, budget ${BUDGET}s, output in $O"
if [ $DRY = 0 ]; then
	run machine 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
	MACHINE=$(head -1 "$W/machine.out" 2>/dev/null)
else
	MACHINE="dry run on $(uname -n), cpu device"
fi
step_tests
step_sanitize_tests memcheck
if make_data >> "$LOG" 2>&1; then
	SHARDS="$W/img-*.pfs"
	step_graph
	step_math
	step_starve
	step_copy
	step_same_seed
	step_resume
	step_nccl
else
	record data fail 0 "could not make the synthetic shards (python3, pipe-pack)"
fi
step_sanitize_tests initcheck

# ---- the summary ---------------------------------------------------------------
ELAPSED=$(($(now) - START))
count() { awk -F'\t' -v s="$1" '$2 == s' "$RES" | wc -l | tr -d ' '; }
NP=$(count pass); NF=$(count fail); NT=$(count timeout); NN=$(count not-run)
NR=$(count refused); NS=$(count skipped)
BAD=$((NF + NT + NN))
EXIT=0
[ $BAD -gt 0 ] && EXIT=1
{
	printf '{"mode":"%s","machine":"%s","budget_s":%s,"elapsed_s":%s,' \
		"$MODE" "$(printf '%s' "$MACHINE" | tr -d '"\\')" "$BUDGET" "$ELAPSED"
	printf '"pass":%s,"fail":%s,"timeout":%s,"not_run":%s,"refused":%s,"skipped":%s,"exit":%s,' \
		"$NP" "$NF" "$NT" "$NN" "$NR" "$NS" "$EXIT"
	printf '"figures":{'
	awk -F'\t' '{ printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $1, ($2 ~ /^[-0-9.e+]+$/ ? $2 : "null") }' "$FIG"
	printf '},"checks":['
	awk -F'\t' '{ printf "%s{\"name\":\"%s\",\"status\":\"%s\",\"seconds\":%s,\"detail\":\"%s\"}", (NR > 1 ? "," : ""), $1, $2, $3, $4 }' "$RES"
	printf ']}\n'
} > "$O/summary.json"
{
	echo "device-check: $MODE; $MACHINE"
	echo "elapsed ${ELAPSED}s of a ${BUDGET}s budget; $NP pass, $NF fail, $NT timeout, $NN not run, $NR refused, $NS skipped; exit $EXIT"
	awk -F'\t' '{ printf "%-26s %-8s %4ss  %s\n", $1, $2, $3, $4 }' "$RES"
} > "$O/summary.txt"
echo
cat "$O/summary.txt"
exit $EXIT
