"""An independent float64 NumPy interpreter of ncd's core IR, read as JSON.

It is the oracle of the gradient tests: central finite differences need a
forward pass without float32 or bfloat16 rounding, and one that shares no
code with the backends whose derivatives they check. It only reads the
output of `ncd show FILE --diagram D --json` (docs/IR_JSON.md) and of the
same command on the files that define callees; it never evaluates with ncd.

    program = load("stdlib/std/nn.ncd", "FFN", defines=["dtype=f32", "seq=4"])
    sig = program.signature()      # inputs, params (by path) and outputs
    outputs = program.run(inputs, params)

Arrays use the storage order of the JSON value ("axes"); params are keyed by
their path as docs/RUN.md "Param names" defines. Every value is computed in
float64 whatever its dtype; integer and bool values are int64 and bool
arrays (truncated and saturated like the language's conversions, since
gather indices and iteration counters depend on it).
"""

import itertools
import json
import math
import os
import subprocess

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INT_RANGE = {"i8": (-128, 127), "i32": (-2 ** 31, 2 ** 31 - 1)}
_FLOAT_DTYPES = ("f32", "f16", "bf16", "f8e4m3", "f8e5m2")

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _ncd_binary():
    return os.environ.get("NCD") or os.path.join(_REPO, "build", "bin", "ncd")


def _abs(display_path):
    # ncd runs in "/", so every display path is relative to it or absolute.
    return os.path.normpath(os.path.join("/", display_path))


def _show(path, defines, diagram=None):
    command = [_ncd_binary(), "show", path, "--json"]
    if diagram is not None:
        command += ["--diagram", diagram]
    for define in defines:
        command += ["-D", define]
    result = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(command), result.stderr.strip()))
    doc = json.loads(result.stdout)
    if doc.get("schema") != "ncd.ir" or doc.get("version") != 1:
        raise RuntimeError("%s: not ncd.ir version 1" % path)
    return doc


class Unsupported(Exception):
    """A construct this interpreter does not evaluate."""


# ---------------------------------------------------------------- tensors
# A tensor is (array, axes): a float64/int64/bool ndarray and the names of
# its dimensions. Names are the diagram's own axis names; axes a call is
# lifted over travel through the callee under fresh names starting with "~",
# which no op names, so every op passes them through.

_fresh = itertools.count()


def _batch_name():
    return "~%d" % next(_fresh)


def _align(tensor, axes):
    """The array of tensor broadcastable against the dimension list axes."""
    arr, have = tensor
    missing = [a for a in have if a not in axes]
    if missing:
        raise RuntimeError("axes %s not in %s" % (missing, axes))
    arr = np.transpose(arr, [have.index(a) for a in axes if a in have])
    shape = [arr.shape[[a for a in axes if a in have].index(a)] if a in have else 1 for a in axes]
    return arr.reshape(shape)


def _union(tensors):
    axes = []
    for _, have in tensors:
        for a in have:
            if a not in axes:
                axes.append(a)
    return axes


def _as_float(arr):
    return np.asarray(arr, dtype=np.float64)


def _convert(arr, dtype):
    if dtype in _FLOAT_DTYPES:
        return _as_float(arr)
    if dtype == "bool":
        return np.asarray(arr) != 0
    if dtype in _INT_RANGE:
        if arr.dtype.kind in "iub":
            out = arr.astype(np.int64)
        else:
            with np.errstate(invalid="ignore"):
                f = np.trunc(_as_float(arr))
                f = np.where(np.isnan(f), 0.0, f)
            lo, hi = _INT_RANGE[dtype]
            out = np.clip(f, lo, hi).astype(np.int64)
        lo, hi = _INT_RANGE[dtype]
        return np.clip(out, lo, hi)
    raise Unsupported("dtype " + dtype)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _relu(x):
    return np.where(x < 0, 0.0, x)


_UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "tanh": np.tanh,
    "sigmoid": _sigmoid, "relu": _relu,
    "gelu": lambda x: 0.5 * x * _erfc(-x * 0.70710678118654752),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(0.79788456080286536 * (x + 0.044715 * (x * x * x)))),
    "silu": lambda x: x * _sigmoid(x), "abs": np.abs, "sin": np.sin, "cos": np.cos, "erf": _erf,
    "recip": lambda x: 1.0 / x, "square": lambda x: x * x, "floor": np.floor, "ceil": np.ceil, "round": np.rint,
    "log1p": np.log1p, "expm1": np.expm1,
    "softplus": lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
    "neg": lambda x: -x, "not": lambda x: x == 0, "copy": lambda x: x, "cast": lambda x: x,
}
_BINARY = {
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
    "ne": np.not_equal, "and": lambda x, y: (x != 0) & (y != 0), "or": lambda x, y: (x != 0) | (y != 0),
}
_TERNARY = {
    "where": lambda c, x, y: np.where(c != 0, x, y),
    "quantize": lambda x, s, z: np.rint(x / s) + z,
    "dequantize": lambda q, s, z: (q - z) * s,
}


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m


# ---------------------------------------------------------------- the program

class _Module:
    """One .ncd file loaded at given axis sizes: its document and diagrams."""

    def __init__(self, doc):
        self.doc = doc
        self.diagrams = {d["name"]: d for d in doc["diagrams"]}
        self.imports = {_abs(m["path"]): m["imports"] for m in doc["modules"]}


class _Diagram:
    """A diagram with what evaluation needs precomputed."""

    def __init__(self, module, diagram):
        self.module = module
        self.d = diagram
        self.path = _abs(diagram["module"])
        self.values = diagram["values"]
        self.sizes = {}
        for v in self.values:
            for a in v["axes"]:
                self.sizes.setdefault(a["name"], a["size"])
        for a in module.doc["axes"]:
            if _abs(a["module"]) == self.path:
                self.sizes.setdefault(a["name"], a["size"])
        # Repeats in source order (nested ones included) and unnamed call
        # sites per callee, both in IR order: the numbering of param paths.
        self.repeat_number = {}
        self.unnamed = {}
        self.param_chain = {}
        self._number(diagram["ops"], [])
        self.unnamed_segment = {}
        for callee, ids in self.unnamed.items():
            for k, op_id in enumerate(ids):
                self.unnamed_segment[op_id] = callee if len(ids) == 1 else "%s@%d" % (callee, k)
        for p in diagram["params"]:
            chain = self.param_chain.get(p, [])
            want = self.values[p]["instances"]
            # The enclosing repeats of its declaration are the outermost ones
            # of its uses whose counts multiply to its instance count.
            n, k = 1, 0
            while n < want and k < len(chain):
                n *= chain[k][1]
                k += 1
            if n != want:
                raise Unsupported("cannot place param %s in its repeats" % self.values[p]["name"])
            self.param_chain[p] = [r for r, _ in chain[:k]]

    def _number(self, ops, enclosing):
        for op in ops:
            for v in op["operands"]:
                if self.values[v]["role"] == "param" and v not in self.param_chain:
                    self.param_chain[v] = list(enclosing)
            if op["kind"] == "call" and "label" not in op:
                self.unnamed.setdefault(op["callee"], []).append(op["id"])
            if op["kind"] == "repeat":
                self.repeat_number[op["id"]] = len(self.repeat_number)
                self._number(op["body"], enclosing + [(op["id"], op["count"])])

    def iteration_segment(self, repeat_id, i):
        if len(self.repeat_number) > 1:
            return "%d@%d" % (i, self.repeat_number[repeat_id])
        return str(i)

    def size(self, name):
        s = self.sizes.get(name)
        if s is None:
            raise Unsupported("axis %s has no size" % name)
        return s


