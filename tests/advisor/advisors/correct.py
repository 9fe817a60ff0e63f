"""A correct low-level proposal: the attention as one streamed kernel (a schedule only)."""
import json
import sys

request = json.load(sys.stdin)
assert request["schema"] == "ncd-advisor-request" and request["version"] == 1
schedule = 'schedule Attention for "h100-sxm" {\n  group q by 64\n  stream k by 128\n}\n'
json.dump({"version": 1, "candidates": [{"schedule": schedule, "rationale": "one kernel: stream k (online softmax)"}]},
          sys.stdout)
