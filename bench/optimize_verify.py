#!/usr/bin/env python3
"""Wall time and peak memory of `ncd optimize` with its verification on.

Runs each case ROUNDS times (the median is reported) with one ncd, or with two
(--before, --after) side by side with the ratio before/after. The cases are
the 12-layer GPT-2 of examples/gpt2.ncd at -O2 and the attention of
examples/attention.ncd at a long context (-D q=8192 -D k=8192), plus the
same without verification, so that what verification costs is visible.

Usage:
  optimize_verify.py --after build/bin/ncd [--before OLD/bin/ncd] [--rounds 7]
                     [--out bench/results/optimize_verify.md] [--label TEXT]

An ncd whose core library lies elsewhere needs LD_LIBRARY_PATH; give it as
--before-env LD_LIBRARY_PATH=DIR.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CASES = [
    ("GPT-2 (12 layers) -O2", ["examples/gpt2.ncd", "--diagram", "Model", "-O2"]),
    ("GPT-2 (12 layers) -O2 --no-verify", ["examples/gpt2.ncd", "--diagram", "Model", "-O2", "--no-verify"]),
    ("attention -D q=8192 -D k=8192", ["examples/attention.ncd", "--diagram", "Attention", "-O2",
                                       "-D", "q=8192", "-D", "k=8192"]),
    ("attention -D q=8192 -D k=8192 --no-verify", ["examples/attention.ncd", "--diagram", "Attention", "-O2",
                                                   "-D", "q=8192", "-D", "k=8192", "--no-verify"]),
]


def machine():
    """CPU, logical CPUs, memory, compiler and load, as bench/README.md asks."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB memory"
    except OSError:
        pass
    compiler = ""
    try:
        compiler = ", " + subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    load = ", load average %.1f at the start" % os.getloadavg()[0]
    return f"{cpu}, nproc {os.cpu_count()}{memory}{compiler}{load}"


def measure(ncd, args, env, work):
    """(seconds, peak MiB) of one run: the peak from wait4's rusage of that child alone."""
    out = os.path.join(work, "out.ncd")
    start = time.monotonic()
    process = subprocess.Popen([ncd, "optimize", *args, "-o", out], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - start
    stderr = process.stderr.read()
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{ncd} optimize {' '.join(args)}: exit {code}\n{stderr}")
    return seconds, usage.ru_maxrss / 1024


def run_all(ncd, env, rounds):
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for label, args in CASES:
            samples = [measure(ncd, args, env, work) for _ in range(rounds)]
            results[label] = (statistics.median(s for s, _ in samples), statistics.median(m for _, m in samples))
            print(f"{ncd}: {label}: median {results[label][0]:.3f} s, {results[label][1]:.0f} MiB", file=sys.stderr)
    return results


def environment(extra):
    env = dict(os.environ)
    for item in extra or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--after", required=True, help="the ncd measured")
    parser.add_argument("--before", help="an older ncd to compare with")
    parser.add_argument("--before-env", action="append", help="NAME=VALUE for the older ncd's runs")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", help="write the Markdown table here (default: stdout)")
    parser.add_argument("--label", default="", help="what the ncd is, e.g. the commit")
    args = parser.parse_args()
    after = run_all(os.path.abspath(args.after), environment(None), args.rounds)
    before = run_all(os.path.abspath(args.before), environment(args.before_env), args.rounds) if args.before else None
    lines = [f"Machine: {machine()}. Median of {args.rounds} runs each, wall time of the whole "
             f"`ncd optimize ... -o out.ncd` process, peak resident memory (maxrss). {args.label}".rstrip(), ""]
    if before:
        lines += ["| case | before | after | before/after (time) | memory before | memory after |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, _ in CASES:
            (tb, mb), (ta, ma) = before[label], after[label]
            lines.append(f"| {label} | {tb:.3f} s | {ta:.3f} s | {tb / ta:.1f}x | {mb:.0f} MiB | {ma:.0f} MiB |")
    else:
        lines += ["| case | time | memory |", "|---|---:|---:|"]
        for label, _ in CASES:
            t, m = after[label]
            lines.append(f"| {label} | {t:.3f} s | {m:.0f} MiB |")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
