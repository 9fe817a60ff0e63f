#!/usr/bin/env python3
"""The high level of `ncd optimize --advisor`: param conversions and the built-in catalogue.

A scripted advisor proposes a factorised weight with the conversion of its
params (and conversions that are wrong, each rejected with its message); the
built-in advisor's catalogue proposes grouped-/multi-query attention, low-rank
factorisations and tied embeddings, each refereed. The errors the referee
measures with a conversion are checked against NumPy (np.linalg.svd, mean
pooling of heads) on the same data, which `ncd run --random` writes out.

Usage: test_catalogue.py --ncd BUILD/ncd --root SOURCE_ROOT CASE
"""

import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_advisor import HERE, PYTHON, ROOT, Failure, expect, verdicts  # noqa: E402

ATTENTION = os.path.join(ROOT, "stdlib", "std", "attention.ncd")
NN = os.path.join(ROOT, "stdlib", "std", "nn.ncd")
FIGURES = re.compile(r"max abs error (\S+), relative L2 error (\S+) \(sizes:([^;,)]*)")


def optimize(ncd, workdir, source, diagram, advisor, extra=()):
    command = [ncd, "optimize", source, "--diagram", diagram, "--hw", "h100-sxm", "-o", "out.ncd", "--explain",
               "--advisor", advisor if advisor == "builtin" else f"{PYTHON} {os.path.join(HERE, 'advisors', advisor)}"]
    result = subprocess.run(command + list(extra), cwd=workdir, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
    return verdicts(result.stderr), result.stderr


def figures(line):
    """The measured errors of a verdict and the -D sizes they were measured at."""
    match = FIGURES.search(line)
    expect(match, line)
    return float(match.group(1)), float(match.group(2)), match.group(3).split()


def random_run(ncd, workdir, source, diagram, sizes, extra=()):
    """The input's output on the verification's data, and that data, by `ncd run --random 1`."""
    out = os.path.join(workdir, "run")
    result = subprocess.run([ncd, "run", source, "--diagram", diagram, "--random", "1", "--out-dir", out] + sizes +
                            list(extra), cwd=workdir, capture_output=True, text=True, timeout=300)
    expect(result.returncode == 0, result.stderr)
    load = lambda *parts: np.load(os.path.join(out, *parts)).astype(np.float64)  # noqa: E731
    return load


def agrees(measured, oracle, what):
    # The verdict prints three significant digits.
    expect(abs(measured - oracle) <= 0.006 * abs(oracle) + 1e-6, f"{what}: ncd {measured} vs NumPy {oracle:.6g}")


def case_external_conversion(ncd, workdir):
    v, stderr = optimize(ncd, workdir, os.path.join(HERE, "proj.ncd"), "Proj", "lowrank.py",
                         ["--level", "high", "--allow-inexact", "--tolerance", "1"])
    print("\n".join(v))
    expect(len(v) == 6, stderr)


def case_external_conversion_oracle(ncd, workdir):
    source = os.path.join(HERE, "proj.ncd")
    v, stderr = optimize(ncd, workdir, source, "Proj", "lowrank.py", ["--level", "high", "--allow-inexact",
                                                                        "--tolerance", "1"])
    max_abs, rel_l2, sizes = figures(v[0])
    load = random_run(ncd, workdir, source, "Proj", sizes)
    W, X, Y = load("params", "W.npy"), load("inputs", "X.npy"), load("Y.npy")
    U, S, Vt = np.linalg.svd(W)
    approx = X @ ((U[:, :32] * S[:32]) @ Vt[:32])
    agrees(rel_l2, np.linalg.norm(approx - Y) / np.linalg.norm(Y), "relative L2 error")
    agrees(max_abs, np.abs(approx - Y).max(), "max abs error")


def case_catalogue_gqa(ncd, workdir):
    v, stderr = optimize(ncd, workdir, ATTENTION, "MultiHeadAttention", "builtin",
                         ["--level", "high", "--allow-inexact", "--tolerance", "2", "-D", "dtype=f32"])
    print("\n".join(v))


def multi_head(params, X, kv=None):
    """std/attention.ncd's MultiHeadAttention in NumPy; with kv, its keys and values from kv heads whose
    projections are the mean of each group of consecutive heads (GQA's conversion)."""
    p = dict(params)
    heads, d = p["bq"].shape
    if kv:
        group = heads // kv
        for name in ("Wk", "Wv"):
            pooled = p[name].reshape(p[name].shape[0], kv, group, d).mean(axis=2)
            p[name] = np.repeat(pooled, group, axis=1)
        for name in ("bk", "bv"):
            p[name] = np.repeat(p[name].reshape(kv, group, d).mean(axis=1), group, axis=0)
    Q, K, V = (np.einsum("sm,mhd->shd", X, p["W" + x]) + p["b" + x] for x in "qkv")
    S = np.einsum("qhd,khd->hqk", Q, K) / np.sqrt(d)
    P = np.exp(S - S.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    O = np.einsum("hqk,khd->qhd", P, V)
    return np.einsum("qhd,hdm->qm", O, p["Wo"]) + p["bo"]


def case_catalogue_gqa_oracle(ncd, workdir):
    extra = ["--level", "high", "--allow-inexact", "--tolerance", "2", "-D", "dtype=f32"]
    v, stderr = optimize(ncd, workdir, ATTENTION, "MultiHeadAttention", "builtin", extra)
    checked = 0
    for line in v:
        match = re.search(r"query attention from multi-head: (\d+) key/value heads? for (\d+) ", line)
        if not match:
            continue
        max_abs, rel_l2, sizes = figures(line)
        load = random_run(ncd, workdir, ATTENTION, "MultiHeadAttention", sizes, ["-D", "dtype=f32"])
        params = {name: load("params", name + ".npy") for name in ("Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv", "bo")}
        X, Y = load("inputs", "X.npy"), load("Y.npy")
        expect(np.abs(multi_head(params, X) - Y).max() < 1e-3, "the NumPy MultiHeadAttention is not ncd's")
        # The group size is kept at the verification's sizes, where there are fewer heads.
        kv, heads = int(match.group(1)), int(match.group(2))
        approx = multi_head(params, X, 1 if kv == 1 else params["bq"].shape[0] // (heads // kv))
        agrees(rel_l2, np.linalg.norm(approx - Y) / np.linalg.norm(Y), line)
        agrees(max_abs, np.abs(approx - Y).max(), line)
        checked += 1
    expect(checked == 3, stderr)


def case_catalogue_lowrank(ncd, workdir):
    v, stderr = optimize(ncd, workdir, NN, "FFN", "builtin", ["--level", "high"])
    print("\n".join(v))


def case_catalogue_tied(ncd, workdir):
    v, stderr = optimize(ncd, workdir, os.path.join(HERE, "lm.ncd"), "LM", "builtin", ["--level", "high"])
    print("\n".join(v))


CASES = {name[len("case_"):]: function for name, function in globals().items() if name.startswith("case_")}


def main():
    import argparse
    import shutil
    import tempfile
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    failed = 0
    for name in args.cases or sorted(CASES):
        workdir = tempfile.mkdtemp(prefix="ncd-catalogue-")
        try:
            CASES[name](ncd, workdir)
            print(f"ok   {name}")
        except (Failure, subprocess.TimeoutExpired) as error:
            failed += 1
            print(f"FAIL {name}: {error}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
