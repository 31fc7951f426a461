"""How Python values become stored bytes and back.

===================  ==========  ==============================================
value                format tag  bytes
===================  ==========  ==============================================
JSON-compatible      ``json``    the JSON text (through ``/write``; with an
                                 int beyond 64 bits, as raw bytes tagged json)
bytes, bytearray     ``bytes``   as they are
numpy.ndarray        ``npy``     the ``.npy`` file format: a short header
(and memmap)                     (dtype, shape, order), then the array's memory
torch.Tensor         ``torch``   the same, with the torch dtype when numpy has
(dense)                          none (bfloat16); GPU tensors via the host
anything else        ``pickle``  ``pickle.dumps(value)``
===================  ==========  ==============================================

Arrays travel as their own memory: no pickle, no copy before the socket
(a non-contiguous array is made contiguous first). An ``npy`` value read with
``gswarm data read KEY --output a.npy`` loads with ``numpy.load``.

Pickle runs only here, in the client: the server stores the bytes and never
unpickles them. Unpickling runs whatever code the value's writer put in it, and
anyone who may write to the server can write a value: ``DataServer.read``
unpickles only when asked (``allow_pickle=True``), so that a value another user
wrote cannot run code in your process.
Values that the original gswarm client stored (``serialized_value`` of type
``json`` or ``pickle``) read back with the same tags, and the other way round.
"""

import ast
import json
import pickle
import re
import struct
import sys

JSON = "json"
BYTES = "bytes"
PICKLE = "pickle"
NPY = "npy"
TORCH = "torch"

_NPY_MAGIC = b"\x93NUMPY"
_ALIGN = 64


def _numpy():
    import numpy

    return numpy


def json_text(value):
    """The JSON text of ``value``, or None when it is not JSON-compatible.

    NaN and infinities are not JSON; such values are pickled instead.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


_LONG_DIGITS = re.compile(r"\d{19}")


def may_hold_wide_ints(text):
    """Whether JSON ``text`` may hold an integer beyond 64 bits (19 digits in a
    row: some are strings, and that is fine)."""
    return _LONG_DIGITS.search(text) is not None


def _npy_header(dtype_descr, fortran_order, shape, extra=None):
    fields = {"descr": dtype_descr, "fortran_order": fortran_order, "shape": tuple(shape)}
    if extra:
        fields.update(extra)
    text = repr(fields)
    # Version 1.0 header: magic, version, uint16 length, text padded with spaces
    # and ended by a newline, so that the data starts 64-byte aligned.
    for version, length_format in (((1, 0), "<H"), ((2, 0), "<I")):
        prefix = len(_NPY_MAGIC) + 2 + struct.calcsize(length_format)
        pad = -(prefix + len(text) + 1) % _ALIGN
        body = (text + " " * pad + "\n").encode("latin1")
        if length_format == "<H" and len(body) > 0xFFFF:
            continue
        return _NPY_MAGIC + bytes(version) + struct.pack(length_format, len(body)) + body
    raise ValueError("array header too large")


def _array_parts(array, extra=None):
    np = _numpy()
    if array.dtype.hasobject:
        return None  # object arrays hold references, not bytes: pickled instead
    if array.flags.c_contiguous:
        fortran, memory = False, array
    elif array.flags.f_contiguous and array.ndim > 1:
        fortran, memory = True, array.T  # the same memory, C-contiguous
    else:
        fortran, memory = False, np.ascontiguousarray(array)
    header = _npy_header(np.lib.format.dtype_to_descr(array.dtype), fortran, array.shape, extra)
    flat = memory.reshape(-1).view(np.uint8) if memory.size else b""
    return [header, flat]


# torch dtypes numpy lacks, stored as integers of their size (that torch can view).
_TORCH_ONLY = {"bfloat16": "int16"}


def _tensor_parts(tensor):
    torch = sys.modules["torch"]
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()  # GPU memory goes through the host (one copy)
    name = str(t.dtype).replace("torch.", "")
    if name in _TORCH_ONLY:
        as_integers = t.contiguous().view(getattr(torch, _TORCH_ONLY[name]))
        return _array_parts(as_integers.numpy(), {"torch_dtype": name})
    return _array_parts(t.numpy())


def encode(value):
    """(format, parts): the stored bytes of ``value`` as a list of buffers to send
    one after another, or (``json``, text) for JSON-compatible values."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BYTES, [value]
    np = sys.modules.get("numpy")
    # Plain arrays and memory maps; subclasses that carry more than the bytes
    # (masked arrays, matrices) are pickled whole.
    if np is not None and type(value) in (np.ndarray, np.memmap):
        parts = _array_parts(value)
        if parts is not None:
            return NPY, parts
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.layout == torch.strided:
        parts = _tensor_parts(value)
        if parts is not None:
            return TORCH, parts
    text = json_text(value)
    if text is not None:
        return JSON, text
    return PICKLE, [pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)]


def _parse_npy(buffer):
    view = memoryview(buffer).cast("B")
    if bytes(view[:6]) != _NPY_MAGIC or len(view) < 10:
        raise ValueError("not an npy value")
    major = view[6]
    if major == 1:
        (length,), start = struct.unpack("<H", view[8:10]), 10
    else:
        (length,), start = struct.unpack("<I", view[8:12]), 12
    # A literal dict only: literal_eval never runs code.
    fields = ast.literal_eval(bytes(view[start:start + length]).decode("latin1"))
    return fields, start + length


def decode_array(buffer, copy):
    """The numpy array an ``npy`` value holds: a view of ``buffer`` unless ``copy``."""
    np = _numpy()
    fields, offset = _parse_npy(buffer)
    dtype = np.dtype(fields["descr"])
    shape = tuple(fields["shape"])
    count = 1
    for n in shape:
        count *= n
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
    if fields.get("fortran_order"):
        array = array.reshape(shape[::-1]).T
    else:
        array = array.reshape(shape)
    if copy:
        array = array.copy(order="K")
    return array, fields


def decode(data, format, copy=False, allow_pickle=False, key=None):
    """The Python value of stored bytes ``data`` tagged ``format``.

    Arrays are views of ``data`` unless ``copy``; unknown tags give bytes.
    ``pickle`` values are unpickled only with ``allow_pickle`` (else
    PickleNotAllowedError, naming ``key``).
    """
    if format == JSON:
        return json.loads(bytes(data) if not isinstance(data, bytes) else data)
    if format == NPY:
        return decode_array(data, copy)[0]
    if format == TORCH:
        import torch

        array, fields = decode_array(data, copy)
        if not array.flags.writeable:
            array = array.copy()  # torch tensors need writable memory
        tensor = torch.from_numpy(array)
        name = fields.get("torch_dtype")
        if name:
            tensor = tensor.view(getattr(torch, name))
        return tensor
    if format == PICKLE:
        if not allow_pickle:
            from gswarm.data.errors import PickleNotAllowedError

            what = f"key {key!r} holds" if key is not None else "this is"
            raise PickleNotAllowedError(
                f"{what} a pickled value, and unpickling runs whatever code its writer put in "
                "it; it stays stored. Read it with read(key, allow_pickle=True), or make the "
                "client with DataServer(..., allow_pickle=True), only if you trust every "
                "writer of this server")
        return pickle.loads(data)
    return bytes(data) if not isinstance(data, bytes) else data
