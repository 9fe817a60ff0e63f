#!/usr/bin/env python3
"""Sparse mixtures of experts (std/moe.ncd, routed contractions) on the CPU backend.

    test_moe.py --ncd NCD --root SRC torch|routing|lifted|threads|routed_work

- torch: std/moe.ncd's Mixtral and DeepSeek blocks at float32 against torch
  modules written as transformers writes them (a router Linear, softmax, topk,
  a loop over experts, index_add of each expert's tokens), their per-expert
  weights stacked into ncd's tables. Needs Debian's python3-torch (77 skips).
- routing: the dense NumPy reference (tests/cpu/oracle.py) where routing is
  degenerate: every score tied (the lower experts win), every token on one
  expert, and routing indices outside the table (those routes read zero).
- lifted: the block called over a batch axis routes every (batch, seq) token.
- threads: the same bits at 1, 2 and 7 threads, at f32 and bf16.
- routed_work: the run does only routed work (`--profile`: routed contractions,
  no gathered weights materialised) and `ncd cost` counts it: FLOPs within 10 %
  of #top / #experts of the dense block's at uniform routing, and one decoding
  token reads the weights of its chosen experts only.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sections import check, main, run  # noqa: E402
import oracle  # noqa: E402

F32 = lambda a: np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)  # noqa: E731
SMALL = dict(seq=9, hidden_size=6, experts=5, top=2, ffn=7, routed=8, chosen=3, expert_ffn=4, shared_ffn=5)




def defines(sizes):
    out = []
    for name, value in sizes.items():
        out += ["-D", f"{name}={value}"]
    return out


def load(folder):
    return {n[:-4]: np.load(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n.endswith(".npy")}


def save_all(folder, arrays):
    os.makedirs(folder, exist_ok=True)
    for name, array in arrays.items():
        np.save(os.path.join(folder, name + ".npy"), array)


def run_block(ncd, root, work, diagram, x, params, sizes, tag, extra=()):
    """ncd run of a std/moe.ncd diagram at f32 on the given X and params; the outputs."""
    inputs, params_dir, out = (os.path.join(work, f"{tag}-{what}") for what in ("x", "params", "out"))
    save_all(params_dir, {k: np.asarray(v, dtype=np.float32) for k, v in params.items()})
    save_all(inputs, {"X": np.asarray(x, dtype=np.float32)})
    code, _, err = run(ncd, ["run", os.path.join(root, "stdlib/std/moe.ncd"), "--diagram", diagram, "-D", "dtype=f32",
                             "--in", "X=" + os.path.join(inputs, "X.npy"), "--params", params_dir, "--out-dir", out]
                       + defines(sizes) + list(extra), work)
    check(code == 0, f"{diagram} ({tag}): exit {code}: {err}")
    return load(out) if code == 0 else None


def compare(label, got, want, rtol=1e-4, atol=1e-5):
    if got is None:
        return
    err = np.abs(got.astype(np.float64) - want)
    bound = rtol * np.abs(want) + atol * max(np.abs(want).max(), 1e-30)
    check(got.shape == want.shape, f"{label}: shape {got.shape}, expected {want.shape}")
    if got.shape == want.shape:
        bad = int((err > bound).sum())
        print(f"{label}: max abs error {err.max():.3g} (max |ref| {np.abs(want).max():.3g}), {bad} outside")
        check(bad == 0, f"{label}: {bad} elements outside rtol {rtol} + atol {atol}*max|ref|")


def random_params(rng, diagram, s):
    h = s["hidden_size"]
    if diagram.startswith("Mixtral"):
        e, f = s["experts"], s["ffn"]
        return dict(gate=rng.standard_normal((e, h)), w1=rng.standard_normal((e, f, h)) * 0.4,
                    w3=rng.standard_normal((e, f, h)) * 0.4, w2=rng.standard_normal((e, h, f)) * 0.4)
    e, f, sf = s["routed"], s["expert_ffn"], s["shared_ffn"]
    return dict(gate=rng.standard_normal((e, h)), gate_proj=rng.standard_normal((e, f, h)) * 0.4,
                up_proj=rng.standard_normal((e, f, h)) * 0.4, down_proj=rng.standard_normal((e, h, f)) * 0.4,
                shared_gate=rng.standard_normal((sf, h)) * 0.4, shared_up=rng.standard_normal((sf, h)) * 0.4,
                shared_down=rng.standard_normal((h, sf)) * 0.4)


def rounded(params):
    return {k: F32(v) for k, v in params.items()}


# ---------------------------------------------------------------- torch


def torch_section(ncd, root, work):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:  # pragma: no cover
        print("python3-torch is not installed")
        sys.exit(77)
    torch.manual_seed(0)
    s = dict(SMALL, seq=24, hidden_size=16, ffn=12, experts=6, routed=10, chosen=4, expert_ffn=6, shared_ffn=8)

    def swiglu(x, w_gate, w_up, w_down):
        return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)

    def mixtral(x, p):  # transformers' MixtralSparseMoeBlock.forward, one sequence
        logits = F.linear(x, p["gate"])
        weights = F.softmax(logits, dim=1, dtype=torch.float)
        weights, chosen = torch.topk(weights, s["top"], dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(chosen, num_classes=s["experts"]).permute(2, 1, 0)
        for e in range(s["experts"]):
            slot, token = torch.where(mask[e])
            y = swiglu(x[token], p["w1"][e], p["w3"][e], p["w2"][e]) * weights[token, slot, None]
            out.index_add_(0, token, y)
        return out

    def deepseek(x, p):  # DeepseekV2MoE.forward without norm_topk_prob, scaling factor 1
        scores = F.linear(x, p["gate"]).softmax(dim=-1)
        weights, chosen = torch.topk(scores, s["chosen"], dim=-1, sorted=False)
        out = torch.zeros_like(x)
        for e in range(s["routed"]):
            token, slot = torch.where(chosen == e)
            y = swiglu(x[token], p["gate_proj"][e], p["up_proj"][e], p["down_proj"][e]) * weights[token, slot, None]
            out.index_add_(0, token, y)
        return out + swiglu(x, p["shared_gate"], p["shared_up"], p["shared_down"])

    rng = np.random.default_rng(5)
    for diagram, module in (("MixtralSparseMoeBlock", mixtral), ("DeepseekMoE", deepseek)):
        params = {k: v.astype(np.float32) for k, v in random_params(rng, diagram, s).items()}
        x = rng.standard_normal((s["seq"], s["hidden_size"])).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in params.items()}).numpy()
        got = run_block(ncd, root, work, diagram, x, params, s, "torch")
        compare(f"{diagram} vs torch", got and got["Y"], want.astype(np.float64), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- routing


def routing(ncd, root, work):
    s = SMALL
    rng = np.random.default_rng(7)
    x = F32(rng.standard_normal((s["seq"], s["hidden_size"])))
    for case in ("tied", "one expert"):
        params = rounded(random_params(rng, "Mixtral", s))
        if case == "tied":
            params["gate"] = np.zeros_like(params["gate"])  # every score equal: experts 0 and 1 win
        else:
            params["gate"] = np.zeros_like(params["gate"])
            params["gate"][2] = 1e3 * np.sign(x.sum(axis=0) + 1e-9)  # expert 2 first for every token
            params["gate"][4] = -1e3 * np.sign(x.sum(axis=0) + 1e-9)
        want = oracle.MixtralSparseMoeBlock({"X": x}, params, F32, s)["Y"]
        got = run_block(ncd, root, work, "MixtralSparseMoeBlock", x, params, s, case.replace(" ", "_"))
        compare(f"Mixtral, {case}", got and got["Y"], want)
        if case == "tied":
            _, chosen = oracle.route(np.zeros((1, s["experts"])), s["top"])
            check(list(chosen[0]) == [0, 1], f"tied scores choose {list(chosen[0])}, expected the lowest experts [0, 1]")
    # Indices outside the table read zero, as any gather: those routes add nothing.
    text = """
