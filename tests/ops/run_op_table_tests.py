#!/usr/bin/env python3
"""Every pointwise function of the op table, from its row alone (see tests/ops/CMakeLists.txt).

    run_op_table_tests.py --ncd BUILD/bin/ncd --root SRC [--nvcc NVCC]

Reads the rows of core/include/ncd/ops.h that the language calls by name
(Syntax::Call, Kind::Elementwise), writes one diagram that calls each of
them, and checks that ncd parses it (`ncd check`), runs it on the CPU
(`ncd run --random`, every output written and the same on a second run),
prices it (`ncd cost --json`: each function's FLOPs per element are its row's)
and emits it for CUDA (`ncd emit --cuda`: the row's spelling is in the
kernel), compiled with nvcc for sm_80 when nvcc is there. A new row is
covered with no change here; values are checked against NumPy by
tests/cpu/semantics.ncd.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROW = re.compile(r'\{\.fn = Fn::\w+, \.name = "(\w+)", \.kind = Kind::Elementwise, \.syntax = Syntax::Call,'
                 r' \.arity = (\d), \.flops = (\d+)(.*?)\.cuda = "([^"]*)"(?:,\s*\.vjp = \{[^}]*\})?\}', re.S)
SIZES = {"s": 4, "m": 3}
INTEGER_RESULTS = {"quantize"}


def rows(root):
    with open(os.path.join(root, "core/include/ncd/ops.h"), encoding="utf-8") as f:
        text = f.read()
    out = [(name, int(arity), float(flops), cuda) for name, arity, flops, _, cuda in ROW.findall(text)]
    if len(out) < 20:
        raise SystemExit("FAIL: read only %d pointwise rows from ops.h; has the row format changed?" % len(out))
    return out


def source(table):
    outputs, body = [], []
    for name, arity, _, _ in table:
        arguments = ["X", "X, P", "X > P, X, P"][arity - 1]
        # quantize gives integers: its statement must have an integer dtype (the saturation).
        outputs.append("O_%s[s, m]%s" % (name, ": i32" if name in INTEGER_RESULTS else ""))
        body.append("  O_%s[s, m] = %s(%s)" % (name, name, arguments))
    return ("axis s = %d, m = %d\n\ndiagram Every(X[s, m], P[s, m]) -> %s {\n%s\n}\n"
            % (SIZES["s"], SIZES["m"], ", ".join(outputs), "\n".join(body)))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit("FAIL: %s exited %d:\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--nvcc", default="nvcc")
    args = parser.parse_args()
    table = rows(args.root)
    problems = []
    work = tempfile.mkdtemp(prefix="ncd-ops-")
    try:
        path = os.path.join(work, "every.ncd")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source(table))
        run([args.ncd, "check", path])

        outs = []
        for attempt in ("a", "b"):
            out = os.path.join(work, attempt)
            run([args.ncd, "run", path, "--random", "7", "--out-dir", out])
            outs.append(out)
        for name, _, _, _ in table:
            files = [os.path.join(out, "O_%s.npy" % name) for out in outs]
            if not all(os.path.exists(f) for f in files):
                problems.append("cpu: no output for %s" % name)
                continue
            a, b = (np.load(f) for f in files)
            if a.shape != (SIZES["s"], SIZES["m"]) or not np.array_equal(a, b, equal_nan=True):
                problems.append("cpu: %s gave shape %s, or differs between runs" % (name, a.shape))

        report = json.loads(run([args.ncd, "cost", path, "--json"]).stdout)
        flops = {op["name"]: op["flops"]["value"] for op in report["baseline"]["operations"]}
        # An integer statement computes the function into an f32 temporary, then converts it.
        for op in report["baseline"]["operations"]:
            if op["what"].startswith("elementwise ") and op["what"].split()[1] in INTEGER_RESULTS:
                flops["O_" + op["what"].split()[1]] = op["flops"]["value"]
        for name, _, per_element, _ in table:
            want = per_element * SIZES["s"] * SIZES["m"]
            if flops.get("O_" + name) != want:
                problems.append("cost: %s costs %s FLOPs, the row says %s" % (name, flops.get("O_" + name), want))

        cu = os.path.join(work, "every.cu")
        run([args.ncd, "emit", "--cuda", path, "-o", cu])
        with open(cu, encoding="utf-8") as f:
            code = f.read()
        for name, _, _, cuda in table:
            head = cuda.split("$")[0]  # the spelling up to the first operand: `rintf(`, `(1.f / `
            pattern = r"__global__ void \w*_%s_\w*\(.*?\n}\n" if name in INTEGER_RESULTS else \
                r"__global__ void \w*%s_O_%s\w*\(.*?\n}\n" % (name, "%s")
            kernel = re.search(pattern % name, code, re.S)
            if not kernel or (head and head not in kernel.group(0)):
                problems.append("cuda: no kernel for %s spelling it %r" % (name, cuda))
        nvcc = args.nvcc if os.path.isabs(args.nvcc) and os.access(args.nvcc, os.X_OK) else shutil.which(args.nvcc)
        if nvcc:
            r = subprocess.run([nvcc, "-std=c++17", "-O1", "-Werror", "all-warnings", "-gencode",
                                "arch=compute_80,code=sm_80", "-c", "-o", os.path.join(work, "every.o"), cu],
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                problems.append("cuda: nvcc failed:\n" + (r.stdout + r.stderr)[-4000:])
        else:
            print("note: nvcc not found (%s); the CUDA code was checked, not compiled" % args.nvcc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for problem in problems:
        print("FAIL: " + problem)
    if not problems:
        print("ok: %d pointwise functions parse, run on the CPU, cost their row's FLOPs and emit for CUDA" % len(table))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
