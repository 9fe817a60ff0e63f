#!/usr/bin/env python3
"""Tests of `ncd import` (docs/IMPORT.md) with Debian's PyTorch (CPU):

  models   each module below is exported with torch.onnx.export, imported
           (`ncd import M.onnx -o M.ncd --weights M.safetensors`), checked
           with `ncd check --Werror`, run with `ncd run --params` on random
           inputs and compared with the torch module's own output (f32:
           max |err| <= 1e-4 * (1 + max |ref|)); `ncd fmt --check` holds, and
           `ncd render`, `ncd cost` and `ncd optimize -O2` work on the imported
           program.
  golden   the imported MLP's, GPT-2 block's and GPT-2 embedding front end's programs
           are tests/import/*.golden (exact).
  errors   bad files and unsupported models: exit 1, the exact message,
           nothing written.
  torch    `ncd emit --torch` on the GPT-2 stack imported at bf16: the
           package builds with nvcc (tensor-core kernels), load_params reads
           the imported weights (the module's, by param path, rounded to
           bf16), a CPU tensor is refused (skipped without nvcc).

    /usr/bin/python3 tests/import/run_import_tests.py --ncd build/bin/ncd [--update] models|golden|errors
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

F = torch.nn.functional


class MLP(torch.nn.Module):
    """Linear, LayerNorm, exact GELU, Linear, softmax (2-D input: ONNX Gemm)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.ln, self.fc2 = torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 4)

    def forward(self, x):
        return torch.softmax(self.fc2(F.gelu(self.ln(self.fc1(x)))), -1)


class TokenMLP(torch.nn.Module):
    """Linear layers over [batch, seq, features] (ONNX MatMul with a transposed weight), tanh-GELU, a residual."""

    def __init__(self):
        super().__init__()
        self.up, self.down = torch.nn.Linear(24, 48), torch.nn.Linear(48, 24, bias=False)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(x), approximate="tanh"))


class Norms(torch.nn.Module):
    """A layer norm written out (ReduceMean with kept dims, Pow, Sqrt, Div), sigmoid, relu, log_softmax."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.rand(20) + 0.5)
        self.proj = torch.nn.Linear(20, 10)

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        y = (x - mean) / torch.sqrt(var + 1e-6) * self.scale
        return torch.log_softmax(self.proj(torch.relu(y) * torch.sigmoid(y)), dim=-1)


class Gate(torch.nn.Module):
    """Transposes, unsqueeze and squeeze, comparisons, logic and where (masked_fill), a cast from bool."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(12, 9)

    def forward(self, x):
        t = self.proj(x).transpose(0, 1)
        g = torch.where((t > 0.5) & ~(t > 2.0), t, t * 0.1).unsqueeze(0)
        s = (g * 2).squeeze(0).transpose(0, 1)
        return s.masked_fill(s < -1.0, -1e4) + (s >= 0).float()