default dtype f32
axis t = 5, e = 3, k = 2, d = 4, f = 3
diagram Routed(X[t, d], I[t, k]: i32) -> H[t, k, f] {
  param W[e, d, f]
  H[t, k, f] = X[t, d] * W[I[t, k], d, f]
}
"""
    path = os.path.join(work, "routed.ncd")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    index = np.array([[0, 2], [-1, 1], [3, 100], [2, 2], [1, -7]], dtype=np.int32)
    X = F32(rng.standard_normal((5, 4)))
    W = F32(rng.standard_normal((3, 4, 3)))
    folder = os.path.join(work, "oor")
    save_all(folder, {"X": X.astype(np.float32), "I": index, "W": W.astype(np.float32)})
    out = os.path.join(work, "oor-out")
    code, stdout, err = run(ncd, ["run", path, "--in", "X=" + os.path.join(folder, "X.npy"), "--in",
                                  "I=" + os.path.join(folder, "I.npy"), "--params", folder, "--out-dir", out,
                                  "--profile"], work)
    check(code == 0, f"out-of-range routes: exit {code}: {err}")
    if code == 0:
        want = np.zeros((5, 2, 3))
        for t in range(5):
            for k in range(2):
                if 0 <= index[t, k] < 3:
                    want[t, k] = X[t] @ W[index[t, k]]
        compare("out-of-range routes", np.load(os.path.join(out, "H.npy")), want)
        check("contract routed" in stdout + err, "out-of-range routes: not run as a routed contraction")


# ---------------------------------------------------------------- lifted


def lifted(ncd, root, work):
    text = """
