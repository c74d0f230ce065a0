#!/bin/sh
# t4300-serve-http: pipe-serve end to end with curl, on a model that a short
# pipe-train --save run trained on synthetic shards: TF Serving REST
# (instances and inputs, status, metadata), KServe v2 (health, metadata,
# ready, infer with JSON and binary tensors), the same answer through both,
# trace ids (traceparent, X-Request-Id, made up) echoed and in the access
# log, quotas (413 JSON errors), malformed requests failing alone among
# good ones, 404/405, /metrics, a broken version directory refused while the
# good one serves, fail-fast 429 beyond --max-enqueued, and SIGTERM draining
# the requests in flight and exiting 0.
. "$srcdir/t/tap.sh"
b=$top_builddir
[ -x "$b/pipe-serve" ] || skip_all "pipe-serve not built (configure found no libmicrohttpd or jansson)"
command -v curl >/dev/null || skip_all "no curl"
plan 36
tmp=`tap_tmp t4300`

syn_shards "$tmp/syn" 2000 1 1 &&
mkdir -p "$tmp/models/syn/1" "$tmp/models/syn/2" &&
timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 --lr 0.01 \
	--seed 7 --epochs 2 --save "$tmp/models/syn/1/model.ckpt" "$tmp/syn-*.pfs" \
	>/dev/null 2>&1
ok $? "a model trained by pipe-train --save into DIR/syn/1/"
echo "not a checkpoint" >"$tmp/models/syn/2/model.ckpt"

