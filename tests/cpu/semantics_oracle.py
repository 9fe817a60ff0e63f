"""NumPy oracles for tests/cpu/semantics.ncd, written from docs/LANGUAGE.md.

Every function takes the inputs `x` and params `p` (by path, docs/RUN.md) as
float64 arrays (integers as int64) and returns the outputs. The rounding of
narrow dtypes is implemented here from the format definitions (brute force
over every representable value for f8), never with ncd code.
"""

import math

import numpy as np

# ---------------------------------------------------------------- dtypes


def round_bf16(a):
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, out)


def f8_values(exponent_bits, mantissa_bits, has_inf):
    """Every finite value of an 8-bit float format, with its encoding."""
    bias = (1 << (exponent_bits - 1)) - 1
    values = []
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e = (code >> mantissa_bits) & ((1 << exponent_bits) - 1)
        f = code & ((1 << mantissa_bits) - 1)
        top = (1 << exponent_bits) - 1
        if has_inf and e == top:
            continue  # inf/nan
        if not has_inf and e == top and f == (1 << mantissa_bits) - 1:
            continue  # e4m3fn NaN
        if e == 0:
            v = sign * f * 2.0 ** (1 - bias - mantissa_bits)
        else:
            v = sign * (1 + f / 2.0**mantissa_bits) * 2.0 ** (e - bias)
        values.append((v, code))
    return values


def round_f8(a, exponent_bits, mantissa_bits, has_inf):
    """Nearest representable value, ties to the even encoding; overflow: inf (e5m2) or saturation (e4m3)."""
    table = f8_values(exponent_bits, mantissa_bits, has_inf)
    vals = np.array([v for v, _ in table])
    codes = np.array([c for _, c in table])
    top = max(vals)
    out = []
    for x in np.asarray(a, dtype=np.float64).ravel():
        if math.isnan(x):
            out.append(x)
            continue
        if math.isinf(x):
            out.append(x if has_inf else math.copysign(top, x))
            continue
        d = np.abs(vals - x)
        best = d.min()
        candidates = [i for i in np.nonzero(d == best)[0]]
        if len(candidates) > 1:
            candidates = [i for i in candidates if codes[i] % 2 == 0] or candidates
        v = vals[candidates[0]]
        if abs(x) > top:
            # Beyond the largest value: IEEE rounding overflows past top + half an ulp.
            ulp = top - sorted(set(np.abs(vals)))[-2]
            if has_inf and abs(x) >= top + ulp / 2:
                v = math.copysign(math.inf, x)
            else:
                v = math.copysign(top, x)
        if v == 0:
            v = math.copysign(0.0, x)
        out.append(v)
    return np.array(out).reshape(np.shape(a))


def e4m3(a):
    return round_f8(a, 4, 3, False)


def e5m2(a):
    return round_f8(a, 5, 2, True)


def to_int(a, low, high):
    a = np.asarray(a, dtype=np.float64)
    t = np.trunc(np.nan_to_num(a, nan=0.0))
    return np.clip(t, low, high)


f32 = np.float32

# ---------------------------------------------------------------- diagrams


def erf(a):
    return np.vectorize(math.erf, otypes=[np.float64])(a)


def Pointwise(x, p):
    X, P = x["X"], x["P"]
    A = np.exp(X) + np.log(np.abs(X) + 1) + np.sqrt(np.abs(X)) + 1 / np.sqrt(np.abs(X) + 1) + np.tanh(X) \
        + 1 / (1 + np.exp(-X)) + np.maximum(X, 0)
    gelu = 0.5 * X * (1 + erf(X / np.sqrt(2)))
    gelu += 0.5 * X * (1 + np.tanh(np.sqrt(2 / np.pi) * (X + 0.044715 * X ** 3)))
    B = gelu + X / (1 + np.exp(-X)) + np.sin(X) + np.cos(X) + erf(X) + 1 / (X + 10) + X * X + np.floor(X) + np.ceil(X)
    softplus = np.log1p(np.exp(X))
    C = np.log1p(np.abs(X)) + np.expm1(X) + softplus + (np.abs(X) + 1) ** P + np.minimum(X, P) + np.maximum(X, P) \
        - (-X) / (P + 10)
    inner = np.where((X != 0) & (X <= 0.5) & (X < 0.25), P, -X)
    D = np.where(((X > P) & ~(X >= 1)) | (X == P), X, inner)
    return {"A": A, "B": B, "C": C, "D": D}


