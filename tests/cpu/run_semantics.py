#!/usr/bin/env python3
"""Checks one diagram of tests/cpu/semantics.ncd against semantics_oracle.py.

    run_semantics.py --ncd BUILD/bin/ncd --root SRC --diagram Pointwise [--ids 0,-1,6,7,100]

Runs `ncd run --random 7`, reads back the generated inputs and params and the
outputs, and compares with the oracle: float outputs within rtol 1e-4 (plus
1e-5 of the output's largest magnitude), the outputs listed in EXACT bit for
bit. --ids replaces the generated `ids` input (gathers out of range read 0).
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
import semantics_oracle  # noqa: E402


def load_folder(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.npy"))):
        a = np.load(path)
        out[os.path.basename(path)[:-4]] = a.astype(np.float64) if a.dtype.kind in "fb" else a.astype(np.int64)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--diagram", required=True)
    parser.add_argument("--ids", help="comma-separated values for the input ids")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ncd-semantics-")
    try:
        out = os.path.join(work, "out")
        command = [args.ncd, "run", os.path.join(args.root, "tests/cpu/semantics.ncd"), "--diagram", args.diagram,
                   "--random", "7", "--out-dir", out]
        if args.ids:
            ids = np.array([int(v) for v in args.ids.split(",")], dtype=np.int32)
            np.save(os.path.join(work, "ids.npy"), ids)
            command += ["--in", "ids=" + os.path.join(work, "ids.npy")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            print("ncd run failed:", " ".join(command), "\n", result.stdout, result.stderr)
            return 1
        inputs = load_folder(os.path.join(out, "inputs"))
        if args.ids:
            inputs["ids"] = np.load(os.path.join(work, "ids.npy")).astype(np.int64)
        params = load_folder(os.path.join(out, "params"))
        got = load_folder(out)
        want = semantics_oracle.ORACLES[args.diagram](inputs, params)
        failed = False
        for name, reference in sorted(want.items()):
            reference = np.asarray(reference, dtype=np.float64)
            value = got.get(name)
            if value is None:
                print(f"{name}: no output written")
                failed = True
                continue
            value = value.astype(np.float64)
            if value.shape != reference.shape:
                print(f"{name}: shape {value.shape}, oracle {reference.shape}")
                failed = True
                continue
            exact = (args.diagram, name) in semantics_oracle.EXACT
            same = (value == reference) | (np.isnan(value) & np.isnan(reference))
            finite = np.isfinite(reference)
            scale = float(np.max(np.abs(reference[finite]))) if finite.any() else 0.0
            with np.errstate(invalid="ignore"):
                error = np.where(same, 0.0, np.abs(value - reference))
            bound = 0.0 if exact else 1e-4 * np.abs(reference) + 1e-5 * scale
            bad = int(np.count_nonzero(~(same | (error <= bound))))
            worst = float(np.max(np.where(np.isfinite(error), error, np.inf))) if error.size else 0.0
            print(f"{args.diagram}.{name}: shape {value.shape}, max abs error {worst:.3g}, "
                  f"{'exact' if exact else 'rtol 1e-4'}: {bad} of {value.size} differ")
            if bad:
                index = np.argwhere(~(same | (error <= bound)))[0]
                print(f"   first at {tuple(index)}: ncd {value[tuple(index)]!r}, oracle {reference[tuple(index)]!r}")
                failed = True
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
