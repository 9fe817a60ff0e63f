#!/usr/bin/env python3
"""A torch state_dict loads into std/gpt2.ncd and std/llama.ncd with no renaming.

    test_state_dicts.py --ncd NCD --root SRC gpt2|llama

The torch modules below are written module for module as the transformers
library lays out GPT2Model and LlamaForCausalLM (the same submodule names, the
same weight layouts), at small sizes with random weights. Their state_dict is
saved as safetensors under its own keys, `ncd run -D dtype=f32 --params` reads
it, and the output must match the module's at float32. Any key that ncd's param
paths do not name draws a warning from ncd, which fails the test. Needs
Debian's python3-torch.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_io import write_safetensors  # noqa: E402  (the safetensors layout, written independently of ncd)

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover
    print("python3-torch is not installed")
    sys.exit(77)

# ---------------------------------------------------------------- GPT-2


class Conv1D(nn.Module):
    """GPT-2's projection: weight stored [in, out]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        return x @ self.weight + self.bias


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, n_embd, heads):
        super().__init__()
        self.heads, self.head_dim = heads, n_embd // heads
        self.c_attn = Conv1D(3 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)

    def forward(self, x):
        t, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=1)
        q, k, v = (a.view(t, self.heads, self.head_dim).transpose(0, 1) for a in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
        return self.c_proj(o.transpose(0, 1).reshape(t, e))


class GPT2MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = Conv1D(4 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, 4 * n_embd)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


def layer_norm(n):
    norm = nn.LayerNorm(n, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.2)
        norm.bias.normal_(0.0, 0.2)
    return norm


class GPT2Block(nn.Module):
    def __init__(self, n_embd, heads):
        super().__init__()
        self.ln_1 = layer_norm(n_embd)
        self.attn = GPT2Attention(n_embd, heads)
        self.ln_2 = layer_norm(n_embd)
        self.mlp = GPT2MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, vocab, positions, n_embd, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(positions, n_embd)
        self.h = nn.ModuleList([GPT2Block(n_embd, heads) for _ in range(layers)])
        self.ln_f = layer_norm(n_embd)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[0]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


# ---------------------------------------------------------------- LLaMA


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaRMSNorm(nn.Module):
    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.2 * torch.randn(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class LlamaAttention(nn.Module):
    def __init__(self, hidden, heads, kv_heads, theta):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.theta = heads, kv_heads, hidden // heads, theta
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x):
        t = x.shape[0]
        q = self.q_proj(x).view(t, self.heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(x).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(x).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        freqs = torch.arange(t).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads  # repeat_kv: query head h reads kv head h // rep
        k = k[:, None].expand(self.kv_heads, rep, t, self.head_dim).reshape(self.heads, t, self.head_dim)
        v = v[:, None].expand(self.kv_heads, rep, t, self.head_dim).reshape(self.heads, t, self.head_dim)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        o = torch.softmax(s.float(), dim=-1) @ v
        return self.o_proj(o.transpose(0, 1).reshape(t, -1))


class LlamaMLP(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, hidden, heads, kv_heads, intermediate, theta):
        super().__init__()
        self.self_attn = LlamaAttention(hidden, heads, kv_heads, theta)
        self.mlp = LlamaMLP(hidden, intermediate)
        self.input_layernorm = LlamaRMSNorm(hidden)
        self.post_attention_layernorm = LlamaRMSNorm(hidden)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, vocab, hidden, heads, kv_heads, intermediate, layers, theta):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(
            [LlamaDecoderLayer(hidden, heads, kv_heads, intermediate, theta) for _ in range(layers)])
        self.norm = LlamaRMSNorm(hidden)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, vocab, hidden, heads, kv_heads, intermediate, layers, theta):
        super().__init__()
        self.model = LlamaModel(vocab, hidden, heads, kv_heads, intermediate, layers, theta)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):
        return self.lm_head(self.model(ids))


# ---------------------------------------------------------------- the check


def save_safetensors(path, state_dict):
    write_safetensors(path, {name: ("F32", tuple(tensor.shape), tensor.detach().contiguous().numpy().astype("<f4").tobytes())
                             for name, tensor in state_dict.items()})


CASES = {
    # name: (file, diagram, model factory, -D sizes, output)
    "gpt2": ("stdlib/std/gpt2.ncd", "GPT2Model", lambda: GPT2Model(vocab=50, positions=24, n_embd=16, heads=4, layers=3),
             {"vocab": 50, "positions": 24, "heads": 4, "head_dim": 4, "layers": 3}, "last_hidden_state"),
    "llama": ("stdlib/std/llama.ncd", "LlamaForCausalLM",
              lambda: LlamaForCausalLM(vocab=40, hidden=32, heads=8, kv_heads=2, intermediate=24, layers=2,
                                       theta=500000.0),
              {"vocab": 40, "kv_heads": 2, "group": 4, "head_dim": 4, "intermediate": 24, "layers": 2}, "logits"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("case", choices=sorted(CASES))
    args = parser.parse_args()
    file, diagram, factory, sizes, output = CASES[args.case]
    torch.manual_seed(5)
    model = factory().eval()
    failures = []
    with tempfile.TemporaryDirectory() as work:
        weights = os.path.join(work, "model.safetensors")
        save_safetensors(weights, model.state_dict())
        # Several lengths: -D seq changes the run, the checkpoint stays.
        for seq in (1, 7, 13):
            ids = torch.randint(0, sizes["vocab"], (seq,))
            np.save(os.path.join(work, "ids.npy"), ids.numpy().astype(np.int32))
            out = os.path.join(work, f"out{seq}")
            command = [args.ncd, "run", os.path.join(args.root, file), "--diagram", diagram, "-D", "dtype=f32",
                       "-D", f"seq={seq}", "--params", weights, "--in", "input_ids=" + os.path.join(work, "ids.npy"),
                       "--out-dir", out]
            for name, size in sizes.items():
                command += ["-D", f"{name}={size}"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0 or result.stderr:
                failures.append(f"seq={seq}: exit {result.returncode}: {result.stderr.strip()}")
                continue
            with torch.no_grad():
                expected = model(ids).numpy()
            got = np.load(os.path.join(out, output + ".npy"))
            if got.shape != expected.shape:
                failures.append(f"seq={seq}: shape {got.shape}, torch {expected.shape}")
                continue
            error = float(np.max(np.abs(got - expected)))
            scale = float(np.max(np.abs(expected)))
            print(f"{args.case} seq={seq}: {len(model.state_dict())} tensors, max abs error {error:.3g} "
                  f"(outputs up to {scale:.3g})")
            if not error <= 1e-4 * max(1.0, scale):
                failures.append(f"seq={seq}: max abs error {error:.3g}")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
