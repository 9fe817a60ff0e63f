"""Independent NumPy implementations of every diagram in stdlib/std/*.ncd and examples/*.ncd.

This is the numerical oracle of the CPU backend: each function computes, from
the language's specification (docs/LANGUAGE.md) and the diagram's source, the
same function that `ncd run` computes, on the same inputs and params (read
from the .npy files `ncd run --random` writes). It never calls ncd code.

Each function takes `x` (inputs by name), `p` (params by path, docs/RUN.md)
and `r`, the rounding of a statement's intermediates to its dtype (the
identity in float32 for f32 files, round-to-nearest-even bfloat16 for bf16
files: "every intermediate the statement computes is held in that dtype").
Arithmetic is float64; `r` rounds through float32 as the backend stores it.
"""

import numpy as np

# ---------------------------------------------------------------- dtypes


def round_bf16(a):
    """Rounds float32 values to bfloat16 (round to nearest, ties to even), as float32."""
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, out)


def rounder(dtype):
    if dtype == "bf16":
        return lambda a: round_bf16(np.asarray(a, dtype=np.float64).astype(np.float32)).astype(np.float64)
    return lambda a: np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


F32 = rounder("f32")  # statements annotated f32 in a bf16 file

# ---------------------------------------------------------------- building blocks


def softmax(s, axis):
    m = np.max(s, axis=axis, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def layernorm(x, axis=-1, eps=1e-5):
    mean = np.mean(x, axis=axis, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=axis, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def rmsnorm(x, axis=-1, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=axis, keepdims=True) + eps)


def erf(x):
    # math.erf elementwise: NumPy has no erf of its own.
    import math

    return np.vectorize(math.erf, otypes=[np.float64])(x)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def shift(x, offset, axis):
    """x read at position i + offset along `axis`; positions outside read zero."""
    out = np.zeros_like(x)
    n = x.shape[axis]
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    if offset >= 0:
        src[axis] = slice(offset, n)
        dst[axis] = slice(0, n - offset)
    else:
        src[axis] = slice(0, n + offset)
        dst[axis] = slice(-offset, n)
    out[tuple(dst)] = x[tuple(src)]
    return out


# ---------------------------------------------------------------- std/attention.ncd
# Cores on one head: Q[q, d], K[k, d], V[k, d]; leading axes of Q are lifted (batched).


def attention_core(Q, K, V, r, mask=None):
    """Q[..., q, d], K[..., k, d], V[..., k, d] -> O[..., q, d]; S is an f32 statement."""
    d = Q.shape[-1]
    S = F32(np.einsum("...qd,...kd->...qk", Q, K) * (1.0 / np.sqrt(d)))
    if mask is not None:
        S = np.where(mask, S, -np.inf)
    P = r(softmax(S, -1))
    return r(np.einsum("...qk,...kd->...qd", P, V))


def causal_mask(nq, nk):
    return np.arange(nq)[:, None] >= np.arange(nk)[None, :]


def window_mask(nq, nk, window):
    q = np.arange(nq)[:, None]
    k = np.arange(nk)[None, :]
    return (q >= k) & (q - k < window)


def Attention(x, p, r, sizes):
    return {"O": attention_core(x["Q"], x["K"], x["V"], r)}


def CausalAttention(x, p, r, sizes):
    Q, K = x["Q"], x["K"]
    return {"O": attention_core(Q, K, x["V"], r, causal_mask(Q.shape[0], K.shape[0]))}


def SlidingWindowAttention(x, p, r, sizes):
    Q, K = x["Q"], x["K"]
    return {"O": attention_core(Q, K, x["V"], r, window_mask(Q.shape[0], K.shape[0], sizes["window"]))}


def masked_softmax_attention(Q, K, V, r, S, keep):
    """softmax over keys of S where `keep`, -inf elsewhere; a query that keeps no key gives 0 (docs/LANGUAGE.md)."""
    S = np.where(keep, S, -np.inf)
    kept = keep.any(axis=-1, keepdims=True)
    top = np.where(kept, np.max(np.where(keep, S, -np.inf), axis=-1, keepdims=True), 0.0)
    e = np.where(keep, np.exp(S - top), 0.0)
    P = r(np.divide(e, e.sum(axis=-1, keepdims=True), out=np.zeros_like(e), where=kept))
    return r(np.einsum("...qk,...kd->...qd", P, V))


def scores(Q, K):
    return F32(np.einsum("...qd,...kd->...qk", Q, K) * (1.0 / np.sqrt(Q.shape[-1])))


def SoftcapAttention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    C = F32(np.tanh(scores(Q, K) / 50.0) * 50.0)
    return {"O": masked_softmax_attention(Q, K, V, r, C, causal_mask(Q.shape[0], K.shape[0]))}


def SlidingWindowSoftcapAttention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    C = F32(np.tanh(scores(Q, K) / 50.0) * 50.0)
    return {"O": masked_softmax_attention(Q, K, V, r, C, window_mask(Q.shape[0], K.shape[0], sizes["window"]))}


def ALiBiAttention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    distance = np.arange(Q.shape[0])[:, None] - np.arange(K.shape[0])[None, :]
    B = F32(scores(Q, K) - float(x["slope"]) * distance)
    return {"O": masked_softmax_attention(Q, K, V, r, B, causal_mask(Q.shape[0], K.shape[0]))}


def PrefixLMAttention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    keep = (np.arange(K.shape[0])[None, :] < sizes["prefix"]) | causal_mask(Q.shape[0], K.shape[0])
    return {"O": masked_softmax_attention(Q, K, V, r, scores(Q, K), keep)}


def DocumentAttention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    keep = (x["qdoc"][:, None] == x["kdoc"][None, :]) & causal_mask(Q.shape[0], K.shape[0])
    return {"O": masked_softmax_attention(Q, K, V, r, scores(Q, K), keep)}


def t5_buckets(nq, nk, num_buckets=32, max_distance=128):
    """T5's bidirectional relative-position buckets of k - q (HF transformers'
    _relative_position_bucket), with the large-offset logarithm in float32."""
    relative = np.arange(nk)[None, :] - np.arange(nq)[:, None]
    half = num_buckets // 2
    exact = half // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    with np.errstate(divide="ignore"):
        ratio = np.log(distance.astype(np.float32) / np.float32(exact)) / np.float32(np.log(max_distance / exact))
    large = np.minimum(exact + np.floor(ratio * np.float32(half - exact)), half - 1)
    return buckets + np.where(distance < exact, distance, large).astype(np.int64)


def T5Attention(x, p, r, sizes):
    Q, K, V = x["Q"], x["K"], x["V"]
    S = F32(np.einsum("qd,kd->qk", Q, K) + x["table"][t5_buckets(Q.shape[0], K.shape[0])])
    return {"O": masked_softmax_attention(Q, K, V, r, S, np.ones(S.shape, dtype=bool))}


def mha(X, p, r, causal, pre=""):
    """X[seq, model] -> Y[seq, model]; Wq[model, heads, d] etc.; heads lifted."""
    g = lambda name: p[pre + name]
    Q = r(r(np.einsum("sm,mhd->shd", X, g("Wq"))) + g("bq"))
    K = r(r(np.einsum("sm,mhd->shd", X, g("Wk"))) + g("bk"))
    V = r(r(np.einsum("sm,mhd->shd", X, g("Wv"))) + g("bv"))
    n = X.shape[0]
    mask = causal_mask(n, n) if causal else None
    # Heads first for the core, then back to [seq, heads, d].
    O = attention_core(Q.transpose(1, 0, 2), K.transpose(1, 0, 2), V.transpose(1, 0, 2), r, mask).transpose(1, 0, 2)
    return r(r(np.einsum("shd,hdm->sm", O, g("Wo"))) + g("bo"))


def MultiHeadAttention(x, p, r, sizes):
    return {"Y": mha(x["X"], p, r, causal=False)}


def CausalMultiHeadAttention(x, p, r, sizes):
    return {"Y": mha(x["X"], p, r, causal=True)}


def rope(X, r):
    """X[..., seq, d] -> Y[..., seq, d]: interleaved pairs rotated by seq * 10000^(-2i/d)."""
    n, d = X.shape[-2], X.shape[-1]
    seq = np.arange(n, dtype=np.float64)[:, None]
    dd = np.arange(d, dtype=np.float64)[None, :]
    A = F32(seq * np.exp(np.floor(dd / 2) * (-2.0 * np.log(10000.0) / d)))  # an f32 statement
    even = (np.arange(d) % 2) == 0
    R = np.where(even, -shift(X, 1, -1), shift(X, -1, -1))
    return r(r(X * r(np.cos(A))) + r(R * r(np.sin(A))))


def RoPE(x, p, r, sizes):
    return {"Y": rope(x["X"], r)}


def gqa(X, p, r, pre=""):
    g = lambda name: p[pre + name]
    Qp = r(np.einsum("sm,mkgd->skgd", X, g("Wq")))
    Kp = r(np.einsum("sm,mkd->skd", X, g("Wk")))
    # RoPE acts on [seq, d], lifted over kv_heads and group.
    Q = rope(Qp.transpose(1, 2, 0, 3), r)  # [kv, group, seq, d]
    K = rope(Kp.transpose(1, 0, 2), r)  # [kv, seq, d]
    V = r(np.einsum("sm,mkd->skd", X, g("Wv"))).transpose(1, 0, 2)  # [kv, seq, d]
    n = X.shape[0]
    O = attention_core(Q, K[:, None], V[:, None], r, causal_mask(n, n))  # [kv, group, seq, d]
    return r(np.einsum("kgsd,kgdm->sm", O, g("Wo")))


def GroupedQueryAttention(x, p, r, sizes):
    return {"Y": gqa(x["X"], p, r)}


def CrossAttention(x, p, r, sizes):
    X, M = x["X"], x["M"]
    Q = r(np.einsum("qm,mhd->hqd", X, p["Wq"]))
    K = r(np.einsum("km,mhd->hkd", M, p["Wk"]))
    V = r(np.einsum("km,mhd->hkd", M, p["Wv"]))
    O = attention_core(Q, K, V, r)  # [heads, q, d]
    return {"Y": r(np.einsum("hqd,hdm->qm", O, p["Wo"]))}


# ---------------------------------------------------------------- std/conv.ncd


def windows(X, kernel, axis, offset):
    """Stack of X read at position i + j + offset along `axis`, j < kernel: a new last axis j."""
    return np.stack([shift(X, j + offset, axis) for j in range(kernel)], axis=-1)


def Conv1d(x, p, r, sizes):
    X, W, b = x["X"], p["W"], p["b"]  # X[t, c], W[kw, c, o]
    kw = W.shape[0]
    nx = X.shape[0] - kw + 1
    Xw = windows(X, kw, 0, 0)[:nx]  # [x, c, kw]
    return {"Y": r(r(np.einsum("xcj,jco->xo", Xw, W)) + b)}


def Conv1dSame(x, p, r, sizes):
    X, W, b = x["X"], p["W"], p["b"]
    kw = W.shape[0]
    Xw = windows(X, kw, 0, -1)  # X[t + kw - 1]: the literal offset -1
    return {"Y": r(r(np.einsum("tcj,jco->to", Xw, W)) + b)}


def conv2d(X, W, offset, valid):
    kh, kw = W.shape[0], W.shape[1]
    rows = np.stack([shift(X, i + offset, 0) for i in range(kh)], axis=0)  # [kh, h, w, c]
    both = np.stack([shift(rows, j + offset, 2) for j in range(kw)], axis=1)  # [kh, kw, h, w, c]
    if valid:
        both = both[:, :, : X.shape[0] - kh + 1, : X.shape[1] - kw + 1]
    return both


def Conv2d(x, p, r, sizes):
    X, W, b = x["X"], p["W"], p["b"]
    P = conv2d(X, W, 0, True)
    return {"Y": r(r(np.einsum("ijyzc,ijco->yzo", P, W)) + b)}


def Conv2dSame(x, p, r, sizes):
    X, W, b = x["X"], p["W"], p["b"]
    P = conv2d(X, W, -1, False)
    return {"Y": r(r(np.einsum("ijhwc,ijco->hwo", P, W)) + b)}


def DepthwiseConv2d(x, p, r, sizes):
    X, W, b = x["X"], p["W"], p["b"]
    P = conv2d(X, W, -1, False)
    return {"Y": r(r(np.einsum("ijhwc,ijc->hwc", P, W)) + b)}


# ---------------------------------------------------------------- std/nn.ncd


def Linear(x, p, r, sizes):
    return {"Y": r(r(x["X"] @ p["W"]) + p["b"])}


def ffn(X, p, r, pre=""):
    H = r(gelu_tanh(r(r(X @ p[pre + "W1"]) + p[pre + "b1"])))
    return r(r(H @ p[pre + "W2"]) + p[pre + "b2"])


def FFN(x, p, r, sizes):
    return {"Y": ffn(x["X"], p, r)}


def swiglu(X, p, r, pre=""):
    G = r(X @ p[pre + "Wg"])
    U = r(X @ p[pre + "Wu"])
    return r((r(silu(G)) * U) @ p[pre + "Wd"])  # one contraction of three factors


def SwiGLU(x, p, r, sizes):
    return {"Y": swiglu(x["X"], p, r)}


def layer_norm(X, p, r, pre=""):
    return r(r(r(layernorm(X, -1, 1e-5)) * p[pre + "gamma"]) + p[pre + "beta"])


def rms_norm(X, p, r, pre=""):
    return r(r(rmsnorm(X, -1, 1e-6)) * p[pre + "gamma"])


def LayerNorm(x, p, r, sizes):
    return {"Y": layer_norm(x["X"], p, r)}


def RMSNorm(x, p, r, sizes):
    return {"Y": rms_norm(x["X"], p, r)}


def gather_rows(table, ids):
    ids = np.asarray(ids).astype(np.int64)
    ok = (ids >= 0) & (ids < table.shape[0])
    return np.where(ok[..., None], table[np.clip(ids, 0, table.shape[0] - 1)], 0.0)


def Embedding(x, p, r, sizes):
    return {"E": gather_rows(p["table"], x["tokens"])}


# ---------------------------------------------------------------- std/transformer.ncd


def gpt2_block(X, p, r, pre=""):
    A = r(X + mha(layer_norm(X, p, r, pre + "ln_1."), p, r, True, pre + "CausalMultiHeadAttention."))
    return r(A + ffn(layer_norm(A, p, r, pre + "ln_2."), p, r, pre + "FFN."))


def GPT2Block(x, p, r, sizes):
    return {"Y": gpt2_block(x["X"], p, r)}


def LlamaBlock(x, p, r, sizes):
    X = x["X"]
    A = r(X + gqa(rms_norm(X, p, r, "input_layernorm."), p, r, "GroupedQueryAttention."))
    return {"Y": r(A + swiglu(rms_norm(A, p, r, "post_attention_layernorm."), p, r, "SwiGLU."))}


def gpt2(tokens, p, r, pre=""):
    H = r(gather_rows(p[pre + "wte"], tokens) + p[pre + "wpe"])
    for i in range(12):
        H = gpt2_block(H, p, r, pre + f"{i}.GPT2Block.")
    N = layer_norm(H, p, r, pre + "LayerNorm.")
    return F32(N @ p[pre + "wte"].T)  # logits is declared f32


def GPT2(x, p, r, sizes):
    return {"logits": gpt2(x["tokens"], p, r)}


# ---------------------------------------------------------------- std/gpt2.ncd (transformers' layout)


def conv1d_hf(X, p, r, pre):
    return r(r(X @ p[pre + "weight"]) + p[pre + "bias"])


def ln_hf(X, p, r, pre):
    return r(r(r(layernorm(X, -1, 1e-5)) * p[pre + "weight"]) + p[pre + "bias"])


def gpt2_attention_hf(X, p, r, heads, pre=""):
    n = X.shape[0]
    P = conv1d_hf(X, p, r, pre + "c_attn.").reshape(n, 3, heads, -1)  # split (three, heads, head_dim)
    Q, K, V = (P[:, i].transpose(1, 0, 2) for i in range(3))  # [heads, seq, head_dim]
    O = attention_core(Q, K, V, r, causal_mask(n, n)).transpose(1, 0, 2).reshape(n, -1)  # merge (heads, head_dim)
    return conv1d_hf(O, p, r, pre + "c_proj.")


def gpt2_mlp_hf(X, p, r, pre=""):
    return conv1d_hf(r(gelu_tanh(conv1d_hf(X, p, r, pre + "c_fc."))), p, r, pre + "c_proj.")


def gpt2_block_hf(X, p, r, heads, pre=""):
    A = r(X + gpt2_attention_hf(ln_hf(X, p, r, pre + "ln_1."), p, r, heads, pre + "attn."))
    return r(A + gpt2_mlp_hf(ln_hf(A, p, r, pre + "ln_2."), p, r, pre + "mlp."))


def hf_Conv1D(x, p, r, sizes):
    return {"Y": conv1d_hf(x["X"], p, r, "")}


def hf_GPT2LayerNorm(x, p, r, sizes):
    return {"Y": ln_hf(x["X"], p, r, "")}


def hf_GPT2Embedding(x, p, r, sizes):
    return {"E": gather_rows(p["weight"], x["ids"])}


def hf_GPT2PositionEmbedding(x, p, r, sizes):
    return {"E": p["weight"][: sizes["seq"]]}


def hf_GPT2Attention(x, p, r, sizes):
    return {"Y": gpt2_attention_hf(x["X"], p, r, sizes["heads"])}


def hf_GPT2MLP(x, p, r, sizes):
    return {"Y": gpt2_mlp_hf(x["X"], p, r)}


def hf_GPT2Block(x, p, r, sizes):
    return {"Y": gpt2_block_hf(x["X"], p, r, sizes["heads"])}


def hf_GPT2Model(x, p, r, sizes):
    ids = x["input_ids"]
    H = r(gather_rows(p["wte.weight"], ids) + p["wpe.weight"][: len(ids)])
    for i in range(sizes["layers"]):
        H = gpt2_block_hf(H, p, r, sizes["heads"], f"h.{i}.")
    return {"last_hidden_state": ln_hf(H, p, r, "ln_f.")}


# ---------------------------------------------------------------- std/llama.ncd (transformers' layout)


def linear_hf(X, p, r, pre):
    return r(X @ p[pre + "weight"].T)


def rms_hf(X, p, r, pre):
    return r(r(rmsnorm(X, -1, 1e-5)) * p[pre + "weight"])


def rotary_hf(X, r):
    """X[..., seq, head_dim]: x cos + rotate_half(x) sin (the two halves are the pairs), base 500000."""
    n, d = X.shape[-2], X.shape[-1]
    half = np.arange(d // 2, dtype=np.float64)[None, :]
    A = F32(np.arange(n, dtype=np.float64)[:, None] * np.exp(half * (-2.0 * np.log(500000.0) / d)))
    A = np.concatenate([A, A], axis=-1)  # the angle of each position of the head
    R = np.concatenate([-X[..., d // 2 :], X[..., : d // 2]], axis=-1)
    return r(r(X * r(np.cos(A))) + r(R * r(np.sin(A))))


def llama_attention_hf(X, p, r, sizes, pre=""):
    n, kv, group = X.shape[0], sizes["kv_heads"], sizes["group"]
    Q = linear_hf(X, p, r, pre + "q_proj.").reshape(n, kv, group, -1).transpose(1, 2, 0, 3)  # [kv, group, seq, hd]
    K = linear_hf(X, p, r, pre + "k_proj.").reshape(n, kv, -1).transpose(1, 0, 2)  # [kv, seq, hd]
    V = linear_hf(X, p, r, pre + "v_proj.").reshape(n, kv, -1).transpose(1, 0, 2)
    O = attention_core(rotary_hf(Q, r), rotary_hf(K, r)[:, None], V[:, None], r, causal_mask(n, n))
    return linear_hf(O.transpose(2, 0, 1, 3).reshape(n, -1), p, r, pre + "o_proj.")


def llama_mlp_hf(X, p, r, pre=""):
    G = linear_hf(X, p, r, pre + "gate_proj.")
    U = linear_hf(X, p, r, pre + "up_proj.")
    return linear_hf(r(r(silu(G)) * U), p, r, pre + "down_proj.")


def llama_layer_hf(X, p, r, sizes, pre=""):
    A = r(X + llama_attention_hf(rms_hf(X, p, r, pre + "input_layernorm."), p, r, sizes, pre + "self_attn."))
    return r(A + llama_mlp_hf(rms_hf(A, p, r, pre + "post_attention_layernorm."), p, r, pre + "mlp."))


def llama_model_hf(ids, p, r, sizes, pre=""):
    H = gather_rows(p[pre + "embed_tokens.weight"], ids)
    for i in range(sizes["layers"]):
        H = llama_layer_hf(H, p, r, sizes, f"{pre}layers.{i}.")
    return rms_hf(H, p, r, pre + "norm.")


def hf_LlamaLinear(x, p, r, sizes):
    return {"Y": linear_hf(x["X"], p, r, "")}


def hf_LlamaRMSNorm(x, p, r, sizes):
    return {"Y": rms_hf(x["X"], p, r, "")}


def hf_LlamaEmbedding(x, p, r, sizes):
    return {"E": gather_rows(p["weight"], x["ids"])}


def hf_LlamaRotary(x, p, r, sizes):
    return {"Y": rotary_hf(x["X"], r)}


def hf_LlamaAttention(x, p, r, sizes):
    return {"Y": llama_attention_hf(x["X"], p, r, sizes)}


def hf_LlamaMLP(x, p, r, sizes):
    return {"Y": llama_mlp_hf(x["X"], p, r)}


def hf_LlamaDecoderLayer(x, p, r, sizes):
    return {"Y": llama_layer_hf(x["X"], p, r, sizes)}


def hf_LlamaModel(x, p, r, sizes):
    return {"last_hidden_state": llama_model_hf(x["input_ids"], p, r, sizes)}


def hf_LlamaForCausalLM(x, p, r, sizes):
    return {"logits": linear_hf(llama_model_hf(x["input_ids"], p, r, sizes, "model."), p, r, "lm_head.")}


# ---------------------------------------------------------------- std/ssm.ncd


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def SelectiveScan(x, p, r, sizes):
    X = x["X"]  # [l, d]
    R = r(X @ p["Wx"])
    Dt = r(softplus(r(r(R @ p["Wdt"]) + p["bdt"])))
    B = r(X @ p["WB"])  # [l, n]
    C = r(X @ p["WC"])
    A = r(-r(np.exp(p["A_log"])))  # [d, n]
    dA = r(np.exp(r(Dt[:, :, None] * A[None, :, :])))  # [l, d, n]
    dBx = r(r(Dt[:, :, None] * B[:, None, :]) * X[:, :, None])
    # h_t = dA_t * h_(t-1) + dBx_t from h_(-1) = 0, in float64; each h rounded as the statement stores it.
    h = np.zeros(dA.shape[1:])
    H = np.empty(dA.shape)
    for t in range(dA.shape[0]):
        h = dA[t] * h + dBx[t]
        H[t] = h
    H = r(H)
    return {"Y": r(r(np.einsum("ldn,ln->ld", H, C)) + r(p["D"][None, :] * X))}


# ---------------------------------------------------------------- std/moe.ncd
# The dense reference of a routing: every expert runs on every token, and each
# token adds the outputs of the experts it chose, weighted; nothing is gathered.


def route(scores, k):
    """topk along the last axis: descending, ties to the lower position (a stable sort of the negation)."""
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(scores, order, -1), order


def dense_experts(X, w_gate, w_up, w_down, r):
    """Every expert's SwiGLU on every token: [seq, experts, hidden]."""
    G = r(np.einsum("sh,efh->sef", X, w_gate))
    U = r(np.einsum("sh,efh->sef", X, w_up))
    H = r(r(silu(G)) * U)
    return r(np.einsum("sef,ehf->seh", H, w_down))


def combine(weights, chosen, experts_out):
    """sum over the chosen slots of weight * that expert's output, as a mask over all experts."""
    n = experts_out.shape[1]
    onehot = (chosen[..., None] == np.arange(n)).astype(np.float64)  # [seq, top, experts]
    return np.einsum("st,ste,seh->sh", weights, onehot, experts_out)


def MixtralSparseMoeBlock(x, p, r, sizes):
    X = x["X"]
    Logits = r(X @ p["gate"].T)
    Top, I = route(Logits, sizes["top"])
    Weight = r(softmax(Top, -1))
    return {"Y": r(combine(Weight, I, dense_experts(X, p["w1"], p["w3"], p["w2"], r)))}


def MixtralDenseMoeBlock(x, p, r, sizes):
    X = x["X"]
    Logits = r(X @ p["gate"].T)
    Top, I = route(Logits, sizes["top"])
    Weight = r(softmax(Top, -1))
    Dense = r(np.einsum("st,ste->se", Weight, (I[..., None] == np.arange(Logits.shape[1])).astype(np.float64)))
    return {"Y": r(np.einsum("se,seh->sh", Dense, dense_experts(X, p["w1"], p["w3"], p["w2"], r)))}


def DeepseekMoE(x, p, r, sizes):
    X = x["X"]
    Scores = r(softmax(r(X @ p["gate"].T), -1))
    Weight, I = route(Scores, sizes["chosen"])
    routed = r(combine(Weight, I, dense_experts(X, p["gate_proj"], p["up_proj"], p["down_proj"], r)))
    SG = r(X @ p["shared_gate"].T)
    SU = r(X @ p["shared_up"].T)
    shared = r(r(r(silu(SG)) * SU) @ p["shared_down"].T)
    return {"Y": r(routed + shared)}


# ---------------------------------------------------------------- examples


def example_Block(x, p, r, sizes):
    X = x["X"]  # [batch, ctx, width]: GPT2Block lifted over batch
    return {"Y": np.stack([gpt2_block(X[b], p, r, "GPT2Block.") for b in range(X.shape[0])])}


def example_Model(x, p, r, sizes):
    ids = x["ids"]  # [batch, ctx]
    return {"logits": np.stack([gpt2(ids[b], p, r, "GPT2.") for b in range(ids.shape[0])])}


def example_MultiHead(x, p, r, sizes):
    X = x["X"]
    heads, d = sizes["heads"], sizes["d"]
    QKV = r(r(X @ p["Wqkv"]) + p["bqkv"])  # [seq, qkv]
    P = QKV.reshape(X.shape[0], 3, heads, d)  # split (three, heads, d), first outermost
    Q, K, V = (P[:, i].transpose(1, 0, 2) for i in range(3))  # [heads, seq, d]
    O = attention_core(Q, K, V, r)  # [heads, seq, d]
    M = O.transpose(1, 0, 2).reshape(X.shape[0], heads * d)  # merge (heads, d)
    return {"Y": r(r(M @ p["Wo"]) + p["bo"])}


# (file relative to the repository root, diagram) -> oracle
ORACLES = {
    ("stdlib/std/attention.ncd", "Attention"): Attention,
    ("stdlib/std/attention.ncd", "CausalAttention"): CausalAttention,
    ("stdlib/std/attention.ncd", "SlidingWindowAttention"): SlidingWindowAttention,
    ("stdlib/std/attention.ncd", "SoftcapAttention"): SoftcapAttention,
    ("stdlib/std/attention.ncd", "SlidingWindowSoftcapAttention"): SlidingWindowSoftcapAttention,
    ("stdlib/std/attention.ncd", "ALiBiAttention"): ALiBiAttention,
    ("stdlib/std/attention.ncd", "T5Attention"): T5Attention,
    ("stdlib/std/attention.ncd", "PrefixLMAttention"): PrefixLMAttention,
    ("stdlib/std/attention.ncd", "DocumentAttention"): DocumentAttention,
    ("stdlib/std/attention.ncd", "MultiHeadAttention"): MultiHeadAttention,
    ("stdlib/std/attention.ncd", "CausalMultiHeadAttention"): CausalMultiHeadAttention,
    ("stdlib/std/attention.ncd", "RoPE"): RoPE,
    ("stdlib/std/attention.ncd", "GroupedQueryAttention"): GroupedQueryAttention,
    ("stdlib/std/attention.ncd", "CrossAttention"): CrossAttention,
    ("stdlib/std/conv.ncd", "Conv1d"): Conv1d,
    ("stdlib/std/conv.ncd", "Conv1dSame"): Conv1dSame,
    ("stdlib/std/conv.ncd", "Conv2d"): Conv2d,
    ("stdlib/std/conv.ncd", "Conv2dSame"): Conv2dSame,
    ("stdlib/std/conv.ncd", "DepthwiseConv2d"): DepthwiseConv2d,
    ("stdlib/std/nn.ncd", "Linear"): Linear,
    ("stdlib/std/nn.ncd", "FFN"): FFN,
    ("stdlib/std/nn.ncd", "SwiGLU"): SwiGLU,
    ("stdlib/std/nn.ncd", "LayerNorm"): LayerNorm,
    ("stdlib/std/nn.ncd", "RMSNorm"): RMSNorm,
    ("stdlib/std/nn.ncd", "Embedding"): Embedding,
    ("stdlib/std/transformer.ncd", "GPT2Block"): GPT2Block,
    ("stdlib/std/transformer.ncd", "LlamaBlock"): LlamaBlock,
    ("stdlib/std/transformer.ncd", "GPT2"): GPT2,
    ("stdlib/std/gpt2.ncd", "Conv1D"): hf_Conv1D,
    ("stdlib/std/gpt2.ncd", "GPT2LayerNorm"): hf_GPT2LayerNorm,
    ("stdlib/std/gpt2.ncd", "GPT2Embedding"): hf_GPT2Embedding,
    ("stdlib/std/gpt2.ncd", "GPT2PositionEmbedding"): hf_GPT2PositionEmbedding,
    ("stdlib/std/gpt2.ncd", "GPT2Attention"): hf_GPT2Attention,
    ("stdlib/std/gpt2.ncd", "GPT2MLP"): hf_GPT2MLP,
    ("stdlib/std/gpt2.ncd", "GPT2Block"): hf_GPT2Block,
    ("stdlib/std/gpt2.ncd", "GPT2Model"): hf_GPT2Model,
    ("stdlib/std/llama.ncd", "LlamaLinear"): hf_LlamaLinear,
    ("stdlib/std/llama.ncd", "LlamaRMSNorm"): hf_LlamaRMSNorm,
    ("stdlib/std/llama.ncd", "LlamaEmbedding"): hf_LlamaEmbedding,
    ("stdlib/std/llama.ncd", "LlamaRotary"): hf_LlamaRotary,
    ("stdlib/std/llama.ncd", "LlamaAttention"): hf_LlamaAttention,
    ("stdlib/std/llama.ncd", "LlamaMLP"): hf_LlamaMLP,
    ("stdlib/std/llama.ncd", "LlamaDecoderLayer"): hf_LlamaDecoderLayer,
    ("stdlib/std/llama.ncd", "LlamaModel"): hf_LlamaModel,
    ("stdlib/std/llama.ncd", "LlamaForCausalLM"): hf_LlamaForCausalLM,
    ("stdlib/std/ssm.ncd", "SelectiveScan"): SelectiveScan,
    ("stdlib/std/moe.ncd", "MixtralSparseMoeBlock"): MixtralSparseMoeBlock,
    ("stdlib/std/moe.ncd", "MixtralDenseMoeBlock"): MixtralDenseMoeBlock,
    ("stdlib/std/moe.ncd", "DeepseekMoE"): DeepseekMoE,
    ("examples/attention.ncd", "Attention"): Attention,
    ("examples/gpt2.ncd", "Block"): example_Block,
    ("examples/gpt2.ncd", "Model"): example_Model,
    ("examples/multihead.ncd", "MultiHead"): example_MultiHead,
}

# Small sizes per file (-D), so that the whole suite runs in seconds.
SIZES = {
    "stdlib/std/attention.ncd": dict(q=8, k=6, d=4, seq=8, heads=2, window=3, prefix=2, kv_heads=2, group=2),
    "stdlib/std/conv.ncd": dict(c=3, o=4, t=10, kw=3, h=6, w=5, kh=3),
    "stdlib/std/nn.ncd": dict(d_in=6, d_out=5, model=8, hidden=12, vocab=20, seq=5),
    "stdlib/std/ssm.ncd": dict(l=7, d=5, n=4, r=3),
    "stdlib/std/moe.ncd": dict(seq=9, hidden_size=6, experts=5, top=2, ffn=7, routed=8, chosen=3, expert_ffn=4,
                               shared_ffn=5),
    "stdlib/std/transformer.ncd": dict(seq=8, heads=2, d=4, hidden=12, vocab=20, kv_heads=2, group=2, ffn=10),
    "stdlib/std/gpt2.ncd": dict(seq=8, positions=12, vocab=20, heads=2, head_dim=4, layers=2, nx=6, nf=5),
    "stdlib/std/llama.ncd": dict(seq=8, vocab=20, layers=2, kv_heads=2, group=2, head_dim=4, intermediate=12,
                                 in_features=6, out_features=5),
    "examples/attention.ncd": dict(q=8, k=6, d=4),
    "examples/gpt2.ncd": dict(batch=2, ctx=8, nh=2, hd=4, vocab=20),
    "examples/multihead.ncd": dict(seq=8, model=8, heads=2, d=4),
    # keys up to 260 after and 39 before a query: every bucket, the logarithmic ones and the cap at 128
    ("stdlib/std/attention.ncd", "T5Attention"): dict(q=40, k=300, d=4),
}
