#!/usr/bin/env python3
"""Checks the IR-to-source writer (`ncd show --source`) on the diagrams of one file.

    run_source.py --ncd BUILD/bin/ncd --root SRC --file stdlib/std/nn.ncd
    run_source.py --ncd BUILD/bin/ncd --root SRC --file examples/attention.ncd --diagram Attention \
                  --golden tests/source/examples.attention.Attention.ncd

For every diagram of the file, the written source must pass `ncd check` and
`ncd fmt --check`, be the same bytes when written again, read back to the same
source (writing the written file's diagram gives the file again: one statement
per operation is exactly one operation), and compute the same function:
`ncd equiv ORIGINAL WRITTEN --diagram NAME` at the small sizes the CPU oracle
tests use (tests/cpu/oracle.py SIZES), or those given with --define. -D is
given only for the names the written file declares as base axes: the written
file may hold a name as one derived axis where the original also had a base
axis of that name whose size no diagram used.

With --golden, the written source of the one diagram must also equal a stored
file, byte for byte.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cpu"))
from oracle import SIZES  # noqa: E402


class Failure(Exception):
    pass


def run(command, what):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise Failure(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.stdout


def diagrams_of(ncd, path):
    program = json.loads(run([ncd, "show", "--json", path], "listing the diagrams"))
    return [diagram["name"] for diagram in program["diagrams"]]


def base_axes(ncd, path):
    program = json.loads(run([ncd, "show", "--json", path], "listing the axes"))
    return {axis["name"] for axis in program["axes"] if not axis["derived"]}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def check_diagram(ncd, root, relative, diagram, work, defines):
    original = os.path.join(root, relative)
    written = os.path.join(work, diagram + ".ncd")
    again = os.path.join(work, diagram + ".again.ncd")
    reread = os.path.join(work, diagram + ".reread.ncd")
    run([ncd, "show", "--source", "--diagram", diagram, original, "-o", written], "ncd show --source")
    run([ncd, "check", written], "ncd check of the written source")
    run([ncd, "fmt", "--check", written], "ncd fmt --check of the written source")
    run([ncd, "show", "--source", "--diagram", diagram, original, "-o", again], "writing again")
    if read(written) != read(again):
        raise Failure("writing twice gave different bytes")
    run([ncd, "show", "--source", "--diagram", diagram, written, "-o", reread], "writing the written source")
    if read(written) != read(reread):
        raise Failure(f"the written source reads back as other source:\n{read(reread).decode()}")
    declared = base_axes(ncd, written)
    command = [ncd, "equiv", original, written, "--diagram", diagram]
    sizes = dict(SIZES.get(relative, {}))
    sizes.update(defines)
    for name, size in sorted(sizes.items()):
        if name in declared:
            command += ["-D", f"{name}={size}"]
    return run(command, "ncd equiv")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--file", required=True, help="a file relative to the root")
    parser.add_argument("--diagram", help="check only this diagram (default: every diagram of the file)")
    parser.add_argument("--golden", help="with --diagram: the written source must equal this file")
    parser.add_argument("--define", action="append", default=[], metavar="AXIS=N",
                        help="a size for ncd equiv, besides the oracle's sizes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    defines = dict(define.split("=", 1) for define in args.define)
    ncd = os.path.abspath(args.ncd)
    if args.golden and not args.diagram:
        parser.error("--golden needs --diagram")

    work = tempfile.mkdtemp(prefix="ncd-source-")
    failed = 0
    try:
        diagrams = [args.diagram] if args.diagram else diagrams_of(ncd, os.path.join(args.root, args.file))
        for diagram in diagrams:
            try:
                report = check_diagram(ncd, args.root, args.file, diagram, work, defines)
                if args.golden and read(os.path.join(work, diagram + ".ncd")) != read(args.golden):
                    raise Failure(f"the written source differs from {args.golden}; it is now:\n" +
                                  read(os.path.join(work, diagram + ".ncd")).decode())
                print(f"{args.file} {diagram}: ok; {report.strip().splitlines()[-1]}")
            except (Failure, subprocess.TimeoutExpired) as failure:
                print(f"{args.file} {diagram}: FAILED: {failure}")
                failed += 1
    finally:
        if args.keep:
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
