"""A rank-32 factorisation of proj.ncd's weight W with the conversion of its
params (the "params" extension: W_u, W_v from the truncated SVD of W), the same
without a conversion (its params drawn at random), and conversions that are
wrong: a misspelt source, an unknown op, a rank axis the factor lacks, a
"params" that is not an array, a mean over axes that do not fit, a param
converted twice, an entry without "from"; and W stored transposed (a copy,
exact)."""
import json
import sys

request = json.load(sys.stdin)
assert request["version"] == 1 and "params" in request["extensions"]
FACTORED = """axis s = 256, m = 128, n = 128, r = 32
default dtype f32

diagram Proj(X[s, m]) -> Y[s, n] {
  param W_u[m, r], W_v[r, n]
  Y[s, n] = X[s, m] * W_u[m, r] * W_v[r, n]
}
"""
left = {"op": "svd_left", "param": "W_u", "from": "W", "rank": "r"}
right = {"op": "svd_right", "param": "W_v", "from": "W", "rank": "r"}
TRANSPOSED = """axis s = 256, m = 128, n = 128
default dtype f32

diagram Proj(X[s, m]) -> Y[s, n] {
  param Wt[n, m]
  Y[s, n] = X[s, m] * Wt[n, m]
}
"""
candidates = [
    {"ncd": FACTORED, "rationale": "rank 32 from the SVD", "params": [left, right]},
    {"ncd": FACTORED, "rationale": "rank 32 at random"},
    {"ncd": FACTORED, "rationale": "misspelt source", "params": [dict(left, **{"from": "Ww"}), right]},
    {"ncd": FACTORED, "rationale": "unknown op", "params": [left, dict(right, op="svd")]},
    {"ncd": FACTORED, "rationale": "wrong rank axis", "params": [dict(left, rank="s"), right]},
    {"ncd": FACTORED, "rationale": "not an array", "params": {"W_u": "W"}},
    {"ncd": FACTORED, "rationale": "pooled the wrong way",
     "params": [{"op": "mean", "param": "W_u", "from": "W", "axis": "n", "into": "s"}, right]},
    {"ncd": FACTORED, "rationale": "twice", "params": [left, right, left]},
    {"ncd": FACTORED, "rationale": "no source", "params": [{"op": "copy", "param": "W_u"}]},
    {"ncd": TRANSPOSED, "rationale": "W stored transposed", "params": [{"op": "copy", "param": "Wt", "from": "W"}]},
]
json.dump({"version": 1, "candidates": candidates}, sys.stdout)