def softmax(a, axes):
    m = np.max(a, axis=axes, keepdims=True)
    e = np.exp(a - m)
    return e / np.sum(e, axis=axes, keepdims=True)


def logsumexp(a, axes, keepdims=False):
    m = np.max(a, axis=axes, keepdims=True)
    out = m + np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axes)


def layernorm(a, axes, eps):
    mean = np.mean(a, axis=axes, keepdims=True)
    var = np.mean((a - mean) ** 2, axis=axes, keepdims=True)
    return (a - mean) / np.sqrt(var + eps)


def Reductions(x, p):
    X = x["X"]  # [s, m, n]
    S = X.sum(axis=(0, 1)) + X.max(axis=(0, 1)) + X.mean(axis=1).min(axis=0) * 2
    M = logsumexp(X, (1, 2)) + (X.min(axis=1) + 2).prod(axis=1) * 0
    L = (X[:, :, 0] / 4 + 1).prod(axis=0) + logsumexp(X[:, :, 1], (0,))
    N = softmax(X, (1, 2))
    Q = X - logsumexp(X, (0,), keepdims=True)
    R = layernorm(X, (1, 2), 0.001)
    T = X / np.sqrt(np.mean(X * X, axis=2, keepdims=True) + 0.01) + layernorm(X, (0,), 1e-5)
    return {"S": S, "M": M, "L": L, "N": N, "Q": Q, "R": R, "T": T}


def read(X, index):
    """X at integer positions (arrays broadcast together); positions out of range read 0."""
    ok = np.ones(np.broadcast(*index).shape, dtype=bool)
    clipped = []
    for axis, i in enumerate(index):
        i = np.asarray(i)
        ok &= (i >= 0) & (i < X.shape[axis])
        clipped.append(np.clip(i, 0, X.shape[axis] - 1))
    return np.where(ok, X[tuple(clipped)], 0.0)


def Indices(x, p):
    X, Sq, Tab, ids = x["X"], x["Sq"], x["Tab"], x["ids"]
    ns, nc = X.shape
    k = 3
    nx = ns - k + 1
    s_ = np.arange(ns)[:, None]
    c_ = np.arange(nc)[None, :]
    A = X.copy()
    D = np.diagonal(Sq)
    F = X[:, 3] + 0.0  # X[s, 7] is out of range: zero
    P = X.reshape(ns, 2, 2)
    G = read(Tab, (np.asarray(ids)[:, None], np.arange(Tab.shape[1])[None, :]))
    W = sum(read(X, (np.arange(nx)[:, None] + j, c_)) * (j + 1) for j in range(k))
    Z = read(X, (2 * s_ - 1, c_)) + read(X, (s_ + 1, c_ - 1))
    Y = P.reshape(ns, 4) * 2
    H = read(Sq, (np.asarray(ids), np.asarray(ids)))
    Pre = X[:, :3].copy()
    Cat = np.concatenate([X, Pre], axis=1)
    return {"A": A, "D": D, "F": F, "P": P, "G": G, "W": W, "Z": Z, "Y": Y, "H": H, "Pre": Pre, "Cat": Cat}


def Contractions(x, p):
    A, B, C, D = x["A"], x["B"], x["C"], x["D"]
    n = B.shape[1]
    P = np.einsum("sm,mn,n,s->s", A, B, C, 1 / (D + 10))
    Q = np.full(n, np.einsum("sm,s->", A, D) * 0.5)
    R = np.einsum("sm,mn->smn", A, B)
    U = np.einsum("sm,sm->", A, A) * n
    V = (A[:, :, None] + (B * C[None, :])[None, :, :]).sum(axis=1)
    return {"P": P, "Q": Q, "R": R, "U": np.array(U), "V": V}


