#!/usr/bin/env python3
"""Quantization on the CPU backend: quantize/dequantize and the `quantize` pass.

    test_quantize.py --ncd NCD --root SRC modes|gpt2_w8a8|gpt2_modes|cost

- modes: every granularity of `quantize` (per tensor, per channel, per token,
  per group over a split axis, with a zero point), saturation, halves to even,
  zero scales, `dequantize`, the exact i8 x i8 -> i32 product with its scale
  epilogue, and f8e4m3 / f8e5m2 casts, against NumPy written from
  docs/LANGUAGE.md: the integers bit for bit.
- gpt2_w8a8: std/gpt2.ncd's GPT2Block through `ncd optimize --passes
  quantize=w8a8` at f32: the optimize run reports its error against the f32
  block; `ncd run` of the quantized block matches a NumPy w8a8 GPT-2 block
  (every Conv1D quantized per token and per output channel, summed in int64)
  far more closely than it matches the f32 block, and differs from the f32
  block by a quantization-sized error.
- gpt2_modes: w8a16 and fp8 on the same block: reported, within tolerance,
  and a tolerance too tight is refused with nothing written.
- cost: the int8 and fp8 products of a quantized layer are priced at the
  profile's int8 and fp8 tensor rates (an A100's fp8 at its 16-bit rate).
"""

import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sections import check, main, run  # noqa: E402
import oracle  # noqa: E402
import semantics_oracle  # noqa: E402  (f8 rounding written from the formats)

F32 = oracle.rounder("f32")




