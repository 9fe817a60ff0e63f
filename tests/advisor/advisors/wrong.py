"""A subtly wrong proposal next to a correct one: the scale rsqrt(#d) becomes
rsqrt(#d + 16) (and the kernel is fused, so it is faster): verification must
reject it with its measured error, and accept the correct one."""
import json
import sys

request = json.load(sys.stdin)
source = request["source"]
schedule = '\nschedule Attention for "h100-sxm" {\n  group q by 64\n  stream k by 128\n}\n'
assert "rsqrt(#d)" in source, source
wrong = source.replace("rsqrt(#d)", "rsqrt(#d + 16)") + schedule
json.dump({"version": 1, "candidates": [
    {"ncd": wrong, "rationale": "fused kernel with a cheaper scale"},
    {"ncd": source + schedule, "rationale": "fused kernel"},
]}, sys.stdout)
