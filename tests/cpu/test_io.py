#!/usr/bin/env python3
"""Tensor file tests of `ncd run`: .npy variants in and out, repeatable runs, safetensors.

    test_io.py --ncd BUILD/bin/ncd --root SRC SECTION

Sections: npy_formats (versions 1-3, both byte orders, C and Fortran order,
every dtype, read and written back exactly), outputs (the dtypes and headers
of the files ncd writes), repeatable (a --random run repeated from the files
it wrote gives the same outputs; the same seed the same bytes), safetensors
(params from a safetensors file written here independently), threads (results
do not depend on the thread count), integers (integer results are exact), limits
(sizes beyond the machine's memory are refused with exit 1), runtime_sizes (axes
without a size take theirs from the --in files).
"""

import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sections import check, main, run  # noqa: E402
import semantics_oracle  # noqa: E402  (bf16/f8 rounding written from the formats)





def save(path, array, version=None):
    with open(path, "wb") as f:
        if version is None:
            np.save(f, array)
        else:
            np.lib.format.write_array(f, array, version=version)


def header_of(path):
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = np.lib.format._read_array_header(f, version)
    return version, shape, fortran, dtype


def npy_formats(ncd, root, work):
    io_ncd = os.path.join(root, "tests/cpu/io.ncd")
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3, 4))
    cases = [
        ("CopyF32", base.astype(np.float32), None),
        ("CopyF16", (base * 100).astype(np.float16), None),
        ("CopyBF16", (base * 3).astype(np.float32), lambda a: semantics_oracle.round_bf16(a)),
        ("CopyI8", (base * 40).astype(np.int8), None),
        ("CopyI32", (base * 1e6).astype(np.int32), None),
        ("CopyI32", (base * 1e6).astype(np.int64), lambda a: a.astype(np.int32)),
        ("CopyBool", base > 0, None),
    ]
    variants = [
        ("v1", lambda a: a, None),
        ("fortran", lambda a: np.asfortranarray(a), None),
        ("big_endian", lambda a: a.astype(a.dtype.newbyteorder(">")), None),
        ("big_endian_fortran", lambda a: np.asfortranarray(a.astype(a.dtype.newbyteorder(">"))), None),
        ("v2", lambda a: a, (2, 0)),
        ("v3", lambda a: a, (3, 0)),
    ]
    for diagram, array, expect in cases:
        for name, transform, version in variants:
            stored = transform(array)
            path = os.path.join(work, f"{diagram}_{array.dtype.name}_{name}.npy")
            save(path, stored, version)
            out = os.path.join(work, f"out_{diagram}_{array.dtype.name}_{name}")
            code, _, err = run(ncd, ["run", io_ncd, "--diagram", diagram, "--in", "X=" + path, "--out-dir", out], work)
            label = f"{diagram} from {array.dtype.name} ({name})"
            check(code == 0, f"{label}: exit {code}: {err}")
            if code:
                continue
            got = np.load(os.path.join(out, "Y.npy"))
            want = expect(array) if expect else array
            check(got.shape == want.shape and np.array_equal(got, want), f"{label}: values differ: {got} vs {want}")
    # float8 (both formats in one diagram) from float32, rounded on the way in.
    x = (base * 50).astype(np.float32)
    z = (base * 5000).astype(np.float32)
    save(os.path.join(work, "x8.npy"), x)
    save(os.path.join(work, "z8.npy"), z.astype(">f4"), (2, 0))
    out = os.path.join(work, "out_f8")
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "CopyF8", "--in", "X=x8.npy", "--in", "Z=z8.npy",
                             "--out-dir", out], work)
    check(code == 0, f"CopyF8: exit {code}: {err}")
    if code == 0:
        check(np.array_equal(np.load(os.path.join(out, "Y.npy")), semantics_oracle.e4m3(x).astype(np.float32)),
              "CopyF8: e4m3 values")
        check(np.array_equal(np.load(os.path.join(out, "W.npy")), semantics_oracle.e5m2(z).astype(np.float32)),
              "CopyF8: e5m2 values")
    # A 0-d array.
    save(os.path.join(work, "scalar.npy"), np.array(1.5, dtype=np.float32))
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "Scalar", "--in", "X=scalar.npy", "--out-dir", "out_scalar"],
                       work)
    check(code == 0 and float(np.load(os.path.join(work, "out_scalar", "Y.npy"))) == 3.0, f"Scalar: {code} {err}")


