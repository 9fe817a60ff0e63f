#!/usr/bin/python3
"""Generated CUDA attention and matmul against PyTorch, on a GPU machine.

Two steps, so that the GPU machine needs no ncd:

  1. where ncd is built (no GPU needed), emit one self-contained .cu per case:
       /usr/bin/python3 bench/cuda_attention.py emit [--ncd build/bin/ncd] [--arch sm_90] --out bench/cuda_cases
     Cases: streamed attention (bench/cuda_attention.ncd: Full and Causal,
     bf16, group q by 128, stream k by 64) at head width d = 64 and 128 and
     sequence 1k, 2k, 4k, 8k, 16k, with batch x heads = (16384 / seq) * (2048 / d)
     as in FlashAttention's benchmarks; and bf16 matmuls 4096^3 and 8192^3.
     Each .cu has the --harness main; manifest.json describes the cases.

  2. on the GPU machine (nvcc, python3 with numpy and torch), carry the folder and run
       python3 cuda_attention.py run --cases bench/cuda_cases [--arch sm_90] [--runs 20] [--out results.md]
     Each case is compiled (nvcc -O3), fed random inputs through .npy files,
     checked once against PyTorch (max abs error), then timed by its harness
     (CUDA events, warm-up, median of --runs) and PyTorch
     (torch.nn.functional.scaled_dot_product_attention / torch.matmul, same
     timing) and printed as a markdown table of TFLOP/s and the ratio ncd /
     torch. FLOPs use FlashAttention's convention for both: 4 * bh * seq^2 * d,
     halved when causal; 2 * m * n * k for matmuls.

Exit status 0; 1 when a step fails, times out (--timeout, each nvcc and harness run) or
when a result is off the float32 reference by more than twice PyTorch's own bf16
error plus two bf16 ulps of the largest value.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

SEQS = [1024, 2048, 4096, 8192, 16384]
HEAD_DIMS = [64, 128]
MATMULS = [4096, 8192]


def emit(args):
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "cuda_attention.ncd")
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for d in HEAD_DIMS:
        for seq in SEQS:
            bh = (16384 // seq) * (2048 // d)
            for diagram in ["Full", "Causal"]:
                name = "attn_%s_d%d_s%d" % (diagram.lower(), d, seq)
                defines = ["-D", "bh=%d" % bh, "-D", "q=%d" % seq, "-D", "k=%d" % seq, "-D", "d=%d" % d]
                cases.append({"name": name, "kind": "attention", "diagram": diagram, "causal": diagram == "Causal",
                              "d": d, "seq": seq, "bh": bh, "defines": defines,
                              "flops": 4.0 * bh * seq * seq * d / (2 if diagram == "Causal" else 1)})
    for size in MATMULS:
        defines = ["-D", "m=%d" % size, "-D", "n=%d" % size, "-D", "r=%d" % size]
        cases.append({"name": "matmul_%d" % size, "kind": "matmul", "diagram": "Matmul", "m": size, "n": size,
                      "k": size, "defines": defines, "flops": 2.0 * size ** 3})
    for case in cases:
        cu = os.path.join(args.out, case["name"] + ".cu")
        cmd = [args.ncd, "emit", "--cuda", source, "--diagram", case["diagram"], "--harness", "--arch", args.arch,
               "-o", cu] + case["defines"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print("error: %s\n%s" % (" ".join(cmd), r.stderr), file=sys.stderr)
            return 1
        if r.stderr:
            print("%s: %s" % (case["name"], r.stderr.strip()), file=sys.stderr)
        case["file"] = case["name"] + ".cu"
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"arch": args.arch, "cases": cases}, f, indent=1)
    print("wrote %d cases to %s" % (len(cases), args.out))
    return 0


def write_npy(path, array):
    import numpy as np
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, array)


def median_ms(fn, runs, warmup):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def run(args):
    import numpy as np
    import torch
    import torch.nn.functional as F
    with open(os.path.join(args.cases, "manifest.json")) as f:
        manifest = json.load(f)
    arch = args.arch or manifest["arch"]
    nvcc = shutil.which(args.nvcc) or args.nvcc
    work = os.path.join(args.cases, "work")
    os.makedirs(work, exist_ok=True)
    device = torch.cuda.get_device_name(0)
    rows = []
    failures = 0
    rng = np.random.default_rng(1)
    for case in manifest["cases"]:
        if args.only and not re.search(args.only, case["name"]):
            continue
        binary = os.path.join(work, case["name"])
        if not os.path.exists(binary):
            cmd = [nvcc, "-std=c++17", "-O3", "-arch=" + arch, "-o", binary, os.path.join(args.cases, case["file"])]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print("error: nvcc timed out after %d s: %s" % (args.timeout, " ".join(cmd)), file=sys.stderr)
                return 1
            if r.returncode != 0:
                print("error: %s\n%s" % (" ".join(cmd), r.stderr[-4000:]), file=sys.stderr)
                return 1
        data = os.path.join(work, case["name"] + "_data")
        if case["kind"] == "attention":
            shape = (case["bh"], case["seq"], case["d"])
            tensors = {n: rng.standard_normal(shape, dtype=np.float32) for n in "QKV"}
        else:
            tensors = {"A": rng.standard_normal((case["m"], case["k"]), dtype=np.float32) / 8,
                       "B": rng.standard_normal((case["k"], case["n"]), dtype=np.float32) / 8}
        # bf16 values travel as float32 holding exact bf16 values (docs/RUN.md).
        gpu = {n: torch.from_numpy(a).cuda().to(torch.bfloat16) for n, a in tensors.items()}
        for n, t in gpu.items():
            write_npy(os.path.join(data, "inputs", n + ".npy"), t.float().cpu().numpy())
        try:
            r = subprocess.run([binary, data, "--runs", str(args.runs), "--warmup", str(args.warmup)],
                               capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print("error: %s: the harness timed out after %d s" % (case["name"], args.timeout), file=sys.stderr)
            return 1
        if r.returncode != 0:
            print("error: %s: %s" % (case["name"], r.stderr.strip()), file=sys.stderr)
            return 1
        m = re.search(r"median ([0-9.]+) ms", r.stdout)
        ncd_ms = float(m.group(1))
        out_name = "O" if case["kind"] == "attention" else "C"
        ours = torch.from_numpy(np.load(os.path.join(data, "cuda", out_name + ".npy"))).cuda()
        if case["kind"] == "attention":
            q, k, v = (gpu[n].unsqueeze(0) for n in "QKV")
            fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=case["causal"])
            exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=case["causal"]).squeeze(0)
            reference = fn().squeeze(0).float()
        else:
            fn = lambda: torch.matmul(gpu["A"], gpu["B"])
            exact = torch.matmul(gpu["A"].float(), gpu["B"].float())
            reference = fn().float()
        error = (ours.float() - exact).abs().max().item()
        # Allowed: twice PyTorch's own bf16 error against the float32 result, plus two bf16 ulps of its largest value.
        tolerance = 2 * (reference - exact).abs().max().item() + 2 ** -7 * exact.abs().max().item()
        if not error <= tolerance:
            print("error: %s: max abs error %.3g against the float32 result exceeds the tolerance %.3g" %
                  (case["name"], error, tolerance), file=sys.stderr)
            failures += 1
        torch_ms = median_ms(fn, args.runs, args.warmup)
        flops = case["flops"]
        ncd_tf, torch_tf = flops / (ncd_ms * 1e-3) / 1e12, flops / (torch_ms * 1e-3) / 1e12
        if case["kind"] == "attention":
            label = "attention %s d=%d seq=%d bh=%d" % ("causal" if case["causal"] else "full", case["d"], case["seq"],
                                                       case["bh"])
        else:
            label = "matmul %dx%dx%d" % (case["m"], case["n"], case["k"])
        rows.append((label, ncd_ms, ncd_tf, torch_ms, torch_tf, ncd_tf / torch_tf, error))
        print("%-40s ncd %.3f ms %.1f TFLOP/s | torch %.3f ms %.1f TFLOP/s | max abs err %.3g" %
              (label, ncd_ms, ncd_tf, torch_ms, torch_tf, error), file=sys.stderr)
    lines = ["# ncd emit --cuda against PyTorch (%s, %s, torch %s)" % (device, arch, torch.__version__), "",
             "| case | ncd ms | ncd TFLOP/s | torch ms | torch TFLOP/s | ncd / torch | max abs error |",
             "|---|---|---|---|---|---|---|"]
    for label, a, b, c, d, e, err in rows:
        lines.append("| %s | %.3f | %.1f | %.3f | %.1f | %.2f | %.3g |" % (label, a, b, c, d, e, err))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("emit", help="write the .cu cases (needs ncd)")
    e.add_argument("--ncd", default="build/bin/ncd")
    e.add_argument("--arch", default="sm_90", choices=["sm_80", "sm_90"])
    e.add_argument("--out", default="bench/cuda_cases")
    r = sub.add_parser("run", help="compile, check and time the cases against PyTorch (needs a GPU)")
    r.add_argument("--cases", default="bench/cuda_cases")
    r.add_argument("--nvcc", default="nvcc")
    r.add_argument("--arch", default=None, help="nvcc -arch (default: the one the cases were emitted for)")
    r.add_argument("--runs", type=int, default=20)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--only", default=None, help="a regular expression on case names")
    r.add_argument("--out", default=None, help="also write the table here")
    r.add_argument("--timeout", type=int, default=300, help="seconds for each nvcc and harness run")
    args = parser.parse_args()
    return emit(args) if args.command == "emit" else run(args)


if __name__ == "__main__":
    sys.exit(main())
