"""An advisor that writes without end (ncd caps the answer and kills it)."""
import sys

sys.stdin.read()
chunk = "x" * 65536
while True:
    sys.stdout.write(chunk)