def outputs(ncd, root, work):
    io_ncd = os.path.join(root, "tests/cpu/io.ncd")
    expected = {"CopyF32": "<f4", "CopyF16": "<f2", "CopyBF16": "<f4", "CopyI8": "|i1", "CopyI32": "<i4",
                "CopyBool": "|b1"}
    for diagram, descr in expected.items():
        out = os.path.join(work, "out_" + diagram)
        code, _, err = run(ncd, ["run", io_ncd, "--diagram", diagram, "--random", "2", "--out-dir", out], work)
        check(code == 0, f"{diagram}: exit {code}: {err}")
        if code:
            continue
        for path in (os.path.join(out, "Y.npy"), os.path.join(out, "inputs", "X.npy")):
            version, shape, fortran, dtype = header_of(path)
            check(version == (1, 0), f"{path}: version {version}")
            check(shape == (3, 4) and not fortran, f"{path}: shape {shape} fortran {fortran}")
            check(dtype.str == descr, f"{path}: dtype {dtype.str}, expected {descr}")
        x = np.load(os.path.join(out, "inputs", "X.npy"))
        y = np.load(os.path.join(out, "Y.npy"))
        check(np.array_equal(x, y), f"{diagram}: the copy differs from its input")
        if diagram == "CopyBF16":
            check(np.array_equal(x, semantics_oracle.round_bf16(x)), "bf16 values written are not exact bf16 values")
        with open(os.path.join(out, "Y.npy"), "rb") as f:
            preamble = f.read(10)
            header_length = preamble[8] | (preamble[9] << 8)
            check((10 + header_length) % 64 == 0, f"{path}: the data does not start 64-byte aligned")
    # No stray files next to the outputs (atomic writes leave no temporaries).
    listing = sorted(os.listdir(os.path.join(work, "out_CopyF32")))
    check(listing == ["Y.npy", "inputs"], f"output folder holds {listing}")


