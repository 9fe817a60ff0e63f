#!/usr/bin/env python3
"""Runs a command and checks its exit status and that its output matches a pattern.

    expect.py --status N --pattern REGEX -- COMMAND ARGS...

The pattern is searched (re.search) in standard output and standard error
together; both are printed, so a failing test shows what the command said.
"""

import argparse
import re
import subprocess
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=int, required=True)
    parser.add_argument("--pattern", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command and args.command[0] == "--" else args.command
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    sys.stdout.write(output)
    ok = True
    if result.returncode != args.status:
        print(f"expect: exit status {result.returncode}, expected {args.status}")
        ok = False
    if not re.search(args.pattern, output):
        print(f"expect: the output does not match {args.pattern!r}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
