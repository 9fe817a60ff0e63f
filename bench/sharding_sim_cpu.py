#!/usr/bin/python3
"""What `ncd run --devices N` costs: the simulated sharded run (and, where the plan has one, the run of
each rank's own program, `--ranks`) against the unsharded run of the same diagram.

The simulation (docs/SHARDING.md, "Simulation") gives every device its own
copy of each value that the devices hold differently, at the full size, so a
split value costs N times its unsharded work and memory; replicated work is
done once. This benchmark measures the ratio on the CPU reference, float32:

  gpt2-tp   std/gpt2.ncd's GPT2Model (12 layers, n_embd 256, 8 heads, seq 128),
            `shard heads, inner over 8` (Megatron tensor parallel)
  gpt2-cp   the same, `shard seq over 8` (context parallel)
  llama-tp  std/llama.ncd's LlamaDecoderLayer (hidden 512, 8 KV heads of 2
            queries, seq 256, intermediate 1024), `shard kv_heads, intermediate over 8`
  moe-ep    std/moe.ncd's MixtralSparseMoeBlock (seq 256, hidden 256, ffn 512),
            `shard experts over 8` (expert parallel)

The rank programs (docs/SHARDING.md, "Rank programs") run each device at its
local sizes on its own thread, single-threaded, so their work is the
unsharded work plus the replicated parts 8 times over; context and expert
parallelism have none (their plans all-gather between operations).

Each case runs unsharded, with --devices 8 and with --devices 8 --ranks on the same data; rounds
alternate the order; each process times R runs after an untimed one (`ncd run
--bench`). Reported: medians, the ratio, peak RSS, and the largest difference
between the two outputs.

    /usr/bin/python3 bench/sharding_sim_cpu.py [--ncd build/bin/ncd] [--threads 2] [--rounds 3] [--runs 3] [--out FILE.md]
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

GPT2 = """import "std/gpt2.ncd"

axis seq = 128, n_embd = 256

diagram Model(ids[seq]: i32) -> H[seq, n_embd] {
  H[seq, n_embd] = GPT2Model(ids)
}

schedule Model {
  SHARD
}
"""
LLAMA = """import "std/llama.ncd"

axis seq = 256, hidden_size = 512

diagram Layer(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = LlamaDecoderLayer(X)
}

schedule Layer {
  SHARD
}
"""
MOE = """import "std/moe.ncd"

axis seq = 256, hidden_size = 256

diagram Moe(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = MixtralSparseMoeBlock(X)
}

