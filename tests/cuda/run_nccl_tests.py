#!/usr/bin/python3
"""The rank functions of `ncd emit --cuda --nccl` (docs/SHARDING.md, "Emission").

  golden    tests/cuda/cases/sharded.ncd (data parallel: the batch split over
            4 devices) and tests/cuda/cases/tensor_parallel.ncd (a Megatron
            MLP, hidden split over 2: its rank program) have their rank
            functions pinned (nccl_rank.golden, nccl_tensor_parallel.golden;
            --update rewrites them), the file includes nccl.h only with
            --nccl, and the refusals have their exact messages (exit 1, no
            output file; --torch with --nccl exit 2). No nvcc needed.
  device    --out DIR: writes DIR/rank.cu, DIR/tp.cu and DIR/run.sh, which on
            a GPU machine run the MLP's rank function and the tensor-parallel
            MLP's rank program (emitted for one rank, its params cut by
            ncd_TP_rank_params) with a single-rank communicator and compare
            their outputs, byte for byte, with the host functions.
  compile   both cases, a data-parallel and a tensor-parallel 12-layer GPT-2
            and a tensor-parallel LLaMA layer compile with nvcc against
            NCCL's header; both cases link against libnccl and run on the
            CPU: a rank function refuses a null communicator with
            -ncclInvalidArgument before anything runs, and its workspace
            query is the local one for every count of ranks it takes (any
            divisor of the batch; exactly 2 for the rank program) and 0 for
            the others; the device check builds. Exit 77 (skipped) when nvcc,
            nccl.h or libnccl is missing.

Standard library only.
"""
import argparse
import os
import sys
import tempfile

import run_cuda_tests as base
from run_cuda_tests import SKIP, fail, run
CASE = "tests/cuda/cases/sharded.ncd"
TP_CASE = "tests/cuda/cases/tensor_parallel.ncd"

GPT2 = """import "std/gpt2.ncd"

axis batch = 2, seq = 1024, heads = %(heads)d, head_dim = 64, n_embd = heads * head_dim

diagram Batched(ids[batch, seq]: i32) -> H[batch, seq, n_embd] {
  H[batch, seq, n_embd] = GPT2Model(ids)
}

schedule Batched {
  %(shard)s
}
"""

# Refusals: (file, its text (None: the case with `replace` done), arguments, exit status, message).
LLAMA = """import "std/llama.ncd"

axis seq = 512, hidden_size = 4096

diagram Layer(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = LlamaDecoderLayer(X)
}

schedule Layer {
  shard kv_heads, intermediate over 8
}
"""

MOE = """import "std/moe.ncd"

axis seq = 8, hidden_size = 16

diagram Moe(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = MixtralSparseMoeBlock(X)
}

schedule Moe {
  shard experts over 8
}
"""

# Refusals: (file, its text (None: the case with `replace` done), arguments, exit status, message).
REFUSALS = [
    ("cp.ncd", GPT2 % {"heads": 12, "shard": "shard seq over 8"}, None, [], 1,
     "ncd emit: error: cannot generate 'Batched' with NCCL: at GPT2Model.h.attn.CausalAttention, %4 is read whole "
     "along 'q' beside a rank's share of it, which the plan does not cut\n"),
    ("vocab.ncd", GPT2 % {"heads": 12, "shard": "shard vocab over 2"}, None, ["-D", "vocab=50258"], 1,
     "ncd emit: error: cannot generate 'Batched' with NCCL: its plan routes tokens to experts' devices at E in "
     "GPT2Model.wte (all-to-all), and a rank program states only reductions between operations\n"),
    ("ep.ncd", MOE, None, ["-D", "ffn=8"], 1,
     "ncd emit: error: cannot generate 'Moe' with NCCL: its plan all-gathers before Top at MixtralSparseMoeBlock, "
     "and a rank program states only reductions between operations\n"),
    ("mesh.ncd", None, ("shard batch over 4", "shard batch over 2\n  shard seq over 2"), [], 1,
     "ncd emit: error: cannot generate 'MLP' with NCCL: its mesh has 2 dimensions, and the rank function is built "
     "for one shard line\n"),
    ("plain.ncd", None, ("schedule MLP {\n  shard batch over 4\n}\n", ""), [], 1,
     "ncd emit: error: cannot generate 'MLP' with NCCL: it has no shard lines (docs/SHARDING.md)\n"),
    ("size.ncd", None, ("W[model] = g[model] * g[model]", "W[model] = g[model] * #batch"), [], 1,
     "ncd emit: error: cannot generate 'MLP' with NCCL: it reads the size of 'batch' (in MLP), which a rank would "
     "read at its own share\n"),
    ("inner.ncd", None, ("S[batch, model]", "S[model, batch]"), [], 1,
     "ncd emit: error: cannot generate 'MLP' with NCCL: output S is split along 'batch', not as the first axis's "
     "plain slices, and the ranks assemble an output from contiguous slices in rank order\n"),
]