# start_server NAME ARGS...: pipe-serve on a free port; sets $port, $pid
start_server() {
	n=$1; shift
	"$b/pipe-serve" --model-dir "$tmp/models" --port 0 "$@" \
		>"$tmp/$n.out" 2>"$tmp/$n.err" &
	pid=$!
	port=
	for i in $(seq 100); do
		port=$(awk '/listening on port/ { print $NF }' "$tmp/$n.out")
		[ -n "$port" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$port" ]
}
# req METHOD PATH [DATA]: body in $tmp/body, headers in $tmp/hdr, prints the status
req() {
	if [ -n "$3" ]; then
		curl -s -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' -X "$1" \
			--data-binary "$3" "http://127.0.0.1:$port$2"
	else
		curl -s -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' -X "$1" \
			"http://127.0.0.1:$port$2"
	fi
}
# has FILE TEXT TITLE: FILE contains TEXT (fixed string: JSON has brackets)
has() {
	if grep -qF -- "$2" "$1"; then ok 0 "$3"; else ok 1 "$3"; diag "  $(head -c 300 "$1") does not contain $2"; fi
}
row1='[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]'
row2='[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]'

# one GEMM shape (every batch padded to 4): answers equal bit for bit
# whatever the batch-mates (OpenBLAS rounds by shape otherwise)
start_server main --max-batch-size 4 --allowed-batch-sizes 4 --max-instances 4 \
	--max-body-bytes 4096 --batch-timeout-us 2000 \
	--access-log "$tmp/access.log"
ok $? "pipe-serve starts on a free port ($port)"
grep -q "version 2 refused: .*model.ckpt: offset" "$tmp/main.err"
ok $? "the broken version 2 is refused with its reason logged"

s=$(req POST /v1/models/syn:predict "{\"instances\":[$row1,$row2]}")
tf=$(cat "$tmp/body")
is "$s" 200 "TF predict (instances) answers 200"
has "$tmp/body" '{"predictions":[[' "... with predictions, one row per instance"
n=$(printf '%s' "$tf" | tr -cd ',' | wc -c)
is "$n" 7 "... 2 rows of 4 logits"
s=$(req POST /v1/models/syn/versions/1:predict "{\"inputs\":[$row1,$row2]}")
is "$s:$(sed 's/"outputs"/"predictions"/' "$tmp/body")" "200:$tf" \
	"TF predict (inputs, version 1) answers the same as outputs"
s=$(req POST /v2/models/syn/infer \
	"{\"id\":\"q7\",\"inputs\":[{\"name\":\"input\",\"shape\":[2,16],\"datatype\":\"FP32\",\"data\":[$row1,$row2]}]}")
v2=$(cat "$tmp/body")
is "$s" 200 "v2 infer answers 200"
a=$(printf '%s' "$tf" | sed 's/.*"predictions":\[\[//; s/\]\]}//; s/\],\[/,/')
c=$(printf '%s' "$v2" | sed 's/.*"data":\[//; s/\]}.*//')
is "$c" "$a" "v2 infer and TF predict give the same logits"
has "$tmp/body" '"id":"q7"' "v2 infer echoes the request id"

# binary tensor extension: 16 little-endian 1.0f in, binary logits out
j='{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}'
{ printf '%s' "$j"; for i in $(seq 16); do printf '\000\000\200\077'; done; } >"$tmp/bin.req"
s=$(curl -s -o "$tmp/bin.out" -D "$tmp/hdr" -w '%{http_code}' \
	-H "Inference-Header-Content-Length: ${#j}" --data-binary @"$tmp/bin.req" \
	"http://127.0.0.1:$port/v2/models/syn/infer")
hl=$(tr -d '\r' <"$tmp/hdr" | awk -F': ' 'tolower($1) == "inference-header-content-length" { print $2 }')
sz=$(wc -c <"$tmp/bin.out")
ok $([ "$s" = 200 ] && [ -n "$hl" ] && [ "$sz" -eq $((hl + 16)) ]; echo $?) \
	"v2 binary tensors in and out (status $s, JSON $hl + 16 bytes of logits = $sz)"
# the binary answer's JSON header is printed directly when nothing needs
# escaping, through jansson otherwise (an id): the same header either way
fast=$(head -c "$hl" "$tmp/bin.out")
ji='{"id":"q\"8","inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}}],"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}'
{ printf '%s' "$ji"; for i in $(seq 16); do printf '\000\000\200\077'; done; } >"$tmp/bin2.req"
curl -s -o "$tmp/bin2.out" -D "$tmp/hdr2" -H "Inference-Header-Content-Length: ${#ji}" \
	--data-binary @"$tmp/bin2.req" "http://127.0.0.1:$port/v2/models/syn/infer" >/dev/null
hl2=$(tr -d '\r' <"$tmp/hdr2" | awk -F': ' 'tolower($1) == "inference-header-content-length" { print $2 }')
slow=$(head -c "${hl2:-0}" "$tmp/bin2.out")
is "$fast" '{"model_name":"syn","model_version":"1","outputs":[{"name":"logits","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":16}}]}' \
	"the binary answer's header, printed directly"
is "$slow" "${fast%\}},\"id\":\"q\\\"8\"}" "... equals jansson's (with an id, escaped) but for the id"

is "$(req GET /v1/models/syn)" 200 "TF model status answers"
like "$(cat "$tmp/body")" '"version":"1","state":"AVAILABLE"' "... version 1 AVAILABLE"
req GET /v1/models/syn/metadata >/dev/null
like "$(cat "$tmp/body")" '"size":"16"' "TF metadata gives the input shape"
is "$(req GET /v2/health/live)$(req GET /v2/health/ready)" 200200 "v2 live and ready"
req GET /v2/models/syn >/dev/null
has "$tmp/body" '"shape":[-1,16]' "v2 model metadata gives the input shape"
is "$(req GET /v2/models/syn/ready)" 200 "v2 model ready"

# trace ids
tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
curl -s -D "$tmp/hdr" -o /dev/null -H "traceparent: $tp" "http://127.0.0.1:$port/v2/health/live"
like "$(cat "$tmp/hdr")" "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-" "a traceparent's trace id is echoed"
curl -s -D "$tmp/hdr" -o /dev/null -H "X-Request-Id: req-42" "http://127.0.0.1:$port/v2/health/live"
like "$(cat "$tmp/hdr")" "X-Request-Id: req-42" "an X-Request-Id is echoed"
curl -s -D "$tmp/hdr" -o /dev/null "http://127.0.0.1:$port/v2/health/live"
id=$(tr -d '\r' <"$tmp/hdr" | awk -F': ' '$1 == "X-Request-Id" { print $2 }')
ok $([ ${#id} -eq 32 ]; echo $?) "a request without one gets a new id ($id)"

# quotas and errors
s=$(req POST /v1/models/syn:predict "{\"instances\":[$row1,$row1,$row1,$row1,$row1]}")
ok $([ "$s" = 413 ] && grep -q '"error":"instances: 5 instances, the quota is 4"' "$tmp/body"; echo $?) \
	"5 instances over --max-instances 4: 413 with a JSON error"
big=$(awk 'BEGIN { for (i = 0; i < 500; i++) printf "0,0,0,0,0,0,0,0,0,0," }')
s=$(req POST /v1/models/syn:predict "{\"inputs\":[$big 1]}")
ok $([ "$s" = 413 ] && grep -q 'max_body_bytes' "$tmp/body"; echo $?) \
	"a body over --max-body-bytes: 413 naming the quota"
is "$(req POST /v1/models/nope:predict "{\"instances\":[$row1]}")" 404 "an unknown model: 404"
is "$(req POST /v1/models/syn/versions/2:predict "{\"instances\":[$row1]}")" 404 "the refused version: 404"
is "$(req GET /v1/models/syn:predict)" 405 "GET on :predict: 405"

# malformed requests among good ones: each fails alone
# (waits name the clients: a bare wait would wait for the server too)
cl=
for i in $(seq 12); do
	curl -s -o "$tmp/good.$i" -w '%{http_code}\n' -d "{\"instances\":[$row1]}" \
		"http://127.0.0.1:$port/v1/models/syn:predict" >"$tmp/gcode.$i" &
	cl="$cl $!"
	curl -s -o "$tmp/bad.$i" -w '%{http_code}\n' -d "{\"instances\":[[1,2,\"x\"" \
		"http://127.0.0.1:$port/v1/models/syn:predict" >"$tmp/bcode.$i" &
	cl="$cl $!"
done
wait $cl
g=$(cat "$tmp"/gcode.* | sort | uniq -c | awk '{ printf "%s*%s ", $1, $2 }')
bc=$(cat "$tmp"/bcode.* | sort | uniq -c | awk '{ printf "%s*%s ", $1, $2 }')
is "$g/$bc" "12*200 /12*400 " "12 malformed requests among 12 good ones: the good all 200, the bad all 400"
same=0
for i in $(seq 12); do
	[ "$(cat "$tmp/good.$i")" = "{\"predictions\":[[$(printf '%s' "$a" | cut -d, -f1-4)]]}" ] || same=1
done
ok $same "... and each good one got the right answer"

curl -s "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
ok $(grep -q '^pf_serve_responses_total{code="400"} 1[2-9]' "$tmp/metrics" &&
	grep -q '^pf_serve_batch_size_bucket{model="syn",le="+Inf"}' "$tmp/metrics" &&
	grep -q '^pf_serve_latency_seconds{quantile="0.99"}' "$tmp/metrics"; echo $?) \
	"/metrics: responses by code, the batch size histogram, latency quantiles"
grep -q "trace=req-42" "$tmp/access.log" && grep -q "POST /v2/models/syn/infer 200" "$tmp/access.log"
ok $? "the access log has a line per request with its trace id"
kill -TERM $pid
wait $pid
is $? 0 "SIGTERM: exit 0"

# SIGTERM drains: 6 requests waiting for a 2 s batch timeout are answered
# (the signal once the server holds all 6: /metrics' queue gauge, up to 15 s
# on a loaded host or a sanitizer build)
start_server drain --batch-timeout-us 2000000 --max-batch-size 64 --access-log none
cl=
for i in $(seq 6); do
	curl -s -o /dev/null -w '%{http_code}\n' -d "{\"instances\":[$row1]}" \
		"http://127.0.0.1:$port/v1/models/syn:predict" >"$tmp/dcode.$i" &
	cl="$cl $!"
done
for i in $(seq 150); do
	q=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^pf_serve_queued/ { print $2 }')
	[ "$q" = 6 ] && break
	sleep 0.1
done
kill -TERM $pid
wait $pid
rc=$?
wait $cl
is "$rc:$(cat "$tmp"/dcode.* | sort | uniq -c | awk '{ printf "%s*%s", $1, $2 }')" "0:6*200" \
	"SIGTERM with 6 requests in flight: all answered, exit 0"

# fail fast beyond --max-enqueued (a 3 s batch timeout: on a loaded host the
# five clients can start more than 300 ms apart, and a batch run in between
# makes room for a third)
start_server full --batch-timeout-us 3000000 --max-batch-size 64 --max-enqueued 2 --access-log none
cl=
for i in $(seq 5); do
	curl -s -o "$tmp/fbody.$i" -w '%{http_code}\n' -d "{\"instances\":[$row1]}" \
		"http://127.0.0.1:$port/v1/models/syn:predict" >"$tmp/fcode.$i" &
	cl="$cl $!"
done
wait $cl
f=$(cat "$tmp"/fcode.* | sort | uniq -c | awk '{ printf "%s*%s ", $1, $2 }')
is "$f" "2*200 3*429 " "5 requests at --max-enqueued 2: 2 answered, 3 refused with 429"
grep -h '"error"' "$tmp"/fbody.* | head -1 | grep -q 'queue full'
ok $? "... with a JSON error saying the queue is full"
kill -TERM $pid
wait $pid
is $? 0 "that server exits 0 too"