schedule Moe {
  shard experts over 8
}
"""
CASES = {
    "gpt2-tp": (GPT2.replace("SHARD", "shard heads, inner over 8"), "Model", "H",
                ["-D", "heads=8", "-D", "head_dim=32", "-D", "vocab=1024", "-D", "positions=128"]),
    "gpt2-cp": (GPT2.replace("SHARD", "shard seq over 8"), "Model", "H",
                ["-D", "heads=8", "-D", "head_dim=32", "-D", "vocab=1024", "-D", "positions=128"]),
    "llama-tp": (LLAMA.replace("SHARD", "shard kv_heads, intermediate over 8"), "Layer", "Y",
                 ["-D", "kv_heads=8", "-D", "group=2", "-D", "head_dim=32", "-D", "intermediate=1024"]),
    "moe-ep": (MOE, "Moe", "Y", ["-D", "ffn=512"]),
}
RANKS = {"gpt2-tp", "llama-tp"}  # the cases with a rank program


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ncd", default=os.path.join(ROOT, "build", "bin", "ncd"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out")
    args = parser.parse_args()
    import numpy as np

    work = tempfile.mkdtemp(prefix="ncd-bench-sharding-")
    env = thread_env(args.threads)
    rows = []
    load_before = os.getloadavg()
    try:
        for name in args.cases.split(","):
            text, diagram, output, sizes = CASES[name]
            sizes = sizes + ["-D", "dtype=f32"]
            path = os.path.join(work, name + ".ncd")
            with open(path, "w") as f:
                f.write(text)
            data = os.path.join(work, name + ".data")
            result = run([args.ncd, "run", path, "--diagram", diagram, "--random", "1", "--out-dir", data] + sizes)
            if result.returncode:
                print(result.stderr)
                return 1
            given = ["--params", os.path.join(data, "params")]
            for item in sorted(os.listdir(os.path.join(data, "inputs"))):
                given += ["--in", f"{item[:-4]}={os.path.join(data, 'inputs', item)}"]
            common = [args.ncd, "run", path, "--diagram", diagram, "--threads", str(args.threads), "--bench",
                      str(args.runs)] + given + sizes
            commands = {"unsharded": common + ["--out-dir", os.path.join(work, name + ".one")],
                        "8 devices": common + ["--devices", "8", "--out-dir", os.path.join(work, name + ".many")]}
            if name in RANKS:
                commands["8 ranks"] = common + ["--devices", "8", "--ranks", "--out-dir", os.path.join(work, name + ".ranks")]
            times = {who: [] for who in commands}
            peaks = {who: [] for who in commands}
            for round_ in range(args.rounds):
                order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
                for who in order:
                    result, peak = timed(commands[who], env)
                    if result.returncode:
                        print(name, who, "failed:", result.stderr)
                        return 1
                    match = re.search(r"times_ms ([0-9. e+-]+)", result.stderr)
                    times[who].extend(float(t) for t in match.group(1).split())
                    peaks[who].append(peak)
            one = np.load(os.path.join(work, name + ".one", output + ".npy"))
            many = np.load(os.path.join(work, name + ".many", output + ".npy"))
            error = float(np.abs(one.astype(np.float64) - many).max())
            if name in RANKS:
                ranks = np.load(os.path.join(work, name + ".ranks", output + ".npy"))
                error = max(error, float(np.abs(one.astype(np.float64) - ranks).max()))
            median = {who: statistics.median(times[who]) for who in commands}
            rows.append((name, median, times, peaks, error, float(np.abs(one).max())))
            print(f"{name}: " + ", ".join(f"{who} {t:.1f} ms" for who, t in median.items()))
        load_after = os.getloadavg()
        cpu, _, _ = machine()
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        lines = [
            "# sharding_sim_cpu: `ncd run --devices 8` (simulated, and each rank's program) against the unsharded run",
            "",
            f"Generated by `bench/sharding_sim_cpu.py` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
            "",
            "## Machine",
            "",
            f"- CPU: {cpu}, {os.cpu_count()} CPUs; Linux {platform.release()}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
            f"- Load average (1, 5, 15 min) before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
            f"{' '.join(f'{x:.2f}' for x in load_after)}",
            f"- ncd commit {commit}, `--threads {args.threads}`",
            "",
            "## What runs",
            "",
            "Each case (the script's docstring gives the sizes) unsharded, simulated on 8 devices and, where its plan "
            "has rank programs, run as 8 ranks (`--ranks`), float32, the "
            f"same data; {args.rounds} rounds alternating the order, each process timing {args.runs} runs after an "
            "untimed one; medians over all timed runs.",
            "",
            "## Results",
            "",
            "| case | unsharded (ms) | 8 devices (ms) | ratio | 8 ranks (ms) | ratio | peak RSS unsharded | "
            "peak RSS 8 devices | peak RSS 8 ranks | max abs diff (max abs out) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, median, times, peaks, error, scale in rows:
            ranked = "8 ranks" in median
            lines.append(f"| {name} | {median['unsharded']:.1f} | {median['8 devices']:.1f} | "
                         f"**{median['8 devices'] / median['unsharded']:.2f}** | "
                         + (f"{median['8 ranks']:.1f} | **{median['8 ranks'] / median['unsharded']:.2f}** | "
                            if ranked else "declined | | ")
                         + f"{max(peaks['unsharded']) / 1024:.1f} MiB | {max(peaks['8 devices']) / 1024:.1f} MiB | "
                         + (f"{max(peaks['8 ranks']) / 1024:.1f} MiB" if ranked else "")
                         + f" | {error:.3g} ({scale:.3g}) |")
        lines.append("")
        report(lines, args.out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