def repeatable(ncd, root, work):
    file = os.path.join(root, "stdlib/std/transformer.ncd")
    sizes = ["-D", "seq=6", "-D", "heads=2", "-D", "d=4", "-D", "hidden=8", "-D", "vocab=11"]
    code, _, err = run(ncd, ["run", file, "--diagram", "GPT2", "--random", "3", "--out-dir", "a"] + sizes, work)
    check(code == 0, f"GPT2 --random: exit {code}: {err}")
    code, _, err = run(ncd, ["run", file, "--diagram", "GPT2", "--random", "3", "--out-dir", "b"] + sizes, work)
    check(code == 0, f"GPT2 --random again: exit {code}: {err}")
    code, _, err = run(ncd, ["run", file, "--diagram", "GPT2", "--params", "a/params", "--in", "tokens=a/inputs/tokens.npy",
                             "--out-dir", "c"] + sizes, work)
    check(code == 0, f"GPT2 from the files: exit {code}: {err}")
    code, _, err = run(ncd, ["run", file, "--diagram", "GPT2", "--random", "4", "--out-dir", "d"] + sizes, work)
    check(code == 0, f"GPT2 --random 4: exit {code}: {err}")
    read = lambda folder, name: open(os.path.join(work, folder, name), "rb").read()
    check(read("a", "logits.npy") == read("b", "logits.npy"), "the same seed gives different outputs")
    check(read("a", "logits.npy") == read("c", "logits.npy"), "the run repeated from its files differs")
    check(read("a", "logits.npy") != read("d", "logits.npy"), "another seed gives the same outputs")
    params = sorted(os.listdir(os.path.join(work, "a", "params")))
    check(len(params) == 3 + 12 * 16 + 2 - 1, f"{len(params)} param files")
    for name in ["wte.npy", "wpe.npy", "0.GPT2Block.ln_1.gamma.npy", "11.GPT2Block.FFN.b2.npy",
                 "5.GPT2Block.CausalMultiHeadAttention.Wq.npy", "LayerNorm.beta.npy"]:
        check(name in params, f"param file {name} missing: {params[:8]}...")
    tokens = np.load(os.path.join(work, "a", "inputs", "tokens.npy"))
    check(tokens.dtype == np.int32 and tokens.min() >= 0 and tokens.max() < 11, f"tokens {tokens}")


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> (dtype code, shape, raw bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (code, shape, data) in tensors.items():
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for code, shape, data in tensors.values():
            f.write(data)


def safetensors(ncd, root, work):
    io_ncd = os.path.join(root, "tests/cpu/io.ncd")
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "Affine", "--random", "9", "--out-dir", "a"], work)
    check(code == 0, f"Affine --random: exit {code}: {err}")
    W = np.load(os.path.join(work, "a", "params", "W.npy"))
    c = np.load(os.path.join(work, "a", "params", "c.npy"))
    bf16_bits = (c.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()  # exact bf16 values
    write_safetensors(os.path.join(work, "p.safetensors"),
                      {"W": ("F32", W.shape, W.astype("<f4").tobytes()), "c": ("BF16", c.shape, bf16_bits)},
                      {"format": "pt"})
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "Affine", "--params", "p.safetensors", "--in",
                             "X=a/inputs/X.npy", "--out-dir", "b"], work)
    check(code == 0 and err == "", f"Affine from safetensors: exit {code}: {err}")
    same = lambda x, y: open(os.path.join(work, x, "Y.npy"), "rb").read() == open(os.path.join(work, y, "Y.npy"), "rb").read()
    check(code == 0 and same("a", "b"), "safetensors params give other outputs than the .npy params")
    # float32 data for a bf16 param is accepted (rounded), an extra tensor draws a warning.
    write_safetensors(os.path.join(work, "q.safetensors"),
                      {"c": ("F32", c.shape, c.astype("<f4").tobytes()), "W": ("F32", W.shape, W.astype("<f4").tobytes()),
                       "unused": ("I64", (2,), np.arange(2, dtype="<i8").tobytes())})
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "Affine", "--params", "q.safetensors", "--in",
                             "X=a/inputs/X.npy", "--out-dir", "c"], work)
    check(code == 0 and same("a", "c"), f"Affine from F32 safetensors: exit {code}: {err}")
    check("ncd: warning: q.safetensors: tensor 'unused' matches no param of this diagram" in err, f"no warning: {err}")
    # An empty safetensors file (header {}) for a diagram without params.
    write_safetensors(os.path.join(work, "empty.safetensors"), {})
    code, _, err = run(ncd, ["run", io_ncd, "--diagram", "Scalar", "--random", "1", "--params", "empty.safetensors",
                             "--out-dir", "d"], work)
    check(code == 0, f"empty safetensors: exit {code}: {err}")


DETERMINISM_NCD = """
default dtype f32
axis s = 128, m = 128, f = 128, b = 6, n = 300
diagram Product(X[s, m], W[m, f]) -> Y[s, f] {
  Y[s, f] = X[s, m] * W[m, f]
}
diagram Batched(X[b, s, m], W[b, m, f]) -> Y[b, s, f] {
  Y[b, s, f] = X[b, s, m] * W[b, m, f]
}
diagram Wide(X[m], W[m, n], V[n, s]) -> Y[s] {
  Y[s] = X[m] * W[m, n] * V[n, s]
}
diagram Norms(X[s, n]) -> P[s, n], L[s, n], T[s] {
  P[s, n] = softmax[n](X[s, n])
  L[s, n] = layernorm[n](X[s, n], eps = 1e-5)
  T[s] = X[s, n]
}
"""


