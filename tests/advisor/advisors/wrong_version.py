"""An advisor speaking a protocol version ncd does not."""
import json
import sys

sys.stdin.read()
json.dump({"version": 99, "candidates": []}, sys.stdout)