class Square(torch.nn.Module):
    """x + Linear(x) with a square weight: its input and output features meet elementwise (a renamed read)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(12, 12)

    def forward(self, x):
        return x + self.proj(x)


class CausalSelfAttention(torch.nn.Module):
    """GPT-2's attention as nanoGPT writes it: one c_attn split in three, views into heads, a tril buffer mask."""

    def __init__(self, d=32, heads=4, context=64):
        super().__init__()
        self.heads = heads
        self.c_attn, self.c_proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.register_buffer("bias", torch.tril(torch.ones(context, context, dtype=torch.bool)).view(1, 1, context, context))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / (C // self.heads) ** 0.5)
        att = att.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
        y = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class GPT2Block(torch.nn.Module):
    """A GPT-2 block: pre-LayerNorm, causal attention, tanh-GELU MLP, two residuals."""

    def __init__(self, d=32):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = torch.nn.LayerNorm(d), CausalSelfAttention(d), torch.nn.LayerNorm(d)
        self.c_fc, self.c_proj = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class MHA(torch.nn.Module):
    """nn.MultiheadAttention (self-attention): a sliced in_proj weight, heads merged with the batch and back."""

    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class EncoderLayer(torch.nn.Module):
    """nn.TransformerEncoderLayer (post-norm, ReLU feed-forward)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x)


class Pick(torch.nn.Module):
    """A gather of a list of constant positions of a dimension without a size (refused: a position may be past
    its end)."""

    def forward(self, x):
        return x[:, [0, 2]] * 2


class Strided(torch.nn.Module):
    """A slice with a step of a dimension without a size (refused: the length would be ceil(seq / 2))."""

    def forward(self, x):
        return x[:, ::2] * 2


class Steps(torch.nn.Module):
    """Slices with steps: even and odd positions, a flip (a step of -1) cut at an offset; lists of positions,
    evenly spaced (backwards) and not."""

    def forward(self, x):
        return x[:, ::2] * 2 + x[:, 1::2] - x.flip(1)[:, 3:9] + x[:, [0, 5, 2, 7, 1, 3]] * x[:, [11, 9, 7, 5, 3, 1]]


class SeqCat(torch.nn.Module):
    """A concatenation along a dimension without a size (refused: the joined size would be seq + seq)."""

    def forward(self, x):
        return torch.cat([x, x * 2], 1)


class RMSNorm(torch.nn.Module):
    """LLaMA's RMSNorm: x * rsqrt(mean(x^2) + eps) * weight."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, torch.nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    """RoPE's rotation: the halves of the head width swapped, the first negated (Slice, Neg, Concat)."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(torch.nn.Module):
    """A LLaMA block: RMSNorm, q/k/v without bias, RoPE from positions (Range, Einsum), causal mask, SwiGLU."""

    def __init__(self, d=32, heads=4, hidden=64, context=64):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = [torch.nn.Linear(d, d, bias=False) for _ in range(4)]
        self.gate_proj, self.up_proj = torch.nn.Linear(d, hidden, bias=False), torch.nn.Linear(d, hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, d, bias=False)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd)))
        self.register_buffer("mask", torch.tril(torch.ones(context, context, dtype=torch.bool)))

    def forward(self, x):
        B, T, C = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        t = torch.arange(T, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) / (self.hd ** 0.5)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        y = (torch.softmax(att, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o_proj(y)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class ConvBlock(torch.nn.Module):
    """conv-BN-ReLU (the batch norm folded into the conv by the exporter), a padded max pool of the ReLU, a
    strided conv, ReLU, a batch norm the exporter keeps, max pool, global average pool, flatten, Linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.conv2, self.bn2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.pool, self.fc = torch.nn.MaxPool2d(2), torch.nn.Linear(16, 10)
        self.stem_pool = torch.nn.MaxPool2d(3, stride=1, padding=1)  # ResNet's stem pool, over a ReLU
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = self.stem_pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.bn2(torch.relu(self.conv2(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class GroupedConvs(torch.nn.Module):
    """A depthwise conv, a conv of two groups, a strided one with a channel multiplier per group, a pointwise conv,
    a padded max pool of its output (of either sign)."""

    def __init__(self):
        super().__init__()
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gc = torch.nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.mult = torch.nn.Conv2d(12, 24, 3, stride=2, groups=12)
        self.pw = torch.nn.Conv2d(24, 6, 1)

    def forward(self, x):
        y = self.pw(torch.relu(self.mult(torch.relu(self.gc(torch.relu(self.dw(x)))))))
        return F.max_pool2d(y, 3, stride=2, padding=1)  # padded over values of either sign: -inf outside


class Upsample(torch.nn.Module):
    """Transposed convolutions: DCGAN's (kernel 4, stride 2, pad 1), U-Net's (2, 2), an odd kernel with
    output_padding, and stride 1 (the output grows by kernel - 1)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.ConvTranspose2d(6, 8, 4, stride=2, padding=1)
        self.b = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.c = torch.nn.ConvTranspose2d(4, 5, 3, stride=2, padding=1, output_padding=1)
        self.d = torch.nn.ConvTranspose2d(5, 3, 3)

    def forward(self, x):
        return self.d(torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x)))))))


class GroupedUp(torch.nn.Module):
    """A transposed convolution of two groups (refused for now)."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)

    def forward(self, x):
        return self.up(x)


class Parts(torch.nn.Module):
    """Parts of different sizes: a split [4, 8], a slice at an offset (x[..., 2:5]), a concatenation of unequal
    parts, and a rotary table kept as a buffer of 64 rows cut to the sequence length (cos_cached[:T])."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(12, 12)
        self.register_buffer("cos_cached", torch.cos(torch.arange(64.0)[:, None] * torch.linspace(0.1, 1.0, 15)))

    def forward(self, x):
        B, T, C = x.shape
        a, b = self.proj(x).split([4, 8], -1)
        mid = x[..., 2:5]
        y = torch.cat([b * a.sum(-1, keepdim=True), mid, torch.tanh(a)], -1)  # 8 + 3 + 4 = 15
        return y * self.cos_cached[:T]


class PatchEmbed(torch.nn.Module):
    """ViT's front end: a patch embedding (a 4 x 4 convolution of stride 4), the patches flattened into a
    sequence, a class token prepended (cat of an expanded [1, 1, d] parameter), position embeddings."""

    def __init__(self, d=24):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, d, 4, stride=4)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, d))
        self.pos_embed = torch.nn.Parameter(torch.randn(1, 17, d))
        self.norm = torch.nn.LayerNorm(d)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)
        return self.norm(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), p], 1) + self.pos_embed)