def Positions(x, p):
    X = x["X"]
    ns, nt = X.shape
    s_ = np.arange(ns)[:, None]
    t_ = np.arange(nt)[None, :]
    M = np.where((s_ >= t_) & (s_ - t_ < 2), X, -np.inf)
    K = np.arange(ns) * nt + 0.5
    I = s_ * 10 + t_ + np.zeros_like(X)
    # Softmax of rows with nothing kept is 0 (the FlashAttention convention), not NaN.
    keep = (s_ >= 2) & (s_ >= t_)
    kept = keep.any(axis=1, keepdims=True)
    e = np.where(keep, np.exp(X - np.where(keep, X, -np.inf).max(axis=1, keepdims=True, initial=-np.inf) * kept), 0.0)
    P = np.divide(e, e.sum(axis=1, keepdims=True), out=np.zeros_like(e), where=kept)
    return {"M": M, "K": K, "I": I, "P": P}


def Dtypes(x, p):
    X = x["X"].astype(np.float32)
    F16 = (X * f32(1000)).astype(np.float16).astype(np.float64)
    BF = round_bf16(X * f32(1000)).astype(np.float64)
    E4 = e4m3(X * f32(300))
    E5 = e5m2(X * f32(30000))
    I8 = to_int(X * f32(100), -128, 127)
    I32 = to_int(X * f32(1000), -(2**31), 2**31 - 1)
    B = (X > 0).astype(np.float64)
    terms = [
        round_bf16(X),
        X.astype(np.float16).astype(np.float32) * f32(2),
        e4m3(X).astype(np.float32) * f32(4),
        to_int(X * f32(10), -(2**31), 2**31 - 1).astype(np.float32) * f32(8),
        to_int(X * f32(50), -128, 127).astype(np.float32),
    ]
    F = terms[0]
    for t in terms[1:]:
        F = (F + t).astype(np.float32)
    return {"F16": F16, "BF": BF, "E4": E4, "E5": E5, "I8": I8, "I32": I32, "B": B, "F": F.astype(np.float64)}


def Rounding(x, p):
    X, W = x["X"], x["W"]  # f32 inputs; the statement is bf16
    r = lambda a: round_bf16(np.asarray(a, dtype=np.float64).astype(np.float32)).astype(np.float64)
    XW = r(X[:, :, None] * W[None, :, :])  # [s, m, n], one product, rounded
    first = r(np.exp(r(XW / 3)))
    second = r(XW * np.float64(np.float32(1.01)))
    Y = r(r(first + second).sum(axis=1))
    return {"Y": Y, "Z": Y}


def Round(x, p):
    # float32 arithmetic, as the statement computes it; np.round halves to even.
    X = x["X"].astype(np.float32)
    ten = np.float32(10)
    R = np.round(X * ten)
    H = np.round(np.floor(X * ten) + np.float32(0.5))
    K = np.round(2.5) + np.round(3.5) * 10 + np.round(-2.5) * 100 + np.round(np.float32(0.49999997)) * 1000
    return {"R": R, "H": H, "K": K}


def layer(X, W, b):
    return np.tanh(X @ W) + b


def Calls(x, p):
    X, K = x["X"], x["K"]
    A = layer(X, p["Layer@0.W"], p["Layer@0.b"])
    Mu = A.mean(axis=1)
    Var = ((A - Mu[:, None]) ** 2).mean(axis=1)
    Y = layer(A, p["Layer@1.W"], p["Layer@1.b"]) + A
    G = X[:, None, :] * (np.arange(2)[None, :, None] + 1)
    O = G * K.sum()
    return {"Y": Y, "S": Mu + Var, "O": O}


def Loops(x, p):
    X = x["X"]
    H = X
    for i in range(3):
        H = np.tanh(H * p[f"{i}@0.W"] + p["V"])
    G = X
    C = X * 0
    for i in range(2):
        for j in range(2):
            G = layer(G, p[f"{i}@1.{j}@2.Layer.W"], p[f"{i}@1.{j}@2.Layer.b"]) * 0.5
        C = C + G
    return {"Y": H, "Z": C + G}