class Program:
    """A diagram of an .ncd file, ready to evaluate in float64."""

    def __init__(self, path, diagram, defines=()):
        self.path = os.path.abspath(path)
        self.defines = list(defines)
        self._modules = {}
        self._diagrams = {}
        doc = _show(self.path, self.defines, diagram)
        self.doc = doc
        # The sizes of every file's axes after -D, for loading callee files.
        self._base_sizes = {}
        counts = {}
        for a in doc["axes"]:
            key = (_abs(a["module"]), a["name"])
            counts[key] = counts.get(key, 0) + 1
            if not a["derived"] and "computed" not in a and a["size"] is not None:
                self._base_sizes[key] = a["size"]
        for key, n in counts.items():
            if n > 1:
                self._base_sizes.pop(key, None)  # diagram-local axes of one name: ambiguous
        self._non_axis_defines = [d for d in self.defines if d.split("=", 1)[0] == "dtype"]
        root = _Module(doc)
        self._modules[(self.path, ())] = root
        if len(doc["diagrams"]) != 1:
            raise RuntimeError("expected one diagram named %s" % diagram)
        self.root = _Diagram(root, doc["diagrams"][0])

    # ---------------------------------------------------------------- loading

    def _module(self, path, overrides):
        """The file `path` loaded with its base axes at the root's sizes, and overrides."""
        sizes = {name: size for (module, name), size in self._base_sizes.items() if module == path}
        sizes.update(overrides)
        key = (path, tuple(sorted(sizes.items())))
        if key not in self._modules:
            defines = self._non_axis_defines + ["%s=%d" % item for item in sorted(sizes.items())]
            self._modules[key] = _Module(_show(path, defines))
        return self._modules[key]

    def _find_callee(self, caller, name, seen=None):
        """The absolute path of the file that defines diagram `name`, searched from `caller`'s file."""
        seen = seen if seen is not None else set()
        if caller in seen:
            return None
        seen.add(caller)
        module = self._module(caller, {})
        if name in module.diagrams:
            return caller
        for imported in module.imports.get(caller, []):
            found = self._find_callee(_abs(imported), name, seen)
            if found:
                return found
        return None

    def _callee(self, caller, op):
        bound = {}
        for b in op["bindings"]:
            bound[b["callee_axis"]] = caller.size(b["axis"])
        path = self._find_callee(caller.path, op["callee"])
        if path is None:
            raise Unsupported("callee %s not found" % op["callee"])
        module_axes = [a for a in self._module(path, {}).doc["axes"] if _abs(a["module"]) == path]
        derived = {a["name"] for a in module_axes if a["derived"] or "computed" in a}
        overrides = {n: s for n, s in bound.items() if n not in derived and (path, n) in self._base_sizes}
        key = (path, op["callee"], tuple(sorted(overrides.items())))
        if key not in self._diagrams:
            module = self._module(path, overrides)
            diagram = _Diagram(module, module.diagrams[op["callee"]])
            for n, s in bound.items():
                if n in diagram.sizes and diagram.sizes[n] != s:
                    raise Unsupported("callee axis %s of %s: size %s, bound to %s" % (n, op["callee"], diagram.sizes[n], s))
            diagram.sizes.update(bound)
            self._diagrams[key] = diagram
        return self._diagrams[key]

    # ---------------------------------------------------------------- signature

    def signature(self):
        """{"inputs": [...], "params": [...], "outputs": [...]}, each entry a dict of
        name (the path, for params), axes, shape and dtype."""
        def entry(name, v):
            return {"name": name, "axes": [a["name"] for a in v["axes"]],
                    "shape": tuple(a["size"] for a in v["axes"]), "dtype": v["dtype"]}
        d = self.root
        params = []
        self._walk_params(d, "", params)
        return {"inputs": [entry(d.values[i]["name"], d.values[i]) for i in d.d["inputs"]],
                "params": [entry(path, v) for path, v in params],
                "outputs": [entry(d.values[o]["name"], d.values[o]) for o in d.d["outputs"]]}

    def _walk_params(self, diagram, prefix, out):
        for p in diagram.d["params"]:
            v = diagram.values[p]
            chain = diagram.param_chain[p]
            counts = [self._repeat_count(diagram.d["ops"], r) for r in chain]
            for its in itertools.product(*[range(c) for c in counts]):
                segs = [diagram.iteration_segment(r, i) for r, i in zip(chain, its)]
                out.append((prefix + "".join(s + "." for s in segs) + v["name"], v))
        self._walk_calls(diagram, diagram.d["ops"], prefix, [], out)

    def _walk_calls(self, diagram, ops, prefix, iterations, out):
        for op in ops:
            if op["kind"] == "call":
                callee = self._callee(diagram, op)
                self._walk_params(callee, prefix + self._call_prefix(diagram, op, iterations), out)
            elif op["kind"] == "repeat":
                for i in range(op["count"]):
                    self._walk_calls(diagram, op["body"], prefix, iterations + [(op["id"], i)], out)

    @staticmethod
    def _repeat_count(ops, repeat_id):
        for op in ops:
            if op["kind"] == "repeat":
                if op["id"] == repeat_id:
                    return op["count"]
                found = Program._repeat_count(op["body"], repeat_id)
                if found:
                    return found
        return None

    @staticmethod
    def _call_prefix(diagram, op, iterations):
        if "label" in op:
            return op["label"] + "".join(".%d" % i for _, i in iterations) + "."
        segs = [diagram.iteration_segment(r, i) for r, i in iterations]
        return "".join(s + "." for s in segs) + diagram.unnamed_segment[op["id"]] + "."

    # ---------------------------------------------------------------- evaluation

    def run(self, inputs, params):
        """Evaluates the diagram; returns {output name: array in the output value's axis order}."""
        d = self.root
        args = []
        for i in d.d["inputs"]:
            v = d.values[i]
            if v["name"] not in inputs:
                raise KeyError("missing input " + v["name"])
            arr = np.asarray(inputs[v["name"]])
            want = tuple(a["size"] for a in v["axes"])
            if arr.shape != want:
                raise ValueError("input %s: shape %s, expected %s" % (v["name"], arr.shape, want))
            args.append((_convert(arr, v["dtype"]), [a["name"] for a in v["axes"]]))
        results = self._evaluate(d, args, params, "")
        out = {}
        for o, (arr, axes) in zip(d.d["outputs"], results):
            v = d.values[o]
            out[v["name"]] = _align((arr, axes), [a["name"] for a in v["axes"]])
        return out

    def _param(self, params, path, v):
        if path not in params:
            raise KeyError("missing param " + path)
        arr = np.asarray(params[path])
        want = tuple(a["size"] for a in v["axes"])
        if arr.shape != want:
            raise ValueError("param %s: shape %s, expected %s" % (path, arr.shape, want))
        return _convert(arr, v["dtype"]), [a["name"] for a in v["axes"]]

    def _evaluate(self, diagram, args, params, prefix):
        env = {}
        for i, a in zip(diagram.d["inputs"], args):
            env[i] = a
        self._ops(diagram, diagram.d["ops"], env, params, prefix, [])
        return [env[o] for o in diagram.d["outputs"]]

    def _ops(self, diagram, ops, env, params, prefix, iterations):
        for op in ops:
            operands = []
            for v in op["operands"]:
                if v in env:
                    operands.append(env[v])
                elif diagram.values[v]["role"] == "param":
                    chain = diagram.param_chain[v]
                    its = dict(iterations)
                    segs = [diagram.iteration_segment(r, its[r]) for r in chain]
                    path = prefix + "".join(s + "." for s in segs) + diagram.values[v]["name"]
                    operands.append(self._param(params, path, diagram.values[v]))
                else:
                    raise RuntimeError("value %d used before it is defined" % v)
            kind = op["kind"]
            if kind == "repeat":
                carried = operands
                for i in range(op["count"]):
                    for arg, value in zip(op["body_arguments"], carried):
                        env[arg] = value
                    self._ops(diagram, op["body"], env, params, prefix, iterations + [(op["id"], i)])
                    carried = [env[y] for y in op["body_yields"]]
                for r, value in zip(op["results"], carried):
                    env[r] = value
                continue
            if kind == "call":
                outs = self._call(diagram, op, operands, params, prefix + self._call_prefix(diagram, op, iterations))
            else:
                handler = getattr(self, "_op_" + kind, None)
                if handler is None:
                    raise Unsupported("op kind " + kind)
                with np.errstate(all="ignore"):
                    outs = handler(diagram, op, operands)
            for r, (arr, axes) in zip(op["results"], outs):
                env[r] = _finish(diagram.values[r], arr, axes, diagram)

    def _call(self, caller, op, operands, params, prefix):
        callee = self._callee(caller, op)
        binding = {}
        for b in op["bindings"]:
            binding[b["callee_axis"]] = b["axis"]
        lifted = {a: _batch_name() for a in op.get("lifted", [])}
        back = {v: k for k, v in lifted.items()}
        args = []
        for i, (arr, axes) in zip(callee.d["inputs"], operands):
            names = [a["name"] for a in callee.values[i]["axes"]]
            rename = {binding[c]: c for c in names}
            new = []
            for a in axes:
                if a in rename:
                    new.append(rename[a])
                elif a in lifted:
                    new.append(lifted[a])
                elif a.startswith("~"):
                    new.append(a)
                else:
                    raise RuntimeError("argument axis %s of %s is neither bound nor lifted" % (a, op["callee"]))
            # Storage order first, as every value of the callee is laid out.
            batch = sorted(a for a in new if a not in names)
            args.append((_align((arr, new), names + batch), names + batch))
        results = self._evaluate(callee, args, params, prefix)
        outs = []
        for o, (arr, axes) in zip(callee.d["outputs"], results):
            new = []
            for a in axes:
                if a in back:
                    new.append(back[a])
                elif a.startswith("~"):
                    new.append(a)
                else:
                    new.append(binding[a])
            outs.append((arr, new))
        return outs

    # ---------------------------------------------------------------- op kinds

    @staticmethod
    def _op_constant(diagram, op, operands):
        c = op["constant"]
        value = math.inf if c == "inf" else -math.inf if c == "-inf" else float(c)
        return [(np.float64(value), [])]

    @staticmethod
    def _op_sizeof(diagram, op, operands):
        return [(np.float64(diagram.size(op["axes"][0])), [])]

    @staticmethod
    def _op_axis_index(diagram, op, operands):
        a = op["axes"][0]
        return [(np.arange(diagram.size(a), dtype=np.int64), [a])]

    @staticmethod
    def _op_elementwise(diagram, op, operands):
        fn = op["function"]
        axes = _union(operands)
        xs = [_align(t, axes) for t in operands]
        if fn in ("copy", "cast"):
            return [(xs[0], axes)]
        xs = [_as_float(x) for x in xs]
        if fn in _UNARY and len(xs) == 1:
            out = _UNARY[fn](xs[0])
        elif fn in _BINARY and len(xs) == 2:
            out = _BINARY[fn](xs[0], xs[1])
        elif fn in _TERNARY and len(xs) == 3:
            out = _TERNARY[fn](*xs)
        else:
            raise Unsupported("elementwise %s of %d operands" % (fn, len(xs)))
        return [(np.asarray(out), axes)]

    @staticmethod
    def _op_contract(diagram, op, operands):
        axes = _union(operands)
        summed = op.get("axes", [])
        letters = {a: chr(ord("a") + i) if i < 26 else chr(ord("A") + i - 26) for i, a in enumerate(axes)}
        kept = [a for a in axes if a not in summed]
        spec = ",".join("".join(letters[a] for a in t[1]) for t in operands) + "->" + "".join(letters[a] for a in kept)
        arrays = [_as_float(t[0]) for t in operands]
        out = np.einsum(spec, *arrays, optimize=len(arrays) > 2)
        for s in summed:
            if s not in axes:
                # Summing over an axis no operand carries multiplies by its size.
                out = out * float(diagram.size(s))
        return [(np.asarray(out), kept)]

    @staticmethod
    def _op_reduce(diagram, op, operands):
        arr, axes = operands[0]
        fn = op["function"]
        red = op["axes"]
        pos = tuple(axes.index(a) for a in red)
        kept = [a for a in axes if a not in red]
        x = _as_float(arr)
        if fn in ("argmax", "argmin"):
            if len(pos) != 1:
                raise Unsupported("%s over %d axes" % (fn, len(pos)))
            out = (np.argmax if fn == "argmax" else np.argmin)(x, axis=pos[0])
            return [(out.astype(np.int64), kept)]
        if fn == "sum":
            out = np.sum(x, axis=pos)
        elif fn == "max":
            out = np.max(x, axis=pos)
        elif fn == "min":
            out = np.min(x, axis=pos)
        elif fn == "mean":
            out = np.mean(x, axis=pos)
        elif fn == "prod":
            out = np.prod(x, axis=pos)
        elif fn == "logsumexp":
            out = np.squeeze(_logsumexp(x, pos), axis=pos)
        else:
            raise Unsupported("reduce " + fn)
        return [(np.asarray(out), kept)]

    @staticmethod
    def _op_normalize(diagram, op, operands):
        arr, axes = operands[0]
        x = _as_float(arr)
        pos = tuple(axes.index(a) for a in op["axes"])
        fn = op["function"]
        eps = op.get("options", {}).get("eps", 0.0)
        if fn == "softmax":
            m = np.max(x, axis=pos, keepdims=True)
            e = np.exp(x - m)
            # A row masked entirely (all -inf) gives 0, as in FlashAttention (docs/LANGUAGE.md).
            out = np.where(m == -np.inf, 0.0, e / np.sum(e, axis=pos, keepdims=True))
        elif fn == "logsoftmax":
            m = np.max(x, axis=pos, keepdims=True)
            out = x - m - np.log(np.sum(np.exp(x - m), axis=pos, keepdims=True))
        elif fn == "layernorm":
            mu = np.mean(x, axis=pos, keepdims=True)
            var = np.mean((x - mu) ** 2, axis=pos, keepdims=True)
            out = (x - mu) / np.sqrt(var + eps)
        elif fn == "rmsnorm":
            out = x / np.sqrt(np.mean(x * x, axis=pos, keepdims=True) + eps)
        else:
            raise Unsupported("normalize " + fn)
        return [(out, axes)]

    @staticmethod
    def _op_scan(diagram, op, operands):
        axes = _union(operands)
        a = op["axes"][0]
        shape = tuple(_axis_len(a, operands, diagram) for a in axes)
        xs = [np.broadcast_to(_as_float(_align(t, axes)), shape) for t in operands]
        p = axes.index(a)
        fn = op["function"]
        if fn == "cumsum":
            out = np.cumsum(xs[0], axis=p)
        elif fn == "cumprod":
            out = np.cumprod(xs[0], axis=p)
        elif fn == "cummax":
            out = np.maximum.accumulate(xs[0], axis=p)
        elif fn == "cummin":
            out = np.minimum.accumulate(xs[0], axis=p)
        elif fn == "scan":
            av = np.moveaxis(xs[0], p, 0)
            bv = np.moveaxis(xs[1], p, 0)
            h = np.zeros(av.shape[1:])
            hs = []
            for t in range(av.shape[0]):
                h = av[t] * h + bv[t]
                hs.append(h)
            out = np.moveaxis(np.stack(hs, axis=0), 0, p)
        else:
            raise Unsupported("scan " + fn)
        return [(np.asarray(out), axes)]

    @staticmethod
    def _op_select(diagram, op, operands):
        arr, axes = operands[0]
        along, into = op["axes"][0], op["axes"][1]
        x = np.moveaxis(_as_float(arr), axes.index(along), -1)
        nan = np.isnan(x)
        clean = np.where(nan, 0.0, x)
        if op["function"] == "topk":
            order = np.lexsort((-clean, ~nan), axis=-1)[..., :diagram.size(into)]
        elif op["function"] == "sort":
            order = np.lexsort((clean, nan), axis=-1)
        else:
            raise Unsupported("select " + op["function"])
        values = np.take_along_axis(x, order, axis=-1)
        rest = [a for a in axes if a != along] + [into]
        return [(values, rest), (order.astype(np.int64), rest)]

    @staticmethod
    def _op_merge(diagram, op, operands):
        arr, axes = operands[0]
        groups = op["merges"]
        flat = [a for g in groups for a in g]
        batch = [a for a in axes if a not in flat]
        x = np.transpose(arr, [axes.index(a) for a in flat + batch])
        shape = [int(np.prod([diagram.size(a) for a in g])) for g in groups] + [x.shape[len(flat) + i] for i in range(len(batch))]
        result = diagram.values[op["results"][0]]
        names = [a["name"] for a in result["axes"]]
        return [(x.reshape(shape), names + batch)]

    @staticmethod
    def _op_access(diagram, op, operands):
        arr, axes = operands[0]
        stored = [a["name"] for a in diagram.values[op["operands"][0]]["axes"]]
        axes = stored + [a for a in axes if a not in stored]
        arr = _align(operands[0], axes)
        result = diagram.values[op["results"][0]]
        grid = [a["name"] for a in result["axes"]]
        for t in operands:
            for a in t[1]:
                if a.startswith("~") and a not in grid:
                    grid.append(a)
        sizes = {}
        for a in grid:
            sizes[a] = _axis_len(a, operands, diagram)
        shape = [sizes[a] for a in grid]

        def coordinate(a):
            if a not in grid:
                raise Unsupported("access through axis %s that the result lacks" % a)
            s = [1] * len(grid)
            s[grid.index(a)] = sizes[a]
            return np.arange(sizes[a], dtype=np.int64).reshape(s)

        indices = []
        for k, index in enumerate(op["access"]):
            if index["kind"] == "affine":
                idx = np.full([1] * len(grid), index.get("offset", 0), dtype=np.int64)
                for term in index.get("terms", []):
                    idx = idx + term["coefficient"] * coordinate(term["axis"])
            elif index["kind"] == "split":
                idx = np.zeros([1] * len(grid), dtype=np.int64)
                for a in index["axes"]:
                    idx = idx * sizes[a] + coordinate(a)
            elif index["kind"] == "gather":
                t = operands[index["operand"]]
                idx = np.asarray(_align(t, grid))
                if idx.dtype.kind == "f":
                    idx = np.trunc(np.where(np.isnan(idx), 0.0, idx)).astype(np.int64)
                idx = idx.astype(np.int64)
            else:
                raise Unsupported("access kind " + index["kind"])
            indices.append(idx)
        for a in axes[len(op["access"]):]:
            indices.append(coordinate(a))
        indices = [np.broadcast_to(i, tuple(shape)) for i in indices]
        valid = np.ones(tuple(shape), dtype=bool)
        clipped = []
        for i, n in zip(indices, arr.shape):
            valid &= (i >= 0) & (i < n)
            clipped.append(np.clip(i, 0, max(n - 1, 0)))
        if arr.size == 0:
            out = np.zeros(shape, dtype=arr.dtype)
        else:
            out = np.where(valid, arr[tuple(clipped)], np.zeros((), dtype=arr.dtype))
        return [(out, grid)]


def _axis_len(a, operands, diagram):
    for arr, axes in operands:
        if a in axes:
            return arr.shape[axes.index(a)]
    return diagram.size(a)


def _finish(value, arr, axes, diagram):
    """Lays a result out as its value: storage order first, lifted axes after; converts its dtype."""
    names = [a["name"] for a in value["axes"]]
    extra = [a for a in axes if a not in names]
    for a in extra:
        if not a.startswith("~"):
            raise RuntimeError("result %s has axis %s beyond its value's %s" % (value["name"], a, names))
    order = names + sorted(extra)
    arr = np.asarray(arr)
    x = _align((arr, axes), order)
    shape = [a["size"] if a["size"] is not None else x.shape[i] for i, a in enumerate(value["axes"])]
    shape += [x.shape[len(names) + i] for i in range(len(extra))]
    x = np.broadcast_to(x, tuple(shape))
    return np.array(_convert(x, value["dtype"])), order  # a copy: ascontiguousarray makes 0-d arrays 1-d


def load(path, diagram, defines=()):
    """Reads `ncd show PATH --diagram DIAGRAM --json` (with -D for each define) into a Program."""
    return Program(path, diagram, defines)