class GPT2Stack(torch.nn.Module):
    """Three GPT-2 blocks in a ModuleList and a final LayerNorm: the blocks become one diagram called in `repeat`."""

    def __init__(self, layers=3):
        super().__init__()
        self.h = torch.nn.ModuleList([GPT2Block() for _ in range(layers)])
        self.ln_f = torch.nn.LayerNorm(32)

    def forward(self, x):
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class RopeLayer(torch.nn.Module):
    """A LLaMA-style layer given the rotary tables (RMSNorm, attention with RoPE and a causal mask, SwiGLU)."""

    def __init__(self, d=32, heads=4, hidden=48):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = [torch.nn.Linear(d, d, bias=False) for _ in range(4)]
        self.gate_proj, self.up_proj = torch.nn.Linear(d, hidden, bias=False), torch.nn.Linear(d, hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.norm(x)
        q, k, v = [p(h).view(B, T, self.heads, self.hd).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj)]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = ((q @ k.transpose(-2, -1)) / (self.hd ** 0.5)).masked_fill(mask, float("-inf"))
        x = x + self.o_proj((torch.softmax(att, -1) @ v).transpose(1, 2).reshape(B, T, C))
        h = self.mlp_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class LlamaStack(torch.nn.Module):
    """Two LLaMA layers sharing rotary tables and a mask computed once before them (what every layer reads)."""

    def __init__(self, d=32, heads=4, context=64):
        super().__init__()
        self.layers = torch.nn.ModuleList([RopeLayer(d, heads) for _ in range(2)])
        self.norm = RMSNorm(d)
        hd = d // heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd)))
        self.register_buffer("mask", torch.tril(torch.ones(context, context, dtype=torch.bool)))

    def forward(self, x):
        T = x.shape[1]
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin, mask = emb.cos(), emb.sin(), ~self.mask[:T, :T]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class GPT2Embed(torch.nn.Module):
    """GPT-2's front and back end: token and position embeddings (Gather through the int64 token ids and through
    arange(T)), the final LayerNorm and logits through the tied token embedding (x @ wte.weight.t())."""

    def __init__(self, vocab=50, d=16, context=32):
        super().__init__()
        self.wte, self.wpe, self.ln_f = torch.nn.Embedding(vocab, d), torch.nn.Embedding(context, d), torch.nn.LayerNorm(d)

    def forward(self, idx):
        B, T = idx.size()
        x = self.wte(idx) + self.wpe(torch.arange(0, T, dtype=torch.long))
        return self.ln_f(x) @ self.wte.weight.t()


class Broadcasts(torch.nn.Module):
    """Expand (to new axes, with -1 entries, expand_as, to a merged batch × seq), tril and triu with offsets on
    computed scores (Trilu), zeros_like and a bool ones_like (ConstantOfShape)."""

    def __init__(self, d=8, heads=4):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = torch.nn.Linear(d, d), torch.nn.Linear(d, d), torch.nn.Linear(d, d)
        self.head_scale = torch.nn.Parameter(torch.rand(heads, 1, 1) + 0.5)
        self.shift = torch.nn.Parameter(torch.randn(d))

    def forward(self, x):
        B, T, C = x.shape
        a = self.q(x) @ self.k(x).transpose(1, 2)
        m = torch.tril(a, -1) + torch.triu(a, 2) * 0.5 + torch.tril(a)
        m = torch.where((a > -1.0) & torch.ones_like(a, dtype=torch.bool), m, a * 0.1)
        h = (m.unsqueeze(1).expand(B, self.heads, T, T) * self.head_scale).sum(1)
        h = h + m.unsqueeze(1).expand(B, self.heads, T, T).sum(1) * 0.25  # a sum over the broadcast: 4 * m
        g = self.v(x).mean(-1, keepdim=True)
        e = g.expand(B, T, C) + g.expand(-1, -1, C) * 2 + torch.sigmoid(g).expand_as(x)
        rows = (self.shift.expand(B * T, C) + x.reshape(B * T, C)).view(B, T, C)
        return h @ (e + (torch.zeros_like(x) + 1.5)) + rows


def token_ids(vocab):
    """An input maker: int64 token ids in [0, vocab) (an embedding's input), for export and for the runs."""
    return lambda shape, generator=None: torch.randint(0, vocab, shape, generator=generator)


def normal(shape, generator=None):
    return torch.randn(*shape, generator=generator)


