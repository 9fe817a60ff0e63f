"""Checks the float64 IR interpreter (ir_numpy.py) against `ncd run` at f32.

    /usr/bin/python3 tests/grad/test_ir_numpy.py [--ncd BUILD/bin/ncd] [FILTER]

For every diagram of every file in stdlib/std, runs `ncd run --random 1
-D dtype=f32` at small sizes, feeds the inputs and params it generated to the
interpreter, and compares the outputs: the largest absolute error relative to
the largest absolute value must stay within 1e-4 (integer outputs must be
equal). The interpreter must also name exactly the params ncd generated. A
diagram the interpreter reports as unsupported is listed as skipped. Prints
one line per diagram; exits 0 when nothing failed.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
import ir_numpy  # noqa: E402

RTOL = 1e-4

# Small sizes per file, those of tests/cpu/oracle.py, so that the suite runs
# in seconds; `layers` is cut too, since a deep stack checks nothing more.
SIZES = {
    "attention.ncd": dict(q=8, k=6, d=4, seq=8, heads=2, window=3, prefix=2, kv_heads=2, group=2),
    "conv.ncd": dict(c=3, o=4, t=10, kw=3, h=6, w=5, kh=3),
    "nn.ncd": dict(d_in=6, d_out=5, model=8, hidden=12, vocab=20, seq=5),
    "ssm.ncd": dict(l=7, d=5, n=4, r=3),
    "moe.ncd": dict(seq=9, hidden_size=6, experts=5, top=2, ffn=7, routed=8, chosen=3, expert_ffn=4, shared_ffn=5),
    "transformer.ncd": dict(seq=8, heads=2, d=4, hidden=12, vocab=20, kv_heads=2, group=2, ffn=10, layers=2),
    "gpt2.ncd": dict(seq=8, positions=12, vocab=20, heads=2, head_dim=4, layers=2, nx=6, nf=5),
    "llama.ncd": dict(seq=8, vocab=20, layers=2, kv_heads=2, group=2, head_dim=4, intermediate=12, in_features=6,
                      out_features=5),
}


def axis_names(ncd, path):
    doc = json.loads(subprocess.run([ncd, "show", path, "--json"], capture_output=True, text=True, check=True).stdout)
    return {a["name"] for a in doc["axes"]}, [d["name"] for d in doc["diagrams"]]


def read_folder(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.npy"), recursive=True)):
        out[os.path.relpath(path, folder)[:-4]] = np.load(path)
    return out


def compare(name, got, want):
    """An error message, or None when got (ncd) matches want (the interpreter)."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return "%s: shape %s, interpreter %s" % (name, got.shape, want.shape)
    if got.dtype.kind in "biu":
        bad = int(np.count_nonzero(got.astype(np.int64) != want.astype(np.int64)))
        return "%s: %d of %d integers differ" % (name, bad, got.size) if bad else None
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(w)):
        return "%s: NaN in different places" % name
    finite = np.isfinite(w)
    if not np.array_equal(g[~finite & ~np.isnan(w)], w[~finite & ~np.isnan(w)]):
        return "%s: infinities differ" % name
    if not finite.any():
        return None
    scale = max(float(np.max(np.abs(w[finite]))), 1e-30)
    err = float(np.max(np.abs(g[finite] - w[finite]))) / scale
    return "%s: relative error %.3g" % (name, err) if err > RTOL else None


# What no stdlib diagram holds: quantize and dequantize (per token, per channel,
# with zero points, halves to even) and gathers outside the table, which read 0.
EXTRAS_NCD = """
default dtype f32
axis s = 5, m = 8, n = 6, v = 7

diagram Extras(X[s, m], W[m, n], Z[n]: i8, T[v, m], ids[s]: i32) -> Token[s, m]: i8, Zero[m, n]: i8, Back[m, n],
    Acc[s, n]: i32, Y[s, n], Halves[s, m]: i8, G[s, m] {
  Sx[s] = max[m](abs(X)) / 127
  Token[s, m] = quantize(X, Sx, 0)
  Sc[n] = max[m](abs(W)) / 127
  Channel[m, n]: i8 = quantize(W, Sc, 0)
  Sa[n] = (max[m](W) - min[m](W)) / 255
  Zero[m, n] = quantize(W, Sa, Z[n])
  Back[m, n] = dequantize(Zero, Sa, Z[n])
  Acc[s, n] = Token[s, m] * Channel[m, n]
  Y[s, n] = Acc * Sx * Sc
  Halves[s, m] = quantize(X, 0.25, 0)
  G[s, m] = T[ids[s], m] + X
}
"""
EXTRAS_INPUTS = {
    "ids": np.array([0, -1, 6, 7, 100], dtype=np.int32),
    "X": np.array([[0.125, 0.375, -0.125, -0.625, 1.5, -2.0, 0.3, 3.1]] * 5, dtype=np.float32)
    * np.arange(1, 6, dtype=np.float32)[:, None],
}

NARROW = ("f16", "bf16", "f8e4m3", "f8e5m2")


