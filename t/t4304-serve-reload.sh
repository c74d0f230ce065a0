#!/bin/sh
# t4304-serve-reload: pipe-serve picks up a new version directory while
# serving under load: pipe-load's closed loop (8 clients) runs across the
# reload without one failed request, the new version answers afterwards
# (its model_version, other logits); a broken newer version is refused
# with its reason logged once and the serving version keeps answering;
# fixed in place, it is loaded.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need serve load curl
plan 8
tmp=`tap_tmp t4304`
syn_shards "$tmp/syn" 1000 1 1
serve_model "$tmp" 1 && serve_model "$tmp" 2 "$tmp/next/model.ckpt" &&
serve_model "$tmp" 3 "$tmp/third.ckpt"
ok $? "three models trained (seeds 1, 2, 3)"
serve_start "$tmp" --poll-ms 50 --max-batch-size 8 --batch-timeout-us 500
v2=http://127.0.0.1:$port/v2/models/syn/infer
body='{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}]}'
before=$(curl -s -d "$body" "$v2")
timeout 60 "$b/pipe-load" --concurrency 8 --duration 2 --warmup 0 --dim 16 --json \
	"http://127.0.0.1:$port/v1/models/syn:predict" >"$tmp/load" &
lpid=$!
sleep 0.7
# a version appears whole: made beside, then renamed into place
mv "$tmp/next" "$tmp/models/syn/2"
wait $lpid
rc=$?
ok $rc "pipe-load across the reload: no failed request ($(cat "$tmp/load"))"
grep -q "model syn: version 2 serves now (was 1)" "$tmp/err"
ok $? "the reload is logged"
after=$(curl -s -d "$body" "$v2")
case "$before|$after" in
*'"model_version":"1"'*'|'*'"model_version":"2"'*) ok 0 "requests now get version 2" ;;
*) ok 1 "requests now get version 2"; diag "$before | $after" ;;
esac
[ "${before#*data}" != "${after#*data}" ]
ok $? "... whose logits differ from version 1's"

# a broken version 3: refused once, version 2 keeps serving
mkdir -p "$tmp/v3"
echo "half a file" >"$tmp/v3/model.ckpt"
mv "$tmp/v3" "$tmp/models/syn/3"
sleep 0.5
n=$(grep -c "version 3 refused" "$tmp/err")
now=$(curl -s -d "$body" "$v2")
ok $([ "$n" = 1 ] && [ "$now" = "$after" ]; echo $?) \
	"a broken version 3 is refused with its reason, logged once ($n), version 2 keeps serving"
cp "$tmp/third.ckpt" "$tmp/models/syn/3/model.ckpt.new" && mv "$tmp/models/syn/3/model.ckpt.new" "$tmp/models/syn/3/model.ckpt"
for i in $(seq 50); do
	grep -q "version 3 serves now" "$tmp/err" && break
	sleep 0.1
done
like "$(curl -s -d "$body" "$v2")" '"model_version":"3"' "fixed in place, version 3 is loaded"
kill -TERM $pid
wait $pid
is $? 0 "SIGTERM: exit 0 (retired versions freed)"
