#!/usr/bin/env python3
"""Tests of quantized contractions in `ncd emit --cuda` (docs/CUDA.md,
"Quantized contractions"); no GPU is needed. The cases are the three linear
layers of tests/cuda/cases/quantized.ncd (int8 W8A8, fp8, weight-only int8),
emitted as they are (with hand-written GEMM + scale epilogue kernels, lifted)
and after `ncd optimize -O2`.

  golden    the structure of the emitted code (kernel list, launches, the GEMM
            lines and the 8-bit tile instantiations, fused prologues and
            epilogues; -O2 must fuse the fp8 and weight-only layers) against
            quantized.golden (--update rewrites it); the exact notes for
            sm_90 (none) and sm_80 (fp8 widened to f16); no contraction is left
            to the generic kernel.
  compile   the same code (plain and --harness) compiled with nvcc for sm_80,
            sm_89 and sm_90, and its PTX per architecture: sm_80 runs
            `mma.sync ... m16n8k32 ... s32.s8.s8.s32` and, for fp8, f16
            `m16n8k16` steps (no fp8 tensor cores there); sm_89 and sm_90 run
            the s8 and fp8 (`f32.e4m3.e4m3.f32`, `.e4m3.e5m2`) instructions the
            file's 8-bit tiles call for. Exit 77 (skipped) when nvcc is missing.
"""
import argparse
import os
import re
import sys
import tempfile

import run_cuda_tests as base

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = "tests/cuda/cases/quantized.ncd"
# The layers optimized with -O2. W8A8Linear is left out: `ncd optimize` writes
# its quantize as an f32 statement (`t9[s, m]: f32 = quantize(...)`) that sema
# then refuses when the file is read back; its fused GEMM + scale epilogue is
# the hand-written W8A8Epilogue of the file.
DIAGRAMS = ["FP8Linear", "W8A16Linear"]
# The note for fp8 on a target without fp8 tensor cores.
SM80_NOTE = "".join(
    "ncd emit: note: tests/cuda/cases/quantized.ncd:%s: fp8 contraction 'Acc' in '%s' on f16 tensor cores (the "
    "hardware profile 'a100-80g' has no f8 tensor rate: no fp8 tensor cores; the fp8 tiles are widened to f16 in "
    "registers, exact; built for sm_89 or later the same code runs fp8 mma.sync)\n" % where
    for where in (("28:20", "FP8Linear"), ("53:20", "FP8Epilogue")))
S8 = "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"
E4M3 = "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32"
E4M3_E5M2 = "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e5m2.f32"
F16 = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
BF16 = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"

STRUCTURE = [
    (re.compile(r"^// (fused kernel|GEMM|tiles|fallback)"), None),
    (re.compile(r"^__global__ void (__launch_bounds__\(\d+\) )?(ncd_k\d+_\w+)\("), lambda m: "kernel " + m.group(2)),
    (re.compile(r'^extern "C" int (\w+)\('), lambda m: "host " + m.group(1)),
    (re.compile(r"^\s*(\w+)<<<([^>]*)>>>"), lambda m: "  launch %s<<<%s>>>" % (m.group(1), m.group(2).replace(", stream", ""))),
    (re.compile(r"^\s*// fallback: .*"), None),
    (re.compile(r"^\s*(int|float) acc\[.*"), lambda m: "    " + m.group(0).strip()),
    (re.compile(r"^\s*ncd_gemm_tile(_q8)?<.*"), lambda m: "    " + m.group(0).strip()),
    (re.compile(r"^\s*r\d+\[m \* .*"), lambda m: "    " + m.group(0).strip()),
    (re.compile(r"^\s*(auto f[ab] = .*|return ncd_bits<.*)"), lambda m: "    " + m.group(1)),
]


def structure(code):
    """The pinned lines, and in each fused GEMM kernel the epilogue."""
    return base.fused_structure(code, STRUCTURE)


def emit(args, path, extra, notes):
    """The code of every diagram of `path`; `notes` is the exact stderr expected."""
    cmd = [args.ncd, "emit", "--cuda", path, "--all", "-o", "-"] + extra
    r = base.run(cmd, cwd=args.root)
    if r.returncode != 0:
        base.fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
    if r.stderr != notes:
        base.fail("%s: notes\n%r\nexpected\n%r" % (" ".join(cmd), r.stderr, notes))
    return r.stdout


def optimized(args, tmp):
    """tests/cuda/cases/quantized.ncd after `ncd optimize -O2` of each diagram, as one file per diagram."""
    files = []
    for diagram in DIAGRAMS:
        out = os.path.join(tmp, diagram + ".ncd")
        cmd = [args.ncd, "optimize", CASES, "--diagram", diagram, "-O2", "--no-verify", "-o", out]
        r = base.run(cmd, cwd=args.root)
        if r.returncode != 0:
            base.fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
        files.append(out)
    return files


