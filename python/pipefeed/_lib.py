"""ctypes declarations of libpipefeed's public API (pipeline/pipefeed.h,
pipeline/pf_spec.h, pipeline/pf_stats.h, lib/pf_types.h, lib/pf_schema.h).

Only the calls the package uses are declared.  The structs mirror the C
headers field by field; t/t6001-python-abi checks their sizes and offsets
against the C compiler's (t/py-abi.c), so a change of a C struct that is not
mirrored here fails a test instead of corrupting memory.

The library is found, in this order: $PIPEFEED_LIB (a path to
libpipefeed.so: the tests point it at the build tree), the build tree this
package sits in (python/../.libs/), then the installed one (the dynamic
loader's search path).
"""
import ctypes
import ctypes.util
import os

PF_MAX_FIELDS = 16
PF_MAX_DIMS = 6
PF_FIELD_NAME_MAX = 48
PF_ERROR_MSG_MAX = 512
PF_POS_MAX_OPS = 64
PF_DIM_VAR = -1
PF_END = 1
PF_AUTOTUNE = -1

# enum pf_errno (lib/pf_error.h)
PF_ERRNO = {
    -1: "PF_EINVAL", -2: "PF_ENOMEM", -3: "PF_EIO", -4: "PF_ENOENT",
    -5: "PF_ECORRUPT", -6: "PF_ETRUNC", -7: "PF_EVERSION", -8: "PF_EFORMAT",
    -9: "PF_ELIMIT", -10: "PF_EBUDGET", -11: "PF_ESPEC", -12: "PF_EMAP",
    -13: "PF_ESTATE", -14: "PF_ENOSPC", -15: "PF_ENODEV", -16: "PF_EINTR",
    -17: "PF_EOF_",
}

# enum pf_dtype (lib/pf_schema.h): name, numpy typestr, DLPack (code, bits)
DTYPES = {
    1: ("u8", "|u1", (1, 8)), 2: ("i8", "|i1", (0, 8)),
    3: ("u16", "<u2", (1, 16)), 4: ("i16", "<i2", (0, 16)),
    5: ("u32", "<u4", (1, 32)), 6: ("i32", "<i4", (0, 32)),
    7: ("u64", "<u8", (1, 64)), 8: ("i64", "<i8", (0, 64)),
    9: ("f16", "<f2", (2, 16)), 10: ("f32", "<f4", (2, 32)),
    11: ("f64", "<f8", (2, 64)),
}


class pf_error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * PF_ERROR_MSG_MAX)]


ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class pf_options(ctypes.Structure):
    _fields_ = [("memory_budget", ctypes.c_uint64),
                ("cpu_budget", ctypes.c_int),
                ("seed", ctypes.c_uint64),
                ("nondeterministic", ctypes.c_int),
                ("batch_alloc", ctypes.c_void_p),
                ("batch_free", ctypes.c_void_p),
                ("alloc_user", ctypes.c_void_p),
                ("world", ctypes.c_int),
                ("rank", ctypes.c_int),
                ("split", ctypes.c_int)]


class pf_field(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * PF_FIELD_NAME_MAX),
                ("dtype", ctypes.c_int),
                ("ndim", ctypes.c_int),
                ("dims", ctypes.c_int64 * PF_MAX_DIMS)]


class pf_schema(ctypes.Structure):
    _fields_ = [("nfields", ctypes.c_int),
                ("fields", pf_field * PF_MAX_FIELDS)]


class pf_elem(ctypes.Structure):
    _fields_ = [("schema", ctypes.POINTER(pf_schema)),
                ("batch", ctypes.c_uint32),
                ("id", ctypes.c_uint64),
                ("data", ctypes.c_void_p * PF_MAX_FIELDS),
                ("nitems", ctypes.c_int64 * PF_MAX_FIELDS),
                ("var_len", ctypes.c_int64 * PF_MAX_FIELDS),
                ("lengths", ctypes.c_void_p * PF_MAX_FIELDS),
                ("buf", ctypes.c_void_p),
                ("nbytes", ctypes.c_size_t),
                ("ref_", ctypes.c_void_p)]


class pf_iter_pos(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_uint64),
                ("delivered", ctypes.c_uint64),
                ("at_end", ctypes.c_uint32),
                ("nops", ctypes.c_uint32),
                ("op_epoch", ctypes.c_uint64 * PF_POS_MAX_OPS),
                ("order", ctypes.c_uint32)]


