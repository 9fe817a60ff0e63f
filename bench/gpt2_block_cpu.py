#!/usr/bin/python3
"""The GPT-2 block forward on the CPU: `ncd run` against PyTorch, same weights.

The block is std/transformer.ncd's GPT2Block (pre-layernorm causal multi-head
attention and GELU FFN, with residuals) at seq 512, model 768, 12 heads,
hidden 3072, in float32: the standard library is copied with
`default dtype f32` (its only change). ncd generates the input and the weights
(`ncd run --random`), PyTorch loads the same .npy files, the two outputs are
compared, then both are timed side by side: rounds alternate between one
`ncd run --bench N` process (the forward timed N times in process, after one
untimed run) and one PyTorch process timing N forwards (after one warm-up),
so that both see the same machine load. Reported: the median of all timed
forwards of each, their ratio, and the peak resident set size of each process
(/usr/bin/time -v), next to the baseline of each process doing no forward.

    /usr/bin/python3 bench/gpt2_block_cpu.py [--ncd build/bin/ncd] [--threads 2,1] [--rounds 7] [--runs 5]
        [--out bench/results/gpt2_block_cpu.md] [--label TEXT]

Needs Debian's python3-torch and python3-numpy. Exit status 0 on success, 1
when a run fails or the outputs disagree.
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
SIZES = dict(seq=512, heads=12, d=64, hidden=3072)

TORCH_SCRIPT = r'''
import math, os, resource, sys, time
import numpy as np
import torch
data, runs, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
# torch.set_num_threads sets PyTorch's own (OpenMP) threads; the BLAS behind its
# matrix products (Debian: OpenBLAS through libblas.so.3) keeps its own pool,
# sized by OPENBLAS_NUM_THREADS, which the caller sets: report what it is.
import ctypes
try:
    blas_threads = ctypes.CDLL("libblas.so.3").openblas_get_num_threads()
except (OSError, AttributeError):
    blas_threads = -1
print("threads", torch.get_num_threads(), "blas_threads", blas_threads)
load = lambda name: torch.from_numpy(np.load(os.path.join(data, name + ".npy")))
P = lambda name: load("params/" + name)
X = load("inputs/X")
S, M = X.shape
H, D = P("CausalMultiHeadAttention.Wq").shape[1:]
g1, b1 = P("ln_1.gamma"), P("ln_1.beta")
g2, b2 = P("ln_2.gamma"), P("ln_2.beta")
# The usual GPT-2 layout: one fused QKV projection (c_attn), then per-head attention.
Wqkv = torch.cat([P("CausalMultiHeadAttention." + n).reshape(M, H * D) for n in ("Wq", "Wk", "Wv")], dim=1).contiguous()
bqkv = torch.cat([P("CausalMultiHeadAttention." + n).reshape(H * D) for n in ("bq", "bk", "bv")])
Wo, bo = P("CausalMultiHeadAttention.Wo").reshape(H * D, M).contiguous(), P("CausalMultiHeadAttention.bo")
W1, c1, W2, c2 = P("FFN.W1"), P("FFN.b1"), P("FFN.W2"), P("FFN.b2")
mask = torch.ones(S, S, dtype=torch.bool).tril()
F = torch.nn.functional

def block(x):
    h = F.layer_norm(x, (M,), g1, b1, 1e-5)
    q, k, v = torch.addmm(bqkv, h, Wqkv).split(H * D, dim=1)
    q, k, v = (t.view(S, H, D).transpose(0, 1) for t in (q, k, v))
    s = torch.matmul(q, k.transpose(1, 2)) * (1.0 / math.sqrt(D))
    s = s.masked_fill(~mask, float("-inf"))
    a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(0, 1).reshape(S, H * D)
    x = x + torch.addmm(bo, a, Wo)
    h = F.gelu(torch.addmm(c1, F.layer_norm(x, (M,), g2, b2, 1e-5), W1), approximate="tanh")
    return x + torch.addmm(c2, h, W2)

with torch.no_grad():
    y = block(X)
    np.save(out, y.numpy())
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
    parser.add_argument("--threads", default="2,1", help="thread counts to compare at (both sides use the same)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per process and round")
    parser.add_argument("--out")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ncd-bench-gpt2-")
    try:
        os.makedirs(os.path.join(work, "std"))
        for name in os.listdir(os.path.join(ROOT, "stdlib", "std")):
            with open(os.path.join(ROOT, "stdlib", "std", name)) as f:
                text = f.read()
            with open(os.path.join(work, "std", name), "w") as f:
                f.write(text.replace("default dtype bf16", "default dtype f32"))
        model = os.path.join(work, "std", "transformer.ncd")
        defines = [x for name, size in SIZES.items() for x in ("-D", f"{name}={size}")]
        base = [args.ncd, "run", model, "-I", work, "--diagram", "GPT2Block"] + defines
        data = os.path.join(work, "data")
        result = run(base + ["--random", "1", "--out-dir", data])
        if result.returncode:
            print(result.stderr)
            return 1
        torch_script = os.path.join(work, "torch_block.py")
        with open(torch_script, "w") as f:
            f.write(TORCH_SCRIPT)

        # The same function: compare the outputs.
        import numpy as np

        thread_counts = [int(t) for t in args.threads.split(",")]
        result = run(["/usr/bin/python3", torch_script, data, "1", str(thread_counts[0]), os.path.join(work, "torch_y.npy")])
        if result.returncode:
            print(result.stderr)
            return 1
        y_ncd = np.load(os.path.join(data, "Y.npy")).astype(np.float64)
        y_torch = np.load(os.path.join(work, "torch_y.npy")).astype(np.float64)
        max_abs = float(np.max(np.abs(y_ncd - y_torch)))
        scale = float(np.max(np.abs(y_torch)))
        print(f"outputs: max |ncd - torch| = {max_abs:.3g}, max |Y| = {scale:.3g}")
        if not max_abs <= 1e-4 * scale:
            print("the outputs disagree")
            return 1

        load_before = os.getloadavg()
        results = {}
        torch_threads = {}  # thread count -> (PyTorch's threads, its OpenBLAS's threads) as the process reported
        for threads in thread_counts:
            ncd_command = base + ["--params", os.path.join(data, "params"), "--in", "X=" + os.path.join(data, "inputs", "X.npy"),
                                  "--out-dir", os.path.join(work, "o"), "--threads", str(threads), "--bench", str(args.runs)]
            torch_command = ["/usr/bin/python3", torch_script, data, str(args.runs), str(threads), os.path.join(work, "t.npy")]
            ncd_times, torch_times, ncd_peaks, torch_peaks = [], [], [], []
            for round_ in range(args.rounds):
                order = [("ncd", ncd_command), ("torch", torch_command)]
                if round_ % 2:
                    order.reverse()
                for who, command in order:
                    result, peak = timed(command, thread_env(threads))
                    if result.returncode:
                        print(who, "failed:", result.stderr)
                        return 1
                    if who == "torch":
                        reported = re.search(r"threads (\d+) blas_threads (-?\d+)", result.stdout)
                        torch_threads[threads] = (int(reported.group(1)), int(reported.group(2)))
                    match = re.search(r"times_ms ([0-9. ]+)", result.stdout + result.stderr)
                    times = [float(t) for t in match.group(1).split()]
                    (ncd_times if who == "ncd" else torch_times).extend(times)
                    (ncd_peaks if who == "ncd" else torch_peaks).append(peak)
                print(f"{threads} thread(s), round {round_ + 1}/{args.rounds}: ncd median {statistics.median(ncd_times):.1f} ms, "
                      f"torch median {statistics.median(torch_times):.1f} ms")
            results[threads] = (ncd_command, torch_command, ncd_times, torch_times, ncd_peaks, torch_peaks)
        load_after = os.getloadavg()
        # Baselines: the same processes without the timed forwards.
        _, ncd_base = timed(base[:2] + [os.path.join(ROOT, "tests", "cpu", "io.ncd"), "--diagram", "Scalar", "--random", "1",
                                        "--out-dir", os.path.join(work, "s")])
        _, torch_base = timed(["/usr/bin/python3", "-c", "import numpy, torch"])

        cpu, cpus, memory = machine()
        torch_version = run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"]).stdout.strip()
        first = results[thread_counts[0]]
        lines = [
            "# gpt2_block_cpu: the GPT-2 block forward, `ncd run` against PyTorch",
            "",
            f"Generated by `bench/gpt2_block_cpu.py` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
            "",
            "## Machine",
            "",
            f"- CPU: {cpu}, {cpus} CPUs (`nproc`); memory {memory:.1f} GiB; {platform.system()} {platform.release()}",
            f"- Load average (1, 5, 15 min) before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
            f"{' '.join(f'{x:.2f}' for x in load_after)}",
            f"- ncd: `{args.ncd}` ({args.label or 'build of the working tree'}); backend `cpu`",
            f"- PyTorch {torch_version} (Debian python3-torch, CPU; its BLAS is OpenBLAS through libblas.so.3), "
            "`torch.set_num_threads(N)` and `OPENBLAS_NUM_THREADS=N OMP_NUM_THREADS=N`; as the process reported: "
            + ", ".join(f"N={t}: {a} PyTorch threads, {b} OpenBLAS threads" for t, (a, b) in sorted(torch_threads.items())),
            f"- ncd: `--threads N` (N threads for its loops; matrix products cut into blocks fixed by the problem, each a single-threaded OpenBLAS sgemm, the N threads picking blocks and batches)",
            "",
            "## What runs",
            "",
            "`GPT2Block` of `stdlib/std/transformer.ncd` with `default dtype f32`, at "
            + ", ".join(f"{k} {v}" for k, v in SIZES.items())
            + " (model = heads·d = 768): layernorm, causal multi-head attention with biases, residual, layernorm, "
            "tanh-GELU FFN, residual. Weights and input from `ncd run --random 1`; PyTorch loads the same .npy files "
            "(fused QKV projection, `addmm` with the biases fused, `softmax`, `gelu(approximate=\"tanh\")`, `layer_norm`).",
            "",
            f"Outputs agree: max |ncd − torch| = {max_abs:.3g} with max |Y| = {scale:.3g}.",
            "",
            "```sh",
            " ".join(first[0]).replace(work, "$WORK"),
            " ".join(first[1]).replace(work, "$WORK"),
            "```",
            "",
            f"{args.rounds} rounds per thread count, alternating which goes first; each process times {args.runs} "
            "forwards after one untimed forward; medians over all timed forwards. Both sides use the same number "
            "of threads, their BLAS included: `torch.set_num_threads` does not size OpenBLAS's own pool, so without "
            "`OPENBLAS_NUM_THREADS` PyTorch's \"1 thread\" runs its matrix products on every core.",
            "",
            "## Results",
            "",
            "| threads | ncd median (ms) | PyTorch median (ms) | ratio ncd / PyTorch | ncd min–max (ms) | PyTorch min–max (ms) "
            "| ncd peak RSS | PyTorch peak RSS |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        verdicts = []
        for threads in thread_counts:
            _, _, ncd_times, torch_times, ncd_peaks, torch_peaks = results[threads]
            ncd_median, torch_median = statistics.median(ncd_times), statistics.median(torch_times)
            ratio = ncd_median / torch_median
            verdicts.append((threads, ratio))
            lines.append(
                f"| {threads} | {ncd_median:.1f} | {torch_median:.1f} | **{ratio:.2f}** | {min(ncd_times):.1f}–{max(ncd_times):.1f} "
                f"| {min(torch_times):.1f}–{max(torch_times):.1f} | {max(ncd_peaks) / 1024:.1f} MiB | "
                f"{max(torch_peaks) / 1024:.1f} MiB |")
        lines += [
            "",
            "Target (ncd no slower than PyTorch): "
            + "; ".join(f"{t} thread{'s' if t > 1 else ''}: **{'met' if r <= 1.0 else 'MISSED'}** ({r:.2f})"
                        for t, r in verdicts) + ".",
            "",
            f"Peak RSS is the whole process (`/usr/bin/time -v`). Baselines of the same programs doing no forward: "
            f"ncd {ncd_base / 1024:.1f} MiB (a scalar diagram), Python with numpy and torch imported "
            f"{torch_base / 1024:.1f} MiB; the rest is the block's weights (28 MiB, held once by ncd, twice by the "
            "PyTorch script: loaded and fused), activations and workspaces.",
            "",
        ]
        report(lines, args.out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