def narrow_values(program):
    """The outputs held in a narrow float dtype, and whether one is read on the way to another output.

    ncd rounds such values and the interpreter by design does not, so they are not
    compared; a diagram whose other outputs depend on one cannot be compared at all.
    """
    d = program.root.d
    values = d["values"]
    producer = {}

    def index(ops, owner=None):
        for op in ops:
            for r in op["results"]:
                producer[r] = owner or op
            if op["kind"] == "repeat":
                index(op["body"], owner or op)
    index(d["ops"])

    def inputs_of(op):
        found = list(op["operands"])
        if op["kind"] == "repeat":
            stack = list(op["body"])
            while stack:
                inner = stack.pop()
                found += inner["operands"] + inner["results"]
                stack += inner.get("body", [])
        return found

    narrow_outputs = [values[o]["name"] for o in d["outputs"] if values[o]["dtype"] in NARROW]
    seen = set()
    stack = [o for o in d["outputs"] if values[o]["dtype"] not in NARROW]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if values[v]["dtype"] in NARROW:
            return narrow_outputs, True
        if v in producer:
            stack += inputs_of(producer[v])
    return narrow_outputs, False


def run_case(ncd, work, path, diagram, defines, given=None):
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    command = [ncd, "run", path, "--diagram", diagram, "--random", "1", "--out-dir", out, "--threads", "2", "-w"]
    for name, array in (given or {}).items():
        np.save(os.path.join(work, name + ".npy"), array)
        command += ["--in", "%s=%s" % (name, os.path.join(work, name + ".npy"))]
    for d in defines:
        command += ["-D", d]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return "fail", "ncd run failed: " + result.stderr.strip()
    try:
        program = ir_numpy.load(path, diagram, defines)
        sig = program.signature()
    except ir_numpy.Unsupported as e:
        return "skip", str(e)
    narrow_outputs, entangled = narrow_values(program)
    if entangled:
        return "skip", "holds f16/bf16/f8 values that ncd rounds and the interpreter by design does not"
    inputs = read_folder(os.path.join(out, "inputs"))
    inputs.update(given or {})
    params = read_folder(os.path.join(out, "params"))
    ours = {p["name"] for p in sig["params"]}
    if set(params) - ours:
        return "fail", "params ncd generated that the interpreter does not name: %s" % sorted(set(params) - ours)[:5]
    if ours - set(params):
        # ncd lists only the params a diagram reads; a named but unread one would be a
        # difference in reachability, not in values.
        return "fail", "params the interpreter names that ncd did not generate: %s" % sorted(ours - set(params))[:5]
    try:
        got = program.run(inputs, params)
    except ir_numpy.Unsupported as e:
        return "skip", str(e)
    errors = []
    for o in sig["outputs"]:
        if o["name"] in narrow_outputs:
            continue
        reference = os.path.join(out, o["name"] + ".npy")
        if not os.path.exists(reference):
            errors.append("%s: ncd wrote no output" % o["name"])
            continue
        message = compare(o["name"], np.load(reference), got[o["name"]])
        if message:
            errors.append(message)
    if errors:
        return "fail", "; ".join(errors)
    detail = "%d outputs, %d params" % (len(sig["outputs"]) - len(narrow_outputs), len(params))
    if narrow_outputs:
        detail += " (not compared, narrow float: %s)" % ", ".join(narrow_outputs)
    return "pass", detail


def run_suite(description, prefix, statuses, paths, check, case_name):
    """Runs `check(ncd, work, path, diagram, defines)` on every diagram of `paths(work)`.

    Each file runs at -D dtype=f32 and its SIZES; a case (named by
    `case_name(path, diagram)`) is skipped unless it contains the command
    line's filter. Prints a line per case and the counts of `statuses`; returns
    the exit status (1 when a case failed)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ncd", default=os.environ.get("NCD") or os.path.join(ROOT, "build", "bin", "ncd"))
    parser.add_argument("filter", nargs="?", default="", help="only cases whose FILE:DIAGRAM contains this")
    args = parser.parse_args()
    os.environ["NCD"] = os.path.abspath(args.ncd)
    ncd = os.environ["NCD"]
    work = tempfile.mkdtemp(prefix=prefix)
    counts = dict.fromkeys(statuses, 0)
    try:
        for path in paths(work):
            base = os.path.basename(path)
            names, diagrams = axis_names(ncd, path)
            defines = ["dtype=f32"] + ["%s=%d" % (k, v) for k, v in SIZES.get(base, {}).items() if k in names]
            for diagram in diagrams:
                case = case_name(path, diagram)
                if args.filter not in case:
                    continue
                start = time.time()
                try:
                    status, detail = check(ncd, work, path, diagram, defines)
                except Exception as e:  # reported per case, so that one crash hides no other result
                    status, detail = "fail", "%s: %s" % (type(e).__name__, e)
                counts[status] += 1
                print("%-4s %s (%.1fs): %s" % (status, case, time.time() - start, detail), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    words = {"pass": "passed", "skip": "skipped", "fail": "failed"}
    print(", ".join("%d %s" % (counts[s], words[s]) for s in statuses))
    return 1 if counts["fail"] else 0


def main():
    def paths(work):
        found = sorted(glob.glob(os.path.join(ROOT, "stdlib", "std", "*.ncd")))
        found.append(os.path.join(ROOT, "tests", "cpu", "semantics.ncd"))
        extras = os.path.join(work, "extras", "extras.ncd")
        os.makedirs(os.path.dirname(extras))
        with open(extras, "w", encoding="utf-8") as f:
            f.write(EXTRAS_NCD)
        found.append(extras)
        return found

    def check(ncd, work, path, diagram, defines):
        given = EXTRAS_INPUTS if os.path.basename(path) == "extras.ncd" else None
        return run_case(ncd, work, path, diagram, defines, given)

    return run_suite(__doc__.splitlines()[0], "ncd-ir-numpy-", ("pass", "skip", "fail"), paths, check,
                     lambda path, diagram: "%s/%s:%s" % (os.path.basename(os.path.dirname(path)),
                                                         os.path.basename(path), diagram))


if __name__ == "__main__":
    sys.exit(main())