def threads(ncd, root, work):
    # Every output must be the same bits at any thread count, at f32 (where a
    # different summation order shows) and bf16, whatever OPENBLAS_* settings the
    # environment holds. Sizes are large enough for loops to be split across
    # threads, batched products to be spread over them (heads) and single
    # products to be cut into blocks (the projections and feed-forward networks).
    f32 = os.path.join(work, "f32")
    os.makedirs(os.path.join(f32, "std"), exist_ok=True)
    for name in ("nn.ncd", "attention.ncd", "transformer.ncd"):
        with open(os.path.join(root, "stdlib/std", name), encoding="utf-8") as f:
            text = f.read()
        check("default dtype bf16" in text, f"stdlib/std/{name} has no 'default dtype bf16' line")
        with open(os.path.join(f32, "std", name), "w", encoding="utf-8") as f:
            f.write(text.replace("default dtype bf16", "default dtype f32"))
    with open(os.path.join(f32, "determinism.ncd"), "w", encoding="utf-8") as f:
        f.write(DETERMINISM_NCD)
    blocks = os.path.join(root, "stdlib/std/transformer.ncd")
    blocks_f32 = os.path.join(f32, "std/transformer.ncd")
    llama = ["-D", "seq=128", "-D", "heads=4", "-D", "d=32", "-D", "hidden=512", "-D", "ffn=384"]
    gpt2 = ["-D", "seq=512", "-D", "heads=4", "-D", "d=64", "-D", "hidden=1024"]
    cases = [(blocks, "LlamaBlock", llama), (blocks, "GPT2Block", gpt2),
             (blocks_f32, "LlamaBlock", llama), (blocks_f32, "GPT2Block", gpt2)]
    cases += [(os.path.join(f32, "determinism.ncd"), d, []) for d in ("Product", "Batched", "Wide", "Norms")]
    for file, diagram, sizes in cases:
        label = f"{diagram} ({'f32' if file.startswith(f32) else 'bf16'})"
        outs = []
        for t in ("1", "2", "3", "7"):
            out_dir = os.path.join(work, f"{diagram}-{len(outs)}-t{t}-{'f32' if file.startswith(f32) else 'bf16'}")
            code, _, err = run(ncd, ["run", file, "--diagram", diagram, "--random", "1", "--threads", t, "--out-dir",
                                     out_dir, "-I", f32 if file.startswith(f32) else os.path.join(root, "stdlib")]
                               + sizes, work)
            check(code == 0, f"{label} --threads {t}: exit {code}: {err}")
            if code != 0:
                outs.append({})
                continue
            names = sorted(n for n in os.listdir(out_dir) if n.endswith(".npy"))
            outs.append({n: open(os.path.join(out_dir, n), "rb").read() for n in names})
        for t, out in zip(("2", "3", "7"), outs[1:]):
            differ = [n for n in outs[0] if out.get(n) != outs[0][n]]
            check(not differ and outs[0], f"{label}: --threads {t} gives other bits than --threads 1 in "
                                          f"{', '.join(differ) or 'every output'}")


INTEGERS_NCD = """
default dtype f32
axis m = 5, n = 3, k = 65536
diagram Dot(A[m, k]: i8, B[k, n]: i8) -> C[m, n]: i32 {
  C[m, n] = A[m, k] * B[k, n]
}
diagram Narrow(A[m, k]: i8, B[k, n]: i8) -> C[m, n]: i8 {
  C[m, n] = A[m, k] * B[k, n]
}
diagram Total(X[m, k]: i32) -> S[m]: i32 {
  S[m] = sum[k](X[m, k])
}
diagram Mixed(A[m, k]: i8, W[k, n]) -> C[m, n]: i32 {
  C[m, n] = A[m, k] * W[k, n]
}
"""


