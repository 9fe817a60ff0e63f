"""An advisor that crashes (SIGSEGV) after a word on stderr."""
import os
import signal
import sys

sys.stdin.read()
sys.stderr.write("advisor: something went wrong\n")
sys.stderr.flush()
os.kill(os.getpid(), signal.SIGSEGV)
