#!/usr/bin/python3
"""A Mixtral-style sparse MoE block on the CPU: ncd's routed run against PyTorch and the dense block.

std/moe.ncd's MixtralSparseMoeBlock (router, top 2 of 8 experts, SwiGLU
experts; the experts' products are routed contractions, docs/RUN.md) at
float32, on tokens 512, hidden 1024, 2816 per expert: Mixtral 8x7B's shape
with the widths divided by 4 and 5. Three programs compute the same function
on the same .npy data (`ncd run --random`):

- ncd: `ncd run` of MixtralSparseMoeBlock (routed work only);
- torch: transformers' MixtralSparseMoeBlock.forward (router, softmax, topk,
  renormalise, a loop over experts gathering their tokens and `index_add_`ing
  the weighted outputs), PyTorch with its threads and its BLAS's held to N;
- ncd dense: `ncd run` of MixtralDenseMoeBlock, every expert on every token
  (what the layer costs written without a routed contraction).

Rounds alternate the order of the three; each process times R forwards after
an untimed one. Reported: medians over all timed forwards, the ratios to
PyTorch, peak RSS, and the outputs' agreement.

    /usr/bin/python3 bench/moe_cpu.py [--ncd build/bin/ncd] [--threads 2] [--rounds 5] [--runs 5] [--out FILE.md]
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_processes import machine, report, run, thread_env, timed  # noqa: E402

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SIZES = dict(seq=512, hidden_size=1024, ffn=2816, experts=8, top=2)

TORCH_SCRIPT = r'''
import os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
data, runs, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
load = lambda name: torch.from_numpy(np.load(os.path.join(data, name + ".npy")))
X, gate = load("inputs/X"), load("params/gate")
w1, w3, w2 = load("params/w1"), load("params/w3"), load("params/w2")
experts, top = gate.shape[0], int(sys.argv[5])

def block(x):  # transformers' MixtralSparseMoeBlock.forward for one sequence
    weights = F.softmax(F.linear(x, gate), dim=1, dtype=torch.float)
    weights, chosen = torch.topk(weights, top, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    mask = F.one_hot(chosen, num_classes=experts).permute(2, 1, 0)
    for e in range(experts):
        slot, token = torch.where(mask[e])
        h = x[token]
        y = F.linear(F.silu(F.linear(h, w1[e])) * F.linear(h, w3[e]), w2[e]) * weights[token, slot, None]
        out.index_add_(0, token, y)
    return out

with torch.no_grad():
    np.save(out, block(X).numpy())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        block(X)
        times.append((time.perf_counter() - start) * 1e3)
print("times_ms", " ".join(f"{t:.3f}" for t in times))
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ncd", default=os.path.join(ROOT, "build", "bin", "ncd"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    import numpy as np

    work = tempfile.mkdtemp(prefix="ncd-bench-moe-")
    try:
        moe = os.path.join(ROOT, "stdlib", "std", "moe.ncd")
        defines = [x for name, size in SIZES.items() for x in ("-D", f"{name}={size}")] + ["-D", "dtype=f32"]
        data = os.path.join(work, "data")
        result = run([args.ncd, "run", moe, "--diagram", "MixtralSparseMoeBlock", "--random", "1", "--out-dir", data]
                     + defines)
        if result.returncode:
            print(result.stderr)
            return 1
        script = os.path.join(work, "torch_moe.py")
        with open(script, "w") as f:
            f.write(TORCH_SCRIPT)
        env = thread_env(args.threads)
        common = ["--params", os.path.join(data, "params"), "--in", "X=" + os.path.join(data, "inputs", "X.npy"),
                  "--threads", str(args.threads), "--bench", str(args.runs)] + defines
        commands = {
            "ncd": [args.ncd, "run", moe, "--diagram", "MixtralSparseMoeBlock", "--out-dir", os.path.join(work, "a")]
            + common,
            "torch": ["/usr/bin/python3", script, data, str(args.runs), str(args.threads),
                      os.path.join(work, "t.npy"), str(SIZES["top"])],
            "ncd dense": [args.ncd, "run", moe, "--diagram", "MixtralDenseMoeBlock", "--out-dir",
                          os.path.join(work, "b")] + common,
        }
        times = {who: [] for who in commands}
        peaks = {who: [] for who in commands}
        load_before = os.getloadavg()
        for round_ in range(args.rounds):
            order = list(commands)
            order = order[round_ % 3:] + order[:round_ % 3]
            for who in order:
                result, peak = timed(commands[who], env)
                if result.returncode:
                    print(who, "failed:", result.stderr)
                    return 1
                match = re.search(r"times_ms ([0-9. ]+)", result.stdout + result.stderr)
                times[who].extend(float(t) for t in match.group(1).split())
                peaks[who].append(peak)
            print(f"round {round_ + 1}/{args.rounds}: " +
                  ", ".join(f"{who} {statistics.median(times[who]):.1f} ms" for who in commands))
        load_after = os.getloadavg()
        y = {who: np.load(path).astype(np.float64) for who, path in
             (("ncd", os.path.join(work, "a", "Y.npy")), ("torch", os.path.join(work, "t.npy")),
              ("ncd dense", os.path.join(work, "b", "Y.npy")))}
        scale = float(np.abs(y["torch"]).max())
        agree = {who: float(np.abs(y[who] - y["torch"]).max()) for who in ("ncd", "ncd dense")}
        if any(err > 1e-4 * scale for err in agree.values()):
            print("the outputs disagree:", agree, "max |Y|", scale)
            return 1
        cpu, _, _ = machine()
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        torch_version = run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"]).stdout.strip()
        median = {who: statistics.median(times[who]) for who in commands}
        lines = [
            "# moe_cpu: a Mixtral-style sparse MoE block, `ncd run` against PyTorch",
            "",
            f"Generated by `bench/moe_cpu.py` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
            "",
            "## Machine",
            "",
            f"- CPU: {cpu}, {os.cpu_count()} CPUs; Linux {platform.release()}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
            f"- Load average (1, 5, 15 min) before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
            f"{' '.join(f'{x:.2f}' for x in load_after)}",
            f"- ncd commit {commit}, `--threads {args.threads}`; PyTorch {torch_version} with "
            f"`torch.set_num_threads({args.threads})` and OPENBLAS_NUM_THREADS={args.threads}",
            "",
            "## What runs",
            "",
            "std/moe.ncd at float32 (`-D dtype=f32`), " + ", ".join(f"{k} {v}" for k, v in SIZES.items()) +
            ": `MixtralSparseMoeBlock` (routed contractions), transformers' MixtralSparseMoeBlock.forward in PyTorch "
            "(a loop over experts, `index_add_`), and `MixtralDenseMoeBlock` (every expert on every token). "
            f"Same inputs and weights. Outputs agree with PyTorch's: max abs error {agree['ncd']:.3g} (routed), "
            f"{agree['ncd dense']:.3g} (dense), max |Y| {scale:.3g}.",
            "",
            f"{args.rounds} rounds, the order rotated each round; each process times {args.runs} forwards after an "
            "untimed one; medians over all timed forwards.",
            "",
            "## Results",
            "",
            "| program | median (ms) | ratio to PyTorch | min–max (ms) | peak RSS |",
            "|---|---:|---:|---:|---:|",
        ]
        for who in commands:
            lines.append(f"| {who} | {median[who]:.1f} | **{median[who] / median['torch']:.2f}** | "
                         f"{min(times[who]):.1f}–{max(times[who]):.1f} | {max(peaks[who]) / 1024:.1f} MiB |")
        lines += ["", f"Routed against dense in ncd: {median['ncd dense'] / median['ncd']:.2f}x faster "
                      f"(the FLOPs differ by experts / top = {SIZES['experts'] / SIZES['top']:.0f}x).", ""]
        report(lines, args.out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
