"""An advisor that never answers (ncd must kill it at --advisor-timeout)."""
import sys
import time

sys.stdin.read()
time.sleep(600)
