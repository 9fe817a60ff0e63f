"""The gradients `ncd grad` derives for GPT-2 and LLaMA equal torch autograd's.

    /usr/bin/python3 tests/grad/test_torch_autograd.py [--ncd BUILD/bin/ncd] CASE

CASE is a block (gpt2, llama: GPT2Block, LlamaDecoderLayer on an input X) or
a whole model of repeated layers (gpt2_model: GPT2Model, llama_causal_lm:
LlamaForCausalLM, on token ids; their `repeat` is differentiated unrolled). The
torch modules are those of tests/cpu/test_state_dicts.py, written module for
module as the transformers library lays them out. Their state_dict (with every
weight perturbed, so that no norm is the identity) is saved as safetensors;
`ncd grad -D dtype=f32` derives the gradient, `ncd run` runs it on that
checkpoint, the input and an output cotangent; torch runs the module forward
and `backward(cotangent)`. Every gradient (of X and of each param, by its
state_dict key: `h.2.attn.c_attn.weight` is layer 2's own) must match at
float32: max abs error within 1e-4 of the largest gradient. Needs Debian's
python3-torch.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "cpu"))
sys.dont_write_bytecode = True

try:
    import torch
except ImportError:  # pragma: no cover
    print("python3-torch is not installed")
    sys.exit(77)

from test_state_dicts import (GPT2Block, GPT2Model, LlamaDecoderLayer, LlamaForCausalLM,  # noqa: E402
                              save_safetensors)

sys.path.insert(0, HERE)
from test_gradients import gradient_names  # noqa: E402

CASES = {
    # name: (file, diagram, module factory, -D sizes, input, output, width)
    "gpt2": ("stdlib/std/gpt2.ncd", "GPT2Block", lambda: GPT2Block(n_embd=16, heads=4),
             {"heads": 4, "head_dim": 4}, "X", "Y", 16),
    "llama": ("stdlib/std/llama.ncd", "LlamaDecoderLayer",
              lambda: LlamaDecoderLayer(hidden=32, heads=8, kv_heads=2, intermediate=24, theta=500000.0),
              {"kv_heads": 2, "group": 4, "head_dim": 4, "intermediate": 24}, "X", "Y", 32),
    "gpt2_model": ("stdlib/std/gpt2.ncd", "GPT2Model",
                   lambda: GPT2Model(vocab=50, positions=24, n_embd=16, heads=4, layers=3),
                   {"vocab": 50, "positions": 24, "heads": 4, "head_dim": 4, "layers": 3}, "input_ids",
                   "last_hidden_state", 16),
    "llama_causal_lm": ("stdlib/std/llama.ncd", "LlamaForCausalLM",
                        lambda: LlamaForCausalLM(vocab=40, hidden=32, heads=8, kv_heads=2, intermediate=24, layers=2,
                                                 theta=500000.0),
                        {"vocab": 40, "kv_heads": 2, "group": 4, "head_dim": 4, "intermediate": 24, "layers": 2},
                        "input_ids", "logits", 40),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncd", default=os.environ.get("NCD") or os.path.join(ROOT, "build", "bin", "ncd"))
    parser.add_argument("case", choices=sorted(CASES))
    args = parser.parse_args()
    file, diagram, factory, sizes, input_name, output, width = CASES[args.case]
    torch.manual_seed(3)
    model = factory()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seq = 7
    tokens = input_name == "input_ids"
    if tokens:
        x = torch.randint(0, sizes["vocab"], (seq,))
        x_array = x.numpy().astype(np.int32)
    else:
        x = torch.randn(seq, width, dtype=torch.float32, requires_grad=True)
        x_array = x.detach().numpy()
    dy = torch.randn(seq, width, dtype=torch.float32)
    model(x).backward(dy)
    expected = {} if tokens else {"X": x.grad.numpy()}
    for key, p in model.named_parameters():
        expected[key] = p.grad.numpy()
    failures = []
    with tempfile.TemporaryDirectory() as work:
        weights = os.path.join(work, "block.safetensors")
        save_safetensors(weights, model.state_dict())
        grad_file = os.path.join(work, "grad.ncd")
        command = [args.ncd, "grad", os.path.join(ROOT, file), "--diagram", diagram, "--no-train", "-o", grad_file,
                   "-D", "dtype=f32", "-D", "seq=%d" % seq]
        for name, size in sizes.items():
            command += ["-D", "%s=%d" % (name, size)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print("FAIL ncd grad: exit %d: %s" % (result.returncode, result.stderr.strip()))
            return 1
        of = gradient_names(grad_file)
        np.save(os.path.join(work, "X.npy"), x_array)
        np.save(os.path.join(work, "dY.npy"), dy.numpy())
        out = os.path.join(work, "out")
        command = [args.ncd, "run", grad_file, "--diagram", diagram + "_grad", "--params", weights,
                   "--in", input_name + "=" + os.path.join(work, "X.npy"), "--in",
                   "d_" + output + "=" + os.path.join(work, "dY.npy"), "--out-dir", out]
        result = subprocess.run(command, capture_output=True, text=True)
        # A gradient needs not read every param (a bias's gradient is the cotangent summed): ncd says so.
        stray = [line for line in result.stderr.splitlines() if "matches no param of this diagram" not in line]
        if result.returncode != 0 or stray:
            print("FAIL ncd run: exit %d: %s" % (result.returncode, result.stderr.strip()))
            return 1
        missing = sorted(set(expected) - set(of.values()))
        if missing:
            failures.append("no gradient of %s" % ", ".join(missing))
        for name, target in sorted(of.items()):
            got = np.load(os.path.join(out, name + ".npy"))
            want = expected[target]
            if got.shape != want.shape:
                failures.append("%s: shape %s, torch %s" % (target, got.shape, want.shape))
                continue
            error = float(np.max(np.abs(got - want)))
            scale = float(np.max(np.abs(want)))
            print("%s %s: max abs error %.3g (gradient up to %.3g)" % (args.case, target, error, scale))
            if not error <= 1e-4 * max(scale, 1e-3):
                failures.append("%s: max abs error %.3g of %.3g" % (target, error, scale))
    for failure in failures:
        print("FAIL", failure)
    print("%s: %d gradients against torch autograd, %d failed" % (args.case, len(of), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