def integers(ncd, root, work):
    # Integer results are exact: i8 x i8 summed into i32 over up to 65,536 terms
    # (f32 accumulation was off by 2 at k = 4096), i32 sums beyond 2^24 and
    # saturating at the i32 range, an i8 result saturated; NumPy's int64 is the oracle.
    path = os.path.join(work, "integers.ncd")
    with open(path, "w", encoding="utf-8") as f:
        f.write(INTEGERS_NCD)
    rng = np.random.default_rng(7)
    for k in (4096, 65536):
        folder = os.path.join(work, f"int-{k}")
        os.makedirs(folder, exist_ok=True)
        a = rng.integers(-128, 128, size=(5, k), dtype=np.int8)
        a[0] = 127  # large sums (beyond 2^24 already at k = 4096) of odd terms
        b = rng.integers(-128, 128, size=(k, 3), dtype=np.int8)
        b[:, 0] = rng.integers(100, 128, size=k)
        b[:, 1] = rng.integers(-128, -100, size=k)
        x = rng.integers(-2**30, 2**30, size=(5, k), dtype=np.int32)
        x[1] = 2**30  # sums beyond the i32 range saturate
        x[2] = -2**30
        w = rng.integers(-1000, 1000, size=(k, 3)).astype(np.float32)
        for name, array in (("A", a), ("B", b), ("X", x), ("W", w)):
            np.save(os.path.join(folder, name + ".npy"), array)
        exact = a.astype(np.int64) @ b.astype(np.int64)
        total = x.astype(np.int64).sum(axis=1)
        mixed = a.astype(np.int64) @ w.astype(np.int64)
        cases = (("Dot", ["A", "B"], "C", np.clip(exact, -2**31, 2**31 - 1)),
                 ("Narrow", ["A", "B"], "C", np.clip(exact, -128, 127)),
                 ("Total", ["X"], "S", np.clip(total, -2**31, 2**31 - 1)),
                 ("Mixed", ["A", "W"], "C", np.clip(mixed, -2**31, 2**31 - 1)))
        for diagram, names, output, expected in cases:
            out_dir = os.path.join(folder, diagram)
            args = ["run", path, "--diagram", diagram, "-D", f"k={k}", "--out-dir", out_dir, "--threads", "2"]
            for name in names:
                args += ["--in", f"{name}={os.path.join(folder, name + '.npy')}"]
            code, _, err = run(ncd, args, work)
            check(code == 0, f"{diagram} k={k}: exit {code}: {err}")
            if code != 0:
                continue
            got = np.load(os.path.join(out_dir, output + ".npy")).astype(np.int64)
            wrong = int((got != expected).sum())
            check(wrong == 0, f"{diagram} k={k}: {wrong} of {expected.size} results differ from the exact sums "
                              f"(first: {got.ravel()[np.argmax(got.ravel() != expected.ravel())]} vs "
                              f"{expected.ravel()[np.argmax(got.ravel() != expected.ravel())]})")


def limits(ncd, root, work):
    # Sizes beyond the machine's memory: a located error and exit 1 before any
    # allocation (memory overcommit would otherwise let the system kill ncd part-way),
    # and no output folder.
    import re
    attention = os.path.join(root, "examples/attention.ncd")
    cases = (
        (["-D", "q=2000000000", "-D", "k=4"],
         r"^ncd: error: --random: the 3 generated inputs and params need 476\.84 GiB, more than the [0-9.]+ [KMGT]iB "
         r"of memory available; the largest is input 'Q' \[q=2000000000, d=64\] bf16 \(476\.84 GiB\); choose smaller "
         r"axis sizes with -D\n$"),
        (["-D", "q=1000000", "-D", "k=1000000"],
         r"^ncd: error: running 'Attention': out of memory: an intermediate needs 3\.64 TiB, [0-9.]+ [KMGT]iB is available\n$"),
    )
    for defines, expected in cases:
        out_dir = os.path.join(work, "limits-out")
        code, _, err = run(ncd, ["run", attention, "--random", "1", "--out-dir", out_dir] + defines, work)
        check(code == 1, f"{' '.join(defines)}: exit {code}, expected 1: {err}")
        check(re.match(expected, err) is not None, f"{' '.join(defines)}: unexpected message: {err!r}")
        check(not os.path.exists(out_dir), f"{' '.join(defines)}: the output folder was written")
    # Endless or special files are read only up to a limit, and named.
    run_args = ["run", attention, "-D", "q=8", "-D", "k=8", "--random", "1", "--out-dir", os.path.join(work, "special")]
    specials = (
        (["check", "/dev/zero"], "ncd: error: '/dev/zero' is larger than 64 MiB, the limit for a text file\n"),
        (["cost", attention, "--hw", "/dev/zero"],
         "ncd: error: hardware profile: '/dev/zero' is larger than 64 MiB, the limit for a text file\n"),
        (run_args + ["--in", "Q=/dev/zero"],
         "ncd: error: /dev/zero: larger than the limit of 1.00 MiB (for input 'Q' [q=8, d=64] bf16)\n"),
        (run_args + ["--in", f"Q={work}"], f"ncd: error: {work}: is a directory (for input 'Q' [q=8, d=64] bf16)\n"),
        (run_args + ["--params", "/dev/zero"],
         "ncd: error: /dev/zero: neither a folder nor a .safetensors file (--params takes a folder of .npy files or "
         "a .safetensors file)\n"),
    )
    for args, expected in specials:
        code, _, err = run(ncd, args, work)
        check(code == 1 and err == expected, f"ncd {' '.join(args[:1] + args[-2:])}: exit {code}, {err!r}")


