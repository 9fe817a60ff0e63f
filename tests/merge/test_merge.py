#!/usr/bin/env python3
"""Tests of `ncd merge` (docs/MERGE.md), label "merge".

    test_merge.py --ncd NCD --root SRC oracle|memory

oracle: three GPT-2 blocks' params (std/gpt2.ncd's GPT2Block at small sizes,
random data from `ncd run --random`) and a base are written as safetensors;
every method is run and every merged tensor is compared with an independent
NumPy implementation of the published formula. DARE's mask is reproduced
exactly: the oracle implements the documented counter-based RNG
(splitmix64 of seed, FNV-1a of the param path, input and element index), so
the comparison is element by element; besides, the same seed gives
byte-identical files and density 1 gives task arithmetic's bytes. The merged
params must then run (`ncd run --params`).

memory: two GPT-2-shaped checkpoints (std/gpt2.ncd's GPT2Block at
n_embd 2048: 16 heads of 128, f32, 192 MiB of params each) are merged by
every method (with a third as the base where one is needed) under
`prlimit --as` set to the
binary's own baseline (measured on a tiny merge) plus 64 MiB, well below one
checkpoint; linear's result is checked on sampled rows and the peak resident
memory of an unlimited run is printed beside the checkpoint size and that of
a tiny merge.
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

SIZES = ["-D", "heads=2", "-D", "head_dim=4", "-D", "seq=8"]
MASK64 = (1 << 64) - 1


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def run(ncd, args, cwd, prefix=()):
    result = subprocess.run(list(prefix) + [ncd] + args, cwd=cwd, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


CODES = {"F32": "<f4", "F16": "<f2"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> (code, array); BF16 arrays are float32 values exact in bf16."""
    header = {"__metadata__": metadata or {"format": "pt"}}
    offset, blobs = 0, []
    for name, (code, array) in tensors.items():
        if code == "BF16":
            data = (np.ascontiguousarray(array, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(array, CODES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """name -> (code, float64 array), in file order; and the metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = data[8 + length + begin:8 + length + end]
        if entry["dtype"] == "BF16":
            values = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else:
            values = np.frombuffer(raw, CODES[entry["dtype"]])
        out[name] = (entry["dtype"], values.astype(np.float64).reshape(entry["shape"]))
    return out, metadata


def round_bf16(x):
    """float64 -> float32 -> bf16 (round to nearest even), as float32 values."""
    u = np.ascontiguousarray(x.astype(np.float32)).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return u.view(np.float32)


# ---------------------------------------------------------------- the published formulas


def linear(thetas, weights):
    return sum(w * t for w, t in zip(weights, thetas)) / sum(weights)


def slerp(a, b, t):
    """Spherical interpolation of the flattened tensors (Shoemake 1985), linear when nearly colinear (mergekit)."""
    va, vb = a.ravel(), b.ravel()
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na == 0 or nb == 0:
        return (1 - t) * a + t * b
    cosine = float(np.dot(va, vb) / (na * nb))
    if abs(cosine) > 0.9995:
        return (1 - t) * a + t * b
    theta = math.acos(cosine)
    return (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)


def task_arithmetic(thetas, base, weights):
    return base + sum(w * (t - base) for w, t in zip(weights, thetas))


def ties(thetas, base, weights, density):
    """TIES-merging (Yadav et al. 2023): trim, elect sign, disjoint (weighted) mean."""
    n = base.size
    k = int(math.floor(density * n))
    trimmed = []
    for theta, w in zip(thetas, weights):
        tau = (theta - base).ravel()
        keep = np.zeros(n, bool)
        keep[np.argsort(-np.abs(tau), kind="stable")[:k]] = True  # top-k by magnitude, ties to the lower index
        trimmed.append(np.where(keep, w * tau, 0.0))
    trimmed = np.array(trimmed)
    elected = np.where(trimmed.sum(0) >= 0, 1.0, -1.0)
    agree = (trimmed != 0) & (np.sign(trimmed) == elected)
    total = (trimmed * agree).sum(0)
    weight = (np.array(weights)[:, None] * agree).sum(0)
    merged = np.divide(total, weight, out=np.zeros(n), where=weight != 0)
    return base + merged.reshape(base.shape)


def splitmix64(x):
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def dare_mask(seed, path, index, n, density):
    key = int(splitmix64(int(splitmix64(seed ^ fnv1a64(path))) + index & MASK64))
    with np.errstate(over="ignore"):
        r = splitmix64(np.uint64(key) + np.arange(n, dtype=np.uint64))
    return (r >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 < density


def dare(thetas, base, weights, density, seed, path):
    """DARE (Yu et al. 2023): drop with probability 1 - p, rescale by 1/p, then task arithmetic."""
    out = base.copy()
    for index, (theta, w) in enumerate(zip(thetas, weights)):
        keep = dare_mask(seed, path, index, base.size, density).reshape(base.shape)
        out = out + w * np.where(keep, (theta - base) / density, 0.0)
    return out


# ---------------------------------------------------------------- oracle


def oracle(ncd, root, work):
    gpt2 = os.path.join(root, "stdlib/std/gpt2.ncd")
    for dtype, code in (("f32", "F32"), ("bf16", "BF16")):
        sizes = SIZES + ["-D", "dtype=" + dtype]
        checkpoints = []
        for seed in (1, 2, 3, 4):
            out = os.path.join(work, f"{dtype}_r{seed}")
            status, _, err = run(ncd, ["run", gpt2, "--diagram", "GPT2Block"] + sizes +
                                 ["--random", str(seed), "--out-dir", out], work)
            check(status == 0, f"ncd run --random {seed}: exit {status}: {err}")
            folder = os.path.join(out, "params")
            params = {f[:-4]: np.load(os.path.join(folder, f)).astype(np.float64) for f in sorted(os.listdir(folder))}
            path = os.path.join(work, f"{dtype}_{seed}.safetensors")
            write_safetensors(path, {name: (code, value) for name, value in params.items()})
            checkpoints.append((path, params))
        (a, pa), (b, pb), (c, pc), (base, pbase) = checkpoints
        names = list(pa)
        check(len(names) >= 8, f"GPT2Block has {len(names)} params")
        cases = [
            ("linear", [a, b, c], [], lambda n: linear([pa[n], pb[n], pc[n]], [1, 1, 1])),
            ("linear", [a, b, c], ["--weights", "1,2,0.5"], lambda n: linear([pa[n], pb[n], pc[n]], [1, 2, 0.5])),
            ("slerp", [a, b], [], lambda n: slerp(pa[n], pb[n], 0.5)),
            ("slerp", [a, b], ["--weights", "0.3"], lambda n: slerp(pa[n], pb[n], 0.3)),
            ("task-arithmetic", [a, b, c], ["--base", base],
             lambda n: task_arithmetic([pa[n], pb[n], pc[n]], pbase[n], [1, 1, 1])),
            ("task-arithmetic", [a, b], ["--base", base, "--weights", "0.7,-0.2"],
             lambda n: task_arithmetic([pa[n], pb[n]], pbase[n], [0.7, -0.2])),
            ("ties", [a, b, c], ["--base", base], lambda n: ties([pa[n], pb[n], pc[n]], pbase[n], [1, 1, 1], 0.2)),
            ("ties", [a, b, c], ["--base", base, "--density", "0.55", "--weights", "1,0.5,2"],
             lambda n: ties([pa[n], pb[n], pc[n]], pbase[n], [1, 0.5, 2], 0.55)),
            ("ties", [a, b], ["--base", base, "--density", "1"], lambda n: ties([pa[n], pb[n]], pbase[n], [1, 1], 1.0)),
            ("dare", [a, b, c], ["--base", base], lambda n: dare([pa[n], pb[n], pc[n]], pbase[n], [1, 1, 1], 0.1, 0, n)),
            ("dare", [a, b, c], ["--base", base, "--density", "0.4", "--seed", "7", "--weights", "0.5,0.3,0.2"],
             lambda n: dare([pa[n], pb[n], pc[n]], pbase[n], [0.5, 0.3, 0.2], 0.4, 7, n)),
        ]
        for index, (method, inputs, flags, formula) in enumerate(cases):
            out = os.path.join(work, f"{dtype}_merged_{index}.safetensors")
            status, _, err = run(ncd, ["merge", gpt2, "--diagram", "GPT2Block"] + sizes + inputs +
                                 ["--method", method] + flags + ["-o", out], work)
            check(status == 0 and err == "", f"{dtype} {method} {flags}: exit {status}: {err}")
            merged, metadata = read_safetensors(out)
            check(list(merged) == names or sorted(merged) == sorted(names), f"{method}: tensors {list(merged)}")
            check(metadata.get("merge_method") == method, f"{method}: metadata {metadata}")
            for name in names:
                got_code, got = merged[name]
                check(got_code == code, f"{method} {name}: dtype {got_code}")
                expected = formula(name)
                if dtype == "f32":
                    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-6, atol=1e-6,
                                               err_msg=f"{dtype} {method} {flags} {name}")
                else:  # one bf16 step where float32 rounding differences hit a rounding boundary
                    np.testing.assert_allclose(got, round_bf16(expected), rtol=2 ** -7, atol=1e-6,
                                               err_msg=f"{dtype} {method} {flags} {name}")
                    check(np.mean(got == round_bf16(expected)) > 0.99, f"{dtype} {method} {name}: not bf16-exact")
            print(f"ok {dtype} {method} {' '.join(os.path.basename(f) for f in flags)}: {len(names)} tensors")

        # DARE: same seed, same bytes; another seed, another mask; density 1 is task arithmetic.
        def merge_bytes(flags, name):
            out = os.path.join(work, name)
            status, _, err = run(ncd, ["merge", gpt2, "--diagram", "GPT2Block"] + sizes + [a, b, c, "--base", base] +
                                 flags + ["-o", out], work)
            check(status == 0, f"{flags}: exit {status}: {err}")
            with open(out, "rb") as f:
                data = f.read()
            return data[8 + struct.unpack("<Q", data[:8])[0]:]
        first = merge_bytes(["--method", "dare", "--seed", "5", "--density", "0.3"], "d1.safetensors")
        again = merge_bytes(["--method", "dare", "--seed", "5", "--density", "0.3"], "d2.safetensors")
        other = merge_bytes(["--method", "dare", "--seed", "6", "--density", "0.3"], "d3.safetensors")
        check(first == again, "dare: the same seed gave different bytes")
        check(first != other, "dare: another seed gave the same bytes")
        full = merge_bytes(["--method", "dare", "--density", "1"], "d4.safetensors")
        tasks = merge_bytes(["--method", "task-arithmetic"], "d5.safetensors")
        check(full == tasks, "dare --density 1 differs from task-arithmetic")
        print(f"ok {dtype} dare determinism")

        # The merged params run.
        x = os.path.join(work, f"{dtype}_r1", "inputs", "X.npy")
        status, _, err = run(ncd, ["run", gpt2, "--diagram", "GPT2Block"] + sizes +
                             ["--params", os.path.join(work, f"{dtype}_merged_6.safetensors"), "--in", "X=" + x,
                              "--out-dir", os.path.join(work, f"{dtype}_ran")], work)
        check(status == 0 and err == "", f"ncd run with merged params: exit {status}: {err}")
        y = np.load(os.path.join(work, f"{dtype}_ran", "Y.npy")).astype(np.float64)
        check(y.shape == (8, 8) and np.all(np.isfinite(y)), f"ncd run output {y.shape}")
        print(f"ok {dtype} ncd run with merged params")
    with os.scandir(work) as entries:
        leftovers = [e.name for e in entries if e.name.startswith(".")]
    check(not leftovers, f"temporary files left behind: {leftovers}")


# ---------------------------------------------------------------- memory


def run_measured(command, cwd):
    """Exit status, stderr and peak resident memory (bytes) of a command.

    A child's ru_maxrss starts from this process's resident memory at the fork
    (it survives exec), so GNU time, a small process, runs the command when it
    is installed; otherwise the figure is an upper bound."""
    timed = os.path.exists("/usr/bin/time")
    prefix = ["/usr/bin/time", "-f", "maxrss %M"] if timed else []
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(prefix + command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        errors.seek(0)
        text = errors.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if timed:
        lines = text.rstrip("\n").split("\n")
        match = lines[-1].startswith("maxrss ") and lines[-1][7:].isdigit()
        return code, "\n".join(lines[:-1] if match else lines), int(lines[-1][7:]) * 1024 if match else -1
    return code, text, usage.ru_maxrss * 1024


def write_big(path, seed, shapes):
    """A float32 checkpoint written 1024 rows at a time. The peak resident
    memory a child reports (ru_maxrss) includes this process's at the fork, so
    this process must never hold a whole checkpoint."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for shape in shapes.values():
            for first in range(0, shape[0], 1024):
                block = (min(1024, shape[0] - first),) + tuple(shape[1:])
                f.write(rng.standard_normal(block, dtype=np.float32).astype("<f4").tobytes())


def memory(ncd, root, work):
    two_layer = os.path.join(root, "tests/merge/two_layer.ncd")
    MiB = 1 << 20
    # The binary's own address space: the smallest limit under which a tiny merge succeeds.
    small = ["-D", "n=2", "-D", "m=3"]
    rng = np.random.default_rng(0)
    for name in ("s1", "s2"):
        write_safetensors(os.path.join(work, name + ".safetensors"),
                          {"W1": ("F32", rng.standard_normal((2, 3))), "W2": ("F32", rng.standard_normal((3, 2))),
                           "b": ("F32", rng.standard_normal(2))})
    # Under AddressSanitizer the binary reserves terabytes of address space for its shadow memory:
    # no address-space limit applies, so only the resident memory is measured.
    sanitized = any(lib in subprocess.run(["ldd", ncd], capture_output=True, text=True).stdout
                    for lib in ("libasan", "libubsan"))
    baseline = None
    for limit in ([] if sanitized else range(32, 1025, 16)):
        status, _, err = run(ncd, ["merge", two_layer] + small + ["s1.safetensors", "s2.safetensors", "--method",
                                                                   "linear", "-o", "s.safetensors"], work,
                             prefix=["prlimit", f"--as={limit * MiB}"])
        if status == 0:
            baseline = limit
            break
    check(sanitized or baseline is not None, "a tiny merge fails under every address-space limit up to 1 GiB")
    gpt2 = os.path.join(root, "stdlib/std/gpt2.ncd")
    big = ["--diagram", "GPT2Block", "-D", "dtype=f32", "-D", "heads=16", "-D", "head_dim=128", "-D", "seq=8"]
    e = 16 * 128
    shapes = {"ln_1.weight": (e,), "ln_1.bias": (e,), "attn.c_attn.weight": (e, 3 * e), "attn.c_attn.bias": (3 * e,),
              "attn.c_proj.weight": (e, e), "attn.c_proj.bias": (e,), "ln_2.weight": (e,), "ln_2.bias": (e,),
              "mlp.c_fc.weight": (e, 4 * e), "mlp.c_fc.bias": (4 * e,), "mlp.c_proj.weight": (4 * e, e),
              "mlp.c_proj.bias": (e,)}
    for index, name in enumerate(("A", "B", "C")):
        write_big(os.path.join(work, name + ".safetensors"), 10 + index, shapes)
    size = os.path.getsize(os.path.join(work, "A.safetensors"))
    # Every method, under the same limit: those that look at a whole tensor first (slerp's angle,
    # TIES's top-k threshold) stream it too.
    limit = 0 if sanitized else (baseline + 64) * MiB
    check(sanitized or limit < size, f"the limit {limit / MiB:.0f} MiB is not below one checkpoint ({size / MiB:.0f} MiB)")
    peaks = {}
    for method, flags in (("slerp", []), ("task-arithmetic", ["--base", "C.safetensors"]),
                          ("ties", ["--base", "C.safetensors", "--density", "0.3"]),
                          ("dare", ["--base", "C.safetensors", "--density", "0.3"]), ("linear", [])):
        # linear's output (M) stays for the row check below.
        output = "M.safetensors" if method == "linear" else "O.safetensors"
        command = [ncd, "merge", gpt2] + big + ["A.safetensors", "B.safetensors", "--method", method] + flags + \
            ["-o", output]
        if not sanitized:
            status, err, _ = run_measured(["prlimit", f"--as={limit}"] + command, work)
            check(status == 0, f"{method} under prlimit --as={limit / MiB:.0f} MiB: exit {status}: {err}")
            os.remove(os.path.join(work, output))
        status, err, peaks[method] = run_measured(command, work)
        check(status == 0, f"{method} without a limit: exit {status}: {err}")
    # The tiny merge's peak: the binary's own.
    status, err, floor = run_measured([ncd, "merge", two_layer] + small + ["s1.safetensors", "s2.safetensors",
                                                                           "--method", "linear", "-o", "s.safetensors"],
                                      work)
    check(status == 0, f"tiny merge: exit {status}: {err}")
    # The sanitizer's own memory grows with what the process touches: there, the big merge's peak is
    # measured above the tiny one's.
    for method, peak in peaks.items():
        grown = peak - floor if sanitized else peak
        check(0 < grown < size / 4, f"{method}: peak resident memory {peak / MiB:.0f} MiB (a tiny merge: "
              f"{floor / MiB:.0f} MiB) for {size / MiB:.0f} MiB checkpoints")
    # Sampled rows: the mean of the two inputs, rounded to float32.
    def tensor(path, name):
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            entry = json.loads(f.read(length))[name]
        return np.memmap(path, "<f4", "r", 8 + length + entry["data_offsets"][0], tuple(entry["shape"]))
    for name in shapes:
        a, b, m = (tensor(os.path.join(work, f), name) for f in ("A.safetensors", "B.safetensors", "M.safetensors"))
        rows = [0, 1, a.shape[0] // 2, a.shape[0] - 1]
        expected = ((a[rows].astype(np.float64) + b[rows].astype(np.float64)) / 2).astype(np.float32)
        check(np.array_equal(np.asarray(m[rows]), expected), f"{name}: merged rows differ")
    limited = ("sanitizer build: no address-space limit applies" if sanitized else
               f"binary baseline {baseline} MiB of address space, merge under prlimit --as={limit / MiB:.0f} MiB "
               "succeeded")
    print(f"ok memory: checkpoint {size / MiB:.0f} MiB, {limited} for every method, peak RSS without a limit "
          f"{', '.join(f'{m} {p / MiB:.1f} MiB' for m, p in peaks.items())} (a tiny merge: {floor / MiB:.1f} MiB)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("section", choices=["oracle", "memory"])
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    with tempfile.TemporaryDirectory(prefix="ncd_merge_") as work:
        {"oracle": oracle, "memory": memory}[args.section](ncd, os.path.abspath(args.root), work)
    print("PASS")


if __name__ == "__main__":
    main()
