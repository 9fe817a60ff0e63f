"""A high-level proposal that changes the function on purpose: the scale
rsqrt(#d) becomes rsqrt(#d + 4) and the kernel is fused. Not equivalent;
accepted only with --allow-inexact, within --tolerance."""
import json
import sys

request = json.load(sys.stdin)
source = request["source"]
schedule = '\nschedule Attention for "h100-sxm" {\n  group q by 64\n  stream k by 128\n}\n'
json.dump({"version": 1, "candidates": [
    {"ncd": source.replace("rsqrt(#d)", "rsqrt(#d + 4)") + schedule, "rationale": "slightly different scale"},
]}, sys.stdout)
