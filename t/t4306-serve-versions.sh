#!/bin/sh
# t4306-serve-versions: pipe-serve's version policies and labels (TF
# Serving's model_version_policy and version_labels, as flags): with
# --model-version-policy all every version directory serves, /versions/V
# and /labels/L reach the one named (the answers are those of that
# version's model, each trained with its own seed), the unversioned route
# the highest; unknown labels and versions get a 404 JSON error naming
# them; a new version directory is picked up and a removed one retired
# while serving; specific:V,V and latest:N serve what they list; bad flags
# are usage errors.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need serve curl
plan 24
tmp=`tap_tmp t4306`
syn_shards "$tmp/syn" 500 1 1 &&
serve_model "$tmp" 11 "$tmp/models/syn/1/model.ckpt" &&
serve_model "$tmp" 22 "$tmp/models/syn/2/model.ckpt" &&
serve_model "$tmp" 33 "$tmp/models/syn/3/model.ckpt" &&
serve_model "$tmp" 44 "$tmp/v4.ckpt"
ok $? "versions 1, 2 and 3 of a model, each trained from its own seed"
row='[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]'
# get PATH / post PATH: the status; the body in $tmp/body
get() { curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$port$1"; }
post() { curl -s -o "$tmp/body" -w '%{http_code}' --data-binary "{\"instances\":[$row]}" \
	"http://127.0.0.1:$port$1"; }
has() { if grep -qF -- "$2" "$1"; then ok 0 "$3"; else ok 1 "$3"; diag "  $(head -c 300 "$1") does not contain $2"; fi; }

serve_start "$tmp" --model-version-policy all --version-label stable=1 \
	--version-label syn:canary=3 --poll-ms 100
[ -n "$port" ]
ok $? "--model-version-policy all --version-label stable=1 --version-label syn:canary=3"
is "$(get /v1/models/syn)" 200 "GET /v1/models/syn"
is "$(grep -o '"version":"[0-9]*","state":"AVAILABLE"' "$tmp/body" | tr -dc '0-9')" 321 \
	"... lists versions 3, 2 and 1 as AVAILABLE"
for v in 1 2 3; do
	post /v1/models/syn/versions/$v:predict >/dev/null
	cp "$tmp/body" "$tmp/p$v"
done
a=$(cksum <"$tmp/p1"; cksum <"$tmp/p2"; cksum <"$tmp/p3")
a=$(echo "$a" | sort -u | wc -l)
ok $([ "$a" = 3 ] && grep -q predictions "$tmp/p1"; echo $?) "/versions/1, /2 and /3 answer, each with its own model's logits"
post /v1/models/syn:predict >/dev/null
cmp -s "$tmp/body" "$tmp/p3"
ok $? "no version in the route: the highest (3)"
post /v1/models/syn/labels/stable:predict >/dev/null
cmp -s "$tmp/body" "$tmp/p1"
ok $? "/labels/stable: version 1's answer"
post /v1/models/syn/labels/canary:predict >/dev/null
cmp -s "$tmp/body" "$tmp/p3"
ok $? "/labels/canary: version 3's answer"
is "$(post /v1/models/syn/labels/nope:predict)" 404 "/labels/nope: 404"
has "$tmp/body" '{"error":"label '"'"'nope'"'"' is not defined for model '"'"'syn'"'"'"}' "... a JSON error naming the label"
is "$(post /v1/models/syn/versions/7:predict)" 404 "/versions/7: 404"
has "$tmp/body" "version 7 of model 'syn' is not served (serving 3, 2, 1)" "... naming the version and what serves"
get /v2/models/syn >/dev/null
has "$tmp/body" '"versions":["3","2","1"]' "KServe v2 metadata lists the three versions"
curl -s -o "$tmp/body" --data-binary '{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":'"$row"'}]}' \
	"http://127.0.0.1:$port/v2/models/syn/versions/2/infer"
has "$tmp/body" '"model_version":"2"' "KServe v2 /versions/2/infer answers from version 2"
# while serving: version 4 appears, version 2 goes
mkdir -p "$tmp/v4" && cp "$tmp/v4.ckpt" "$tmp/v4/model.ckpt" && mv "$tmp/v4" "$tmp/models/syn/4"
rm -rf "$tmp/models/syn/2"
for i in $(seq 50); do
	grep -q "version 2 no longer served" "$tmp/err" && grep -q "version 4 serves now" "$tmp/err" && break
	sleep 0.1
done
get /v1/models/syn >/dev/null
is "$(grep -o '"version":"[0-9]*"' "$tmp/body" | tr -dc '0-9')" 431 "while serving: version 4 added, version 2 retired (its directory gone)"
is "$(post /v1/models/syn/versions/2:predict)" 404 "... /versions/2: 404 now"
kill -TERM $pid
wait $pid
is $? 0 "SIGTERM: exit 0"

serve_start "$tmp" --model-version-policy syn=specific:1,3 --version-label stable=4
get /v1/models/syn >/dev/null
is "$(grep -o '"version":"[0-9]*"' "$tmp/body" | tr -dc '0-9')" 31 "specific:1,3 serves versions 3 and 1 (4 is on disk)"
is "$(post /v1/models/syn/labels/stable:predict)" 404 "a label on a version not served: 404"
has "$tmp/body" "label 'stable' of model 'syn' names version 4, which is not served (serving 3, 1)" "... saying so"
kill -TERM $pid
wait $pid

serve_start "$tmp" --model-version-policy latest:2
get /v1/models/syn >/dev/null
is "$(grep -o '"version":"[0-9]*"' "$tmp/body" | tr -dc '0-9')" 43 "latest:2 serves versions 4 and 3"
kill -TERM $pid
wait $pid

"$b/pipe-serve" --model-dir "$tmp/models" --model-version-policy sometimes 2>"$tmp/e1"
is $? 2 "--model-version-policy sometimes: usage error"
"$b/pipe-serve" --model-dir "$tmp/models" --port 0 --model-version-policy other=all 2>"$tmp/e2" >/dev/null
r=$?
ok $([ $r = 2 ] && grep -q "names model 'other'" "$tmp/e2"; echo $?) "a policy for a model not in --model-dir: usage error naming it"
"$b/pipe-serve" --model-dir "$tmp/models" --version-label stable 2>"$tmp/e3"
is $? 2 "--version-label without =VERSION: usage error"
