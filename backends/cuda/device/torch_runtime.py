# ---------------------------------------------------------------- ncd's runtime for this package
# (the same in every package `ncd emit --torch` writes; the diagrams follow it)
import ctypes
import os
import shutil
import subprocess
import threading

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.join(_HERE, "kernels.cu")
_LIBRARY_FILE = os.path.join(_HERE, "_kernels.so")
_LOCK = threading.Lock()
_LOADED = None
_DTYPES = {
    "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "i8": torch.int8, "i32": torch.int32,
    "bool": torch.bool, "f8e4m3": getattr(torch, "float8_e4m3fn", None), "f8e5m2": getattr(torch, "float8_e5m2", None),
}


class _Diagram:
    """One host function of kernels.cu: its tensors (name, ncd dtype, shape as a function of the
    runtime sizes) and its runtime sizes (axis, and the input dimension that carries it, if any)."""

    def __init__(self, name, function, inputs, params, outputs, sizes):
        self.name, self.function = name, function
        self.inputs, self.params, self.outputs, self.sizes = inputs, params, outputs, sizes


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    for path in (os.environ.get("NCD_NVCC"), os.path.join(home, "bin", "nvcc") if home else None,
                 shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RuntimeError("%s: no nvcc to build the kernels with: set NCD_NVCC or CUDA_HOME, or put nvcc on PATH"
                       % _PACKAGE)


def build(force=False):
    """Compiles kernels.cu into _kernels.so beside it (once, or again when the source is newer or
    `force`); returns the library's path. The functions below call it on first use."""
    if not force and os.path.exists(_LIBRARY_FILE) and os.path.getmtime(_LIBRARY_FILE) >= os.path.getmtime(_SOURCE):
        return _LIBRARY_FILE
    partial = "%s.%d.tmp" % (_LIBRARY_FILE, os.getpid())
    command = [_nvcc(), "-std=c++17", "-O3", "-arch=" + _ARCH, "-shared", "-Xcompiler", "-fPIC", "-o", partial,
               _SOURCE]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError("%s: cannot run %s: %s" % (_PACKAGE, command[0], e)) from None
    if done.returncode != 0:
        if os.path.exists(partial):
            os.remove(partial)
        raise RuntimeError("%s: building the kernels failed (%s):\n%s" % (_PACKAGE, " ".join(command),
                                                                        (done.stdout + done.stderr)[-4000:]))
    os.replace(partial, _LIBRARY_FILE)
    return _LIBRARY_FILE


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def load_params(path, device="cuda"):
    """The tensors of a safetensors file (the weights `ncd import --weights` or `ncd run --random` write)
    as a dict by name on `device`: the `params` the functions below take, each in the dtype they take
    it (a float32 file for a bf16 program is rounded)."""
    import json
    import struct
    with open(path, "rb") as f:
        data = f.read()
    bad = "%s: %s is not a safetensors file" % (_PACKAGE, path)
    if len(data) < 8:
        raise ValueError(bad + " (shorter than its header)")
    size = struct.unpack("<Q", data[:8])[0]
    if size > len(data) - 8:
        raise ValueError(bad + " (its header runs past the end)")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except ValueError:
        raise ValueError(bad + " (its header is not JSON)") from None
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = _SAFETENSORS_DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError("%s (tensor %r: dtype %r)" % (bad, name, entry.get("dtype") if isinstance(entry, dict)
                                                           else entry)) from None
        count = 1
        for n in shape:
            count *= n
        if not 0 <= begin <= end <= len(data) - 8 - size or end - begin != count * torch.tensor([], dtype=dtype).element_size():
            raise ValueError("%s (tensor %r: its bytes do not match its shape %s)" % (bad, name, shape))
        chunk = bytearray(data[8 + size + begin:8 + size + end])
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        wanted = _PARAM_DTYPES.get(name)
        out[name] = t.reshape(shape).to(device=device, dtype=wanted if wanted is not None else t.dtype)
    return out


def _library():
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            library = ctypes.CDLL(build())
            library.ncd_error_string.restype = ctypes.c_char_p
            library.ncd_error_string.argtypes = [ctypes.c_int]
            for d in _ALL:
                sizes = [ctypes.c_int64] * len(d.sizes)
                query = getattr(library, d.function + "_workspace")
                query.restype, query.argtypes = ctypes.c_size_t, sizes
                run = getattr(library, d.function)
                run.restype = ctypes.c_int
                run.argtypes = ([ctypes.c_void_p] * (len(d.inputs) + len(d.params) + len(d.outputs)) + sizes +
                                [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p])
            _LOADED = library
    return _LOADED


def _shape_text(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _sizes(d, inputs, extra):
    """The runtime sizes of a call: read from the inputs' shapes, the others from `sizes=`."""
    n = {}
    given = list(extra)
    for axis, tensor, dim in d.sizes:
        if tensor >= 0:
            t = inputs[tensor]
            if not isinstance(t, torch.Tensor) or t.dim() <= dim:
                continue  # the tensor check below names the problem
            n[axis] = t.shape[dim]
        else:
            n[axis] = given.pop(0)
        if n[axis] < 1:
            raise ValueError("%s: the size of '%s' is %d; it must be at least 1" % (d.name, axis, n[axis]))
    return n


def _check(d, kind, name, t, dtype_name, shape_of, n):
    what = "%s: %s '%s'" % (d.name, kind, name)
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, not %s" % (what, type(t).__name__))
    dtype = _DTYPES[dtype_name]
    if dtype is None:
        raise TypeError("%s is %s, which this torch has no dtype for" % (what, dtype_name))
    if t.dtype != dtype:
        raise TypeError("%s must be %s (%s), not %s" % (what, dtype, dtype_name, t.dtype))
    try:
        shape = tuple(shape_of(n))
    except KeyError:
        shape = None
    if shape is None or tuple(t.shape) != shape:
        raise ValueError("%s has shape %s; expected %s" % (what, _shape_text(t.shape),
                                                           _shape_text(shape) if shape else "another rank"))
    if not t.is_contiguous():
        raise ValueError("%s is not contiguous (the kernels read dense row-major tensors): pass %s.contiguous()"
                         % (what, name))


def _param_list(d, params):
    """The params in the host function's order, from a dict (ncd's param paths) or a sequence."""
    if isinstance(params, dict):
        missing = [p[0] for p in d.params if p[0] not in params]
        extra = sorted(set(params) - set(p[0] for p in d.params))
        if missing or extra:
            raise ValueError("%s: params %s%s%s" % (d.name, "missing " + ", ".join(missing) if missing else "",
                                                 "; " if missing and extra else "",
                                                 "unknown " + ", ".join(extra) if extra else ""))
        return [params[p[0]] for p in d.params]
    params = list(params or [])
    if len(params) != len(d.params):
        raise ValueError("%s: %d params given; it takes %d (%s)" % (d.name, len(params), len(d.params),
                                                                  ", ".join(p[0] for p in d.params) or "none"))
    return params


def _arguments(d, inputs, params):
    """Tensors where tensors belong, checked before the custom op's own argument parsing."""
    for kind, names, group in (("input", d.inputs, inputs), ("param", d.params, params)):
        for (name, _, _), t in zip(names, group):
            if not isinstance(t, torch.Tensor):
                raise TypeError("%s: %s '%s' must be a torch.Tensor, not %s" % (d.name, kind, name, type(t).__name__))


def _extra_sizes(d, sizes):
    """The runtime sizes no input carries, in order, from `sizes=` (a dict by axis name)."""
    wanted = [axis for axis, tensor, _ in d.sizes if tensor < 0]
    sizes = dict(sizes or {})
    unknown = sorted(set(sizes) - set(wanted))
    if unknown:
        raise ValueError("%s: sizes= has %s; it takes %s" % (d.name, ", ".join(unknown), ", ".join(wanted) or "none"))
    missing = [axis for axis in wanted if axis not in sizes]
    if missing:
        raise ValueError("%s: no input carries the size of %s: give sizes={%s}" % (
            d.name, ", ".join(missing), ", ".join("'%s': N" % a for a in missing)))
    return [int(sizes[axis]) for axis in wanted]


def _run(d, inputs, params, extra):
    """Checks every tensor, allocates the outputs and the workspace, and launches the host function
    on the current CUDA stream of the tensors' device."""
    if len(inputs) != len(d.inputs):
        raise TypeError("%s takes %d inputs (%s), got %d" % (d.name, len(d.inputs),
                                                            ", ".join(i[0] for i in d.inputs), len(inputs)))
    n = _sizes(d, inputs, extra)
    for (name, dtype, shape), t in zip(d.inputs, inputs):
        _check(d, "input", name, t, dtype, shape, n)
    for (name, dtype, shape), t in zip(d.params, params):
        _check(d, "param", name, t, dtype, shape, n)
    tensors = list(inputs) + list(params)
    device = tensors[0].device if tensors else torch.device("cuda", torch.cuda.current_device())
    for kind, names, group in (("input", d.inputs, inputs), ("param", d.params, params)):
        for (name, _, _), t in zip(names, group):
            if t.device.type != "cuda":
                raise ValueError("%s: %s '%s' is on %s; the kernels run on CUDA tensors (%s)" % (
                    d.name, kind, name, t.device, "move it with .cuda()" if torch.cuda.is_available()
                    else "this machine has no CUDA device"))
            if t.device != device:
                raise ValueError("%s: %s '%s' is on %s, another device than %s" % (d.name, kind, name, t.device,
                                                                                   device))
            if t.data_ptr() % 16 != 0:
                raise ValueError("%s: %s '%s' is not 16-byte aligned (a view at an offset?): pass %s.clone()" % (
                    d.name, kind, name, name))
    library = _library()
    sizes = [n[axis] for axis, _, _ in d.sizes]
    outputs = [torch.empty(tuple(shape(n)), dtype=_DTYPES[dtype], device=device) for _, dtype, shape in d.outputs]
    with torch.cuda.device(device):
        workspace_bytes = getattr(library, d.function + "_workspace")(*sizes)
        # From the caching allocator on the current stream: freed when it goes, reused in stream order.
        workspace = torch.empty(workspace_bytes, dtype=torch.uint8, device=device) if workspace_bytes else None
        stream = torch.cuda.current_stream(device).cuda_stream
        status = getattr(library, d.function)(*[t.data_ptr() for t in tensors + outputs], *sizes,
                                              workspace.data_ptr() if workspace is not None else None,
                                              workspace_bytes, stream)
    if status != 0:
        raise RuntimeError("%s: %s failed: %s (cudaError %d)" % (d.name, d.function,
                                                                library.ncd_error_string(status).decode(), status))
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _fake(d, inputs, params, extra):
    """The outputs' shapes and dtypes alone (torch.compile traces with these)."""
    n = _sizes(d, inputs, extra)
    device = (list(inputs) + list(params))[0].device if (inputs or params) else torch.device("meta")
    outputs = [torch.empty(tuple(shape(n)), dtype=_DTYPES[dtype], device=device) for _, dtype, shape in d.outputs]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _register(d, inputs_schema, returns_schema):
    """`torch.ops.<namespace>.<diagram>`: one opaque custom op (torch.compile keeps it whole);
    None where this torch has no torch.library."""
    global _OPS
    try:
        if _OPS is None:
            _OPS = torch.library.Library(_NAMESPACE, "DEF")
        arguments = ", ".join(a for a in (inputs_schema, "Tensor[] params", "int[] sizes") if a)
        _OPS.define("%s(%s) -> %s" % (d.name, arguments, returns_schema))

        def call(*args):
            *inputs, params, sizes = args
            return _run(d, inputs, params, sizes)

        for key in ("CUDA", "CPU"):
            _OPS.impl(d.name, call, key)

        def fake(*args):
            *inputs, params, sizes = args
            return _fake(d, inputs, params, sizes)

        qualified = "%s::%s" % (_NAMESPACE, d.name)
        if hasattr(torch.library, "register_fake"):
            torch.library.register_fake(qualified)(fake)
        elif hasattr(torch.library, "impl_abstract"):
            torch.library.impl_abstract(qualified)(fake)
        return getattr(getattr(torch.ops, _NAMESPACE), d.name)
    except (AttributeError, RuntimeError):
        return None


_OPS = None