# name, module, example input shape, dynamic axes of the input (and the output)[, input maker (default normal)[,
# options of torch.onnx.export]]
MODELS = [
    ("mlp", MLP, (8, 16), {0: "batch"}),
    ("token_mlp", TokenMLP, (2, 10, 24), {0: "batch", 1: "seq"}),
    ("norms", Norms, (6, 20), {0: "rows"}),
    ("gate", Gate, (5, 12), {0: "batch"}),
    ("square", Square, (4, 12), {0: "batch"}),
    ("gpt2_block", GPT2Block, (2, 10, 32), {0: "batch", 1: "seq"}),
    ("mha", MHA, (2, 10, 32), {0: "batch", 1: "seq"}),
    ("encoder_layer", EncoderLayer, (2, 10, 32), {0: "batch", 1: "seq"}),
    ("llama_block", LlamaBlock, (2, 10, 32), {0: "batch", 1: "seq"}),
    ("conv_block", ConvBlock, (2, 3, 16, 16), {0: "batch"}),
    ("gpt2_embed", GPT2Embed, (2, 10), {0: "batch", 1: "seq"}, token_ids(50)),
    ("broadcasts", Broadcasts, (2, 10, 8), {0: "batch", 1: "seq"}),
    ("grouped_convs", GroupedConvs, (2, 8, 12, 12), {0: "batch"}),
    ("upsample", Upsample, (2, 6, 5, 5), {0: "batch"}),
    ("parts", Parts, (2, 10, 12), {0: "batch", 1: "seq"}),
    ("patch_embed", PatchEmbed, (2, 3, 16, 16), {0: "batch"}),
    ("steps", Steps, (4, 12), {0: "batch"}),
    ("gpt2_stack", GPT2Stack, (2, 10, 32), {0: "batch", 1: "seq"}),
    ("llama_stack", LlamaStack, (2, 10, 32), {0: "batch", 1: "seq"}),
    # Each block an ONNX local function, called three times: inlined, then folded into repeat.
    ("gpt2_functions", GPT2Stack, (2, 10, 32), {0: "batch", 1: "seq"}, normal,
     {"export_modules_as_functions": {GPT2Block}}),
]


# Imported at bf16 as well (ncd import --dtype bf16).
BF16 = {"gpt2_block", "llama_stack"}


def error(got, want, rtol):
    """max |got - want| (infinite when the shapes differ) and the bound rtol * (1 + max |want|)."""
    err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    return err, rtol * (1 + float(np.abs(want).max()))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def export(name, cls, shape, dynamic, folder, seed=0, make=normal, options=None):
    torch.manual_seed(seed)
    module = cls().eval()
    # Every param its own values (LayerNorm's ones and zeros would be one initializer to the exporter,
    # and a param read under the wrong name would go unnoticed).
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = make(shape)
    path = os.path.join(folder, name + ".onnx")
    torch.onnx.export(module, (x,), path, input_names=["X"], output_names=["Y"],
                      dynamic_axes={"X": dynamic, "Y": dynamic}, opset_version=17, **(options or {}))
    return module, path


