"""A training step of attention optimizes into FlashAttention-2's kernels.

For the stdlib attention variants (full, causal, sliding window, prefix-LM,
document masks, ALiBi's and T5's score modifications) and the multi-head,
causal multi-head and grouped-query layers, `ncd grad --save flash` splits the step into a
forward pass (O and the rows' logsumexp) and a backward pass; `ncd optimize
-O2` (verified on the CPU backend against the unoptimized diagram) must make
the forward one streamed kernel and the backward's score grid two kernels
that recompute it per tile (dK and dV grouping keys and streaming queries, dQ
grouping queries and streaming keys); `ncd cost` on h100-sxm must then show
HBM traffic linear in the sequence length: no term in q*k (or seq^2), and
twice the bytes when the sequence doubles, where the unoptimized backward pass moves q*k
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
BATCHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batched_attention.ncd")
# (diagram, extra ncd grad arguments, the sequence axes). ALiBi's slopes are
# fixed, not trained, and T5's bias table is left out here: their gradients sum
# the grid over both axes (docs/AUTODIFF.md, "Not yet"). The layers call the
# attention core, whose gradient recomputes its forward pass (one streamed
# kernel with the rows' logsumexp) before the two grid kernels.
CORE = ("q", "k")
VARIANTS = [("Attention", [], CORE), ("CausalAttention", [], CORE), ("SlidingWindowAttention", [], CORE),
            ("PrefixLMAttention", [], CORE), ("DocumentAttention", [], CORE),
            ("ALiBiAttention", ["--wrt", "Q,K,V"], CORE), ("T5Attention", ["--wrt", "Q,K,V"], CORE),
            ("MultiHeadAttention", [], ("seq",)), ("CausalMultiHeadAttention", [], ("seq",)),
            ("GroupedQueryAttention", [], ("seq",)),
            # 16 heads as an axis of the kernels: a batch axis (one head per block), never a tile of 16.
            ("BatchedCausalAttention", [], CORE)]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def sizes(axes, n):
    return [x for axis in axes for x in ("-D", "%s=%d" % (axis, n))]


def hbm(ncd, path, diagram, axes, n):
    r = run([ncd, "cost", path, "--diagram", diagram, "--json"] + sizes(axes, n))
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
    """Whether a formula has a term of a q x k tensor: q and k (or seq squared) as
    factors, not divided by a tile (K and V reloaded once per tile of queries,
    FlashAttention's own q*k*d/tile traffic where the cache cannot serve them)."""
    for formula in formulas:
        for term in formula.split(" + "):
            factors = set(re.split(r"[*/]", term.strip()))
            tiled = "/tile" in term or "/chunk" in term
            if (("q" in factors and "k" in factors) or "seq^2" in factors) and not tiled:
                return True
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for index, (name, extra, axes) in enumerate(VARIANTS):
            folder = os.path.join(work, str(index))
            os.mkdir(folder)
            step = os.path.join(folder, name + ".ncd")
            source = BATCHED if name == "BatchedCausalAttention" else ATTENTION
            r = run([args.ncd, "grad", source, "--diagram", name, "--save", "flash", "-o", step] + extra +
                    sizes(axes, 4096))
            if r.returncode != 0:
                print("FAIL %s: ncd grad exited %d:\n%s" % (name, r.returncode, r.stderr))
                failures += 1
                continue
            try:
                # The unoptimized backward pass writes score-sized values to HBM.
                _, formulas, _ = hbm(args.ncd, step, name + "_backward", axes, 4096)
                assert quadratic(formulas), "the unoptimized backward pass has no q*k traffic: %s" % formulas
                # A layer's forward pass is several kernels; its attention core is one streamed kernel.
                forward = "is one kernel" if axes == CORE else "streamed into its contraction"
                for part, expected in (("forward", forward), ("backward", "is recomputed per tile instead of written whole")):
                    diagram = "%s_%s" % (name, part)
                    optimized = os.path.join(folder, diagram + ".opt.ncd")
                    r = run([args.ncd, "optimize", step, "--diagram", diagram, "-O2", "--explain", "-o", optimized])
                    assert r.returncode == 0, "ncd optimize --diagram %s exited %d:\n%s" % (diagram, r.returncode, r.stderr)
                    assert expected in r.stderr, "%s: the explain log lacks %r:\n%s" % (diagram, expected, r.stderr)
                    # Attention's kernels keep their schedules (a layer's other kernels, such as
                    # RoPE's gradient, are not this test's subject).
                    dropped = [line for line in r.stderr.splitlines() if "schedule is dropped" in line and
                               ("Attention" in line.split("tiles of")[-1] or "_grid" in line)]
                    assert not dropped, "%s: a kernel lost its schedule:\n%s" % (diagram, "\n".join(dropped))
                    assert "verify: output matches" in r.stderr, "%s: not verified:\n%s" % (diagram, r.stderr)
                    small, formulas, _ = hbm(args.ncd, optimized, diagram, axes, 4096)
                    # Optimized again for the doubled sequence (tiles are chosen for one set of
                    # sizes), where K and V still fit in L2 with the layers' 12 heads.
                    doubled = os.path.join(folder, diagram + ".2x.ncd")
                    r = run([args.ncd, "optimize", step, "--diagram", diagram, "-O2", "--no-verify", "-o", doubled] +
                            sizes(axes, 8192))
                    assert r.returncode == 0, "ncd optimize at 8192 exited %d:\n%s" % (r.returncode, r.stderr)
                    large, _, _ = hbm(args.ncd, doubled, diagram, axes, 8192)
                    assert not quadratic(formulas), "%s: HBM traffic has a q*k term: %s" % (diagram, formulas)
                    assert 1.5 < large / small < 2.5, "%s: HBM bytes grow %.2fx when the sequence doubles" % (diagram, large / small)
                    print("ok %s: hbm %.2f MB at %s = 4096 (%.2f MB at 8192), %s" %
                          (diagram, small / 1e6, " = ".join(axes), large / 1e6, " + ".join(formulas)))
            except AssertionError as error:
                print("FAIL %s %s: %s" % (name, " ".join(extra), error))
                failures += 1
    if failures:
        print("%d of %d variants failed" % (failures, len(VARIANTS)))
        return 1
    print("all %d variants: FlashAttention-2's kernels, HBM traffic linear in the sequence" % len(VARIANTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
