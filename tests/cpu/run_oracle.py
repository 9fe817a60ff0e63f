#!/usr/bin/env python3
"""Checks `ncd run` against the NumPy oracle (oracle.py) for one diagram.

    run_oracle.py --ncd BUILD/bin/ncd --root SRC --file stdlib/std/nn.ncd --diagram FFN [--f32] [--size AXIS=N]...

Runs `ncd run --random 1` at the small sizes of oracle.SIZES, reads back the
inputs and params it generated and its outputs, computes the oracle on the same
inputs and params, and compares. The stdlib and the examples are bf16 files:
as written, the oracle rounds each statement's intermediates to bfloat16 like
the language says, and the tolerance is bf16's. With --f32, the run sets every
file's default dtype to f32 (`-D dtype=f32`), and the tolerance is float32's
(rtol 1e-4).
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

# |ncd - oracle| <= RTOL * |oracle| + ATOL * max|oracle|, per element.
TOLERANCE = {"f32": (1e-4, 1e-5), "bf16": (2e-2, 1e-2)}


def load_folder(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.npy"))):
        out[os.path.basename(path)[:-4]] = np.load(path).astype(np.float64) if np.load(path).dtype.kind == "f" else np.load(path)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--diagram", required=True)
    parser.add_argument("--f32", action="store_true")
    parser.add_argument("--size", action="append", default=[], metavar="AXIS=N",
                        help="override one of oracle.SIZES (e.g. the sequence length of a scan)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    function = oracle.ORACLES[(args.file, args.diagram)]
    sizes = dict(oracle.SIZES.get((args.file, args.diagram), oracle.SIZES[args.file]))
    for item in args.size:
        name, value = item.split("=")
        sizes[name] = int(value)
    work = tempfile.mkdtemp(prefix="ncd-oracle-")
    try:
        path = os.path.join(args.root, args.file)
        dtype = "f32" if args.f32 else "bf16"
        includes = ["-D", "dtype=f32"] if args.f32 else []  # every file's default dtype, the stdlib's included
        out = os.path.join(work, "out")
        command = [args.ncd, "run", path, "--diagram", args.diagram, "--random", "1", "--out-dir", out] + includes
        for name, size in sizes.items():
            command += ["-D", f"{name}={size}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            print("ncd run failed:", " ".join(command), "\n", result.stdout, result.stderr)
            return 1
        inputs = load_folder(os.path.join(out, "inputs"))
        params = load_folder(os.path.join(out, "params"))
        got = load_folder(out)
        expected = oracle.__dict__["rounder"](dtype)
        want = function(inputs, params, expected, sizes)
        rtol, atol = TOLERANCE[dtype]
        failed = False
        for name, reference in want.items():
            reference = np.asarray(reference, dtype=np.float64)
            if name not in got:
                print(f"{name}: ncd wrote no output")
                failed = True
                continue
            value = got[name].astype(np.float64)
            if value.shape != reference.shape:
                print(f"{name}: shape {value.shape}, oracle {reference.shape}")
                failed = True
                continue
            if not np.all(np.isfinite(value)):
                print(f"{name}: ncd output has non-finite values")
                failed = True
            scale = float(np.max(np.abs(reference))) if reference.size else 0.0
            error = np.abs(value - reference)
            bound = rtol * np.abs(reference) + atol * scale
            worst = float(np.max(error)) if error.size else 0.0
            relative = float(np.max(error / np.maximum(np.abs(reference), 1e-30))) if error.size else 0.0
            bad = int(np.count_nonzero(~(error <= bound)))
            print(f"{args.file} {args.diagram} {name} {dtype}: shape {value.shape}, max |ref| {scale:.3g}, "
                  f"max abs error {worst:.3g}, max rel error {relative:.3g}, {bad} of {value.size} outside "
                  f"rtol {rtol:g} + atol {atol:g}*max|ref|")
            if bad:
                failed = True
        return 1 if failed else 0
    finally:
        if args.keep:
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
