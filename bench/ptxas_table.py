#!/usr/bin/env python3
"""What ptxas makes of ncd's CUDA kernels, without a GPU: registers, spills,
shared memory and resident blocks per SM for the streamed attention kernels
(full and causal, head width d = 64, 128 and 256) and the GEMM kernels (both
operand orders of a plain product, and the fused kernels of the GPT-2 block
after `ncd optimize -O2`), for sm_80 and sm_90.

Each case is emitted by `ncd emit --cuda --arch ARCH` and compiled with
`nvcc -cubin -Xptxas -v`; the dynamic shared memory of an attention kernel is
read from the comment ncd writes above it. Blocks per SM are the least of
four limits, each read from the architecture's hardware profile
(stdlib/hw/*.yaml: `occupancy`, the `registers` and `smem` levels): the
register file (registers are allocated per warp in units of 256), shared
memory (each block also takes the 1 KiB the CUDA Programming Guide reserves),
threads and blocks.

    /usr/bin/python3 bench/ptxas_table.py --ncd build/bin/ncd [--out bench/results/ptxas.md]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ARCHS = {"sm_80": "a100-80g", "sm_90": "h100-sxm"}
HEAD_WIDTHS = (64, 128, 256)

GEMMS = """# GEMM cases for bench/ptxas_table.py: both operand orders.
default dtype bf16
axis m = 4096, n = 4096, r = 4096
diagram MatmulNN(A[m, r], B[r, n]) -> C[m, n] {
  C[m, n] = A[m, r] * B[r, n]
}
diagram MatmulNT(A[m, r], B[n, r]) -> C[m, n] {
  C[m, n] = A[m, r] * B[n, r]
}
"""


def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(1)


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        fail("%s failed:\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r


def profile(root, name):
    """The occupancy limits of a hardware profile (a few keys of its YAML, read with regular expressions)."""
    with open(os.path.join(root, "stdlib", "hw", name + ".yaml")) as f:
        text = f.read()
    occ = re.search(r"occupancy:\s*\{blocks:\s*(\d+),\s*threads:\s*(\d+)", text)

    def level(level_name):
        m = re.search(r"- name: %s\n(?:\s+\w+:.*\n)*?\s+capacity:\s*([\d.]+)\s*KiB" % level_name, text)
        if not m:
            fail("%s.yaml: no capacity in KiB for level '%s'" % (name, level_name))
        return int(float(m.group(1)) * 1024)

    if not occ:
        fail("%s.yaml has no occupancy line" % name)
    return {"blocks": int(occ.group(1)), "threads": int(occ.group(2)), "registers": level("registers") // 4,
            "smem": level("smem")}


def kernel_facts(code):
    """Threads, dynamic shared memory and a description of each kernel, from the emitted code."""
    facts = {}
    pending = None
    for line in code.splitlines():
        m = re.match(r"// streamed attention .*?: (.*?); (\d+) threads, (\d+) bytes of shared memory", line)
        if m:
            pending = {"tiles": m.group(1), "threads": int(m.group(2)), "dynamic": int(m.group(3))}
        m = re.match(r"// (GEMM .*|tiles: .*|fused kernel for .*)", line)
        if m:
            pending = dict(pending or {"dynamic": 0})
            pending["tiles"] = (pending.get("tiles", "") + "; " if pending.get("tiles") else "") + m.group(1)
        m = re.match(r"__global__ void (?:__launch_bounds__\((\d+)\) )?(ncd_k\w+)\(", line)
        if m:
            f = pending or {"tiles": "", "dynamic": 0}
            if m.group(1):
                f["threads"] = int(m.group(1))
            facts[m.group(2)] = f
            pending = None
        m = re.match(r"\s*(ncd_k\w+)<<<(?:dim3\([^)]*\)|[^,]+), (\d+), ", line)
        if m and m.group(1) in facts and "threads" not in facts[m.group(1)]:
            facts[m.group(1)]["threads"] = int(m.group(2))
    return facts


def ptxas(nvcc, cu, arch, tmp, names):
    """Registers, spills and static shared memory per kernel of `names` (each found in its mangled name)."""
    r = run([nvcc, "-std=c++17", "-O3", "-cubin", "-arch=" + arch, "-Xptxas", "-v", "-o",
             os.path.join(tmp, "k.cubin"), cu])
    usage, current = {}, None
    for line in r.stderr.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = next((n for n in names if "%d%s" % (len(n), n) in m.group(1)), None)
            if current:
                usage[current] = {"registers": 0, "spill_stores": 0, "spill_loads": 0, "static": 0}
            continue
        if not current:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            usage[current]["spill_stores"], usage[current]["spill_loads"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            usage[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            usage[current]["static"] = int(s.group(1)) if s else 0
    return usage


def blocks_per_sm(hw, threads, registers, smem):
    warps = (threads + 31) // 32
    per_warp = (registers * 32 + 255) // 256 * 256
    limits = {
        "registers": (hw["registers"] // per_warp) // warps if per_warp else hw["blocks"],
        "smem": hw["smem"] // (smem + 1024),
        "threads": hw["threads"] // threads,
        "blocks": hw["blocks"],
    }
    least = min(limits.values())
    return least, [k for k, v in limits.items() if v == least][0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ncd", default="build/bin/ncd")
    p.add_argument("--nvcc", default=shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc")
    p.add_argument("--root", default=".")
    p.add_argument("--out", help="write the Markdown table here (default: standard output)")
    args = p.parse_args()
    if not os.path.exists(args.nvcc):
        fail("no nvcc at %s (give --nvcc)" % args.nvcc)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gemm_src = os.path.join(tmp, "gemms.ncd")
        with open(gemm_src, "w") as f:
            f.write(GEMMS)
        gpt2 = os.path.join(tmp, "gpt2.ncd")
        run([args.ncd, "optimize", os.path.join(args.root, "stdlib/std/transformer.ncd"), "--diagram", "GPT2Block",
             "-O2", "--no-verify", "-o", gpt2])
        cases = []
        for d in HEAD_WIDTHS:
            for diagram in ("Full", "Causal"):
                cases.append(("attention %s" % diagram, d,
                              [os.path.join(args.root, "bench/cuda_attention.ncd"), "--diagram", diagram,
                               "-D", "d=%d" % d]))
        cases.append(("GEMM", None, [gemm_src, "--all"]))
        cases.append(("GPT-2 block -O2", 64, [gpt2, "--diagram", "GPT2Block"]))
        for arch, hw_name in ARCHS.items():
            hw = profile(args.root, hw_name)
            for what, d, emit in cases:
                cu = os.path.join(tmp, "case.cu")
                run([args.ncd, "emit", "--cuda"] + emit + ["--arch", arch, "-o", cu])
                with open(cu) as f:
                    facts = kernel_facts(f.read())
                usage = ptxas(args.nvcc, cu, arch, tmp, list(facts))
                for name, u in sorted(usage.items(), key=lambda kv: int(re.match(r"ncd_k(\d+)", kv[0]).group(1))):
                    if "gemm" not in name and "attention" not in name and "fused" not in name:
                        continue
                    fact = facts.get(name)
                    if not fact or "threads" not in fact:
                        fail("no launch found for %s in the emitted code" % name)
                    smem = u["static"] + fact["dynamic"]
                    blocks, by = blocks_per_sm(hw, fact["threads"], u["registers"], smem)
                    rows.append((arch, what, "" if d is None else str(d), name, fact.get("tiles", ""),
                                 fact["threads"], u["registers"], "%d / %d" % (u["spill_stores"], u["spill_loads"]),
                                 smem, "%d (%s)" % (blocks, by)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.root, capture_output=True,
                            text=True).stdout.strip()
    nvcc_version = run([args.nvcc, "--version"]).stdout.strip().splitlines()[-1]
    out = ["# ptxas resource usage of ncd's CUDA kernels", "",
           "`/usr/bin/python3 bench/ptxas_table.py --ncd build/bin/ncd --out bench/results/ptxas.md` at commit %s; "
           "%s. No GPU is involved: these are the compiler's figures, and blocks per SM is the least of the register, "
           "shared-memory, thread and block limits of the architecture's hardware profile (the limit that binds in "
           "brackets). Attention: bench/cuda_attention.ncd (its schedules: group q by 128, stream k by 64; the "
           "kernel's own tiles are listed); GEMM: a 4096-cube bf16 product with B as [r, n] and as [n, r]; GPT-2: "
           "stdlib GPT2Block after `ncd optimize -O2 --no-verify`." % (commit, nvcc_version), "",
           "| arch | case | d | kernel | tiles | threads | registers | spill stores / loads (B) | smem (B) | blocks/SM |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