import "std/moe.ncd"
default dtype f32
axis batch = 3, tokens = 9, width = 6
diagram Batched(X[batch, tokens, width]) -> Y[batch, tokens, width] {
  Y[batch, tokens, width] = MixtralSparseMoeBlock[seq = tokens, hidden_size = width](X)
}
"""
    path = os.path.join(work, "lifted.ncd")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(work, "lifted-out")
    code, stdout, err = run(ncd, ["run", path, "-I", os.path.join(root, "stdlib"), "-D", "dtype=f32", "--random", "3",
                                  "--out-dir", out, "--profile"] + defines(SMALL), work)
    check(code == 0, f"lifted: exit {code}: {err}")
    if code != 0:
        return
    x = load(os.path.join(out, "inputs"))["X"].astype(np.float64)
    params = {k.split(".")[-1]: v.astype(np.float64) for k, v in load(os.path.join(out, "params")).items()}
    want = np.stack([oracle.MixtralSparseMoeBlock({"X": x[b]}, params, F32, SMALL)["Y"] for b in range(3)])
    compare("Mixtral lifted over batch", np.load(os.path.join(out, "Y.npy")), want)
    check("contract routed" in stdout + err, "lifted: the experts did not run as routed contractions")


# ---------------------------------------------------------------- threads


def threads(ncd, root, work):
    sizes = dict(seq=300, hidden_size=96, experts=8, top=2, ffn=160, routed=16, chosen=4, expert_ffn=48,
                 shared_ffn=64)
    for diagram in ("MixtralSparseMoeBlock", "DeepseekMoE"):
        for dtype in ("f32", "bf16"):
            outs = []
            for t in ("1", "2", "7"):
                out = os.path.join(work, f"threads-{diagram}-{dtype}-{t}")
                code, _, err = run(ncd, ["run", os.path.join(root, "stdlib/std/moe.ncd"), "--diagram", diagram,
                                         "-D", f"dtype={dtype}", "--random", "1", "--threads", t, "--out-dir", out]
                                   + defines(sizes), work)
                check(code == 0, f"{diagram} {dtype} --threads {t}: exit {code}: {err}")
                outs.append(open(os.path.join(out, "Y.npy"), "rb").read() if code == 0 else b"")
            check(outs[0] and outs[1] == outs[0] and outs[2] == outs[0],
                  f"{diagram} {dtype}: other bits at 2 or 7 threads than at 1")


# ---------------------------------------------------------------- routed work


def cost(ncd, root, work, diagram, sizes):
    code, stdout, err = run(ncd, ["cost", os.path.join(root, "stdlib/std/moe.ncd"), "--diagram", diagram, "--hw",
                                  "h100-sxm", "--json"] + defines(sizes), work)
    check(code == 0, f"cost {diagram}: exit {code}: {err}")
    return json.loads(stdout)["baseline"] if code == 0 else None


def routed_work(ncd, root, work):
    # The run: three routed contractions, no gathered weights (an `access` of
    # #seq·#top·#ffn·#hidden elements: 4 GB here, were it materialised).
    sizes = dict(seq=256, hidden_size=1024, ffn=2048)
    out = os.path.join(work, "profile")
    code, stdout, err = run(ncd, ["run", os.path.join(root, "stdlib/std/moe.ncd"), "--diagram", "MixtralSparseMoeBlock",
                                  "-D", "dtype=f32", "--random", "1", "--out-dir", out, "--profile"]
                            + defines(sizes), work)
    check(code == 0, f"profile: exit {code}: {err}")
    text = stdout + err
    routed = [line for line in text.splitlines() if line.startswith("contract routed")]
    check(routed and routed[0].split()[2] == "3", f"expected 3 routed contractions in the profile:\n{text}")
    check(not any(line.startswith("access") for line in text.splitlines()),
          f"the gathered weights were materialised:\n{text}")

    # The price: Mixtral's sizes, uniform routing.
    sparse, dense = cost(ncd, root, work, "MixtralSparseMoeBlock", {}), cost(ncd, root, work, "MixtralDenseMoeBlock", {})
    if sparse and dense:
        ratio = sparse["total"]["flops"]["value"] / dense["total"]["flops"]["value"]
        print(f"Mixtral: routed / dense FLOPs = {ratio:.4f} (top / experts = {2 / 8})")
        check(abs(ratio / (2 / 8) - 1) < 0.10, f"routed / dense FLOPs {ratio:.4f} is not within 10% of 2/8")
        ops = {op["name"]: op for op in sparse["operations"]}
        r = ops["G"].get("routing")
        check(r is not None, "cost: 'G' has no routing figures")
        if r:
            check(r["routes"]["value"] == 4096 * 2 and r["experts"]["value"] == 8, f"routing figures {r}")
            check(r["rows_uniform"]["value"] == 1024 and r["rows_skewed"]["value"] == 4096, f"rows per expert {r}")
            check(r["dense_flops"]["value"] == 4 * ops["G"]["flops"]["value"], f"dense equivalent {r}")
            check(r["routes"]["formula"] == "seq*top", f"routes formula {r['routes']['formula']}")
            check(r["expert_bytes"]["value"] == 14336 * 4096 * 2 and abs(r["experts_touched"] - 8) < 1e-9,
                  f"one expert's weights and the experts reached {r}")
    # One decoding token reads its 2 experts' weights, not all 8.
    one = cost(ncd, root, work, "MixtralSparseMoeBlock", {"seq": 1})
    if one:
        ops = {op["name"]: op for op in one["operations"]}
        read = ops["G"]["traffic"][0]["read"]["value"]
        expert = 14336 * 4096 * 2
        check(2 * expert <= read < 3 * expert, f"a decoding token reads {read} bytes of w1, expected 2 experts' "
                                               f"({2 * expert})")


SECTIONS = {"torch": torch_section, "routing": routing, "lifted": lifted, "threads": threads,
            "routed_work": routed_work}


if __name__ == "__main__":
    sys.exit(main(SECTIONS, "ncd-moe-"))
