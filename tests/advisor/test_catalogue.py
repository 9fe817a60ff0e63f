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
from test_advisor import HERE, PYTHON, ROOT, expect, main, verdicts  # noqa: E402

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
    expect(v == [
        'advisor: candidate 1.1 ("rank 32 from the SVD"): rejected: slower by 224.47% (8.519 us against 2.625 us), '
        "inexact: max abs error 1.35, relative L2 error 0.309 (sizes: -D s=64 -D m=64 -D n=64, seed 1)",
        # Without a conversion the factors are drawn at random: the error says nothing about the rewrite.
        'advisor: candidate 1.2 ("rank 32 at random"): rejected: inexact beyond --tolerance 1, max abs error 5.97, '
        "relative L2 error 1.34 (sizes: -D s=64 -D m=64 -D n=64, seed 1); priced: slower by 224.47% "
        "(8.519 us against 2.625 us)",
        'advisor: candidate 1.3 ("misspelt source"): rejected: verification failed: candidate-1.3.ncd: params[0] '
        "(\"W_u\"): the input has no param 'Ww'; did you mean 'W'?",
        'advisor: candidate 1.4 ("unknown op"): rejected: its params[1] has an unknown op "svd" '
        "(ops: copy, mean, svd_left, svd_right)",
        'advisor: candidate 1.5 ("wrong rank axis"): rejected: verification failed: candidate-1.5.ncd: params[0] '
        "(\"W_u\"): 'W_u' [m=64, r=32] must have the rank axis 's', and 'W' [m=64, n=64] must not",
        'advisor: candidate 1.6 ("not an array"): rejected: its "params" is not an array',
        'advisor: candidate 1.7 ("pooled the wrong way"): rejected: verification failed: candidate-1.7.ncd: '
        "params[0] (\"W_u\"): 'W_u' [m=64, r=32] must be 'W' [m=64, n=64] with axis 'n' replaced by 's', whose "
        "size divides it",
        'advisor: candidate 1.8 ("twice"): rejected: verification failed: candidate-1.8.ncd: params[2] ("W_u"): '
        "'W_u' is converted twice",
        'advisor: candidate 1.9 ("no source"): rejected: its params[0] needs a string "from"',
        # A copy is exact: verified equivalent (it would differ, drawn at random), then priced.
        'advisor: candidate 1.10 ("W stored transposed"): rejected: not faster (2.625 us)',
    ], "\n".join(v))
    expect("10 proposals, 0 accepted" in stderr, stderr)


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


GQA_LINES = [
    'advisor: candidate 1.1 ("grouped-query attention from multi-head: 6 key/value heads for 12 \'heads\' '
    "(projections mean-pooled per group)\"): accepted: faster by 10.50% (189.8 us -> 169.9 us), inexact: max abs "
    "error 0.955, relative L2 error 0.3 (sizes: -D dtype=f32 -D d=8 -D seq=64 -D heads=6; derived: model=48, "
    "kv_heads_2=3, seed 1)",
    'advisor: candidate 1.2 ("grouped-query attention from multi-head: 3 key/value heads for 12 \'heads\' '
    "(projections mean-pooled per group)\"): accepted: faster by 5.87% (169.9 us -> 159.9 us), inexact: max abs "
    "error 1.06, relative L2 error 0.387 (sizes: -D dtype=f32 -D d=8 -D seq=64 -D heads=4; derived: model=32, "
    "kv_heads_2=1, seed 1)",
    'advisor: candidate 1.3 ("multi-query attention from multi-head: 1 key/value head for 12 \'heads\' '
    "(projections mean-pooled per group)\"): accepted: faster by 4.16% (159.9 us -> 153.3 us), inexact: max abs "
    "error 1.35, relative L2 error 0.389 (sizes: -D dtype=f32 -D d=8 -D seq=64 -D heads=6; derived: model=48, "
    "group_heads=6, seed 1)",
]


def case_catalogue_gqa(ncd, workdir):
    # std/attention.ncd declares kv_heads and group already: the new axes get fresh names.
    v, stderr = optimize(ncd, workdir, ATTENTION, "MultiHeadAttention", "builtin",
                         ["--level", "high", "--allow-inexact", "--tolerance", "2", "-D", "dtype=f32"])
    expect(v[:3] == GQA_LINES, "\n".join(v))
    # Then the four projections at two ranks each, priced against the best so far (multi-query).
    expect(len(v) == 11 and all("low-rank factorisation of 'W" in line and "inexact: max abs error" in line
                                for line in v[3:]), "\n".join(v))
    text = open(os.path.join(workdir, "out.ncd")).read()
    expect("then by the built-in advisor (round 1: multi-query attention from multi-head" in text, text)
    # The written diagram's keys and values are projected to one head, its queries split to (1, 12).
    expect("Wk[model, kv_heads_2, d]" in text and "axis group_heads = heads" in text, text)


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
    expect(len(v) == 4, "\n".join(v))
    expect(v[3] == 'advisor: candidate 1.4 ("low-rank factorisation of \'W2\' (3072 x 768) at rank 96 (truncated '
           "SVD): 2359296 -> 368640 weights\"): rejected: not equivalent, max abs error 2.06, relative L2 error 0.473 "
           "(sizes: -D model=256 -D hidden=64; derived: W2_rank=32, seed 1); an inexact change needs "
           "--allow-inexact; priced: faster by 50.60% (24.41 us -> 12.06 us)", v[3])
    # Allowed and within the tolerance, the fastest is kept: W2 at rank 96.
    v, stderr = optimize(ncd, workdir, NN, "FFN", "builtin", ["--level", "high", "--allow-inexact", "--tolerance",
                                                               "0.5", "--advisor-rounds", "2"])
    expect("8 proposals, 4 accepted; priced time of 'FFN' on h100-sxm: 24.41 us -> 12.06 us" in stderr, stderr)
    text = open(os.path.join(workdir, "out.ncd")).read()
    # Deterministic: the same run writes the same bytes.
    again, _ = optimize(ncd, workdir, NN, "FFN", "builtin", ["--level", "high", "--allow-inexact", "--tolerance",
                                                             "0.5", "--advisor-rounds", "2"])
    expect(again == v and open(os.path.join(workdir, "out.ncd")).read() == text, "two runs differ")
    expect("param W1[model, hidden], b1[hidden], W2_u[hidden, W2_rank], W2_v[W2_rank, model], b2[model]" in text and
           "axis model = 768, hidden = 3072, W2_rank = model / 8" in text, text)


def case_catalogue_tied(ncd, workdir):
    v, stderr = optimize(ncd, workdir, os.path.join(HERE, "lm.ncd"), "LM", "builtin", ["--level", "high"])
    expect(len(v) == 3 and v[2] == 'advisor: candidate 1.3 ("tied embeddings: \'head\' is the embedding \'embed\' '
           "(131072 weights fewer)\"): rejected: not equivalent, max abs error 0.646, relative L2 error 1.74 (sizes: "
           "-D seq=64 -D vocab=64 -D model=64, seed 1); an inexact change needs --allow-inexact; priced: not faster "
           "(5.58 us)", "\n".join(v))


CASES = {name[len("case_"):]: function for name, function in globals().items() if name.startswith("case_")}


if __name__ == "__main__":
    sys.exit(main(CASES))