class pf_op_stats(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p),
                ("elements", ctypes.c_uint64),
                ("bytes", ctypes.c_uint64),
                ("busy_ns", ctypes.c_uint64),
                ("wait_input_ns", ctypes.c_uint64),
                ("blocked_output_ns", ctypes.c_uint64),
                ("buffer_bytes", ctypes.c_uint64),
                ("parallelism", ctypes.c_int),
                ("depth", ctypes.c_int),
                ("autotuned", ctypes.c_int),
                ("corrupt_blocks", ctypes.c_uint64),
                ("skipped_records", ctypes.c_uint64),
                ("dropped_samples", ctypes.c_uint64),
                ("occupancy", ctypes.c_int64),
                ("cpu_ns", ctypes.c_uint64),
                ("serial_cpu_ns", ctypes.c_uint64),
                ("decoded_records", ctypes.c_uint64)]


class pf_stats_opts(ctypes.Structure):
    _fields_ = [("interval_ms", ctypes.c_uint32),
                ("label", ctypes.c_char_p),
                ("sample_cap", ctypes.c_uint32),
                ("step_cap", ctypes.c_uint32),
                ("event_cap", ctypes.c_uint32),
                ("drop_cap", ctypes.c_uint32)]


# ---- the device layer (cuda/pf_device.h, cuda/pf_devfeed.h) ----------------

class pf_device_opts(ctypes.Structure):
    _fields_ = [("index", ctypes.c_int),
                ("cpu_threads", ctypes.c_int),
                ("test_copy_delay_us", ctypes.c_uint32),
                ("test_compute_delay_us", ctypes.c_uint32),
                ("test_seed", ctypes.c_uint64),
                ("tf32", ctypes.c_int)]


class pf_devfeed_opts(ctypes.Structure):
    _fields_ = [("depth", ctypes.c_int),
                ("slot_bytes", ctypes.c_size_t),
                ("epochs", ctypes.c_int64),
                ("pinned_batches", ctypes.c_int),
                ("zero_copy", ctypes.c_int),
                ("timeline", ctypes.c_int)]


class pf_devbatch(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_int),
                ("batch", ctypes.c_uint32),
                ("id", ctypes.c_uint64),
                ("seq", ctypes.c_uint64),
                ("epoch", ctypes.c_uint64),
                ("schema", ctypes.POINTER(pf_schema)),
                ("data", ctypes.c_void_p * PF_MAX_FIELDS),
                ("nitems", ctypes.c_int64 * PF_MAX_FIELDS),
                ("nbytes", ctypes.c_size_t)]


class pf_devfeed_stats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "batches", "bytes", "host_wait_ns", "stall_host_ns", "stall_device_ns",
        "feeder_input_ns", "feeder_slot_ns", "copy_ns")] + [
        ("zero_copy", ctypes.c_int)]


STRUCTS = {"pf_error": pf_error, "pf_options": pf_options,
           "pf_field": pf_field, "pf_schema": pf_schema, "pf_elem": pf_elem,
           "pf_iter_pos": pf_iter_pos, "pf_op_stats": pf_op_stats,
           "pf_stats_opts": pf_stats_opts, "pf_device_opts": pf_device_opts,
           "pf_devfeed_opts": pf_devfeed_opts, "pf_devbatch": pf_devbatch,
           "pf_devfeed_stats": pf_devfeed_stats}