RUNTIME_NCD = """axis n, m, e = 3
diagram Rows(X[n, m], W[m, e]) -> Y[n, e], M[n] {
  Y[n, e] = X[n, m] * W[m, e] / #m
  M[n] = max[m](X[n, m])
}
"""


def runtime_sizes(ncd, root, work):
    # Axes declared without a size (n, m) take the sizes of the --in files; the
    # same program runs at two lengths; the results are NumPy's.
    program = os.path.join(work, "rows.ncd")
    with open(program, "w") as f:
        f.write(RUNTIME_NCD)
    rng = np.random.default_rng(11)
    for n, m in ((5, 7), (2, 40)):
        x = rng.standard_normal((n, m)).astype(np.float32)
        w = rng.standard_normal((m, 3)).astype(np.float32)
        save(os.path.join(work, "x.npy"), x)
        save(os.path.join(work, "w.npy"), w)
        out = os.path.join(work, "out%d" % n)
        code, _, err = run(ncd, ["run", program, "--in", "X=x.npy", "--in", "W=w.npy", "--out-dir", out], work)
        check(code == 0, f"n={n}, m={m}: exit {code}: {err}")
        if code == 0:
            y, mx = np.load(os.path.join(out, "Y.npy")), np.load(os.path.join(out, "M.npy"))
            check(y.shape == (n, 3) and np.allclose(y, x.astype(np.float64) @ w / m, rtol=1e-5, atol=1e-6),
                  f"n={n}, m={m}: Y differs from NumPy")
            check(mx.shape == (n,) and np.array_equal(mx, x.max(axis=1)), f"n={n}, m={m}: M differs from NumPy")
    # -D still decides; inputs that disagree, a file of the wrong rank and no input are errors.
    save(os.path.join(work, "x.npy"), np.zeros((4, 6), np.float32))
    save(os.path.join(work, "w.npy"), np.zeros((5, 3), np.float32))
    save(os.path.join(work, "v.npy"), np.zeros(6, np.float32))
    save(os.path.join(work, "w6.npy"), np.zeros((6, 3), np.float32))
    cases = (
        (["--in", "X=x.npy", "--in", "W=w.npy"],
         "ncd: error: w.npy: has shape (5, 3), expected shape (6, 3) for input 'W' [m=6, e=3] f32\n"),
        (["--in", "X=v.npy", "--in", "W=w.npy"], "ncd: error: v.npy has shape (6,), but input 'X' has 2 axes [n, m]\n"),
        (["--in", "W=w6.npy"], "ncd: error: input 'X' of 'Rows': axis 'n' has no size; set it with -D n=SIZE\n"),
        (["--in", "X=x.npy", "--in", "W=w6.npy", "-D", "n=5"],
         "ncd: error: x.npy: has shape (4, 6), expected shape (5, 6) for input 'X' [n=5, m=6] f32\n"),
    )
    for args, expected in cases:
        code, _, err = run(ncd, ["run", program, "--out-dir", os.path.join(work, "bad")] + args, work)
        check(code == 1 and err == expected, f"ncd run {' '.join(args)}: exit {code}, {err!r}, expected {expected!r}")


SECTIONS = {"npy_formats": npy_formats, "outputs": outputs, "repeatable": repeatable, "safetensors": safetensors,
            "threads": threads, "integers": integers,
            "limits": limits, "runtime_sizes": runtime_sizes}


if __name__ == "__main__":
    sys.exit(main(SECTIONS, "ncd-io-"))