DRIVER = r"""
#include <cstdio>
int main() {
  const int status = ncd_MLP_rank(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                  nullptr);
  if (status != -static_cast<int>(ncclInvalidArgument)) {
    std::fprintf(stderr, "a null communicator gave %d, not -ncclInvalidArgument\n", status);
    return 1;
  }
  // Any number of ranks that divides the batch (8): the schedule's 4, or one GPU alone.
  for (int ranks : {1, 2, 4, 8})
    if (ncd_MLP_rank_workspace(ranks) != ncd_MLP_workspace(8 / ranks)) {
      std::fprintf(stderr, "the workspace of %d ranks is %zu, not the host function's at batch %d (%zu)\n", ranks,
                   ncd_MLP_rank_workspace(ranks), 8 / ranks, ncd_MLP_workspace(8 / ranks));
      return 1;
    }
  for (int ranks : {0, 3, 16})
    if (ncd_MLP_rank_workspace(ranks) != 0) {
      std::fprintf(stderr, "%d ranks, which do not divide the batch, got a workspace\n", ranks);
      return 1;
    }
  std::printf("ok: the rank function refuses a null communicator; its workspace is the local one for 1, 2, 4 and 8 "
              "ranks, none for 0, 3 and 16\n");
  return 0;
}
"""

TP_DRIVER = r"""
#include <cstdio>
int main() {
  using namespace ncd_rank_TP;
  const int status = ncd_TP_rank(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr);
  if (status != -static_cast<int>(ncclInvalidArgument)) {
    std::fprintf(stderr, "a null communicator gave %d, not -ncclInvalidArgument\n", status);
    return 1;
  }
  // The rank program is for exactly the schedule's 2 ranks.
  if (ncd_TP_rank_workspace(2) != ncd_TP_rank_local_workspace() || ncd_TP_rank_workspace(2) == 0) {
    std::fprintf(stderr, "the workspace of 2 ranks is %zu, not the rank program's (%zu)\n", ncd_TP_rank_workspace(2),
                 ncd_TP_rank_local_workspace());
    return 1;
  }
  for (int ranks : {0, 1, 4})
    if (ncd_TP_rank_workspace(ranks) != 0) {
      std::fprintf(stderr, "%d ranks, not the schedule's 2, got a workspace\n", ranks);
      return 1;
    }
  if (ncd_TP_rank_params(2, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr) !=
      static_cast<int>(cudaErrorInvalidValue)) {
    std::fprintf(stderr, "the param cutter took rank 2 of 2\n");
    return 1;
  }
  std::printf("ok: the rank program's rank function refuses a null communicator; its workspace is the rank "
              "program's for 2 ranks, none for 0, 1 and 4; the cutter refuses rank 2\n");
  return 0;
}
"""


# The GPU checks' error check and pseudo-random bf16 data.
DEVICE_COMMON = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#define NCD_CHECK(call)                                                                   \
  do {                                                                                    \
    const cudaError_t e = (call);                                                         \
    if (e != cudaSuccess) {                                                               \
      std::fprintf(stderr, "FAIL %s: %s\n", #call, cudaGetErrorString(e));                \
      return 1;                                                                           \
    }                                                                                     \
  } while (0)

static std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) {
    seed = seed * 1664525u + 1013904223u;
    const float f = static_cast<float>(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    x = static_cast<uint16_t>(bits >> 16);
  }
  return v;
}

