"""Candidates of every malformed kind: text that does not compile, neither
field, both fields, a schedule of other text, a diagram of another name,
the diagram unchanged, an input renamed."""
import json
import sys

request = json.load(sys.stdin)
source = request["source"]
json.dump({"version": 1, "candidates": [
    {"ncd": "diagram Attention(Q[q, d]) -> O[q, d] {\n  O[q, d] = Q[q, e]\n}\n", "rationale": "unknown axis"},
    {"rationale": "nothing"},
    {"ncd": source, "schedule": "schedule Attention {}", "rationale": "both"},
    {"schedule": "diagram X() -> Y[] {}", "rationale": "not a schedule"},
    {"ncd": source.replace("Attention", "Other"), "rationale": "renamed"},
    {"ncd": source, "rationale": "unchanged"},
    {"ncd": source.replace("V[", "W["), "rationale": "another interface"},
]}, sys.stdout)
