#!/usr/bin/env python3
"""Every diagram of stdlib/std/*.ncd and examples/*.ncd has a NumPy oracle (oracle.py).

    check_oracle_coverage.py --root SRC
"""

import argparse
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    missing = []
    found = 0
    for pattern in ("stdlib/std/*.ncd", "examples/*.ncd"):
        for path in sorted(glob.glob(os.path.join(args.root, pattern))):
            relative = os.path.relpath(path, args.root)
            with open(path, encoding="utf-8") as f:
                for name in re.findall(r"^diagram\s+(\w+)", f.read(), re.MULTILINE):
                    found += 1
                    if (relative, name) not in oracle.ORACLES:
                        missing.append(f"{relative}: {name}")
                    if relative not in oracle.SIZES:
                        missing.append(f"{relative}: no sizes in oracle.SIZES")
    for line in sorted(set(missing)):
        print("no oracle for", line)
    print(f"{found} diagrams, {len(set(missing))} without an oracle")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