def load(folder):
    return {n[:-4]: np.load(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n.endswith(".npy")}


# ---------------------------------------------------------------- NumPy, from docs/LANGUAGE.md


def quantize(x, scale, zero, lo=-128, hi=127):
    """round(x / scale) + zero in float32, halves to even, then the i8 conversion: NaN -> 0, saturated."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero scale: 0 / 0 is NaN, which converts to 0
        q = np.rint(np.float32(x) / np.float32(scale)).astype(np.float32) + np.float32(zero)
    q = np.where(np.isnan(q), 0, q)
    return np.clip(np.trunc(q), lo, hi).astype(np.int64)


def dequantize(q, scale, zero):
    return (np.float32(q) - np.float32(zero)) * np.float32(scale)


def absmax_scale(x, axis, limit=127):
    return (np.max(np.abs(np.float32(x)), axis=axis, keepdims=True) / np.float32(limit)).astype(np.float32)


MODES_NCD = """
default dtype f32
axis s = 5, m = 8, n = 6, groups = 2, g = 4

diagram Modes(X[s, m], W[m, n], Z[n]: i8) -> Tensor[s, m]: i8, Channel[m, n]: i8, Token[s, m]: i8,
    Group[groups, g, n]: i8, Zero[m, n]: i8, Back[m, n], Acc[s, n]: i32, Y[s, n], E4[s, m]: f8e4m3,
    E5[s, m]: f8e5m2, Halves[s, m]: i8 {
  St[] = max[s, m](abs(X)) / 127
  Tensor[s, m] = quantize(X, St, 0)
  Sc[n] = max[m](abs(W)) / 127
  Channel[m, n] = quantize(W, Sc, 0)
  Sx[s] = max[m](abs(X)) / 127
  Token[s, m] = quantize(X, Sx, 0)
  Sg[groups, n] = max[g](abs(W[(groups, g), n])) / 127
  Group[groups, g, n] = quantize(W[(groups, g), n], Sg, 0)
  Sa[n] = (max[m](W) - min[m](W)) / 255
  Zero[m, n] = quantize(W, Sa, Z[n])
  Back[m, n] = dequantize(Zero, Sa, Z[n])
  Acc[s, n] = Token[s, m] * Channel[m, n]
  Y[s, n] = Acc * Sx * Sc
  E4[s, m] = X * 100
  E5[s, m] = X * 20000
  Halves[s, m] = quantize(X, 0.25, 0)
}
"""


def modes(ncd, root, work):
    path = os.path.join(work, "modes.ncd")
    with open(path, "w", encoding="utf-8") as f:
        f.write(MODES_NCD)
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((5, 8)) * 3).astype(np.float32)
    X[0, :] = 0  # a zero row: its scale is 0, every quantized value 0
    X[1, :4] = [0.125, 0.375, -0.125, -0.625]  # halves of 0.25: to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2)
    X[2, 0] = 1e6  # beyond every f8 and int8 range: saturates
    W = (rng.standard_normal((8, 6)) * 0.7).astype(np.float32)
    Z = np.array([-3, 0, 5, 10, -128, 127], dtype=np.int8)
    folder = os.path.join(work, "modes-in")
    os.makedirs(folder)
    for name, a in (("X", X), ("W", W), ("Z", Z)):
        np.save(os.path.join(folder, name + ".npy"), a)
    out = os.path.join(work, "modes-out")
    code, _, err = run(ncd, ["run", path] + sum((["--in", f"{n}={os.path.join(folder, n + '.npy')}"] for n in "XWZ"), [])
                       + ["--out-dir", out], work)
    check(code == 0, f"modes: exit {code}: {err}")
    if code != 0:
        return
    got = load(out)
    St = np.max(np.abs(X)) / np.float32(127)
    Sc = absmax_scale(W, 0)
    Sx = absmax_scale(X, 1)
    Wg = W.reshape(2, 4, 6)
    Sg = absmax_scale(Wg, 1)
    Sa = ((np.max(W, axis=0) - np.min(W, axis=0)).astype(np.float32) / np.float32(255)).astype(np.float32)
    token = quantize(X, Sx, 0)
    channel = quantize(W, Sc, 0)
    zero = quantize(W, Sa, Z.astype(np.float32))
    acc = token @ channel  # int64: exact
    want = {
        "Tensor": quantize(X, St, 0), "Channel": channel, "Token": token, "Group": quantize(Wg, Sg, 0),
        "Zero": zero, "Acc": acc, "Halves": quantize(X, 0.25, 0),
    }
    for name, w in want.items():
        g = got[name].astype(np.int64)
        bad = int((g != w).sum())
        check(bad == 0, f"modes: {name}: {bad} of {w.size} integers differ from NumPy (first: ncd {g[g != w][:3]}, "
                        f"NumPy {w[g != w][:3]})")
    check(list(got["Halves"][1, :4]) == [0, 2, 0, -2], f"modes: halves to even: {list(got['Halves'][1, :4])}")
    check(got["Token"][2, 0] == 127 and got["Tensor"][0].tolist() == [0] * 8, "modes: saturation or the zero row")
    back = dequantize(zero, Sa, Z.astype(np.float32))
    check(np.array_equal(got["Back"], back.astype(np.float32)), "modes: dequantize differs from (q - zero) * scale")
    y = (np.float32(acc) * Sx).astype(np.float32) * Sc
    check(np.allclose(got["Y"], y, rtol=1e-6, atol=0), f"modes: the scaled product: max error "
                                                      f"{np.abs(got['Y'] - y).max()}")
    for name, fmt, factor in (("E4", "e4m3", 100), ("E5", "e5m2", 20000)):
        want_f8 = getattr(semantics_oracle, fmt)(np.float32(X) * np.float32(factor))
        check(np.array_equal(got[name].astype(np.float32), want_f8.astype(np.float32)),
              f"modes: the f8{fmt} cast differs from rounding to nearest (e4m3 saturating, e5m2 to infinity)")
    print(f"modes: {len(want) + 4} checks against NumPy")


# ---------------------------------------------------------------- GPT-2 block

SIZES = ["-D", "seq=16", "-D", "heads=4", "-D", "head_dim=8"]


def w8a8_conv1d(X, p, r, pre):
    """GPT-2's Conv1D at w8a8: per-token and per-output-channel int8, exact integer sum, f32 scales."""
    x = np.float32(X)
    sx = absmax_scale(x, -1)
    w = np.float32(p[pre + "weight"])
    sw = absmax_scale(w, 0)
    acc = quantize(x, sx, 0) @ quantize(w, sw, 0)
    return r(r(np.float32(acc) * sx * sw) + p[pre + "bias"])


def gpt2_blocks(ncd, root, work, mode):
    """Optimizes GPT2Block at `mode`, runs the f32 and quantized blocks on the same data; (f32 Y, quantized Y, stderr)."""
    gpt2 = os.path.join(root, "stdlib/std/gpt2.ncd")
    quantized = os.path.join(work, f"gpt2_{mode}.ncd")
    code, _, err = run(ncd, ["optimize", gpt2, "--diagram", "GPT2Block", "--passes", f"quantize={mode}", "-D",
                             "dtype=f32", "-o", quantized, "--explain"], work)
    check(code == 0, f"{mode}: optimize exit {code}: {err}")
    if code != 0:
        return None
    data = os.path.join(work, f"data-{mode}")
    code, _, e1 = run(ncd, ["run", gpt2, "--diagram", "GPT2Block", "-D", "dtype=f32", "--random", "2", "--out-dir",
                            data] + SIZES, work)
    out = os.path.join(work, f"out-{mode}")
    code2, _, e2 = run(ncd, ["run", quantized, "--diagram", "GPT2Block", "--params", os.path.join(data, "params"),
                             "--in", "X=" + os.path.join(data, "inputs", "X.npy"), "--out-dir", out] + SIZES, work)
    check(code == 0 and code2 == 0, f"{mode}: runs exit {code}, {code2}: {e1}{e2}")
    if code or code2:
        return None
    return data, np.load(os.path.join(data, "Y.npy")).astype(np.float64), np.load(os.path.join(out, "Y.npy")), err


def rel_l2(a, b):
    return float(np.linalg.norm(np.float64(a) - np.float64(b)) / np.linalg.norm(np.float64(b)))


def gpt2_w8a8(ncd, root, work):
    result = gpt2_blocks(ncd, root, work, "w8a8")
    if not result:
        return
    data, y_f32, y_q, err = result
    # The optimize run reported its measured error, and every Conv1D was quantized.
    reported = re.search(r"Y \[[^\]]*\] f32: relative L2 error ([0-9.e+-]+)", err)
    check(reported is not None, f"w8a8: optimize did not report the error:\n{err}")
    check("Conv1D" not in err or err.count("int8 weights") >= 1, f"w8a8: no layer quantized:\n{err}")
    x = np.load(os.path.join(data, "inputs", "X.npy")).astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in load(os.path.join(data, "params")).items()}
    saved = oracle.conv1d_hf
    try:
        oracle.conv1d_hf = w8a8_conv1d
        y_numpy = oracle.gpt2_block_hf(x, params, F32, 4)
    finally:
        oracle.conv1d_hf = saved
    to_numpy, to_f32 = rel_l2(y_q, y_numpy), rel_l2(y_q, y_f32)
    print(f"w8a8 GPT-2 block: relative L2 error against the f32 block {to_f32:.4g} "
          f"(optimize reported {reported.group(1) if reported else '?'} at its sizes), against NumPy w8a8 {to_numpy:.3g}")
    check(0.001 < to_f32 < 0.05, f"w8a8: error against the f32 block {to_f32} is not a quantization error")
    check(to_numpy < to_f32 / 20, f"w8a8: ncd's w8a8 block is {to_numpy} from NumPy's w8a8 block")


