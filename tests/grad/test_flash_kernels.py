"""A training step of attention optimizes into FlashAttention-2's kernels.

For the stdlib attention variants (full, causal, sliding window, prefix-LM,
document masks, ALiBi's and T5's score modifications), `ncd grad --save flash` splits the step into a
forward pass (O and the rows' logsumexp) and a backward pass; `ncd optimize
-O2` (verified on the CPU backend against the unoptimized diagram) must make
the forward one streamed kernel and the backward's score grid two kernels
that recompute it per tile (dK and dV grouping keys and streaming queries, dQ
grouping queries and streaming keys); `ncd cost` on h100-sxm must then show
HBM traffic linear in the sequence length: no term in q*k, and twice the
bytes when q and k double, where the unoptimized backward pass moves q*k
scores through HBM (the contrast this test also checks, so that it can fail).

  test_flash_kernels.py --ncd BUILD/bin/ncd
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ATTENTION = os.path.join(ROOT, "stdlib", "std", "attention.ncd")
# (diagram, extra ncd grad arguments). ALiBi's slopes are fixed, not trained, and
# T5's bias table is left out here: their gradients sum the grid over both axes
# (docs/AUTODIFF.md, "Not yet").
VARIANTS = [("Attention", []), ("CausalAttention", []), ("SlidingWindowAttention", []), ("PrefixLMAttention", []),
            ("DocumentAttention", []), ("ALiBiAttention", ["--wrt", "Q,K,V"]), ("T5Attention", ["--wrt", "Q,K,V"])]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def hbm(ncd, path, diagram, n):
    r = run([ncd, "cost", path, "--diagram", diagram, "--json", "-D", "q=%d" % n, "-D", "k=%d" % n])
    if r.returncode != 0:
        raise AssertionError("ncd cost %s --diagram %s exited %d:\n%s" % (path, diagram, r.returncode, r.stderr))
    report = json.loads(r.stdout)
    # A diagram that is one kernel is priced by the Napkin model ("kernel");
    # otherwise the total prices each call of a kernel as that kernel.
    traffic = report["kernel"]["traffic"] if report["kernel"] else report["baseline"]["total"]["traffic"]
    level = next(t for t in traffic if t["level"] == "hbm")
    bytes_ = level["read"]["value"] + level["write"]["value"]
    formulas = [level["read"]["formula"], level["write"]["formula"]]
    return bytes_, formulas, report


def quadratic(formulas):
    """Whether a formula has a term with both q and k as factors."""
    for formula in formulas:
        for term in formula.split(" + "):
            factors = set(re.split(r"[*/]", term.strip()))
            if "q" in factors and "k" in factors:
                return True
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for name, extra in VARIANTS:
            step = os.path.join(work, name + ".ncd")
            r = run([args.ncd, "grad", ATTENTION, "--diagram", name, "--save", "flash", "-D", "q=8192", "-D", "k=8192",
                     "-o", step] + extra)
            if r.returncode != 0:
                print("FAIL %s: ncd grad exited %d:\n%s" % (name, r.returncode, r.stderr))
                failures += 1
                continue
            try:
                # The unoptimized backward pass writes score-sized values to HBM.
                _, formulas, _ = hbm(args.ncd, step, name + "_backward", 8192)
                assert quadratic(formulas), "the unoptimized backward pass has no q*k traffic: %s" % formulas
                for part, expected in (("forward", "is one kernel"), ("backward", "recomputed per tile by 2 kernels")):
                    diagram = "%s_%s" % (name, part)
                    optimized = os.path.join(work, diagram + ".opt.ncd")
                    r = run([args.ncd, "optimize", step, "--diagram", diagram, "-O2", "--explain", "-o", optimized])
                    assert r.returncode == 0, "ncd optimize --diagram %s exited %d:\n%s" % (diagram, r.returncode, r.stderr)
                    assert expected in r.stderr, "%s: the explain log lacks %r:\n%s" % (diagram, expected, r.stderr)
                    assert "schedule is dropped" not in r.stderr, "%s: a kernel lost its schedule:\n%s" % (diagram, r.stderr)
                    assert "verify: output matches" in r.stderr, "%s: not verified:\n%s" % (diagram, r.stderr)
                    small, formulas, _ = hbm(args.ncd, optimized, diagram, 8192)
                    large, _, _ = hbm(args.ncd, optimized, diagram, 16384)
                    assert not quadratic(formulas), "%s: HBM traffic has a q*k term: %s" % (diagram, formulas)
                    assert 1.5 < large / small < 2.5, "%s: HBM bytes grow %.2fx when q and k double" % (diagram, large / small)
                    print("ok %s: hbm %.2f MB at q = k = 8192 (%.2f MB at 16384), %s" %
                          (diagram, small / 1e6, large / 1e6, " + ".join(formulas)))
            except AssertionError as error:
                print("FAIL %s: %s" % (name, error))
                failures += 1
    if failures:
        print("%d of %d variants failed" % (failures, len(VARIANTS)))
        return 1
    print("all %d variants: FlashAttention-2's kernels, HBM traffic linear in the sequence" % len(VARIANTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