def checks(code, what):
    problems = []
    if "generic kernel for contraction" in code or re.search(r"= contract\[[^\]]*\]$", code, re.M):
        problems.append("%s: a contraction runs as the generic kernel" % what)
    for stem in ("ncd_gemm_tile_q8<0, 0,", "ncd_gemm_tile_q8<1, 1,"):
        if stem not in code:
            problems.append("%s: no %s...> instantiation" % (what, stem))
    return problems


def golden(args):
    sections, problems = [], []
    code = emit(args, CASES, ["--arch", "sm_90"], "")
    problems += checks(code, CASES)
    for kernel in ("W8A8Epilogue", "FP8Epilogue", "W8A8Kernel"):
        if "// fused kernel for '%s'" % kernel not in code:
            problems.append("%s: '%s' is not a fused GEMM kernel" % (CASES, kernel))
    sections.append("== %s --arch sm_90\n" % CASES + structure(code))
    emit(args, CASES, ["--arch", "sm_80"], SM80_NOTE)
    with tempfile.TemporaryDirectory() as tmp:
        for path in optimized(args, tmp):
            code = emit(args, path, ["--arch", "sm_90"], "")
            # The quantization (fp8) or dequantization (int8 weights) is the GEMM's prologue.
            if "staged as its prologue computes it" not in code or "// fused kernel for" not in code:
                problems.append("%s -O2: no fused GEMM with a prologue" % os.path.basename(path))
            sections.append("== %s -O2 --arch sm_90\n" % os.path.basename(path) + structure(code))
    for p in problems:
        print("FAIL: " + p)
    if problems:
        return 1
    return base.compare_structure(args, os.path.join(HERE, "quantized.golden"), "".join(sections),
                                  "quantized code's", "quantized")


def compile_cases(args):
    nvcc = base.nvcc_or_say_skip(args)
    if not nvcc:
        return base.SKIP
    with tempfile.TemporaryDirectory() as tmp:
        sources = [(CASES, False), (CASES, True)] + [(f, False) for f in optimized(args, tmp)]
        for i, (path, harness) in enumerate(sources):
            cu = os.path.join(tmp, "q%d.cu" % i)
            cmd = [args.ncd, "emit", "--cuda", path, "--all", "-o", cu] + (["--harness"] if harness else [])
            r = base.run(cmd, cwd=args.root)
            if r.returncode != 0:
                base.fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
            flags = ["-std=c++17", "-O1", "-Werror", "all-warnings"]
            for arch in ("80", "89", "90"):
                flags += ["-gencode", "arch=compute_%s,code=sm_%s" % (arch, arch)]
            out = os.path.join(tmp, "q%d" % i + ("" if harness else ".o"))
            cmd = [nvcc] + flags + (["-o", out] if harness else ["-c", "-o", out]) + [cu]
            r = base.run(cmd)
            if r.returncode != 0:
                base.fail("nvcc failed:\n%s\n%s" % (" ".join(cmd), (r.stdout + r.stderr)[-6000:]))
            what = os.path.basename(path) + (" --harness" if harness else "")
            print("ok: %s compiles for sm_80, sm_89 and sm_90" % what)
            if harness:
                continue
            # The instructions of the 8-bit tiles the file instantiates.
            with open(cu) as f:
                code = f.read()
            s8, fp8 = [], []
            if "ncd_gemm_tile_q8<0, 0," in code:
                s8.append(S8)
            if "ncd_gemm_tile_q8<1, 1," in code:
                fp8.append(E4M3)
            if "ncd_gemm_tile_q8<1, 2," in code:
                fp8.append(E4M3_E5M2)
            bf16 = [BF16] if "ncd_gemm_tile<false," in code else []  # weight-only int8: bf16 after the prologue
            expected = {"80": (s8 + bf16 + ([F16] if fp8 else []), fp8), "89": (s8 + bf16 + fp8, []),
                        "90": (s8 + bf16 + fp8, [])}
            for arch, (present, absent) in expected.items():
                ptx = os.path.join(tmp, "q%d_%s.ptx" % (i, arch))
                cmd = [nvcc, "-std=c++17", "-O1", "-arch=sm_" + arch, "--ptx", "-o", ptx, cu]
                r = base.run(cmd)
                if r.returncode != 0:
                    base.fail("nvcc --ptx failed:\n%s\n%s" % (" ".join(cmd), (r.stdout + r.stderr)[-6000:]))
                with open(ptx) as f:
                    text = f.read()
                for instruction in present:
                    if instruction not in text:
                        base.fail("%s: the PTX for sm_%s has no %s" % (what, arch, instruction))
                for instruction in absent:
                    if instruction in text:
                        base.fail("%s: the PTX for sm_%s has %s" % (what, arch, instruction))
                print("ok: %s: the PTX for sm_%s has %s" % (what, arch, ", ".join(present)))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--nvcc", default="nvcc")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden")
    g.add_argument("--update", action="store_true")
    sub.add_parser("compile")
    args = parser.parse_args()
    args.ncd = os.path.abspath(args.ncd)
    if args.command == "golden":
        return golden(args)
    return compile_cases(args)


if __name__ == "__main__":
    sys.exit(main())