def gpt2_modes(ncd, root, work):
    for mode, bound in (("w8a16", 0.02), ("fp8", 0.1)):
        result = gpt2_blocks(ncd, root, work, mode)
        if not result:
            continue
        _, y_f32, y_q, err = result
        error = rel_l2(y_q, y_f32)
        print(f"{mode} GPT-2 block: relative L2 error against the f32 block {error:.4g}")
        check("relative L2 error" in err, f"{mode}: optimize did not report the error")
        check(0 < error < bound, f"{mode}: error {error} against the f32 block (expected below {bound})")
    # A tolerance the quantization cannot meet: refused, nothing written.
    out = os.path.join(work, "tight.ncd")
    code, _, err = run(ncd, ["optimize", os.path.join(root, "stdlib/std/gpt2.ncd"), "--diagram", "GPT2Block",
                             "--passes", "quantize=w8a8", "--tolerance", "1e-6", "-o", out], work)
    check(code == 1 and not os.path.exists(out) and "further from the input than --tolerance" in err,
          f"a tolerance of 1e-6: exit {code}, written {os.path.exists(out)}: {err}")


def cost(ncd, root, work):
    # The quantized products are priced at the profile's int8 and fp8 tensor rates (stdlib/hw), twice bf16's on
    # an H100; on an A100, which has no fp8 tensor cores, the fp8 product falls back to a 16-bit rate.
    import json
    layer = os.path.join(root, "tests/golden/optimize/quantize_w8a8.ncd")
    for mode, unit in (("w8a8", "tensor i8"), ("fp8", "tensor f8e4m3")):
        out = os.path.join(work, f"layer-{mode}.ncd")
        code, _, err = run(ncd, ["optimize", layer, "--passes", f"quantize={mode}", "-o", out,
                                 "-D", "s=4096", "-D", "m=4096", "-D", "n=4096"], work)
        check(code == 0, f"cost: optimize {mode}: {err}")
        if code:
            continue
        for hw, rate in (("h100-sxm", 1978.9e12), ("a100-80g", 624e12 if mode == "w8a8" else 312e12)):
            code, stdout, err = run(ncd, ["cost", out, "--hw", hw, "--json"], work)
            check(code == 0, f"cost {mode} {hw}: {err}")
            if code:
                continue
            ops = [op for op in json.loads(stdout)["baseline"]["operations"] if op["what"].startswith("contract")
                   and op["flops"]["value"] == 2 * 4096 ** 3]
            check(len(ops) == 1, f"cost {mode} {hw}: no product of 2*4096^3 FLOPs")
            if ops:
                op = ops[0]
                want_unit = unit if hw == "h100-sxm" or mode == "w8a8" else op["unit"]
                check(op["unit"] == want_unit and abs(op["compute_time"] * rate / op["flops"]["value"] - 1) < 1e-3,
                      f"cost {mode} {hw}: unit {op['unit']}, {op['flops']['value'] / op['compute_time']:.4g} FLOP/s "
                      f"(expected {unit} at {rate:.4g})")
                print(f"{mode} on {hw}: {op['unit']}, {op['flops']['value'] / op['compute_time'] / 1e12:.1f} TFLOP/s")


SECTIONS = {"modes": modes, "gpt2_w8a8": gpt2_w8a8, "gpt2_modes": gpt2_modes, "cost": cost}


if __name__ == "__main__":
    sys.exit(main(SECTIONS, "ncd-quantize-"))