def auto_pad_model(path, weights):
    """A model torch does not export (it writes explicit pads): convolutions with auto_pad SAME_UPPER,
    SAME_LOWER and VALID, an average pool that counts its padding and one that does not, built with python3-onnx. Returns
    the module computing the same with explicit torch padding."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w1, w2, w3 = weights
    nodes = [
        helper.make_node("Conv", ["X", "w1"], ["a"], name="/up/Conv", kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="/low/Conv", kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
        helper.make_node("Conv", ["b", "w3"], ["c"], name="/valid/Conv", kernel_shape=[3, 3], strides=[2, 2],
                         auto_pad="VALID"),
        helper.make_node("AveragePool", ["c"], ["p"], name="/pool/AveragePool", kernel_shape=[2, 2], pads=[1, 1, 0, 0],
                         count_include_pad=1),
        helper.make_node("AveragePool", ["p"], ["Y"], name="/inside/AveragePool", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),  # count_include_pad=0: the padding is not counted
    ]
    graph = helper.make_graph(
        nodes, "auto_pad", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3, 7, 7])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.numpy(), name) for w, name in ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    def module(x):
        a = F.conv2d(F.pad(x, (0, 1, 0, 1)), w1)
        b = F.conv2d(F.pad(a, (1, 0, 1, 0)), w2)
        c = F.conv2d(b, w3, stride=2)
        p = F.avg_pool2d(F.pad(c, (1, 0, 1, 0)), 2, stride=1)
        return F.avg_pool2d(p, 3, stride=1, padding=1, count_include_pad=False)
    return module


def models(args):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(3)
        weights = [torch.randn(5, 3, 2, 2, generator=g), torch.randn(4, 5, 2, 2, generator=g),
                   torch.randn(6, 4, 3, 3, generator=g)]
        onnx_path = os.path.join(tmp, "auto_pad.onnx")
        module = auto_pad_model(onnx_path, weights)
        r = run([args.ncd, "import", onnx_path, "-o", os.path.join(tmp, "auto_pad.ncd"), "--weights",
                 os.path.join(tmp, "auto_pad.safetensors")])
        x = torch.randn(2, 3, 7, 7, generator=g)
        np.save(os.path.join(tmp, "x.npy"), x.numpy())
        if r.returncode == 0:
            r = run([args.ncd, "run", os.path.join(tmp, "auto_pad.ncd"), "--params", os.path.join(tmp, "auto_pad.safetensors"),
                     "--in", "X=" + os.path.join(tmp, "x.npy"), "--out-dir", os.path.join(tmp, "auto_pad_out")])
        if r.returncode != 0:
            failures += 1
            print("FAIL: auto_pad: " + r.stderr)
        else:
            got, want = np.load(os.path.join(tmp, "auto_pad_out", "Y.npy")), module(x).numpy()
            err, tol = error(got, want, 1e-4)
            if not err <= tol:
                failures += 1
                print("FAIL: auto_pad: output %s vs %s: max |err| %.3g" % (got.shape, want.shape, err))
            else:
                print("ok: auto_pad (SAME_UPPER, SAME_LOWER, VALID, average pools counting the padding or not): ncd run "
                      "equals torch with "
                      "explicit padding (max |err| %.2g)" % err)
    with tempfile.TemporaryDirectory() as tmp:
        for name, cls, shape, dynamic, *extra in MODELS:
            make = extra[0] if extra else normal
            module, onnx_path = export(name, cls, shape, dynamic, tmp, make=make,
                                       options=extra[1] if len(extra) > 1 else None)
            program = os.path.join(tmp, name + ".ncd")
            weights = os.path.join(tmp, name + ".safetensors")
            r = run([args.ncd, "import", onnx_path, "-o", program, "--weights", weights])
            if r.returncode != 0 or r.stderr:
                fail("%s: ncd import: exit %d\n%s" % (name, r.returncode, r.stderr))
            problems = []
            r = run([args.ncd, "check", "--Werror", program])
            if r.returncode != 0:
                problems.append("check --Werror: " + r.stderr)
            r = run([args.ncd, "fmt", "--check", program])
            if r.returncode != 0:
                problems.append("not in fmt form")
            # At a size other than the exported one: the dynamic axes are axes without a size.
            other = tuple(s + 3 if i in dynamic else s for i, s in enumerate(shape))
            x = make(other, generator=torch.Generator().manual_seed(7))
            np.save(os.path.join(tmp, "x.npy"), x.numpy())
            out = os.path.join(tmp, name + "_out")
            # Repeated layers are diagrams of their own: the model's is the last.
            with open(program) as f:
                diagram = ["--diagram", re.findall(r"^diagram (\w+)\(", f.read(), re.M)[-1]]
            r = run([args.ncd, "run", program, "--params", weights, "--in", "X=" + os.path.join(tmp, "x.npy"),
                     "--out-dir", out] + diagram)
            if r.returncode != 0:
                problems.append("ncd run: " + r.stderr)
            else:
                got = np.load(os.path.join(out, "Y.npy"))
                with torch.no_grad():
                    want = module(x).numpy()
                err, tol = error(got, want, 1e-4)
                if not err <= tol:
                    problems.append("output %s vs torch %s: max |err| %.3g > %.3g" % (got.shape, want.shape, err, tol))
                else:
                    print("ok: %s: ncd run equals torch at %s (max |err| %.2g)" % (name, list(other), err))
                if name in BF16:
                    # Imported at bf16 (every float tensor, the weights file still float32): within bf16's error.
                    half = os.path.join(tmp, name + "_bf16.ncd")
                    r = run([args.ncd, "import", onnx_path, "-o", half, "--dtype", "bf16"])
                    if r.returncode == 0:
                        r = run([args.ncd, "run", half, "--params", weights, "--in", "X=" + os.path.join(tmp, "x.npy"),
                                 "--out-dir", out + "_bf16"] + diagram)
                    if r.returncode != 0:
                        problems.append("--dtype bf16: " + r.stderr)
                    else:
                        got = np.load(os.path.join(out + "_bf16", "Y.npy"))
                        err, tol = error(got, want, 2e-2)
                        if not err <= tol:
                            problems.append("--dtype bf16: max |err| %.3g" % err)
                        else:
                            print("ok: %s imported at bf16: ncd run within bf16 of torch (max |err| %.2g)" % (name, err))
            sizes = ["-D", "%s=%d" % (dynamic[0], other[0])] + (
                ["-D", "%s=%d" % (dynamic[1], other[1])] if 1 in dynamic else [])
            r = run([args.ncd, "render", program, "-o", os.path.join(tmp, name + ".dot")] + diagram)
            if r.returncode != 0 or os.path.getsize(os.path.join(tmp, name + ".dot")) == 0:
                problems.append("ncd render: " + r.stderr)
            r = run([args.ncd, "cost", program, "--hw", "h100-sxm"] + sizes + diagram)
            if r.returncode != 0:
                problems.append("ncd cost: " + r.stderr)
            r = run([args.ncd, "optimize", program, "--hw", "h100-sxm", "-O2", "-o", os.path.join(tmp, "opt.ncd")] + sizes + diagram)
            if r.returncode != 0:
                problems.append("ncd optimize -O2: " + r.stderr)
            for p in problems:
                failures += 1
                print("FAIL: %s: %s" % (name, p))
    return 1 if failures else 0


GOLDEN = [("mlp", MLP, (8, 16), {0: "batch"}), ("gpt2_block", GPT2Block, (2, 10, 32), {0: "batch", 1: "seq"}),
          ("gpt2_embed", GPT2Embed, (2, 10), {0: "batch", 1: "seq"}, token_ids(50)),
          ("conv_block", ConvBlock, (2, 3, 16, 16), {0: "batch"}),
          ("llama_stack", LlamaStack, (2, 10, 32), {0: "batch", 1: "seq"})]


def golden(args):
    failures = 0
    for name, cls, shape, dynamic, *maker in GOLDEN:
        expected_path = os.path.join(args.root, "tests", "import", name + ".golden")
        with tempfile.TemporaryDirectory() as tmp:
            _, onnx_path = export(name, cls, shape, dynamic, tmp, make=maker[0] if maker else normal)
            r = run([args.ncd, "import", os.path.basename(onnx_path), "-o", "-"], cwd=tmp)
            if r.returncode != 0:
                fail("%s: ncd import: %s" % (name, r.stderr))
            # The exporter's version is in the first line: the golden file holds it as VERSION.
            got = re.sub(r"\(pytorch [^,]*,", "(pytorch VERSION,", r.stdout, count=1)
        if args.update:
            with open(expected_path, "w") as f:
                f.write(got)
            print("updated " + expected_path)
            continue
        with open(expected_path) as f:
            expected = f.read()
        if got != expected:
            failures += 1
            print("FAIL: the imported %s changed (run with --update if intended):\n--- expected\n%s--- got\n%s" %
                  (name, expected, got))
        else:
            print("ok: the imported %s is tests/import/%s.golden" % (name, name))
    return 1 if failures else 0


def onnx_model_bytes(op_type, opset=17, source="X", rows=2):
    """A minimal ONNX model, one node of `op_type` from X[2, 3] to Y, in the protobuf wire format written by
    hand (field numbers of onnx.proto), so that no onnx package is needed."""
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    def message(number, payload):
        return varint((number << 3) | 2) + varint(len(payload)) + payload

    def integer(number, n):
        return varint(number << 3) + varint(n)

    def text(number, value):
        return message(number, value.encode())

    def value_info(name):
        shape = message(1, integer(1, rows)) + message(1, integer(1, 3))  # TensorShapeProto: dims rows, 3
        tensor = integer(1, 1) + message(2, shape)  # elem_type FLOAT, shape
        return text(1, name) + message(2, message(1, tensor))  # name, TypeProto.tensor_type

    node = text(1, source) + text(2, "Y") + text(3, "/odd/" + op_type) + text(4, op_type)
    graph = message(1, node) + text(2, "g") + message(11, value_info("X")) + message(12, value_info("Y"))
    return integer(1, 8) + text(2, "test") + message(7, graph) + message(8, integer(2, opset))


def errors(args):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        _, onnx_path = export("mlp", MLP, (8, 16), {0: "batch"}, tmp)
        with open(onnx_path, "rb") as f:
            whole = f.read()
        def exported(name, cls, shape, dynamic):
            _, path = export(name, cls, shape, dynamic, tmp)
            with open(path, "rb") as f:
                data = f.read()
            os.remove(path)
            return data

        seq_cat = exported("seq_cat", SeqCat, (2, 5, 3), {0: "batch", 1: "seq"})
        strided = exported("strided", Strided, (4, 12), {0: "batch", 1: "seq"})
        grouped_up = exported("grouped_up", GroupedUp, (1, 4, 3, 3), {0: "batch"})
        pick = exported("pick", Pick, (4, 12), {0: "batch", 1: "seq"})
        cases = [
            ("truncated.onnx", whole[:len(whole) // 2], [],
             "ncd import: error: truncated.onnx: not an ONNX model (the protobuf does not parse: truncated, or another "
             "kind of file)\n"),
            ("text.onnx", b"this is not a model\n", [],
             "ncd import: error: text.onnx: not an ONNX model (the protobuf does not parse: truncated, or another "
             "kind of file)\n"),
            ("model.txt", b"", [],
             "ncd import: error: model.txt: no importer reads this kind of file; they read .onnx (onnx)\n"),
            ("softsign.onnx", onnx_model_bytes("Softsign"), [],
             "ncd import: error: softsign.onnx: node '/odd/Softsign' (Softsign): ncd import does not support op "
             "Softsign yet; it reads " + ", ".join(SUPPORTED) + "\n"),
            ("cycle.onnx", onnx_model_bytes("Relu", source="Y"), [],
             "ncd import: error: cycle.onnx: node '/odd/Relu' (Relu) reads 'Y', which no earlier node, input or "
             "initializer defines (the graph is not in order, or has a cycle)\n"),
            ("huge.onnx", onnx_model_bytes("Relu", rows=1 << 50), [],
             "ncd import: error: huge.onnx: graph input 'X' has dimension 0 of size 1125899906842624\n"),
            ("old.onnx", onnx_model_bytes("Relu", opset=9), [],
             "ncd import: error: old.onnx: the model uses ONNX operator set 9; ncd import reads sets 13 to 21 "
             "(torch.onnx.export(..., opset_version=17))\n"),
            ("mlp.onnx", whole, ["--axis", "hidden=width"],
             "ncd import: error: mlp.onnx: --axis hidden=width: the model has no axis 'hidden' (its axes: batch, x_1, "
             "fc1, fc2)\n"),
            ("mlp.onnx", whole, ["--axis", "fc1=fc2"],
             "ncd import: error: mlp.onnx: --axis fc1=fc2: 'fc2' is already a name in the program\n"),
            ("mlp.onnx", whole, ["--axis", "fc1"], "ncd import: error: --axis fc1: expected NAME=NEW\n"),
            ("mlp.onnx", whole, ["--dtype", "i8"], "ncd import: error: --dtype i8: expected f32, bf16 or f16\n"),
            ("seq_cat.onnx", seq_cat, [],
             "ncd import: error: seq_cat.onnx: node '/Concat' (Concat) joins along a dimension without a size\n"),
            ("grouped_up.onnx", grouped_up, [],
             "ncd import: error: grouped_up.onnx: node '/up/ConvTranspose' (ConvTranspose) is a grouped transposed "
             "convolution; ncd import reads group 1\n"),
            ("strided.onnx", strided, [],
             "ncd import: error: strided.onnx: node '/Slice' (Slice) slices with step 2 a dimension without a size, "
             "to a computed end or along several dimensions; ncd import reads steps other than 1 of one sized "
             "dimension\n"),
            ("pick.onnx", pick, [],
             "ncd import: error: pick.onnx: node '/Gather' (Gather) gathers positions of a dimension without a size\n"),
            ("mlp.onnx", whole, ["--diagram", "softmax"],
             "ncd import: error: mlp.onnx: --diagram softmax: a word ncd reserves\n"),
            ("missing.onnx", None, [], "ncd: error: missing.onnx: cannot open: No such file or directory\n"),
        ]
        for name, data, extra, stderr in cases:
            path = os.path.join(tmp, name)
            if data is not None:
                with open(path, "wb") as f:
                    f.write(data)
            out = os.path.join(tmp, "out.ncd")
            weights = os.path.join(tmp, "out.safetensors")
            r = run([args.ncd, "import", name, "-o", out, "--weights", weights] + extra, cwd=tmp)
            problems = []
            expected_status = 2 if extra in (["--axis", "fc1"], ["--dtype", "i8"]) else 1
            if r.returncode != expected_status:
                problems.append("exit %d, expected %d" % (r.returncode, expected_status))
            if r.stderr != stderr:
                problems.append("stderr:\n  got:      %r\n  expected: %r" % (r.stderr, stderr))
            for left in (out, weights):
                if os.path.exists(left):
                    problems.append("wrote " + os.path.basename(left))
                    os.remove(left)
            if problems:
                failures += 1
                print("FAIL: ncd import %s %s\n  %s" % (name, " ".join(extra), "\n  ".join(problems)))
            if data is not None and name != "mlp.onnx":
                os.remove(path)
    if not failures:
        print("ok: %d error cases" % len(cases))
    return 1 if failures else 0


TORCH_SCRIPT = r"""
import sys
import numpy as np
import torch
import stack

