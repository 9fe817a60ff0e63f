"""An advisor that answers what is not JSON."""
import sys

sys.stdin.read()
print("Sure! Here is a faster diagram: <ncd>...</ncd>")
