#!/usr/bin/env python3
"""Tests of `ncd emit --cuda` that need no GPU (see tests/cuda/CMakeLists.txt).

  compile FILE   emit every diagram of FILE into one .cu (--all) and compile it
                 with nvcc for sm_80 and sm_90 in one invocation: `-c` for the
                 plain variant, `-o` (compile and link) for --harness. Exit 77
                 (skipped) when nvcc is missing.
  golden         the structure of the attention kernels emitted for
                 tests/cuda/attention_streamed.ncd (kernel list, launches, masks,
                 the streamed loop) against attention_streamed.golden; --update
                 rewrites the expectation.
  errors         error paths and fallback notes, with their exact messages.
  optimized      `ncd optimize -O2 --no-verify` of the stdlib layers (OPTIMIZED) and
                 of attention's training steps (TRAINING_STEPS: forward and backward),
                 then `ncd emit --cuda --harness`: every scheduled kernel of the
                 optimized file must be a fused kernel (no fallback note for a
                 scheduled diagram); the files, with tests/cuda/cases/fused.ncd,
                 are compiled with one nvcc invocation (sm_80 and sm_90, -c).
                 A layer that cannot be optimized, written or emitted fails the test.
  golden-fused   the structure of the fused FFN kernels (kernel list, launches,
                 tiles, epilogue lines) against ffn_fused.golden; --update rewrites it.
  golden-routed  Mixtral's sparse MoE block (stdlib/std/moe.ncd) at small sizes:
                 the routing kernels and grouped GEMMs against moe_routed.golden
                 (--update rewrites it); no gather of a routed table is
                 materialised (no access kernel, a workspace far below one
                 [seq, top, ffn, hidden_size] tensor); lifted and runtime-sized
                 variants stay routed.
  compile-routed the same code (plain and --harness, and the lifted and
                 runtime-sized cases) compiled with nvcc for sm_80, sm_89 and
                 sm_90. Exit 77 (skipped) when nvcc is missing.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def compare_structure(args, expected_path, got, what, short):
    """Compares `got` with the golden file, or rewrites the file with --update."""
    if args.update:
        with open(expected_path, "w") as f:
            f.write(got)
        print("updated " + expected_path)
        return 0
    with open(expected_path) as f:
        expected = f.read()
    if got != expected:
        import difflib
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "expected", "got"))
        fail("the %s structure changed (run with --update if intended):\n" % what + diff)
    print("ok: %s structure matches" % short)
    return 0


def nvcc_or_say_skip(args):
    """The nvcc to use, or None after printing the SKIP line (the caller returns SKIP)."""
    nvcc = nvcc_path(args.nvcc)
    if not nvcc:
        print("SKIP: nvcc not found (%s)" % args.nvcc)
    return nvcc


def nvcc_path(name):
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def compile_file(args):
    nvcc = nvcc_or_say_skip(args)
    if not nvcc:
        return SKIP
    harness = args.variant == "harness"
    with tempfile.TemporaryDirectory() as tmp:
        cu = os.path.join(tmp, "out.cu")
        cmd = [args.ncd, "emit", "--cuda", args.file, "--all", "-o", cu]
        if harness:
            cmd.append("--harness")
        r = run(cmd, cwd=args.root)
        if r.returncode != 0:
            fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
        for note in r.stderr.splitlines():
            print(note)
        flags = ["-std=c++17", "-O1", "-Werror", "all-warnings",
                 "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
        out = os.path.join(tmp, "prog" if harness else "out.o")
        cmd = [nvcc] + flags + (["-o", out] if harness else ["-c", "-o", out]) + [cu]
        r = run(cmd)
        if r.returncode != 0:
            fail("nvcc failed on the code for %s:\n%s\n%s" % (args.file, " ".join(cmd), (r.stdout + r.stderr)[-6000:]))
        if not os.path.exists(out):
            fail("nvcc wrote no " + out)
        if harness:
            r = run([out, "--help"])
            if r.returncode != 2 or "usage:" not in r.stderr:
                fail("the harness's --help: status %d, %r" % (r.returncode, r.stderr))
    print("ok: %s (%s) compiles for sm_80 and sm_90" % (args.file, args.variant))
    return 0


# Lines of the generated file that make up the structure pinned by the golden test.
STRUCTURE = [
    (re.compile(r"^// (streamed attention|mask:|GEMM|fallback)"), None),
    (re.compile(r"^\s*__device__ bool (live|full)\(.*"), None),
    (re.compile(r"^__global__ void (__launch_bounds__\(\d+\) )?(ncd_k\d+_\w+)\("), lambda m: "kernel " + m.group(2)),
    (re.compile(r'^extern "C" int (\w+)\('), lambda m: "host " + m.group(1)),
    (re.compile(r"^\s*(\w+)<<<([^>]*)>>>"), lambda m: "  launch %s<<<%s>>>" % (m.group(1), m.group(2).replace(", stream", ""))),
    (re.compile(r"^\s*// fallback: .*"), None),
]
LOOP = re.compile(r"for \(int64_t kt|kt_begin|kt_end|ncd_cp_async_(commit|wait)|__syncthreads|mask\.(live|full|keep)|"
                  r"ncd_mma|exp2f|__shfl_xor_sync|store\(|row_max\[h\] = |row_sum\[h\] \*= ")


def structure(code):
    lines = []
    for line in code.splitlines():
        for pattern, form in STRUCTURE:
            m = pattern.match(line)
            if m:
                lines.append(form(m) if form else line.strip())
                break
    # The streamed loop of the attention block (the prelude's template).
    start = code.find("__device__ __forceinline__ void ncd_attention_block(")
    end = code.find("\n}\n", start)
    if start < 0 or end < 0:
        lines.append("(no ncd_attention_block)")
    else:
        lines.append("ncd_attention_block:")
        for line in code[start:end].splitlines():
            if LOOP.search(line):
                lines.append("  " + line.strip())
    return "\n".join(lines) + "\n"


def golden(args):
    expected_path = os.path.join(HERE, "attention_streamed.golden")
    cmd = [args.ncd, "emit", "--cuda", "tests/cuda/attention_streamed.ncd", "--all", "--arch", "sm_90", "-o", "-"]
    r = run(cmd, cwd=args.root)
    if r.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
    if r.stderr:
        fail("unexpected notes (every diagram of the file should be a fused kernel):\n" + r.stderr)
    got = structure(r.stdout)
    return compare_structure(args, expected_path, got, "attention code's", "attention")


# (arguments, exit status, exact stderr, a string stdout must contain or None)
ERROR_CASES = [
    (["emit", "--cuda", "examples/attention.ncd", "--diagram", "Atention"], 1,
     "ncd: error: examples/attention.ncd has no diagram 'Atention'; did you mean 'Attention'?\n", None),
    (["emit", "--cuda", "stdlib/std/nn.ncd"], 1,
     "ncd: error: stdlib/std/nn.ncd defines several diagrams (Linear, FFN, SwiGLU, LayerNorm, RMSNorm, Embedding); "
     "choose one with --diagram NAME\n", None),
    (["emit", "--cuda", "--arch", "sm_70", "examples/attention.ncd"], 2,
     "ncd emit: error: unknown --arch 'sm_70'; expected sm_80 or sm_90\n", None),
    (["emit", "examples/attention.ncd"], 2, "ncd emit: error: choose a target: --cuda (or --backend NAME)\n", None),
    (["emit", "--cuda", "--all", "--diagram", "Attention", "examples/attention.ncd"], 2,
     "ncd emit: error: --all and --diagram exclude each other\n", None),
    # `--torch DIR`: a Python package (docs/TORCH.md); what it cannot be combined with, names it cannot take.
    (["emit", "--torch", "pk", "-o", "x.cu", "tests/cuda/cases/torch.ncd", "--all"], 2,
     "ncd emit: error: --torch DIR and -o exclude each other (the package is the output)\n", None),
    (["emit", "--torch", "pk", "--harness", "tests/cuda/cases/torch.ncd", "--all"], 2,
     "ncd emit: error: --torch writes no harness: leave out --harness\n", None),
    (["emit", "--backend", "cpu", "--torch", "pk", "tests/cuda/cases/torch.ncd", "--all"], 2,
     "ncd emit: error: --torch packages the cuda backend's code, not cpu's\n", None),
    (["emit", "--torch", "1-bad", "tests/cuda/cases/torch.ncd", "--all"], 1,
     "ncd emit: error: --torch: '1-bad' is no Python package name (letters, digits and _, not a keyword)\n", None),
    (["emit", "--torch", "no/such/pkg", "tests/cuda/cases/torch.ncd", "--all"], 1,
     "ncd emit: error: --torch no/such/pkg: cannot create the folder (No such file or directory)\n", None),
    # Host functions: a diagram's workspace query must not take another diagram's name.
    (["emit", "--cuda", "tests/cuda/cases/names.ncd", "--all"], 1,
     "ncd emit: error: cannot generate 'Scale_workspace': its host functions would be named like those of 'Scale' "
     "(ncd_Scale_workspace)\n", None),
    (["emit", "--cuda", "tests/cuda/cases/names.ncd", "--diagram", "Scale_workspace"], 0, "",
     'extern "C" size_t ncd_Scale_workspace_workspace('),
    # Runtime sizes (docs/CUDA.md): arguments of the host function; a param's axis must have a size.
    (["emit", "--cuda", "tests/cuda/cases/runtime_errors.ncd", "--diagram", "Table"], 1,
     "ncd emit: error: cannot generate 'Table': param 'P' of 'Table': axis 'n' has no size; set it with -D n=SIZE\n",
     None),
    (["emit", "--cuda", "tests/cuda/cases/runtime_errors.ncd", "--diagram", "Table", "-D", "n=10"], 0, "",
     'extern "C" int ncd_Table('),
    (["emit", "--cuda", "tests/cuda/cases/runtime_errors.ncd", "--diagram", "Wide"], 0,
     "ncd emit: note: 'Wide': the head widths 'd' and 'e' must have sizes (-D) for the attention kernel: its "
     "fragments are compile-time; its operations run as separate kernels\n", "int64_t n_q, int64_t n_k, int64_t n_d,"),
    (["emit", "--cuda", "stdlib/std/transformer.ncd", "--diagram", "GPT2Block", "--runtime", "seqq"], 1,
     "ncd emit: error: --runtime seqq: no axis named 'seqq'; did you mean 'seq'?\n", None),
    (["emit", "--cuda", "stdlib/std/transformer.ncd", "--diagram", "GPT2Block", "--runtime", "model"], 1,
     "ncd emit: error: --runtime model: axis 'model' is derived; make the axes it is derived from runtime sizes "
     "instead\n", None),
    (["emit", "--cuda", "stdlib/std/transformer.ncd", "--diagram", "GPT2Block", "--runtime", "seq", "-D", "seq=512"],
     0, "", "__nv_bfloat16 *out_Y, int64_t n_seq, void *workspace, size_t workspace_bytes, cudaStream_t stream) {"),
    (["emit", "--cuda", "tests/cuda/cases/runtime.ncd", "--diagram", "Layer"], 0, "",
     "__nv_bfloat16 *out_Y, int64_t n_batch, int64_t n_seq, void *workspace, size_t workspace_bytes, "
     "cudaStream_t stream) {"),
    (["emit", "--cuda", "tests/cuda/cases/runtime.ncd", "--diagram", "Softcap"], 0, "",
     "(static_cast<float>((q - k)) < static_cast<float>((static_cast<float>(ncd_n.k) / 2.0f))"),
    (["emit", "--cuda", "tests/cuda/cases/fallback.ncd", "--all"], 0,
     "ncd emit: note: tests/cuda/cases/fallback.ncd:8:13: generic kernel for contraction 'Y' in 'Product' "
     "(operands are f32 and f32; tensor cores take two bf16, two f16, f32 with bf16, two i8, or two f8e4m3/f8e5m2)\n"
     "ncd emit: note: tests/cuda/cases/fallback.ncd:12:17: 'Scheduled' has a schedule but is not a fused kernel the "
     "cuda backend knows (it has more than one contraction, reduction or normalisation ('L' and 'M')); its operations "
     "run as separate kernels\n",
     "// fallback: generic kernel for contraction 'Y' in 'Product'"),
    (["emit", "--cuda", "tests/cuda/cases/fused.ncd", "--diagram", "Layer"], 0,
     "ncd emit: note: tests/cuda/cases/fused.ncd:94:19: 'Other' has a schedule but is not a fused kernel the cuda "
     "backend knows (it has more than one contraction, reduction or normalisation ('%2' and '%3')); its operations "
     "run as separate kernels\n",
     "// fused kernel for 'Up' (group seq by 64, group hidden by 128, stream model by 32): contract %7, add T, gelu %9, "
     "add H; stores H, T"),
    (["emit", "--cuda", "tests/cuda/cases/wide_heads.ncd", "--arch", "sm_80"], 0, "",
     "stream k by 16 (the schedule says 128 and 96; rounded to multiples of 16 that fit)"),
]


# (file, diagram) optimized and emitted by the `optimized` test.
OPTIMIZED = [
    ("stdlib/std/nn.ncd", "FFN"), ("stdlib/std/nn.ncd", "SwiGLU"), ("stdlib/std/nn.ncd", "LayerNorm"),
    ("stdlib/std/nn.ncd", "RMSNorm"), ("stdlib/std/attention.ncd", "MultiHeadAttention"),
    ("stdlib/std/attention.ncd", "GroupedQueryAttention"), ("stdlib/std/transformer.ncd", "GPT2Block"),
    ("stdlib/std/transformer.ncd", "LlamaBlock"), ("stdlib/std/attention.ncd", "SoftcapAttention"),
    ("stdlib/std/attention.ncd", "SlidingWindowSoftcapAttention"), ("stdlib/std/attention.ncd", "ALiBiAttention"),
    ("stdlib/std/attention.ncd", "PrefixLMAttention"), ("stdlib/std/attention.ncd", "DocumentAttention"),
    ("stdlib/std/attention.ncd", "T5Attention"), ("stdlib/std/ssm.ncd", "SelectiveScan"),
]
SCHEDULED = re.compile(r"^schedule (\w+)", re.M)


# Training steps (`ncd grad --save flash`): the forward pass (streamed attention
# that also writes the rows' logsumexp) and the backward pass (two streamed grid
# kernels, FlashAttention-2's dK/dV and dQ), optimized and emitted as above.
TRAINING_STEPS = [("stdlib/std/attention.ncd", "CausalAttention", []), ("stdlib/std/attention.ncd", "DocumentAttention", []),
                  ("stdlib/std/attention.ncd", "T5Attention", ["--wrt", "Q,K,V"]),
                  ("stdlib/std/attention.ncd", "MultiHeadAttention", [])]

# Optimized layers also emitted with `--runtime seq` (docs/CUDA.md, "Runtime sizes"): the same fused kernels.
RUNTIME_OPTIMIZED = [("stdlib/std/transformer.ncd", "GPT2Block"), ("stdlib/std/transformer.ncd", "LlamaBlock")]


def optimize_and_emit(args, tmp, path, diagram, harness=True, runtime=None):
    """Returns (the .cu file, the scheduled diagrams); a layer that cannot be optimized, written or emitted fails.
    With `runtime` (an axis), the optimized file of an earlier call is emitted again with that runtime size."""
    ncd_file = os.path.join(tmp, diagram + ".ncd")
    if not runtime:
        r = run([args.ncd, "optimize", path, "--diagram", diagram, "-O2", "--no-verify", "-o", ncd_file], cwd=args.root)
        if r.returncode != 0:
            fail("ncd optimize %s --diagram %s exited %d:\n%s" % (path, diagram, r.returncode, r.stderr))
    with open(ncd_file) as f:
        scheduled = SCHEDULED.findall(f.read())
    cu = os.path.join(tmp, diagram + ("_runtime" if runtime else "") + ".cu")
    cmd = [args.ncd, "emit", "--cuda", ncd_file, "--diagram", diagram, "-o", cu] + (["--harness"] if harness else [])
    cmd += ["--runtime", runtime] if runtime else []
    r = run(cmd, cwd=args.root)
    if r.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
    for note in r.stderr.splitlines():
        if "has a schedule but is not a fused kernel" in note or "attention kernel" in note:
            fail("%s %s: a scheduled kernel fell back:\n%s" % (path, diagram, note))
        # Every product of these layers runs on tensor cores (the generic kernel was
        # measured 140x slower than the tensor-core GEMM on an H200: bench/results/cuda_h200.md).
        if "generic kernel for contraction" in note:
            fail("%s %s: a contraction fell back to the generic kernel:\n%s" % (path, diagram, note))
        print("(note) " + note)
    with open(cu) as f:
        code = f.read()
    for name in scheduled:
        if ("fused kernel for '%s'" % name not in code and "streamed attention '%s'" % name not in code and
                "streamed grid '%s'" % name not in code):
            fail("%s %s: the scheduled kernel '%s' is not one fused kernel in the generated code" % (path, diagram, name))
    return cu, scheduled


def optimized(args):
    nvcc = nvcc_path(args.nvcc)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for path, diagram in OPTIMIZED:
            cu, scheduled = optimize_and_emit(args, tmp, path, diagram)
            files.append(cu)
            print("ok: %s %s: %d scheduled kernels, all fused" % (path, diagram, len(scheduled)))
        for path, diagram, extra in TRAINING_STEPS:
            step = os.path.join(tmp, diagram + "_step.ncd")
            r = run([args.ncd, "grad", path, "--diagram", diagram, "--save", "flash", "-o", step] + extra, cwd=args.root)
            if r.returncode != 0:
                fail("ncd grad %s --diagram %s exited %d:\n%s" % (path, diagram, r.returncode, r.stderr))
            for part in ("forward", "backward"):
                cu, scheduled = optimize_and_emit(args, tmp, step, diagram + "_" + part)
                files.append(cu)
                print("ok: %s %s_%s: %d scheduled kernels, all fused" % (path, diagram, part, len(scheduled)))
        for path, diagram in RUNTIME_OPTIMIZED:
            cu, scheduled = optimize_and_emit(args, tmp, path, diagram, runtime="seq")
            with open(cu) as f:
                if "int64_t n_seq, void *workspace, size_t workspace_bytes, cudaStream_t stream)" not in f.read():
                    fail("%s %s --runtime seq: the host function takes no n_seq" % (path, diagram))
            files.append(cu)
            print("ok: %s %s --runtime seq: %d scheduled kernels, all fused" % (path, diagram, len(scheduled)))
        cu = os.path.join(tmp, "fused_cases.cu")
        cmd = [args.ncd, "emit", "--cuda", "tests/cuda/cases/fused.ncd", "--all", "--harness", "-o", cu]
        r = run(cmd, cwd=args.root)
        if r.returncode != 0:
            fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
        files.append(cu)
        if not nvcc:
            print("SKIP: nvcc not found (%s); the code was generated but not compiled" % args.nvcc)
            return SKIP
        flags = ["-std=c++17", "-O1", "-Werror", "all-warnings",
                 "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
        cmd = [nvcc] + flags + ["-c"] + [os.path.basename(f) for f in files]
        r = run(cmd, cwd=tmp)
        if r.returncode != 0:
            fail("nvcc failed:\n%s\n%s" % (" ".join(cmd), (r.stdout + r.stderr)[-6000:]))
        for f in files:
            if not os.path.exists(f[:-3] + ".o"):
                fail("nvcc wrote no object for " + f)
    print("ok: %d files compile for sm_80 and sm_90" % len(files))
    return 0


# The kernel-plan contract (docs/COST.md, "Kernel plans"): the kernels and
# tiles `ncd optimize -O2 --explain` announces are those `ncd emit --cuda`
# builds, for every stdlib layer and example, at the default sizes and at
# sizes the tiles do not divide; and `ncd cost` prices the optimized GPT-2
# below the unfused one.
AGREEMENT = OPTIMIZED + [
    ("tests/cuda/cases/heads.ncd", "Heads"), ("tests/cuda/cases/heads.ncd", "T5Heads"),
    ("stdlib/std/attention.ncd", "Attention"), ("stdlib/std/attention.ncd", "CausalAttention"),
    ("stdlib/std/attention.ncd", "SlidingWindowAttention"), ("stdlib/std/attention.ncd", "CausalMultiHeadAttention"),
    ("examples/attention.ncd", "Attention"), ("examples/multihead.ncd", "MultiHead"), ("examples/gpt2.ncd", "Block"),
    ("examples/gpt2.ncd", "Model"), ("tests/cuda/cases/quantized.ncd", "FP8Linear"),
    ("tests/cuda/cases/quantized.ncd", "W8A16Linear"),
]
AGREEMENT_SIZES = [[], ["-D", "seq=1000"], ["-D", "ctx=1000"], ["-D", "q=3000", "-D", "k=3000"]]
ANNOUNCED = re.compile(r"tile: tiles of '(\w+)'(?: where '\w+' calls it)?(?: on [\w-]+)?: ([^;]*);")


def agreement(args):
    with tempfile.TemporaryDirectory() as tmp:
        checked = 0
        for path, diagram in AGREEMENT:
            for sizes in AGREEMENT_SIZES:
                defines = [x for x in sizes if "=" not in x or x.split("=")[0] in open(os.path.join(args.root, path)).read()]
                if sizes and len(defines) != len(sizes):
                    continue
                ncd_file = os.path.join(tmp, diagram + ".ncd")
                cmd = [args.ncd, "optimize", path, "--diagram", diagram, "-O2", "--explain", "--no-verify", "-o", ncd_file] + sizes
                r = run(cmd, cwd=args.root)
                if r.returncode != 0:
                    if "unknown axis" in r.stderr or "no axis" in r.stderr:
                        continue
                    fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
                announced = {}
                for name, tiles in ANNOUNCED.findall(r.stderr):
                    if not tiles.startswith("none"):
                        announced[name] = tiles  # the last word on a kernel wins (in context after alone)
                with open(ncd_file) as f:
                    text = f.read()
                scheduled = set(SCHEDULED.findall(text))
                cu = os.path.join(tmp, diagram + ".cu")
                cmd = [args.ncd, "emit", "--cuda", ncd_file, "--diagram", diagram, "-o", cu]
                r = run(cmd, cwd=args.root)
                if r.returncode != 0:
                    fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
                for note in r.stderr.splitlines():
                    if "has a schedule but is not a fused kernel" in note:
                        fail("%s %s %s: announced as one kernel, emitted apart:\n%s" % (path, diagram, sizes, note))
                with open(cu) as f:
                    code = f.read()
                if "(the schedule says" in code:
                    fail("%s %s %s: the emitter changed a schedule's tiles" % (path, diagram, sizes))
                for name, tiles in announced.items():
                    if name not in scheduled:
                        continue
                    if "fused kernel for '%s' (%s)" % (name, tiles) in code:
                        continue
                    # An attention kernel: its group of queries and stream of keys (axis and size), as announced.
                    built = re.findall(r"streamed attention \(FlashAttention-2 style\): (group \w+ by \d+), (stream \w+ by \d+)", code)
                    asked = re.findall(r"(?:group|stream) \w+ by \d+", tiles)
                    if "streamed attention '%s'" % name in code and any(q in asked and k in asked for q, k in built):
                        continue
                    fail("%s %s %s: '%s' was announced with %s; the .cu has no such kernel" % (path, diagram, sizes, name, tiles))
                checked += 1
        print("ok: %d optimize/emit pairs agree" % checked)
        # The cost of the optimized GPT-2 (block and 12 layers) is below the unfused one.
        for diagram in ("Block", "Model"):
            out = os.path.join(tmp, "gpt2_%s.ncd" % diagram)
            r = run([args.ncd, "optimize", "examples/gpt2.ncd", "--diagram", diagram, "-O2", "--no-verify", "-o", out], cwd=args.root)
            if r.returncode != 0:
                fail(r.stderr)
            times = []
            for extra in ([], ["--unfused"]):
                r = run([args.ncd, "cost", out, "--diagram", diagram, "--json"] + extra, cwd=args.root)
                if r.returncode != 0:
                    fail(r.stderr)
                import json
                times.append(json.loads(r.stdout)["baseline"]["total"]["time"])
            if not times[0] < times[1]:
                fail("GPT-2 %s: optimized %.3g s is not below unfused %.3g s" % (diagram, times[0], times[1]))
            print("ok: GPT-2 %s: optimized %.3g ms, unfused %.3g ms" % (diagram, times[0] * 1e3, times[1] * 1e3))
    return 0


FUSED_STRUCTURE = [
    (re.compile(r"^// (fused kernel|GEMM|tiles|fallback)"), None),
    (re.compile(r"^__global__ void (__launch_bounds__\(\d+\) )?(ncd_k\d+_\w+)\("), lambda m: "kernel " + m.group(2)),
    (re.compile(r'^extern "C" int (\w+)\('), lambda m: "host " + m.group(1)),
    (re.compile(r"^\s*(\w+)<<<([^>]*)>>>"), lambda m: "  launch %s<<<%s>>>" % (m.group(1), m.group(2).replace(", stream", ""))),
    (re.compile(r"^\s*// fallback: .*"), None),
]


def fused_structure(code, patterns=None):
    """The pinned lines (FUSED_STRUCTURE, or `patterns`), and in each fused GEMM kernel the epilogue (after the
    bounds test)."""
    lines = []
    in_gemm = epilogue = False
    for line in code.splitlines():
        if epilogue:
            if line.strip() == "}":
                epilogue = False
            else:
                lines.append("    " + line.strip())
            continue
        if line == "}":
            in_gemm = False
        for pattern, form in patterns or FUSED_STRUCTURE:
            m = pattern.match(line)
            if m:
                lines.append(form(m) if form else line.strip())
                if lines[-1].startswith("kernel ") and "_gemm_fused_" in lines[-1]:
                    in_gemm = True
                break
        if in_gemm and "continue;" in line:
            epilogue = True
            lines.append("  epilogue:")
    return "\n".join(lines) + "\n"


def golden_fused(args):
    expected_path = os.path.join(HERE, "ffn_fused.golden")
    with tempfile.TemporaryDirectory() as tmp:
        cu, _ = optimize_and_emit(args, tmp, "stdlib/std/nn.ncd", "FFN", harness=False)
        if not cu:
            fail("ncd optimize could not write FFN")
        with open(cu) as f:
            got = fused_structure(f.read())
    return compare_structure(args, expected_path, got, "fused FFN code's", "fused FFN")


# Mixtral's block at sizes small enough to read (tests/cuda/moe_routed.golden).
ROUTED_SIZES = ["-D", "seq=64", "-D", "hidden_size=64", "-D", "ffn=96"]
ROUTED_EMIT = ["emit", "--cuda", "stdlib/std/moe.ncd", "--diagram", "MixtralSparseMoeBlock"] + ROUTED_SIZES
# The same block called with a batch axis, and with runtime sizes (tests/cuda/cases/moe.ncd).
# (arguments, the exact notes): f32 experts take the FMA kernel, reported as a fallback.
ROUTED_CASES = [(["emit", "--cuda", "tests/cuda/cases/moe.ncd", "--all"],
                 "ncd emit: note: tests/cuda/cases/moe.ncd:22:30: FMA kernel for routed contraction 'H' in 'Float' "
                 "(the table is f32; tensor cores take a bf16 or f16 table)\n")]
ROUTED_STRUCTURE = [
    (re.compile(r"^// (routed GEMM|routing:|the rows of A|fallback)"), None),
    (re.compile(r"^__global__ void (__launch_bounds__\(\d+\) )?(ncd_k\d+_\w+)\("), lambda m: "kernel " + m.group(2)),
    (re.compile(r'^extern "C" int (\w+)\('), lambda m: "host " + m.group(1)),
    (re.compile(r"^\s*// (.* = routed contract.*|routing by .*|the rows of A .*)$"), lambda m: "  // " + m.group(1)),
    (re.compile(r"^\s*(\w+)<<<([^>]*)>>>"), lambda m: "  launch %s<<<%s>>>" % (m.group(1), m.group(2).replace(", stream", ""))),
    (re.compile(r"^\s*(ncd_gemm_tile<.*|if \(!ncd_route_tile.*|ncd_route_(count|scan|place)<[^(]*)"), lambda m: "    " + m.group(1)),
]


def routed_structure(code):
    lines = []
    for line in code.splitlines():
        for pattern, form in ROUTED_STRUCTURE:
            m = pattern.match(line)
            if m:
                lines.append(form(m) if form else line.strip())
                break
    return "\n".join(lines) + "\n"


def routed_checks(code, what, gathered_bytes=None):
    """Problems of emitted code that should run its routed contractions as grouped GEMMs."""
    problems = []
    if re.search(r"= access$", code, re.M):
        problems.append("%s: an access kernel runs (the gathered table is materialised):\n%s" % (
            what, "\n".join(l for l in code.splitlines() if l.strip().endswith("= access"))))
    if "routed contract" not in code or "ncd_route_place<" not in code:
        problems.append("%s: no grouped GEMM or routing kernel" % what)
    if "// fallback" in code.replace("// fallback: FMA kernel for routed contraction", ""):
        problems.append("%s: a fallback:\n%s" % (what, "\n".join(l for l in code.splitlines() if "// fallback" in l)))
    if gathered_bytes is not None:
        m = re.search(r"_workspace\([^)]*\) \{\n(?:.*\n)*?  return static_cast<size_t>\((\d+)\);", code)
        if not m:
            problems.append("%s: no constant workspace size" % what)
        elif int(m.group(1)) >= gathered_bytes:
            problems.append("%s: the workspace (%s bytes) holds a gathered [seq, top, ffn, hidden_size] (%d bytes)" % (
                what, m.group(1), gathered_bytes))
    return problems


def golden_routed(args):
    r = run([args.ncd] + ROUTED_EMIT + ["-o", "-"], cwd=args.root)
    if r.returncode != 0 or r.stderr:
        fail("emit of MixtralSparseMoeBlock: exit %d\n%s" % (r.returncode, r.stderr))
    # One gathered w1 alone would be seq * top * ffn * hidden_size bf16 values.
    problems = routed_checks(r.stdout, "MixtralSparseMoeBlock", gathered_bytes=64 * 2 * 96 * 64 * 2)
    # The three routed contractions share one routing of I.
    if r.stdout.count("ncd_route_count<") != 1 or len(re.findall(r"= routed contract", r.stdout)) != 3:
        problems.append("expected one routing and three grouped GEMMs")
    for case, notes in ROUTED_CASES:
        c = run([args.ncd] + case + ["-o", "-"], cwd=args.root)
        if c.returncode != 0 or c.stderr != notes:
            problems.append("%s: exit %d\n%r\nexpected notes %r" % (" ".join(case), c.returncode, c.stderr, notes))
        else:
            problems += routed_checks(c.stdout, " ".join(case))
    for p in problems:
        print("FAIL: " + p)
    if problems:
        return 1
    return compare_structure(args, os.path.join(HERE, "moe_routed.golden"), routed_structure(r.stdout),
                             "routed MoE code's", "routed MoE")


def compile_routed(args):
    nvcc = nvcc_or_say_skip(args)
    if not nvcc:
        return SKIP
    flags = ["-std=c++17", "-O1", "-Werror", "all-warnings"]
    for arch in ("80", "89", "90"):
        flags += ["-gencode", "arch=compute_%s,code=sm_%s" % (arch, arch)]
    with tempfile.TemporaryDirectory() as tmp:
        emits = [(ROUTED_EMIT, False), (ROUTED_EMIT, True)] + [(case, False) for case, _ in ROUTED_CASES]
        for i, (emit, harness) in enumerate(emits):
            cu = os.path.join(tmp, "moe%d.cu" % i)
            cmd = [args.ncd] + emit + ["-o", cu] + (["--harness"] if harness else [])
            r = run(cmd, cwd=args.root)
            if r.returncode != 0:
                fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, r.stderr))
            out = os.path.join(tmp, "moe%d" % i + ("" if harness else ".o"))
            cmd = [nvcc] + flags + (["-o", out] if harness else ["-c", "-o", out]) + [cu]
            r = run(cmd)
            if r.returncode != 0:
                fail("nvcc failed:\n%s\n%s" % (" ".join(cmd), (r.stdout + r.stderr)[-6000:]))
            print("ok: %s%s compiles for sm_80, sm_89 and sm_90" % (" ".join(emit[2:]), " --harness" if harness else ""))
    return 0


def runtime_sizes(args):
    """Runtime sizes: every kernel that reads one takes the size struct and every launch of it passes it;
    all kernels stay fused; with -D the file has no runtime size at all."""
    failures = 0
    base = [args.ncd, "emit", "--cuda", "tests/cuda/cases/runtime.ncd", "--all", "--harness", "-o", "-"]
    r = run(base, cwd=args.root)
    code = r.stdout
    kernels = re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(ncd_k\w+)\(([^)]*)\)", code)
    problems = []
    if r.returncode != 0 or r.stderr:
        problems.append("emit failed or noted: %s" % r.stderr)
    if not kernels:
        problems.append("no kernels found")
    for name, params in kernels:
        body = code[code.index(name + "("):]
        body = body[:body.index("\n}\n")]
        sized = "ncd_n." in body
        if sized != params.startswith("const NcdSizes ncd_n"):
            problems.append("%s reads runtime sizes %s but its parameters are (%s)" % (name, sized, params))
        for launch in re.findall(re.escape(name) + r"<<<[^;]*>>>\(([^;]*)\);", code):
            if sized != launch.startswith("ncd_n"):
                problems.append("a launch of %s passes (%s)" % (name, launch))
    if "// fallback" in code.replace("// fallback: FMA kernel for routed contraction", ""):
        problems.append("a kernel fell back:\n" + "\n".join(l for l in code.splitlines() if "// fallback" in l))
    fixed = run(base + ["-D", "batch=2", "-D", "seq=256", "-D", "q=256", "-D", "k=256"], cwd=args.root)
    if fixed.returncode != 0 or re.search(r"\bncd_n\b|NcdSizes", fixed.stdout):
        problems.append("with -D the file still has runtime sizes (or failed: %s)" % fixed.stderr)
    for p in problems:
        failures += 1
        print("FAIL: runtime sizes: " + p)
    return failures


def errors(args):
    failures = 0
    for arguments, status, stderr, stdout_part in ERROR_CASES:
        r = run([args.ncd] + arguments + ([] if "-o" in arguments else ["-o", "-"]), cwd=args.root)
        problems = []
        if r.returncode != status:
            problems.append("exit %d, expected %d" % (r.returncode, status))
        if r.stderr != stderr:
            problems.append("stderr:\n  got:      %r\n  expected: %r" % (r.stderr, stderr))
        if stdout_part is not None and stdout_part not in r.stdout:
            problems.append("stdout lacks %r" % stdout_part)
        if status != 0 and r.stdout:
            problems.append("wrote to stdout on failure")
        if problems:
            failures += 1
            print("FAIL: ncd %s\n  %s" % (" ".join(arguments), "\n  ".join(problems)))
    # A failing emit leaves no file behind.
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.cu")
        run([args.ncd, "emit", "--cuda", "tests/cuda/cases/runtime_errors.ncd", "--diagram", "Table", "-o", out],
            cwd=args.root)
        if os.path.exists(out):
            failures += 1
            print("FAIL: a failing emit wrote " + out)
        # Deterministic output.
        a = run([args.ncd, "emit", "--cuda", "stdlib/std/transformer.ncd", "--all", "--harness", "-o", "-"], cwd=args.root)
        b = run([args.ncd, "emit", "--cuda", "stdlib/std/transformer.ncd", "--all", "--harness", "-o", "-"], cwd=args.root)
        if a.returncode != 0 or a.stdout != b.stdout:
            failures += 1
            print("FAIL: two emits of transformer.ncd differ (or failed: %s)" % a.stderr)
    failures += runtime_sizes(args)
    if failures:
        return 1
    print("ok: %d error cases" % len(ERROR_CASES))
    return 0


# Drives the host functions of tests/cuda/cases/runtime.ncd on the CPU: each
# call below must return before anything reaches a device (none is needed).
HOST_DRIVER = r"""
#include <cstdio>
int main() {
  int failures = 0;
  auto expect = [&](const char *what, long long got, long long want) {
    if (got != want) {
      std::printf("FAIL: %s: got %lld, expected %lld\n", what, got, want);
      ++failures;
    }
  };
  using T = __nv_bfloat16;
  T *a = reinterpret_cast<T *>(uintptr_t{1} << 20);  // aligned; never read
  T *odd = reinterpret_cast<T *>((uintptr_t{1} << 20) + 2);
  char *ws = reinterpret_cast<char *>(uintptr_t{1} << 24);
  const long long need = static_cast<long long>(ncd_Layer_workspace(2, 100));
  expect("Layer needs a workspace", need > 0, 1);
  expect("a larger batch needs more", static_cast<long long>(ncd_Layer_workspace(3, 100)) > need, 1);
  expect("the query of a size below 1", static_cast<long long>(ncd_Layer_workspace(0, 100)), 0);
  expect("a workspace one byte short", ncd_Layer(a, a, a, a, a, a, a, 2, 100, ws, need - 1, nullptr),
         cudaErrorInvalidValue);
  expect("no workspace", ncd_Layer(a, a, a, a, a, a, a, 2, 100, nullptr, 0, nullptr), cudaErrorInvalidValue);
  expect("a misaligned input", ncd_Layer(odd, a, a, a, a, a, a, 2, 100, ws, need, nullptr),
         cudaErrorMisalignedAddress);
  expect("a misaligned param", ncd_Layer(a, a, a, odd, a, a, a, 2, 100, ws, need, nullptr),
         cudaErrorMisalignedAddress);
  expect("a misaligned output", ncd_Layer(a, a, a, a, a, a, odd, 2, 100, ws, need, nullptr),
         cudaErrorMisalignedAddress);
  expect("a misaligned workspace", ncd_Layer(a, a, a, a, a, a, a, 2, 100, ws + 8, need, nullptr),
         cudaErrorMisalignedAddress);
  expect("a size below 1", ncd_Layer(a, a, a, a, a, a, a, 2, 0, ws, need, nullptr), cudaErrorInvalidValue);
  expect("attention needs no workspace", static_cast<long long>(ncd_Causal_workspace(1000, 777)), 0);
  expect("attention, misaligned K", ncd_Causal(a, odd, a, a, 1000, 777, nullptr, 0, nullptr),
         cudaErrorMisalignedAddress);
  if (failures == 0) std::printf("ok: workspace query, workspace size, alignment and size checks\n");
  return failures == 0 ? 0 : 1;
}
"""


def host_api(args):
    """The host functions' checks, run on the CPU: workspace, alignment, sizes."""
    nvcc = nvcc_or_say_skip(args)
    if not nvcc:
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        cu = os.path.join(tmp, "host.cu")
        r = run([args.ncd, "emit", "--cuda", "tests/cuda/cases/runtime.ncd", "--all", "-o", cu], cwd=args.root)
        if r.returncode != 0:
            fail("emit failed: " + r.stderr)
        with open(cu) as f:
            code = f.read()
        # Nothing is allocated per call; shared-memory limits are raised once (in the helper).
        for word in ("cudaMallocAsync", "cudaFreeAsync", "cudaMalloc("):
            if word in code:
                fail("the host code calls " + word)
        if code.count("cudaFuncSetAttribute(") != 1 or "ncd_smem_limit(" not in code.split("extern \"C\"", 1)[1]:
            fail("cudaFuncSetAttribute is not called through ncd_smem_limit alone")
        with open(cu, "a") as f:
            f.write(HOST_DRIVER)
        exe = os.path.join(tmp, "host")
        r = run([nvcc, "-std=c++17", "-O1", "-arch=sm_80", "-o", exe, cu], cwd=args.root)
        if r.returncode != 0:
            fail("nvcc failed:\n" + r.stdout + r.stderr)
        r = run([exe], cwd=args.root)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            fail("the host checks failed:\n" + r.stderr)
    return 0


