"""DLPack export built with ctypes (no compiled extension).

to_capsule(owner, ...) returns a "dltensor" PyCapsule over memory that
`owner` keeps valid.  The DLManagedTensor, its shape and strides, and a
reference to owner stay in _live until the consumer calls the tensor's
deleter (torch.from_dlpack does when its tensor dies) or, when no consumer
took the capsule, until the capsule itself is destroyed.  Dropping the last
reference to a pipefeed Batch releases it to its pool, so a tensor made
from a batch field keeps the whole batch alive, and nothing longer.
"""
import ctypes

KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice),
                ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_DELETER_T = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor),
                            ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _DELETER_T)]

# address of a DLManagedTensor -> (the struct, shape, strides, owner)
_live = {}


def _delete(mt):
    _live.pop(ctypes.cast(mt, ctypes.c_void_p).value, None)


_DELETER = _DELETER_T(_delete)

# The capsule keeps a pointer to its name: these must live forever.
_NAME = ctypes.create_string_buffer(b"dltensor")
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
# The destructor gets the dying capsule: take it as a plain address, never
# as a Python object (its reference count is already 0).
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

_DESTRUCTOR_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _destroy(cap):
    # Renamed "used_dltensor" by a consumer: the consumer owns it now.
    if _api.PyCapsule_IsValid(cap, b"dltensor"):
        _live.pop(_api.PyCapsule_GetPointer(cap, b"dltensor"), None)


_DESTRUCTOR = _DESTRUCTOR_T(_destroy)
_DESTRUCTOR_P = ctypes.cast(_DESTRUCTOR, ctypes.c_void_p).value


def to_capsule(owner, ptr, code_bits, shape, device=(KDL_CPU, 0)):
    """A "dltensor" capsule of a C-contiguous array at ptr (dtype given as
    DLPack (code, bits)) with the given shape; owner is kept alive until
    the consumer's tensor (or the unused capsule) is gone."""
    ndim = len(shape)
    mt = DLManagedTensor()
    shp = (ctypes.c_int64 * max(ndim, 1))(*shape)
    strides = [1] * ndim
    for i in range(ndim - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    std = (ctypes.c_int64 * max(ndim, 1))(*strides)
    t = mt.dl_tensor
    t.data = ptr
    t.device = DLDevice(device[0], device[1])
    t.ndim = ndim
    t.dtype = DLDataType(code_bits[0], code_bits[1], 1)
    t.shape = ctypes.cast(shp, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(std, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = 0
    mt.deleter = _DELETER
    addr = ctypes.addressof(mt)
    _live[addr] = (mt, shp, std, owner)
    return _api.PyCapsule_New(addr, ctypes.addressof(_NAME), _DESTRUCTOR_P)


def live_count():
    """Exports not yet deleted (for tests)."""
    return len(_live)