failures = []
params = stack.load_params(sys.argv[1], device="cpu")
state = torch.load(sys.argv[2])
# The weights by param path are the module's own (its state_dict), rounded to the program's bf16: one diagram
# per layer, called in repeat.
for i in range(3):
    for path, key, transposed in (("%d.H.ln_2_weight", "h.%d.ln_2.weight", False),
                                  ("%d.H.attn_c_attn_weight", "h.%d.attn.c_attn.weight", True),
                                  ("%d.H.c_proj_bias", "h.%d.c_proj.bias", False)):
        want = (state[key % i].t() if transposed else state[key % i]).to(torch.bfloat16)
        if path % i not in params or not torch.equal(params[path % i], want):
            failures.append("load_params: %s is not the module's %s" % (path % i, key % i))
if not torch.equal(params["ln_f_weight"], state["ln_f.weight"].to(torch.bfloat16)):
    failures.append("load_params: ln_f_weight is not the module's ln_f.weight")
if sorted(params) != sorted(p for p, _, _ in stack._Stack.params):
    failures.append("load_params gives %s; the function takes %s" % (sorted(params), [p for p, _, _ in stack._Stack.params]))
where = "move it with .cuda()" if torch.cuda.is_available() else "this machine has no CUDA device"
try:
    stack.Stack(torch.zeros(2, 5, 32, dtype=torch.bfloat16), params)
    failures.append("a CPU tensor was taken")
