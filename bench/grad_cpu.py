#!/usr/bin/python3
"""A GPT-2 block's training step on the CPU: `ncd run` of the derived step against PyTorch autograd.

The block is std/gpt2.ncd's GPT2Block (transformers' layout: ln_1, attn with
c_attn and c_proj, ln_2, mlp) at seq 256, n_embd 768, 12 heads, in float32.
`ncd grad -D dtype=f32` derives GPT2Block_train (the output and every
gradient: of X and of the 12 params); PyTorch runs the same module forward
and `backward(d_Y)` (tests/cpu/test_state_dicts.py's GPT2Block, the same
state_dict through safetensors). The gradients are compared, then both are
timed side by side: rounds alternate between one `ncd run --bench N` process
and one PyTorch process timing N steps, so that both see the same machine
load. Reported: the median of all timed steps of each, their ratio, and the
peak resident set size of each process.

    /usr/bin/python3 bench/grad_cpu.py [--ncd build/bin/ncd] [--threads 2] [--rounds 5] [--runs 3]
        [--out bench/results/grad_cpu.md]

Needs Debian's python3-torch. Exit status 0 on success, 1 when a run fails
or the gradients disagree.
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

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cpu"))
sys.path.insert(0, os.path.join(ROOT, "tests", "grad"))
sys.dont_write_bytecode = True
from bench_processes import machine, report, run, thread_env, timed  # noqa: E402
from test_gradients import gradient_names  # noqa: E402

SEQ, HEADS, HEAD_DIM = 256, 12, 64

TORCH_SCRIPT = r'''
import os, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
sys.dont_write_bytecode = True
from test_state_dicts import GPT2Block
data, runs, threads, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
model = GPT2Block(n_embd=%(n_embd)d, heads=%(heads)d)
state = torch.load(os.path.join(data, "state.pt"))
model.load_state_dict(state)
x = torch.from_numpy(np.load(os.path.join(data, "X.npy"))).requires_grad_(True)
dy = torch.from_numpy(np.load(os.path.join(data, "dY.npy")))

def step():
    model.zero_grad(set_to_none=True)
    x.grad = None
    y = model(x)
    y.backward(dy)
    return y

step()
os.makedirs(out, exist_ok=True)
np.save(os.path.join(out, "X.npy"), x.grad.numpy())
for name, p in model.named_parameters():
    np.save(os.path.join(out, name + ".npy"), p.grad.numpy())
times = []
for _ in range(runs):
    start = time.perf_counter()
    step()
    times.append((time.perf_counter() - start) * 1e3)
print("times_ms", " ".join("%%.3f" %% t for t in times))
''' % dict(n_embd=HEADS * HEAD_DIM, heads=HEADS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ncd", default=os.path.join(ROOT, "build", "bin", "ncd"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="timed steps per process and round")
    parser.add_argument("--out")
    args = parser.parse_args()
    import torch
    from test_state_dicts import GPT2Block, save_safetensors

    work = tempfile.mkdtemp(prefix="ncd-bench-grad-")
    try:
        torch.manual_seed(1)
        model = GPT2Block(n_embd=HEADS * HEAD_DIM, heads=HEADS)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        torch.save(model.state_dict(), os.path.join(work, "state.pt"))
        weights = os.path.join(work, "block.safetensors")
        save_safetensors(weights, model.state_dict())
        rng = np.random.default_rng(2)
        np.save(os.path.join(work, "X.npy"), rng.standard_normal((SEQ, HEADS * HEAD_DIM)).astype(np.float32))
        np.save(os.path.join(work, "dY.npy"), rng.standard_normal((SEQ, HEADS * HEAD_DIM)).astype(np.float32))
        step_file = os.path.join(work, "step.ncd")
        result = run([args.ncd, "grad", os.path.join(ROOT, "stdlib", "std", "gpt2.ncd"), "--diagram", "GPT2Block",
                      "-D", "dtype=f32", "-D", "seq=%d" % SEQ, "-D", "heads=%d" % HEADS, "-D", "head_dim=%d" % HEAD_DIM,
                      "-o", step_file])
        if result.returncode:
            print(result.stderr)
            return 1
        of = gradient_names(step_file)
        torch_script = os.path.join(work, "torch_step.py")
        with open(torch_script, "w") as f:
            f.write(TORCH_SCRIPT)
        ncd_out = os.path.join(work, "ncd_out")
        ncd_command = [args.ncd, "run", step_file, "--diagram", "GPT2Block_train", "--params", weights, "-w",
                       "--in", "X=" + os.path.join(work, "X.npy"), "--in", "d_Y=" + os.path.join(work, "dY.npy"),
                       "--out-dir", ncd_out, "--threads", str(args.threads), "--bench", str(args.runs)]
        torch_out = os.path.join(work, "torch_out")
        torch_command = ["/usr/bin/python3", torch_script, os.path.join(ROOT, "tests", "cpu"), work, str(args.runs),
                         str(args.threads), torch_out]

        # The same gradients first.
        for command in (ncd_command, torch_command):
            result = run(command, env=thread_env(args.threads))
            if result.returncode:
                print(result.stderr)
                return 1
        worst = 0.0
        for grad_name, target in of.items():
            got = np.load(os.path.join(ncd_out, grad_name + ".npy")).astype(np.float64)
            want = np.load(os.path.join(torch_out, target + ".npy")).astype(np.float64)
            worst = max(worst, float(np.max(np.abs(got - want))) / max(float(np.max(np.abs(want))), 1e-30))
        print("gradients: %d, largest error relative to the gradient's largest value %.3g" % (len(of), worst))
        if not worst <= 1e-4:
            print("the gradients disagree")
            return 1

        load_before = os.getloadavg()
        ncd_times, torch_times, ncd_peaks, torch_peaks = [], [], [], []
        for round_ in range(args.rounds):
            order = [("ncd", ncd_command), ("torch", torch_command)]
            if round_ % 2:
                order.reverse()
            for who, command in order:
                result, peak = timed(command, thread_env(args.threads))
                if result.returncode:
                    print(who, "failed:", result.stderr)
                    return 1
                match = re.search(r"times_ms ([0-9. ]+)", result.stdout + result.stderr)
                times = [float(t) for t in match.group(1).split()]
                (ncd_times if who == "ncd" else torch_times).extend(times)
                (ncd_peaks if who == "ncd" else torch_peaks).append(peak)
            print("round %d/%d: ncd median %.1f ms, torch median %.1f ms" %
                  (round_ + 1, args.rounds, statistics.median(ncd_times), statistics.median(torch_times)))
        load_after = os.getloadavg()
        cpu, cpus, memory = machine()
        torch_version = run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"]).stdout.strip()
        ncd_median, torch_median = statistics.median(ncd_times), statistics.median(torch_times)
        lines = [
            "# grad_cpu: a GPT-2 block's training step, `ncd run` of `ncd grad`'s step against PyTorch autograd",
            "",
            "Generated by `bench/grad_cpu.py` on %s UTC." % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
            "",
            "## Machine",
            "",
            "- CPU: %s, %d CPUs (`nproc`); memory %.1f GiB; %s %s" % (cpu, cpus, memory, platform.system(),
                                                                   platform.release()),
            "- Load average (1, 5, 15 min) before / after: %s / %s" % (" ".join("%.2f" % x for x in load_before),
                                                                      " ".join("%.2f" % x for x in load_after)),
            "- PyTorch %s (Debian python3-torch, CPU), `torch.set_num_threads(%d)`, `OPENBLAS_NUM_THREADS=%d`; "
            "ncd `--threads %d`" % (torch_version, args.threads, args.threads, args.threads),
            "",
            "## What runs",
            "",
            "`GPT2Block_train` derived by `ncd grad` from `stdlib/std/gpt2.ncd`'s `GPT2Block` at f32, seq %d, "
            "n_embd %d (%d heads of %d): the block's output and its %d gradients (X and every param), from X and the "
            "output's cotangent d_Y, on a transformers-layout state_dict. PyTorch: the same module, `model(x)` then "
            "`y.backward(d_Y)`." % (SEQ, HEADS * HEAD_DIM, HEADS, HEAD_DIM, len(of)),
            "",
            "Gradients agree: largest error %.3g of each gradient's largest value." % worst,
            "",
            "```sh",
            " ".join(ncd_command).replace(work, "$WORK").replace(ROOT, "$ROOT"),
            " ".join(torch_command).replace(work, "$WORK").replace(ROOT, "$ROOT"),
            "```",
            "",
            "%d rounds, alternating which goes first; each process times %d steps after one untimed step; medians "
            "over all timed steps." % (args.rounds, args.runs),
            "",
            "## Results",
            "",
            "| threads | ncd median (ms) | PyTorch median (ms) | ratio ncd / PyTorch | ncd min–max (ms) | "
            "PyTorch min–max (ms) | ncd peak RSS | PyTorch peak RSS |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            "| %d | %.1f | %.1f | **%.2f** | %.1f–%.1f | %.1f–%.1f | %.1f MiB | %.1f MiB |" % (
                args.threads, ncd_median, torch_median, ncd_median / torch_median, min(ncd_times), max(ncd_times),
                min(torch_times), max(torch_times), max(ncd_peaks) / 1024, max(torch_peaks) / 1024),
            "",
            "A load average above the CPU count (other work on the machine) widens both ranges; the rounds "
            "alternate, so both sides see it, but PyTorch's thread pool suffers more from it: rerun on a quiet "
            "machine before reading much into the ratio.",
            "",
        ]
        report(lines, args.out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
