#!/usr/bin/env python3
"""The w8a8 GPT-2 block on int8 tensor cores: from the `quantize` pass to the GPU's instructions.

    run_quantized_block.py --ncd NCD --root SRC [--nvcc NVCC]

std/gpt2.ncd's GPT2Block goes through `ncd optimize --passes quantize=w8a8`
(verified on the CPU: its error against the bf16 block is reported and within
the default tolerance), then `ncd emit --cuda`. Every int8 product must be
emitted as an int8 tensor-core GEMM, with no note of a fallback for it, and
the file must compile for sm_80, sm_89 and sm_90, with the int8 mma.sync in
each architecture's PTX and, where cuobjdump is installed, int8 tensor-core
instructions (IMMA) in the machine code. The same
after `-O2` runs on the quantized block. Exit 77 (skipped) without nvcc.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile


def run(cmd, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--nvcc", default="nvcc")
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    args.root = os.path.abspath(args.root)
    problems = []
    with tempfile.TemporaryDirectory(prefix="ncd-q8-block-") as work:
        quantized = os.path.join(work, "gpt2_w8a8.ncd")
        r = run([ncd, "optimize", os.path.join(args.root, "stdlib/std/gpt2.ncd"), "--diagram", "GPT2Block",
                 "--passes", "quantize=w8a8", "-o", quantized], cwd=work)
        if r.returncode != 0 or not re.search(r"relative L2 error [0-9.e+-]+,.*: ok", r.stderr):
            print("FAIL: optimize --passes quantize=w8a8: exit %d\n%s" % (r.returncode, r.stderr))
            return 1
        print("the CPU check of the quantized block:\n" + r.stderr.strip())
        optimized = os.path.join(work, "gpt2_w8a8_O2.ncd")
        r = run([ncd, "optimize", quantized, "--diagram", "GPT2Block", "-O2", "-o", optimized], cwd=work)
        if r.returncode != 0:
            print("FAIL: -O2 of the quantized block: exit %d\n%s" % (r.returncode, r.stderr))
            return 1
        nvcc = args.nvcc if os.path.isabs(args.nvcc) and os.access(args.nvcc, os.X_OK) else shutil.which(args.nvcc)
        cuobjdump = os.path.join(os.path.dirname(nvcc), "cuobjdump") if nvcc else None
        for label, source in (("as quantized", quantized), ("after -O2", optimized)):
            cu = os.path.join(work, "block.cu")
            r = run([ncd, "emit", "--cuda", source, "--diagram", "GPT2Block", "-o", cu], cwd=work)
            if r.returncode != 0:
                problems.append("%s: emit exit %d: %s" % (label, r.returncode, r.stderr))
                continue
            code = open(cu, encoding="utf-8").read()
            # Every i8 x i8 -> i32 product: a generic kernel for it would be noted, naming operands "i8 and i8".
            if "i8 and i8" in r.stderr:
                problems.append("%s: an int8 product falls back:\n%s" % (label, r.stderr))
            products = len(re.findall(r"mma\.sync\.aligned\.m16n8k32\.row\.col\.s32\.s8\.s8\.s32", code))
            if products == 0:
                problems.append("%s: no int8 mma.sync in the emitted code" % label)
            if not nvcc:
                continue
            obj = os.path.join(work, "block.o")
            flags = ["-std=c++17", "-O1"] + sum((["-gencode", "arch=compute_%s,code=sm_%s" % (a, a)]
                                                 for a in ("80", "89", "90")), [])
            r = run([nvcc] + flags + ["-c", "-o", obj, cu])
            if r.returncode != 0:
                problems.append("%s: nvcc failed:\n%s" % (label, (r.stdout + r.stderr)[-4000:]))
                continue
            # The instruction in each architecture's PTX: instantiated kernels only (an unused template
            # leaves none), and ptxas assembled it for that architecture above.
            for arch in ("80", "89", "90"):
                ptx = os.path.join(work, "block_%s.ptx" % arch)
                r = run([nvcc, "-std=c++17", "-O1", "-arch=compute_%s" % arch, "-ptx", "-o", ptx, cu])
                count = len(re.findall(r"mma\.sync\.aligned\.m16n8k32\.row\.col\.s32\.s8\.s8\.s32",
                                       open(ptx).read())) if r.returncode == 0 else 0
                if count == 0:
                    problems.append("%s: no int8 mma.sync in the compute_%s PTX" % (label, arch))
                print("%s: compute_%s PTX: %d int8 mma.sync" % (label, arch, count))
            if cuobjdump and os.access(cuobjdump, os.X_OK):
                sass = run([cuobjdump, "-sass", obj]).stdout
                archs = re.findall(r"arch = (sm_\d+)", sass)
                per_arch = {}
                for chunk in re.split(r"(?=\tarch = sm_\d+)", sass):
                    m = re.search(r"arch = (sm_\d+)", chunk)
                    if m:
                        per_arch[m.group(1)] = per_arch.get(m.group(1), 0) + len(re.findall(r"\bIMMA\.", chunk))
                for arch in ("sm_80", "sm_89", "sm_90"):
                    if per_arch.get(arch, 0) == 0:
                        problems.append("%s: no IMMA instruction in the %s code (archs %s)" % (label, arch,
                                                                                           sorted(set(archs))))
                print("%s: IMMA instructions per architecture: %s" % (label, per_arch))
    for p in problems:
        print("FAIL: " + p)
    if not problems and not shutil.which(args.nvcc) and not os.path.isabs(args.nvcc):
        print("nvcc not found: the emitted code was checked, not compiled")
        return 77
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
