#!/bin/sh
# t5105-train-math: pipe-train's --tf32 on the cpu backend: accepted, no
# effect (the same final loss bits as without it), and said so in the
# summary (the math: line, "math" in --json); without it the math is fp32.
# A value given to --tf32 is a usage error.  --epilogue=off (the unfused
# layers) gives the same model bits as the default fused epilogues on cpu
# (the saved checkpoints compared), and --json says how many layers ran
# fused; a bad --epilogue value is a usage error.
. "$srcdir/t/tap.sh"
plan 15
tmp=`tap_tmp t5105`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 2
ok $? "synthetic shards packed"

train() {
	timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 \
		--lr 0.01 --seed 3 --shuffle 200 --epochs 2 "$@" "$tmp/syn-*.pfs"
}
train --json >"$tmp/plain.json" 2>/dev/null
ok $? "pipe-train ran without --tf32"
like "`cat "$tmp/plain.json"`" '"math":"fp32"' "--json: math fp32 by default"
train --tf32 --json >"$tmp/tf32.json" 2>/dev/null
ok $? "pipe-train ran with --tf32 on cpu"
like "`cat "$tmp/tf32.json"`" '"math":"fp32 (tf32 asked: no effect on the cpu backend)"' \
	"--json: --tf32 reported as having no effect on cpu"
l0=`sed 's/.*"train_loss":\([^,]*\).*/\1/' "$tmp/plain.json"`
l1=`sed 's/.*"train_loss":\([^,]*\).*/\1/' "$tmp/tf32.json"`
is "$l1" "$l0" "cpu: --tf32 changes nothing (same final loss)"
train --tf32 --quiet >"$tmp/q.txt" 2>&1
test ! -s "$tmp/q.txt"
ok $? "--quiet: no summary, no math line"
train --tf32 >"$tmp/text.txt" 2>/dev/null
is "`grep '^math:' "$tmp/text.txt"`" 'math: fp32 (tf32 asked: no effect on the cpu backend)' \
	"the summary's math: line says so"
timeout 30 "$b/pipe-train" --tf32=on "$tmp/syn-*.pfs" >/dev/null 2>"$tmp/err"
is $? 2 "--tf32=on (a value) is a usage error"
train --save "$tmp/on.ckpt" --quiet
ok $? "pipe-train ran with the fused epilogues (default)"
train --epilogue=off --save "$tmp/off.ckpt" --quiet
ok $? "pipe-train ran with --epilogue=off"
cmp -s "$tmp/on.ckpt" "$tmp/off.ckpt"
ok $? "cpu: --epilogue=on and =off save the same model bit for bit"
timeout 30 "$b/pipe-train" --epilogue=fused "$tmp/syn-*.pfs" >/dev/null 2>"$tmp/err"
is $? 2 "--epilogue=fused is a usage error"
like "`cat "$tmp/plain.json"`" '"fused_layers_forward":2,"fused_layers_backward":1,' \
	"--json: both layers fused forward, the hidden one backward"
train --epilogue=off --json >"$tmp/off.json" 2>/dev/null
like "`cat "$tmp/off.json"`" '"fused_layers_forward":0,"fused_layers_backward":0,' \
	"--epilogue=off: no layer fused"
