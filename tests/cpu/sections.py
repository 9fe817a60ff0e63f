"""The frame of the CPU backend's sectioned test scripts (test_io.py, test_moe.py, test_quantize.py).

Each script names its sections in a dict {name: function(ncd, root, work)};
`main` runs the one given on the command line in a fresh temporary folder and
exits 1 when any `check` failed. Written independently of ncd's code.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message)


def run(ncd, args, cwd):
    """ncd with `args` in `cwd`: (exit status, stdout, stderr)."""
    result = subprocess.run([ncd] + args, capture_output=True, text=True, cwd=cwd, timeout=300)
    return result.returncode, result.stdout, result.stderr


def main(sections, prefix):
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("section", choices=sorted(sections))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        sections[args.section](os.path.abspath(args.ncd), os.path.abspath(args.root), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.section}: {len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit("sections.py is imported by the test scripts, not run")
