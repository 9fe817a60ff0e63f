"""An advisor that answers and exits, leaving a child that holds its standard
output open (its pid in linger.pid): ncd must take the answer without waiting
for the child, and kill it."""
import json
import subprocess
import sys

json.load(sys.stdin)
child = subprocess.Popen(["sleep", "120"])
with open("linger.pid", "w") as handle:
    handle.write(str(child.pid))
json.dump({"version": 1, "candidates": []}, sys.stdout)