// n pseudo-random bf16 values in device memory (nullptr on failure).
static void *device_bf16(size_t n, uint32_t seed) {
  const std::vector<uint16_t> host = random_bf16(n, seed);
  void *p = nullptr;
  if (cudaMalloc(&p, n * 2) != cudaSuccess || cudaMemcpy(p, host.data(), n * 2, cudaMemcpyHostToDevice) != cudaSuccess)
    return nullptr;
  return p;
}

// What both runs of a check share: the larger of two workspaces, a stream, a communicator of one rank.
struct Shared {
  void *ws = nullptr;
  size_t ws_bytes = 0;
  cudaStream_t stream = nullptr;
  ncclComm_t comm = nullptr;
};
static bool share(size_t a, size_t b, Shared &s) {
  s.ws_bytes = a > b ? a : b;
  int device = 0;
  if ((s.ws_bytes && cudaMalloc(&s.ws, s.ws_bytes) != cudaSuccess) || cudaStreamCreate(&s.stream) != cudaSuccess ||
      ncclCommInitAll(&s.comm, 1, &device) != ncclSuccess) {
    std::fprintf(stderr, "FAIL the workspace, stream or communicator\n");
    return false;
  }
  return true;
}

"""

# On a GPU: the rank function with a single-rank communicator against the host function on the
# whole batch, on the same pseudo-random inputs; one rank runs the same kernels at the same
# sizes, so the outputs must be the same bytes.
DEVICE_DRIVER = DEVICE_COMMON + r"""
int main() {
  const size_t sizes[] = {8 * 128 * 256, 256 * 1024, 1024 * 256, 256};  // X, W1, W2, g
  void *in[4];
  for (int k = 0; k < 4; ++k)
    if (!(in[k] = device_bf16(sizes[k], 17u + static_cast<uint32_t>(k)))) return 1;
  const size_t out_bytes[] = {8 * 128 * 256 * 2, 8 * 256 * 4, 256 * 2};  // Y (bf16), S (f32), W (bf16)
  void *whole[3], *ranked[3];
  for (int k = 0; k < 3; ++k) {
    NCD_CHECK(cudaMalloc(&whole[k], out_bytes[k]));
    NCD_CHECK(cudaMalloc(&ranked[k], out_bytes[k]));
  }
  Shared run;
  if (!share(ncd_MLP_workspace(8), ncd_MLP_rank_workspace(1), run)) return 1;
  typedef const __nv_bfloat16 *B;
  NCD_CHECK(static_cast<cudaError_t>(ncd_MLP(B(in[0]), B(in[1]), B(in[2]), B(in[3]), (__nv_bfloat16 *)whole[0],
                                             (float *)whole[1], (__nv_bfloat16 *)whole[2], 8, run.ws, run.ws_bytes,
                                             run.stream)));
  NCD_CHECK(cudaStreamSynchronize(run.stream));
  const int status = ncd_MLP_rank(run.comm, B(in[0]), B(in[1]), B(in[2]), B(in[3]), (__nv_bfloat16 *)ranked[0],
                                  (float *)ranked[1], (__nv_bfloat16 *)ranked[2], run.ws, run.ws_bytes, run.stream);
  if (status != 0) {
    std::fprintf(stderr, "FAIL ncd_MLP_rank returned %d\n", status);
    return 1;
  }
  NCD_CHECK(cudaStreamSynchronize(run.stream));
  const char *names[] = {"Y", "S", "W"};
  int failures = 0;
  for (int k = 0; k < 3; ++k) {
    std::vector<unsigned char> a(out_bytes[k]), b(out_bytes[k]);
    NCD_CHECK(cudaMemcpy(a.data(), whole[k], out_bytes[k], cudaMemcpyDeviceToHost));
    NCD_CHECK(cudaMemcpy(b.data(), ranked[k], out_bytes[k], cudaMemcpyDeviceToHost));
    const bool same = a == b;
    failures += !same;
    std::printf("%s output %s: one rank %s the whole batch\n", same ? "PASS" : "FAIL", names[k],
                same ? "gives the same bytes as" : "differs from");
  }
  ncclCommDestroy(run.comm);
  return failures ? 1 : 0;
}
"""

# On a GPU: the tensor-parallel MLP's rank program emitted for one rank (`shard hidden over 1`): its
# params cut by ncd_TP_rank_params (rank 0 of 1: the whole), run through ncd_TP_rank with a
# single-rank communicator (its all-reduce included), against ncd_TP on the same data; the same
# kernels at the same sizes, so the same bytes.
TP_DEVICE_DRIVER = DEVICE_COMMON + r"""
int main() {
  const size_t sizes[] = {8 * 128 * 256, 256 * 1024, 1024, 1024 * 256, 256};  // X, W1, b1, W2, b2
  void *in[5], *cut[3];
  for (int k = 0; k < 5; ++k)
    if (!(in[k] = device_bf16(sizes[k], 29u + static_cast<uint32_t>(k)))) return 1;
  const int sliced[] = {1, 2, 3};  // W1, b1, W2
  for (int k = 0; k < 3; ++k) NCD_CHECK(cudaMalloc(&cut[k], sizes[sliced[k]] * 2));
  const size_t out_bytes = 8 * 128 * 256 * 2;
  void *whole, *ranked;
  NCD_CHECK(cudaMalloc(&whole, out_bytes));
  NCD_CHECK(cudaMalloc(&ranked, out_bytes));
  Shared run;
  if (!share(ncd_TP_workspace(), ncd_rank_TP::ncd_TP_rank_workspace(1), run)) return 1;
  typedef const __nv_bfloat16 *B;
  typedef __nv_bfloat16 *M;
  NCD_CHECK(static_cast<cudaError_t>(ncd_TP(B(in[0]), B(in[1]), B(in[2]), B(in[3]), B(in[4]), M(whole), run.ws,
                                            run.ws_bytes, run.stream)));
  NCD_CHECK(static_cast<cudaError_t>(ncd_rank_TP::ncd_TP_rank_params(0, B(in[1]), B(in[2]), B(in[3]), M(cut[0]),
                                                                       M(cut[1]), M(cut[2]), run.stream)));
  const int status = ncd_rank_TP::ncd_TP_rank(run.comm, B(in[0]), B(cut[0]), B(cut[1]), B(cut[2]), B(in[4]), M(ranked),
                                              run.ws, run.ws_bytes, run.stream);
  if (status != 0) {
    std::fprintf(stderr, "FAIL ncd_TP_rank returned %d\n", status);
    return 1;
  }
  NCD_CHECK(cudaStreamSynchronize(run.stream));
  std::vector<unsigned char> a(out_bytes), b(out_bytes);
  NCD_CHECK(cudaMemcpy(a.data(), whole, out_bytes, cudaMemcpyDeviceToHost));
  NCD_CHECK(cudaMemcpy(b.data(), ranked, out_bytes, cudaMemcpyDeviceToHost));
  const bool same = a == b;
  std::printf("%s output Y: the rank program on one rank %s the host function\n", same ? "PASS" : "FAIL",
              same ? "gives the same bytes as" : "differs from");
  ncclCommDestroy(run.comm);
  return same ? 0 : 1;
}
"""


def write_device_check(args, folder):
    """Writes FOLDER/rank.cu (the MLP with --nccl and DEVICE_DRIVER), FOLDER/tp.cu (the tensor-parallel
    MLP for one rank, TP_DEVICE_DRIVER) and FOLDER/run.sh; returns the two .cu paths."""
    os.makedirs(folder, exist_ok=True)
    cus = []
    with open(os.path.join(args.root, TP_CASE)) as f:
        one_rank = f.read().replace("shard hidden over 2", "shard hidden over 1")
    with open(os.path.join(folder, "tp1.ncd"), "w") as f:
        f.write(one_rank)
    for name, case, driver in (("rank", os.path.join(args.root, CASE), DEVICE_DRIVER),
                               ("tp", os.path.join(folder, "tp1.ncd"), TP_DEVICE_DRIVER)):
        cu = os.path.join(folder, name + ".cu")
        r = emit(args, case, cu, ["--nccl"])
        if r.returncode != 0:
            fail("emit --nccl %s: exit %d\n%s" % (case, r.returncode, r.stderr))
        with open(cu, "a") as f:
            f.write(driver)
        cus.append(cu)
    with open(os.path.join(folder, "run.sh"), "w") as f:
        f.write("#!/bin/bash\n# On a machine with a GPU, nvcc and NCCL: builds rank.cu and tp.cu and runs them (exit 0: every "
                "output PASS).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\ncuda=$(dirname \"$(dirname \"$(command -v nvcc)\")\")\n"
                "for name in rank tp; do\n"
                "  nvcc -std=c++17 -O3 -arch=native -o $name $name.cu -L\"$cuda/lib64\" -lnccl -Xlinker -rpath=\"$cuda/lib64\"\n"
                "  ./$name\ndone\n")
    return cus


def emit(args, path, out, extra=()):
    return run([args.ncd, "emit", "--cuda", path, "-o", out] + list(extra), cwd=args.root)


def rank_section(code):
    start = code.find("// MLP on one rank (")
    if start < 0:
        fail("no rank function in the code")
    return code[start:]


def golden(args):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "mlp.cu")
        r = emit(args, CASE, out, ["--nccl"])
        if r.returncode != 0:
            fail("emit --nccl: exit %d\n%s" % (r.returncode, r.stderr))
        code = open(out).read()
        if code.count("#include <nccl.h>") != 1 or code.count("ncclAllGather(") != 2:
            fail("emit --nccl: expected nccl.h once and two all-gathers (Y, S; W is whole on every rank)")
        section = rank_section(code)
        expected_path = os.path.join(args.root, "tests", "cuda", "nccl_rank.golden")
        base.compare_structure(args, expected_path, section, "rank function", "rank function")
        # The rank program: one all-reduce (after the row-parallel product, before its bias), one cut per sliced
        # param (W1, b1, W2; b2 is whole), its host code pinned.
        r = emit(args, TP_CASE, out, ["--nccl"])
        if r.returncode != 0:
            fail("emit --nccl %s: exit %d\n%s" % (TP_CASE, r.returncode, r.stderr))
        code = open(out).read()
        if code.count("ncclAllReduce(") != 1 or code.count("cudaMemcpy2DAsync(") != 3:
            fail("the tensor-parallel MLP: expected one all-reduce and three param cuts")
        start = code.find("// TP_rank_local (")
        if start < 0:
            fail("no rank program host function in the tensor-parallel MLP")
        expected_path = os.path.join(args.root, "tests", "cuda", "nccl_tensor_parallel.golden")
        base.compare_structure(args, expected_path, code[start:], "rank program", "rank program")
        # Nothing is split under `shard positions`, but the position table depends on the axis: the diagram
        # at a local size would read a shorter table, so it is not data parallel; its rank program (each rank
        # the whole diagram) is emitted instead.
        positions = os.path.join(tmp, "positions.ncd")
        with open(positions, "w") as f:
            f.write(GPT2 % {"heads": 12, "shard": "shard positions over 2"})
        r = emit(args, positions, out, ["--nccl"])
        code = open(out).read() if r.returncode == 0 else ""
        if "namespace ncd_rank_Batched" not in code or "n_positions" in code:
            fail("shard positions: expected the rank program, not positions as a runtime size\n" + r.stderr)
        r = emit(args, CASE, out)
        if r.returncode != 0 or "nccl" in open(out).read().lower():
            fail("without --nccl the file must not mention NCCL")
        source = open(os.path.join(args.root, CASE)).read()
        for name, text, replace, extra, status, message in REFUSALS:
            path = os.path.join(tmp, name)
            if text is None:
                text = source.replace(replace[0], replace[1])
                if text == source:
                    fail("%s: the case has no %r to replace" % (name, replace[0]))
            with open(path, "w") as f:
                f.write(text)
            target = os.path.join(tmp, name + ".cu")
            r = emit(args, path, target, ["--nccl"] + extra)
            if r.returncode != status or r.stderr != message:
                fail("%s: exit %d, expected %d\n%s\nexpected:\n%s" % (name, r.returncode, status, r.stderr, message))
            if os.path.exists(target):
                fail("%s: a refused emit left %s" % (name, target))
        r = run([args.ncd, "emit", CASE, "--torch", os.path.join(tmp, "pkg"), "--nccl"], cwd=args.root)
        if r.returncode != 2 or r.stderr != "ncd emit: error: --torch packages no rank functions: leave out --nccl\n":
            fail("--torch with --nccl: exit %d\n%s" % (r.returncode, r.stderr))
    print("ok: rank function and rank program pinned, nccl.h only with --nccl, %d refusals exact" % (len(REFUSALS) + 1))
    return 0


def compile_and_run(args):
    nvcc = base.nvcc_or_say_skip(args)
    if not nvcc:
        return SKIP
    cuda = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    include, lib = os.path.join(cuda, "include"), os.path.join(cuda, "lib64")
    if not os.path.exists(os.path.join(include, "nccl.h")) or not os.path.exists(os.path.join(lib, "libnccl.so")):
        print("SKIP: no nccl.h or libnccl.so beside %s" % nvcc)
        return SKIP
    flags = ["-std=c++17", "-O1", "-Werror", "all-warnings", "-I" + include]
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"gpt2_dp.ncd": GPT2 % {"heads": 12, "shard": "shard batch over 2"},
                   "gpt2_tp.ncd": GPT2 % {"heads": 16, "shard": "shard heads, inner over 8"}, "llama_tp.ncd": LLAMA}
        for name, text in sources.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        for path, what, extra in ((os.path.join(args.root, CASE), "MLP, data parallel", []),
                                  (os.path.join(args.root, TP_CASE), "MLP, tensor parallel", []),
                                  (os.path.join(tmp, "gpt2_dp.ncd"), "GPT-2, 12 layers, data parallel", []),
                                  (os.path.join(tmp, "gpt2_tp.ncd"), "GPT-2, 12 layers, tensor parallel",
                                   ["-D", "heads=16"]),
                                  (os.path.join(tmp, "llama_tp.ncd"), "a LLaMA layer, tensor parallel", [])):
            cu = os.path.join(tmp, "rank.cu")
            r = emit(args, path, cu, ["--nccl"] + extra)
            if r.returncode != 0:
                fail("emit --nccl %s: exit %d\n%s" % (path, r.returncode, r.stderr))
            r = run([nvcc] + flags + ["-gencode", "arch=compute_90,code=sm_90", "-c", "-o", os.path.join(tmp, "r.o"), cu])
            if r.returncode != 0:
                fail("nvcc on %s:\n%s" % (what, (r.stdout + r.stderr)[-6000:]))
            print("ok: %s compiles with nccl.h for sm_90" % what)
        for case, driver in ((CASE, DRIVER), (TP_CASE, TP_DRIVER)):
            cu = os.path.join(tmp, "host.cu")
            r = emit(args, case, cu, ["--nccl"])
            with open(cu, "a") as f:
                f.write(driver)
            exe = os.path.join(tmp, "host")
            r = run([nvcc] + flags + ["-arch=sm_80", "-o", exe, cu, "-L" + lib, "-lnccl", "-Xlinker", "-rpath=" + lib])
            if r.returncode != 0:
                fail("nvcc (linking libnccl):\n" + (r.stdout + r.stderr)[-6000:])
            r = run([exe])
            sys.stdout.write(r.stdout)
            if r.returncode != 0:
                fail("the rank function's host checks failed (%s):\n" % case + r.stderr)
        # The GPU check (`device`) builds; it runs only where there is a GPU.
        for cu in write_device_check(args, os.path.join(tmp, "device")):
            r = run([nvcc] + flags + ["-arch=sm_90", "-o", cu[:-3], cu, "-L" + lib, "-lnccl"])
            if r.returncode != 0:
                fail("nvcc on the single-rank GPU check %s:\n" % os.path.basename(cu) + (r.stdout + r.stderr)[-6000:])
        print("ok: the single-rank GPU checks (data parallel, the tensor-parallel rank program) build")
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
    d = sub.add_parser("device", help="write the single-rank check to run on a GPU machine")
    d.add_argument("--out", required=True)
    args = parser.parse_args()
    args.ncd = os.path.abspath(args.ncd)
    if args.command == "device":
        write_device_check(args, args.out)
        print("wrote %s: on a GPU machine, bash %s/run.sh" % (args.out, args.out))
        return 0
    return golden(args) if args.command == "golden" else compile_and_run(args)


if __name__ == "__main__":
    sys.exit(main())
