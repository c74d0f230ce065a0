#!/bin/sh
# t5120-device-check: bench/device-check.sh --dry-run runs its steps on the
# cpu device over this build tree: the summary (JSON and text) is written
# under $OUT with every step's status and the figures, the exit status is
# 0 when nothing failed; a sanitizer that cannot attach is "refused" (a
# stand-in that answers as compute-sanitizer does on a machine that refuses
# the device), one that reports errors fails the run, one that reports 0
# errors passes; a failing test fails the run (exit 1); and a budget too
# short for the steps ends within it, marks the rest "not-run" and exits 1
# with the summary written.  nccl-one declines NCCL on cpu (one line, the
# same model).  The math steps (--tf32 and --epilogue on/off) pass, the
# fused and unfused runs agree, and their step times are figures.
. "$srcdir/t/tap.sh"
command -v python3 >/dev/null || skip_all "no python3 (the script makes its data with it)"
plan 19
tmp=`tap_tmp t5120`
dc="$srcdir/bench/device-check.sh"
export DC_SAMPLES=2048 DC_SYNTH_US=300 DC_COPY_RUNS=1 DC_TESTS=t3003-checkpoint

# a stand-in sanitizer: MODE=refuse|errors|clean, then runs the program
mk_san() {
	cat > "$tmp/san-$1" <<EOS
#!/bin/sh
while [ \$# -gt 0 ]; do case \$1 in --tool|--error-exitcode|--print-limit) shift 2 ;; *) break ;; esac; done
case $1 in
refuse) echo "========= Error: Device not supported"; exit 1 ;;
errors) "\$@" >/dev/null 2>&1; echo "========= Invalid __global__ read of size 4"; echo "========= ERROR SUMMARY: 3 errors"; exit 86 ;;
clean) "\$@"; st=\$?; echo "========= ERROR SUMMARY: 0 errors"; exit \$st ;;
esac
EOS
	chmod +x "$tmp/san-$1"
}
mk_san refuse; mk_san errors; mk_san clean

OUT=$tmp/out1 COMPUTE_SANITIZER=$tmp/san-refuse sh "$dc" --dry-run "$top_builddir" > "$tmp/run1.txt" 2>&1
st=$?
is $st 0 "dry run with a refusing sanitizer: exit 0"
[ $st = 0 ] || sed 's/^/# /' "$tmp/run1.txt"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out1/summary.json"
ok $? "summary.json is JSON"
j=`cat "$tmp/out1/summary.json"`
like "$j" '"name":"test-t3003-checkpoint","status":"pass"' "the device test passed on cpu"
like "$j" '"name":"memcheck-t3003-checkpoint","status":"refused","seconds":*,"detail":"========= Error: Device not supported"' \
	"a sanitizer that cannot attach is reported as refused, with its words"
like "$j" '"name":"graph-memcheck","status":"refused"' "so is pipe-train --graph under memcheck"
n=`grep -o '"status":"pass"' "$tmp/out1/summary.json" | wc -l`
is $n 16 "16 checks passed: the test, 4 math runs and their agreement, 6 never-starves runs, copy, same seed, resume, nccl-one"
like "$j" '"name":"nccl-one","status":"pass","seconds":*,"detail":"cpu: NCCL declined in one line' \
	"nccl-one on cpu: NCCL declined, the same model"
like "$j" '"name":"math-epilogue-agree","status":"pass"' "fused and unfused epilogues: the same loss"
like "$j" '"step_s_tf32_unfused_256":' "the figures carry the step times by math and epilogue"
like "$j" '"name":"math-tf32_fused","status":"pass","seconds":*,"detail":"batch 256: *math fp32 (tf32 asked: no effect on the cpu backend)"' \
	"the cpu dry run says --tf32 had no effect"
like "$j" '"fused_layers_backward_fp32_fused":2' "the figures say how many layers ran fused"
like "$j" '"never_starves_ratio_synthetic_1024":' "the figures carry the never-starves ratios"
like "$j" '"h2d_pinned_GBps_64MiB":' "and the pinned copy rate"
like "`cat "$tmp/out1/summary.txt"`" "exit 0" "summary.txt says the verdict"

OUT=$tmp/out2 COMPUTE_SANITIZER=$tmp/san-errors DC_TESTS=t3003-checkpoint \
	sh "$dc" --dry-run "$top_builddir" > /dev/null 2>&1
is $? 1 "a sanitizer reporting errors fails the run (exit 1)"
like "`cat "$tmp/out2/summary.json"`" '"name":"memcheck-t3003-checkpoint","status":"fail","seconds":' \
	"and the check says fail"

OUT=$tmp/out3 COMPUTE_SANITIZER=$tmp/san-clean DC_TESTS="t3003-checkpoint t9999-missing" \
	sh "$dc" --dry-run "$top_builddir" > /dev/null 2>&1
st=$?
j=`cat "$tmp/out3/summary.json"`
like "$j" '"name":"initcheck-t3003-checkpoint","status":"pass","seconds":' "0 sanitizer errors pass"
ok `[ $st = 1 ] && echo "$j" | grep -q '"name":"test-t9999-missing","status":"fail"'; echo $?` \
	"a test that cannot run fails the run"

t0=`date +%s`
OUT=$tmp/out4 DC_BUDGET=12 DC_TESTS="t3003-checkpoint" DC_SAMPLES=20000 \
	sh "$dc" --dry-run "$top_builddir" > /dev/null 2>&1
st=$?
el=$((`date +%s` - t0))
ok `[ $st = 1 ] && [ $el -le 20 ] && grep -q '"status":"not-run"' "$tmp/out4/summary.json"; echo $?` \
	"a 12 s budget: ended in ${el}s, exit $st, the steps left marked not-run"
