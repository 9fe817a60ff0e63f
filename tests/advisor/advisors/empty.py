"""An advisor with nothing to propose; it saves the request it got (request.json)."""
import json
import sys

request = json.load(sys.stdin)
with open("request.json", "w") as handle:
    json.dump(request, handle, indent=1, sort_keys=True)
json.dump({"version": 1, "candidates": []}, sys.stdout)
