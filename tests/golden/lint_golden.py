#!/usr/bin/env python3
"""Checks the golden tree itself (run by CTest as golden.lint).

- every case (NAME.ncd or NAME.args in a category folder) has NAME.exit;
- no expectation file is orphaned (NAME.stderr without its case, ...);
- errors/ cases expect exit 1 and an `error:` diagnostic; warnings/ cases
  expect exit 0 (1 with --Werror) and a `warning:` (unless run with -w);
  errors/ holds at least 45 cases;
- every case in pending/ says why it is pending in NAME.why.

Usage: lint_golden.py tests/golden
"""

import os
import sys

SUFFIXES = (".stderr.re", ".stdout", ".stderr", ".exit", ".args", ".why", ".ncd")


def stem_of(entry):
    for suffix in SUFFIXES:
        if entry.endswith(suffix):
            return entry[: -len(suffix)], suffix
    if entry.endswith(".files"):
        return entry[: -len(".files")], ".files"
    return None, None


def main():
    root = sys.argv[1]
    problems = []
    counts = {}
    for category in sorted(os.listdir(root)):
        folder = os.path.join(root, category)
        if not os.path.isdir(folder) or category.startswith("__"):
            continue
        entries = sorted(os.listdir(folder))
        cases = {stem_of(e)[0] for e in entries if e.endswith((".ncd", ".args")) and os.path.isfile(os.path.join(folder, e))}
        counts[category] = len(cases)
        for entry in entries:
            stem, suffix = stem_of(entry)
            if suffix and suffix not in (".ncd", ".args") and stem not in cases:
                problems.append(f"{category}/{entry}: no case {stem}.ncd or {stem}.args")
        for case in sorted(cases):
            label = f"{category}/{case}"
            exit_path = os.path.join(folder, case + ".exit")
            if not os.path.exists(exit_path):
                problems.append(f"{label}: no {case}.exit (run run_golden.py --update, then read the result)")
                continue
            try:
                status = int(open(exit_path).read().strip())
            except ValueError:
                problems.append(f"{label}: {case}.exit is not an integer")
                continue
            stderr = b""
            if os.path.exists(os.path.join(folder, case + ".stderr")):
                stderr = open(os.path.join(folder, case + ".stderr"), "rb").read()
            if category == "errors" and (status != 1 or b"error:" not in stderr):
                problems.append(f"{label}: an errors/ case must exit 1 with an 'error:' diagnostic")
            args = open(os.path.join(folder, case + ".args")).read().split("\n") \
                if os.path.exists(os.path.join(folder, case + ".args")) else []
            if category == "warnings":
                if status != (1 if "--Werror" in args else 0):
                    problems.append(f"{label}: a warnings/ case must exit 0 (1 with --Werror)")
                if "-w" not in args and b"warning:" not in stderr:
                    problems.append(f"{label}: a warnings/ case must print a 'warning:' (unless run with -w)")
            if category == "pending" and not os.path.exists(os.path.join(folder, case + ".why")):
                problems.append(f"{label}: a pending case must say why in {case}.why")
    if counts.get("errors", 0) < 45:
        problems.append(f"errors/ has {counts.get('errors', 0)} cases; the suite promises at least 45")
    for problem in problems:
        print(problem)
    summary = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
    print(f"golden cases: {summary}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
