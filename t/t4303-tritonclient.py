"""t4303: Triton's own Python client (tritonclient.http, unchanged) against
pipe-serve at URL: health, metadata, infer with binary and with JSON
tensors, the same answer both ways.  Prints TAP lines (the shell test
gives the plan)."""
import sys

import numpy as np
import tritonclient.http as httpclient

n = 0
failed = 0


def ok(cond, title):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (n, title), flush=True)


url, model = sys.argv[1], sys.argv[2]
c = httpclient.InferenceServerClient(url=url)
ok(c.is_server_live() and c.is_server_ready(), "tritonclient: server live and ready")
ok(c.is_model_ready(model), "tritonclient: model ready")
md = c.get_model_metadata(model)
ok(md["inputs"][0]["shape"] == [-1, 16] and md["outputs"][0]["name"] == "logits",
   "tritonclient: model metadata %s" % md["inputs"])
x = (np.arange(32, dtype=np.float32).reshape(2, 16) / 32.0).astype(np.float32)
res = {}
for binary in (True, False):
    inp = httpclient.InferInput("input", [2, 16], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    r = c.infer(model, [inp], outputs=[out], request_id="tc-%d" % binary)
    y = r.as_numpy("logits")
    res[binary] = y
    ok(y is not None and y.shape == (2, 4) and y.dtype == np.float32 and
       r.get_response()["id"] == "tc-%d" % binary,
       "tritonclient: infer with %s tensors: logits %s" %
       ("binary" if binary else "JSON", None if y is None else y.shape))
ok(res[True] is not None and res[False] is not None and np.array_equal(res[True], res[False]),
   "tritonclient: binary and JSON tensors give the same logits")
try:
    c.infer("no-such-model", [inp])
    ok(False, "tritonclient: an unknown model raises")
except Exception as e:  # InferenceServerException
    ok("not available" in str(e), "tritonclient: an unknown model raises: %s" % e)
sys.exit(1 if failed else 0)