except ValueError as e:
    if str(e) != "Stack: input 'X' is on cpu; the kernels run on CUDA tensors (%s)" % where:
        failures.append("the message for a CPU tensor is %r" % str(e))
try:
    stack.load_params(sys.argv[3])
    failures.append("a text file was read as weights")
except ValueError as e:
    if str(e) != "stack: %s is not a safetensors file (its header runs past the end)" % sys.argv[3]:
        failures.append("the message for a text file is %r" % str(e))
for f in failures:
    print("FAIL: " + f)
if not failures:
    print("ok: the package of the imported GPT-2 stack: load_params gives the module's weights by param path, "
          "a CPU tensor is refused")
sys.exit(1 if failures else 0)
"""


def torch_package(args):
    """`ncd emit --torch` on an imported model: the package builds with nvcc and takes the imported weights."""
    nvcc = shutil.which(args.nvcc) or (args.nvcc if os.path.isfile(args.nvcc) else None)
    if not nvcc:
        print("SKIP: nvcc not found (%s)" % args.nvcc)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        module, onnx_path = export("stack", GPT2Stack, (2, 10, 32), {0: "batch", 1: "seq"}, tmp)
        torch.save(module.state_dict(), os.path.join(tmp, "module.pt"))
        program, weights = os.path.join(tmp, "stack.ncd"), os.path.join(tmp, "stack.safetensors")
        # bf16, as a GPU runs it (tensor cores); the weights file stays float32.
        r = run([args.ncd, "import", onnx_path, "-o", program, "--weights", weights, "--dtype", "bf16"])
        if r.returncode != 0:
            fail("ncd import: " + r.stderr)
        r = run([args.ncd, "emit", "--torch", os.path.join(tmp, "stack"), program, "--diagram", "Stack"])
        if r.returncode != 0 or "generic kernel" in r.stderr:
            fail("emit --torch: exit %d\n%s" % (r.returncode, r.stderr))
        env = dict(os.environ, NCD_NVCC=nvcc)
        build = subprocess.run(["/usr/bin/python3", "-c", "import stack; print(stack.build())"], cwd=tmp, env=env,
                               capture_output=True, text=True)
        if build.returncode != 0:
            fail("stack.build() failed:\n" + build.stdout + build.stderr)
        with open(os.path.join(tmp, "text.safetensors"), "w") as f:
            f.write("not weights\n")
        checks = subprocess.run(["/usr/bin/python3", "-c", TORCH_SCRIPT, weights, os.path.join(tmp, "module.pt"),
                                 os.path.join(tmp, "text.safetensors")], cwd=tmp, env=env, capture_output=True,
                                text=True)
        sys.stdout.write(checks.stdout)
        if checks.returncode != 0:
            fail("the package's checks failed:\n" + checks.stderr)
    return 0


SUPPORTED = ["Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Concat", "Constant",
             "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Div", "Einsum", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor",
             "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "Identity",
             "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul",
             "Neg", "Not", "Or", "Pow", "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum",
             "Relu", "Reshape", "Shape", "Sigmoid", "Sin", "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze",
             "Sub", "Tanh", "Transpose", "Trilu", "Unsqueeze", "Where"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ncd", required=True)
    p.add_argument("--root", default=".")
    p.add_argument("--update", action="store_true")
    p.add_argument("--nvcc", default="nvcc")
    p.add_argument("command", choices=["models", "golden", "errors", "torch"])
    args = p.parse_args()
    args.ncd = os.path.abspath(args.ncd)
    args.root = os.path.abspath(args.root)
    return {"models": models, "golden": golden, "errors": errors, "torch": torch_package}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