# Runs in the folder that holds the package `tp` of tests/cuda/cases/torch.ncd,
# with /usr/bin/python3 and Debian's CPU-only torch: everything a call checks
# before it needs a GPU, with the exact messages.
TORCH_SCRIPT = r"""
import sys
import torch
import tp

failures = []


def expect(call, kind, message):
    try:
        call()
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ != kind or str(e) != message:
            failures.append("got %s: %s\n  expected %s: %s" % (type(e).__name__, e, kind, message))
        return
    failures.append("no error; expected %s: %s" % (kind, message))


bf = torch.bfloat16
X = torch.zeros(5, 64, dtype=bf)
v = torch.zeros(7, dtype=bf)
g = torch.zeros(64, dtype=bf)
where = ("move it with .cuda()" if torch.cuda.is_available() else "this machine has no CUDA device")
expect(lambda: tp.Spread(v), "ValueError", "Spread: no input carries the size of m: give sizes={'m': N}")
expect(lambda: tp.Spread(v, sizes={"m": 3, "q": 1}), "ValueError", "Spread: sizes= has q; it takes m")
expect(lambda: tp.Spread(v, sizes={"m": 0}), "ValueError", "Spread: the size of 'm' is 0; it must be at least 1")
expect(lambda: tp.Spread(v, sizes={"m": 3}), "ValueError",
       "Spread: input 'X' is on cpu; the kernels run on CUDA tensors (%s)" % where)
expect(lambda: tp.Stats(X, torch.zeros(64)), "TypeError",
       "Stats: input 'lambda' must be torch.bfloat16 (bf16), not torch.float32")
expect(lambda: tp.Stats(X, torch.zeros(32, dtype=bf)), "ValueError",
       "Stats: input 'lambda' has shape [32]; expected [64]")
expect(lambda: tp.Stats(X, [1.0] * 64), "TypeError", "Stats: input 'lambda' must be a torch.Tensor, not list")
expect(lambda: tp.Stats(torch.zeros(64, 5, dtype=bf).t(), g), "ValueError",
       "Stats: input 'X' is not contiguous (the kernels read dense row-major tensors): pass X.contiguous()")
expect(lambda: tp.Scale(X), "ValueError", "Scale: 0 params given; it takes 1 (g)")
expect(lambda: tp.Scale(X, {"h": g}), "ValueError", "Scale: params missing g; unknown h")
expect(lambda: tp.Scale(X, {"g": torch.zeros(65, dtype=bf)}), "ValueError",
       "Scale: param 'g' has shape [65]; expected [64]")
expect(lambda: tp.Scale(X, [g]), "ValueError", "Scale: input 'X' is on cpu; the kernels run on CUDA tensors (%s)"
       % where)
if tp.__all__ != ["build", "load_params", "Spread", "Stats", "Scale"]:
    failures.append("__all__ is %r" % tp.__all__)
for part in ("lambda_: bf16 [64]", "X: bf16 [n, 64]", "Returns S: f32 [n], M: bf16 [n] (a tuple)."):
    if part not in tp.Stats.__doc__:
        failures.append("help(Stats) lacks %r:\n%s" % (part, tp.Stats.__doc__))
if "sizes={...}: m." not in tp.Spread.__doc__:
    failures.append("help(Spread) does not say that m is given with sizes=")
# The library loads, with every host function and workspace query the package declares.
library = tp._library()
if library.ncd_error_string(1).decode() != "invalid argument":
    failures.append("ncd_error_string(1) is %r" % library.ncd_error_string(1))
if hasattr(torch, "library") and hasattr(torch.library, "Library"):
    if not hasattr(torch.ops.ncd_tp, "Stats"):
        failures.append("torch.ops.ncd_tp.Stats is not registered")
for f in failures:
    print("FAIL: " + f)
if not failures:
    print("ok: the package's checks and messages")
sys.exit(1 if failures else 0)
"""


