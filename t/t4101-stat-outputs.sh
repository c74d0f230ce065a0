#!/bin/sh
# t4101-stat-outputs: pipe-stat --trace writes Chrome trace events that
# parse as JSON (traceEvents with stall / compute slices and counters),
# --svg writes well-formed SVG with a chart per panel, --json parses and has
# the fields the issue names.  The parsers are python3's (skipped without).
. "$srcdir/t/tap.sh"
command -v python3 >/dev/null 2>&1 && python3 -c 'import json, xml.etree.ElementTree' 2>/dev/null ||
	skip_all "python3 (json, xml.etree) is needed to check the outputs"
plan 6
tmp=`tap_tmp t4101`
b=$top_builddir
"$b/t/stats-gen" "$tmp/run.pfstat" \
	"range(0, 1000000) | map(slowmap(500), par=1) | batch(4) | prefetch(2)" 1000 150 20
ok $? "a run recorded"
"$b/pipe-stat" --json --trace "$tmp/trace.json" --svg "$tmp/run.svg" "$tmp/run.pfstat" >"$tmp/report.json"
ok $? "pipe-stat wrote the report, the trace and the SVG"
python3 - "$tmp/trace.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"]
names = {e["name"] for e in ev}
assert {"stall", "compute", "stall share", "throughput (elements/s)"} <= names, names
for e in ev:
    assert e["ph"] in "XCMi" and isinstance(e["pid"], int), e
    if e["ph"] == "X":
        assert e["dur"] >= 0 and e["ts"] >= 0, e
PY
ok $? "trace: valid JSON with stall/compute slices and counters (chrome://tracing, Perfetto)"
python3 - "$tmp/run.svg" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
assert r.tag == "{http://www.w3.org/2000/svg}svg", r.tag
lines = r.findall(".//{http://www.w3.org/2000/svg}polyline")
assert len(lines) >= 2, len(lines)
assert any(len(l.get("points").split()) > 3 for l in lines)
PY
ok $? "svg: well-formed XML, an SVG root, polylines with points"
python3 - "$tmp/report.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("stall_share", "verdict", "bottleneck", "ops", "stall_p50_ms", "stall_p99_ms",
          "usd_per_million_samples", "events"):
    assert k in d, k
assert len(d["ops"]) == 3 and d["ops"][1]["name"] == "map+batch", d["ops"]
assert 0 <= d["stall_share"] <= 1
PY
ok $? "json: parses, has stall_share, verdict, bottleneck, ops"
"$b/pipe-stat" --usd-per-hour 10 "$tmp/run.pfstat" >"$tmp/report.txt"
like "`cat "$tmp/report.txt"`" 'per million samples at $10.00/hour' "the cost uses --usd-per-hour"