def Named(x, p):
    X, Q = x["X"], x["Q"]
    H = X
    for i in range(3):  # n
        for j in range(2):
            H = layer(H, p[f"blk.{i}.{j}.W"], p[f"blk.{i}.{j}.b"]) * p["gain"][i] + i - j
    Y = layer(H, p["first.W"], p["first.b"]) + H
    s, k = len(Q), 3
    pooled = (s - k) // 2 + 1
    P = np.array([max(Q[2 * o + j] for j in range(k)) for o in range(pooled)])
    halves = -(-s // 2)
    padded = np.concatenate([Q, [0.0]])  # reads past the end are zero
    R = np.array([padded[2 * h] + padded[2 * h + 1] for h in range(halves)])
    V = np.concatenate([[0.0], 2 * Q[:-1]]) + Q
    return {"Y": Y, "P": P, "R": R, "V": V}


def linear_scan(a, b, axis):
    """h_t = a_t * h_(t-1) + b_t from h_(-1) = 0 along `axis`, in float64."""
    a, b = np.broadcast_arrays(a, b)
    a, b = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    h = np.zeros(a.shape[1:])
    out = np.empty(a.shape)
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out[t] = h
    return np.moveaxis(out, 0, axis)


def Scans(x, p):
    X, Y, Z, W, A, B = (x[k] for k in ["X", "Y", "Z", "W", "A", "B"])
    X32 = X.astype(np.float32)
    # float32 arithmetic before each scan, as the statement computes it (the scans themselves in float64).
    floor2 = np.floor(X32 * np.float32(2)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        Q = np.where(X32 > np.float32(0.8), np.sqrt(X32 - np.float32(2)), X32).astype(np.float64)
    # np.maximum.accumulate and np.minimum.accumulate propagate NaN, as the language says.
    N = np.cumsum(Q, axis=0) + np.cumprod(Q, axis=0) * 0.5 + np.maximum.accumulate(Q, axis=0) - np.minimum.accumulate(
        Q, axis=0)
    sig = 1 / (1 + np.exp(-A))
    H = linear_scan(sig[None, :, :], B, axis=1)
    r = lambda a: round_bf16(np.asarray(a, dtype=np.float64).astype(np.float32)).astype(np.float64)
    HB = r(linear_scan(r(sig)[None, :, :], B, axis=1))
    return {
        "S": np.cumsum(X, axis=0),
        "P": np.cumprod((X32 + np.float32(1)).astype(np.float64), axis=0),
        "Mx": np.maximum.accumulate(floor2, axis=0),
        "Mn": np.minimum.accumulate(floor2, axis=0),
        "N": N,
        "T": np.cumsum(Y, axis=1) + np.maximum.accumulate(Y, axis=1) * 3,
        "L": np.cumsum(Z) + np.cumprod((1 + Z.astype(np.float32) / np.float32(1000)).astype(np.float64)) +
        np.minimum.accumulate(Z) * 2,
        "V": W + W * 2 + W * 4,
        "H": H,
        "HB": HB,
        "R": np.cumsum(X, axis=0).sum(axis=0),
        "K": linear_scan(np.full(Y.shape, 0.5), Y, axis=1) + np.maximum.accumulate(Y, axis=1),
    }


# ---------------------------------------------------------------- positions and selections


def nan_log(R, above=1):
    """where(R > above, log(-R), floor(R)): NaN wherever R > above, ties elsewhere."""
    with np.errstate(invalid="ignore"):
        return np.where(R > np.float32(above), np.log(-R), np.floor(R))


def order(a, descending):
    """Positions along the last axis in the order of a stable sort: ascending,
    or descending (largest first); NaN above every number (as torch.sort);
    ties keep their order."""
    out = np.empty(a.shape, dtype=np.int64)
    for row in np.ndindex(a.shape[:-1]):
        x = a[row]
        nan = np.isnan(x)
        filled = np.where(nan, 0.0, x)
        position = np.arange(x.size)
        if descending:  # NaN first, then the largest, then the lower position
            out[row] = np.lexsort((position, -filled, ~nan))
        else:  # the smallest first, NaN last, then the lower position
            out[row] = np.lexsort((position, filled, nan))
    return out


def selection(a, count, descending):
    index = order(a, descending)[..., :count]
    return np.take_along_axis(a, index, axis=-1), index


def Argmax(x, p):
    X, L, O, R = x["X"], x["L"], x["O"], x["R"]
    h = np.arange(2)[None, :, None] - 0.5
    with np.errstate(invalid="ignore"):
        N = np.argmax(np.where(R > 1, np.log(-R), R), axis=1)
    # np.argmax and np.argmin: the first extreme, the first NaN.
    return {"A": np.argmax(X, axis=1), "B": np.argmin(X, axis=0), "T": np.argmax(np.floor(X), axis=1),
            "U": np.argmin(np.floor(X), axis=1) * 10.0 + 1, "N": N, "P": np.argmin(nan_log(R), axis=1),
            "G": np.argmax(L, axis=1), "H": np.argmin(np.floor(L * 2), axis=1), "Z": np.argmax(O, axis=1),
            "W": np.argmax(X[:, None, :] * h, axis=2)}


def TopK(x, p):
    X, L, R, O = x["X"], x["L"], x["R"], x["O"]
    V, I = selection(X, 3, True)
    TV, TI = selection(np.floor(R), 3, True)
    NV, NI = selection(nan_log(R, 1.8), 3, True)
    LV, LI = selection(L, 7, True)
    OV, OI = selection(O, 1, True)
    return {"V": V, "I": I, "TV": TV, "TI": TI, "NV": NV, "NI": NI, "LV": LV, "LI": LI, "OV": OV, "OI": OI,
            "W": selection(X * 2, 3, True)[0], "Vl": V, "Il": I, "Al": np.argmax(X, axis=1)}


def Sort(x, p):
    X, R, Q, L, O = x["X"], x["R"], x["Q"], x["L"], x["O"]
    out = {}
    for (v, i), a in [(("A", "AI"), X), (("T", "TI"), np.floor(Q)), (("N", "NI"), nan_log(Q)), (("B", "BI"), L),
                      (("U", "UI"), O), (("P", "PI"), R)]:
        out[v], out[i] = selection(a, a.shape[-1], False)
    out["E"] = np.sort(X, axis=0).T
    return out


def Concat(x, p):
    X, Y, Z, O = x["X"], x["Y"], x["Z"], x["O"]
    C = np.concatenate([X, Y], axis=1)
    F = np.concatenate([O, X], axis=1)
    return {"C": C, "D": np.concatenate([X, Y, Z * 2], axis=1), "A": X * 3, "B": Y * 3,
            "Q": np.concatenate([X, np.exp(Y)], axis=1) + 1, "S": C.sum(axis=1), "F": F, "H": F[:, :4], "G": F[:, 4:]}


ORACLES = {name: globals()[name] for name in
           ["Pointwise", "Reductions", "Indices", "Contractions", "Positions", "Dtypes", "Round", "Rounding", "Calls",
            "Loops", "Named", "Scans", "Argmax", "TopK", "Sort", "Concat"]}

# Outputs compared exactly (deterministic roundings of identical float32 values).
EXACT = {("Dtypes", name) for name in ["F16", "BF", "E4", "E5", "I8", "I32", "B", "F"]} | {
    ("Positions", "I"), ("Indices", "A"), ("Indices", "D"), ("Indices", "P"), ("Indices", "G"), ("Indices", "Y"),
    ("Scans", "Mx"), ("Scans", "Mn"), ("Indices", "F"), ("Indices", "H"), ("Indices", "Pre"), ("Indices", "Cat"), ("Round", "R"), ("Round", "H"), ("Round", "K")} | {
    ("Argmax", name) for name in ["A", "B", "T", "U", "N", "P", "G", "H", "Z", "W"]} | {
    ("TopK", name) for name in ["V", "I", "TV", "TI", "NV", "NI", "LV", "LI", "OV", "OI", "W", "Vl", "Il", "Al"]} | {
    ("Sort", name) for name in ["A", "AI", "T", "TI", "N", "NI", "B", "BI", "U", "UI", "P", "PI", "E"]} | {
    ("Concat", name) for name in ["C", "D", "F", "G", "H"]}
