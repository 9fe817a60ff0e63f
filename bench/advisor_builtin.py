#!/usr/bin/env python3
"""What `ncd optimize --advisor builtin` gains over -O2 alone, on every stdlib diagram.

For each diagram of stdlib/std/*.ncd: `ncd optimize -O2` and `ncd optimize -O2
--advisor builtin --advisor-rounds 3` (both verified by ncd against the input
at reduced sizes), then both outputs priced by `ncd cost --json` on the same
profile (the kernel's time for a diagram that is one kernel, else the sum of
its operations), and the accepted changes as `--explain` lists them. Priced
times are the model's (docs/COST.md), deterministic; wall times are of one
run of the advisor on this machine.

With --catalogue, instead: every proposal of the built-in advisor's high level
(`--level high --allow-inexact --tolerance 100`, so that each is priced and
measured whatever its error) on every stdlib diagram, with its verdict: the
priced change against the best so far and the errors measured on the verification's data
with the param conversions (at reduced sizes, f32, seed 1).

Usage:
  advisor_builtin.py --ncd build/bin/ncd [--hw h100-sxm] [--out bench/results/advisor_builtin.md]
  advisor_builtin.py --ncd build/bin/ncd --catalogue [--out bench/results/advisor_catalogue.md]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from optimize_verify import machine  # noqa: E402


def diagrams():
    folder = os.path.join(ROOT, "stdlib", "std")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".ncd"):
            with open(os.path.join(folder, name)) as handle:
                for match in re.finditer(r"^diagram (\w+)", handle.read(), re.M):
                    yield f"stdlib/std/{name}", match.group(1)


def priced(ncd, path, diagram, hw):
    result = subprocess.run([ncd, "cost", path, "--diagram", diagram, "--hw", hw, "--json"], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    report = json.loads(result.stdout)
    return report["kernel"]["time"] if report.get("kernel") else report["baseline"]["total"]["time"]


def report_head(title, options):
    """A results file's title and the command that recorded it."""
    return [title, "", "Recorded with:", "", "```sh",
            f"/usr/bin/python3 bench/advisor_builtin.py --ncd build/bin/ncd {options}", "```", ""]


def catalogue(ncd, hw, out):
    header = machine()
    rows = []
    for source, diagram in diagrams():
        command = [ncd, "optimize", source, "--diagram", diagram, "--hw", hw, "-O2", "-D", "dtype=f32",
                   "--advisor", "builtin", "--level", "high", "--allow-inexact", "--tolerance", "100", "--explain"]
        with tempfile.TemporaryDirectory() as work:
            result = subprocess.run(command + ["-o", os.path.join(work, "out.ncd")], cwd=ROOT, capture_output=True,
                                    text=True, timeout=600)
        if result.returncode != 0:
            rows.append((f"{source} {diagram}", "-", "fails: " + result.stderr.strip().splitlines()[-1]))
        for line in result.stderr.splitlines():
            match = re.match(r'advisor: candidate \S+ \("(.*)"\): (.*)', line)
            if match:
                rows.append((f"{source} {diagram}", match.group(1), match.group(2)))
                print(*rows[-1], sep=" | ", flush=True)
    lines = report_head("# The built-in advisor's high-level catalogue on the stdlib",
                        f"--catalogue --hw {hw} --out bench/results/advisor_catalogue.md") + [
        f"Machine: {header}. Every proposal of `ncd optimize -O2 -D dtype=f32 --advisor builtin --level high "
        f"--allow-inexact --tolerance 100` on {hw}: its rationale and its verdict, the priced change against the "
        "best verified diagram so far (the -O2 result, or the proposal accepted before it in the same run; the cost "
        "model's, deterministic) and the error measured against the input on the CPU backend "
        "with the params converted from the input's random draw (docs/ADVISOR.md, \"Param conversions\"). Random "
        "weights have no low-rank structure and no similar heads: the errors are those of the recipes on random "
        "params, far above what they lose on trained weights. Diagrams without a proposal are not listed.",
        "",
        f"Proposals: {len(rows)}.",
        "",
        "| diagram | proposal | verdict |",
        "|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if out:
        with open(out, "w") as handle:
            handle.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--hw", default="h100-sxm")
    parser.add_argument("--out")
    parser.add_argument("--catalogue", action="store_true")
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    if args.catalogue:
        catalogue(ncd, args.hw, args.out)
        return
    header = machine()
    rows, improved = [], 0
    with tempfile.TemporaryDirectory() as work:
        for source, diagram in diagrams():
            base = [ncd, "optimize", source, "--diagram", diagram, "--hw", args.hw, "-O2"]
            o2, adv = os.path.join(work, "o2.ncd"), os.path.join(work, "adv.ncd")
            first = subprocess.run(base + ["-o", o2], cwd=ROOT, capture_output=True, text=True, timeout=600)
            if first.returncode != 0:
                rows.append((f"{source} {diagram}", "-", "-", "-", "-O2 fails: " + first.stderr.strip().splitlines()[-1]))
                continue
            start = time.monotonic()
            second = subprocess.run(base + ["-o", adv, "--advisor", "builtin", "--advisor-rounds", "3", "--explain"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=600)
            seconds = time.monotonic() - start
            if second.returncode != 0:
                rows.append((f"{source} {diagram}", "-", "-", "-", "advisor run fails: " + second.stderr.strip()))
                continue
            t0, t1 = priced(ncd, o2, diagram, args.hw), priced(ncd, adv, diagram, args.hw)
            accepted = [line.split('("', 1)[1].split('")', 1)[0]
                        for line in second.stderr.splitlines()
                        if line.startswith("advisor: candidate ") and "): accepted:" in line]
            if t1 < t0:
                improved += 1
            rows.append((f"{source} {diagram}", f"{t0 * 1e6:.4g}", f"{t1 * 1e6:.4g}", f"{t0 / t1:.3f}" if t1 > 0 else "-",
                         "; ".join(accepted) + f" ({seconds:.2f} s)"))
            print(*rows[-1], sep=" | ", flush=True)
    lines = report_head("# `ncd optimize --advisor builtin` against -O2 alone",
                        f"--hw {args.hw} --out bench/results/advisor_builtin.md") + [
        f"Machine: {header}. Priced times are `ncd cost --json` of each output on {args.hw} (the model's, "
        "deterministic: one run each); every accepted candidate was verified by ncd against the input on the CPU "
        "backend at reduced sizes. The last column lists the accepted proposals and the wall time of one advisor run "
        "(the -O2 pipeline, its verification and the advisor's rounds).",
        "",
        f"Improved: {improved} of {len(rows)} diagrams.",
        "",
        "| diagram | -O2 (us) | -O2 + builtin advisor (us) | ratio | accepted (wall time) |",
        "|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    print(f"improved: {improved} of {len(rows)}")


if __name__ == "__main__":
    main()