def torch_package(args):
    """`ncd emit --torch`: the package builds with nvcc and its functions check what they are given."""
    nvcc = nvcc_or_say_skip(args)
    if not nvcc:
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        package = os.path.join(tmp, "tp")
        r = run([args.ncd, "emit", "--torch", package, "tests/cuda/cases/torch.ncd", "--all"], cwd=args.root)
        if r.returncode != 0 or r.stdout or r.stderr:
            fail("emit --torch: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        if sorted(os.listdir(package)) != ["README.md", "__init__.py", "kernels.cu"]:
            fail("the package has %s" % sorted(os.listdir(package)))
        env = dict(os.environ, NCD_NVCC=nvcc)
        build = subprocess.run(["/usr/bin/python3", "-c", "import tp; print(tp.build())"], cwd=tmp, env=env,
                               capture_output=True, text=True)
        if build.returncode != 0 or not os.path.exists(os.path.join(package, "_kernels.so")):
            fail("tp.build() failed:\n" + build.stdout + build.stderr)
        print("ok: the package builds (%s)" % build.stdout.strip())
        checks = subprocess.run(["/usr/bin/python3", "-c", TORCH_SCRIPT], cwd=tmp, env=env, capture_output=True,
                                text=True)
        sys.stdout.write(checks.stdout)
        if checks.returncode != 0:
            fail("the package's checks failed:\n" + checks.stderr)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--nvcc", default="nvcc")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile")
    c.add_argument("--variant", choices=["plain", "harness"], default="plain")
    c.add_argument("file")
    g = sub.add_parser("golden")
    g.add_argument("--update", action="store_true")
    sub.add_parser("errors")
    sub.add_parser("optimized")
    sub.add_parser("agreement")
    sub.add_parser("host")
    sub.add_parser("torch")
    gf = sub.add_parser("golden-fused")
    gf.add_argument("--update", action="store_true")
    gr = sub.add_parser("golden-routed")
    gr.add_argument("--update", action="store_true")
    sub.add_parser("compile-routed")
    args = parser.parse_args()
    args.ncd = os.path.abspath(args.ncd)
    if args.command == "compile":
        return compile_file(args)
    if args.command == "golden":
        return golden(args)
    if args.command == "golden-fused":
        return golden_fused(args)
    if args.command == "golden-routed":
        return golden_routed(args)
    if args.command == "compile-routed":
        return compile_routed(args)
    if args.command == "optimized":
        return optimized(args)
    if args.command == "agreement":
        return agreement(args)
    if args.command == "host":
        return host_api(args)
    if args.command == "torch":
        return torch_package(args)
    return errors(args)


if __name__ == "__main__":
    sys.exit(main())