def _find():
    env = os.environ.get("PIPEFEED_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, "..", "..", ".libs", "libpipefeed.so")
    if os.path.exists(tree):
        return tree
    return ctypes.util.find_library("pipefeed") or "libpipefeed.so.0"


P = ctypes.POINTER
c_vp = ctypes.c_void_p
c_int = ctypes.c_int
ERR = P(pf_error)

# name: (restype, argtypes).  CDLL calls release the GIL: pf_iter_next may
# block on the pipeline's threads while other Python threads run.
_SIGS = {
    "pf_pipeline_new": (c_int, [P(c_vp), P(pf_options), ERR]),
    "pf_pipeline_free": (None, [c_vp]),
    "pf_pipeline_nops": (c_int, [c_vp]),
    "pf_spec_apply": (c_int, [c_vp, ctypes.c_char_p, ERR]),
    "pf_spec_parse": (c_int, [P(c_vp), ctypes.c_char_p, ERR]),
    "pf_spec_free": (None, [c_vp]),
    "pf_spec_nstages": (c_int, [c_vp]),
    "pf_spec_stage_op": (ctypes.c_char_p, [c_vp, c_int]),
    "pf_pipeline_format": (c_int, [c_vp, ctypes.c_char_p, ctypes.c_size_t, ERR]),
    "pf_iter_new": (c_int, [P(c_vp), c_vp, ERR]),
    "pf_iter_new_at": (c_int, [P(c_vp), c_vp, P(pf_iter_pos), ERR]),
    "pf_iter_next": (c_int, [c_vp, P(pf_elem), ERR]),
    "pf_iter_free": (None, [c_vp]),
    "pf_iter_epoch": (ctypes.c_uint64, [c_vp]),
    "pf_iter_describe": (ctypes.c_size_t, [c_vp, ctypes.c_char_p, ctypes.c_size_t]),
    "pf_iter_position": (c_int, [c_vp, P(pf_iter_pos), ERR]),
    "pf_iter_epoch_start": (c_int, [c_vp, ctypes.c_uint64, ctypes.c_uint64, P(pf_iter_pos), ERR]),
    "pf_iter_nstages": (c_int, [c_vp]),
    "pf_iter_stats": (c_int, [c_vp, c_int, P(pf_op_stats)]),
    "pf_iter_stall": (None, [c_vp, P(ctypes.c_uint64), P(ctypes.c_uint64)]),
    "pf_elem_release": (None, [P(pf_elem)]),
    "pf_schema_format": (ctypes.c_size_t, [P(pf_schema), ctypes.c_char_p, ctypes.c_size_t]),
    "pf_stats_create": (c_int, [P(c_vp), ctypes.c_char_p, P(pf_stats_opts), ERR]),
    "pf_stats_attach": (c_int, [c_vp, c_vp, ERR]),
    "pf_stats_detach": (None, [c_vp]),
    "pf_stats_step": (None, [c_vp, ctypes.c_uint64, ctypes.c_uint64,
                             ctypes.c_uint64, ctypes.c_uint32]),
    "pf_stats_close": (c_int, [c_vp, ERR]),
    "pf_stats_event": (None, [c_vp, ctypes.c_uint64, c_int, ctypes.c_char_p,
                              ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p]),
}

path = _find()
lib = ctypes.CDLL(path)
for _name, (_res, _args) in _SIGS.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


# The device library (libpipefeed-device.so: pf_device.h, pf_devfeed.h),
# loaded on first use only (a loader without `device=` never needs it):
# $PIPEFEED_DEVICE_LIB, else beside the build tree's libpipefeed.so
# (cuda/.libs/), else the installed one.  In a build tree the cuda module
# (cuda/.libs/pf_cuda.so) is pointed at with $PF_CUDA_MODULE, unless set.
_DEV_SIGS = {
    "pf_device_open": (c_int, [P(c_vp), ctypes.c_char_p, P(pf_device_opts), ERR]),
    "pf_device_close": (None, [c_vp]),
    "pf_device_kind": (ctypes.c_char_p, [c_vp]),
    "pf_device_info": (ctypes.c_char_p, [c_vp]),
    "pf_device_note": (ctypes.c_char_p, [c_vp]),
    "pf_stream_new": (c_int, [c_vp, P(c_vp), ERR]),
    "pf_stream_free": (None, [c_vp, c_vp]),
    "pf_stream_sync": (c_int, [c_vp, c_vp, ERR]),
    "pf_stream_wait_event": (c_int, [c_vp, c_vp, c_vp, ERR]),
    "pf_event_new": (c_int, [c_vp, P(c_vp), ERR]),
    "pf_event_free": (None, [c_vp, c_vp]),
    "pf_event_record": (c_int, [c_vp, c_vp, c_vp, ERR]),
    "pf_event_query": (c_int, [c_vp, c_vp]),
    "pf_event_sync": (c_int, [c_vp, c_vp, ERR]),
    "pf_event_record_foreign": (c_int, [c_vp, c_vp, ctypes.c_size_t, ERR]),
    "pf_foreign_wait_event": (c_int, [c_vp, ctypes.c_size_t, c_vp, ERR]),
    "pf_devfeed_new": (c_int, [P(c_vp), c_vp, c_vp, c_vp, P(pf_devfeed_opts), ERR]),
    "pf_devfeed_next": (c_int, [c_vp, P(pf_devbatch), ERR]),
    "pf_devfeed_release": (c_int, [c_vp, P(pf_devbatch), ERR]),
    "pf_devfeed_get_stats": (None, [c_vp, P(pf_devfeed_stats)]),
    "pf_devfeed_free": (None, [c_vp]),
    "pf_devfeed_default_depth": (c_int, [c_vp]),
}
_dev = None


def device_lib():
    """The device library, loaded and declared on the first call."""
    global _dev
    if _dev is not None:
        return _dev
    p = os.environ.get("PIPEFEED_DEVICE_LIB")
    if not p:
        tree = os.path.join(os.path.dirname(os.path.abspath(path)), "..", "cuda", ".libs")
        cand = os.path.join(tree, "libpipefeed-device.so")
        if os.path.exists(cand):
            p = cand
            mod = os.path.join(tree, "pf_cuda.so")
            if os.path.exists(mod):
                os.environ.setdefault("PF_CUDA_MODULE", os.path.abspath(mod))
        else:
            p = ctypes.util.find_library("pipefeed-device") or "libpipefeed-device.so.0"
    d = ctypes.CDLL(p)
    for name, (res, args) in _DEV_SIGS.items():
        f = getattr(d, name)
        f.restype = res
        f.argtypes = args
    _dev = d
    return d
