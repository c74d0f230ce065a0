"""Map functions written in Python (the slow way; see register_map).

The C map op calls them from its worker threads through a ctypes callback,
which takes the GIL: whatever `par` says, one sample at a time runs Python,
so a Python map serializes the pipeline at that stage.  Built-in maps
(decode, decode_f32, normalize) and C plugins (map(lib.so:name)) run on all
workers without the GIL; use those for anything hot.
"""
import ctypes
import re
import sys
import traceback

from . import _lib
from ._lib import lib, pf_elem, pf_error, pf_schema

_EMAP = -12


class pf_map_ctx(ctypes.Structure):
    _fields_ = [("in_", ctypes.POINTER(pf_schema)),
                ("record", ctypes.POINTER(pf_schema)),
                ("args", ctypes.c_char_p),
                ("user", ctypes.c_void_p),
                ("out", pf_schema),
                ("max_out_bytes", ctypes.c_size_t),
                ("state", ctypes.c_void_p),
                ("free_state", ctypes.c_void_p)]


_lib.STRUCTS["pf_map_ctx"] = pf_map_ctx
_PREPARE_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(pf_map_ctx), ctypes.POINTER(pf_error))
_FN_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(pf_elem),
                         ctypes.POINTER(pf_elem), ctypes.POINTER(pf_error))
lib.pf_map_register.restype = ctypes.c_int
lib.pf_map_register.argtypes = [ctypes.c_char_p, _PREPARE_T, _FN_T, ctypes.c_void_p,
                                ctypes.POINTER(pf_error)]
lib.pf_schema_parse.restype = ctypes.c_int
lib.pf_schema_parse.argtypes = [ctypes.POINTER(pf_schema), ctypes.c_char_p, ctypes.POINTER(pf_error)]

_registered = {}   # name -> (fn, out text, callbacks): kept for the process


def _set_error(err, code, text):
    e = err.contents
    if e.code == 0:
        e.code = code
        b = text.encode("utf-8", "replace")[:_lib.PF_ERROR_MSG_MAX - 1]
        e.msg = b


def _views(elem, schema, writable):
    import numpy as np
    out = {}
    s = schema.contents
    for i in range(s.nfields):
        f = s.fields[i]
        name, ts, _ = _lib.DTYPES[f.dtype]
        shape = [elem.var_len[i] if d == _lib.PF_DIM_VAR else d for d in f.dims[:f.ndim]]
        n = elem.nitems[i]
        dt = np.dtype(ts)
        if not elem.data[i] or n == 0:
            a = np.zeros(shape if shape else (), dtype=dt)
        else:
            buf = (ctypes.c_char * (n * dt.itemsize)).from_address(elem.data[i])
            a = np.frombuffer(buf, dtype=dt).reshape(shape if shape else ())
        if not writable:
            a.flags.writeable = False
        out[f.name.decode()] = a
    return out


def register_map(name, fn, out):
    """Register fn as the map function `name` for specs (`map(name)`,
    `map(name, par=N)`), process-wide, once per name.

    fn(fields) gets a dict of read-only numpy arrays (one element's fields,
    valid during the call) and returns a dict (by name) or a sequence (in
    order) of array-likes for the output schema `out` (schema text, fixed
    shapes only: "image: f32[28,28], label: i64"); each is copied into the
    element (numpy casting and broadcasting rules).  An exception fails the
    sample with PF_EMAP and the exception's text (or drops it with
    isolate=true).  It runs under the GIL: see the module doc."""
    if name in _registered:
        raise ValueError("pipefeed: a map called %r is registered already" % name)
    out_s = pf_schema()
    err = pf_error()
    if lib.pf_schema_parse(ctypes.byref(out_s), out.encode(), ctypes.byref(err)) < 0:
        raise ValueError("pipefeed: output schema %r: %s" % (out, err.msg.decode()))
    for i in range(out_s.nfields):
        if _lib.PF_DIM_VAR in list(out_s.fields[i].dims[:out_s.fields[i].ndim]):
            raise ValueError("pipefeed: Python maps give fixed shapes only (%r)" % out)
    names = [out_s.fields[i].name.decode() for i in range(out_s.nfields)]

    def prepare(ctx, e):
        try:
            ctypes.memmove(ctypes.addressof(ctx.contents.out), ctypes.addressof(out_s),
                           ctypes.sizeof(pf_schema))
            return 0
        except BaseException as ex:   # noqa: B902 - never unwind into C
            _set_error(e, _EMAP, "python map %s: %r" % (name, ex))
            return _EMAP

    def call(state, inp, outp, e):
        import numpy as np
        try:
            ins = _views(inp.contents, inp.contents.schema, False)
            res = fn(ins)
            if isinstance(res, dict):
                res = [res[k] for k in names]
            dst = _views(outp.contents, outp.contents.schema, True)
            if len(res) != len(names):
                raise ValueError("returned %d fields, the schema has %d" % (len(res), len(names)))
            for k, v in zip(names, res):
                np.copyto(dst[k], v, casting="unsafe")
            return 0
        except BaseException as ex:   # noqa: B902 - never unwind into C
            msg = "".join(traceback.format_exception_only(type(ex), ex)).strip()
            _set_error(e, _EMAP, "python: " + msg)
            return _EMAP

    cbs = (_PREPARE_T(prepare), _FN_T(call))
    rc = lib.pf_map_register(name.encode(), cbs[0], cbs[1], None, ctypes.byref(err))
    if rc < 0:
        raise ValueError("pipefeed: register %r: %s" % (name, err.msg.decode()))
    _registered[name] = (fn, out, cbs)


def used_in(spec):
    """The Python maps a spec names."""
    return [n for n in _registered if re.search(r"\bmap\(\s*%s\b" % re.escape(n), spec)]


def warn(spec, stats):
    """One warning on stderr per pipeline, and an event in its stats file
    (pipe-stat lists it with the knob changes), for each Python map."""
    for n in used_in(spec):
        text = ("Python map %s runs under the GIL: one sample at a time whatever its par; "
                "use a built-in or C plugin map (map(lib.so:fn)) for speed" % n)
        sys.stderr.write("pipefeed: warning: %s\n" % text)
        if stats is not None:
            lib.pf_stats_event(stats, 0, -1, b"python_map", 0, 1, text.encode()[:127])
