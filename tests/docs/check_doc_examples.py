#!/usr/bin/env python3
"""docs/LANGUAGE.md promises that every ```ncd code block is a complete file
that passes `ncd check --Werror` and `ncd fmt --check`. This checks it.

Usage: check_doc_examples.py --ncd BUILD/bin/ncd docs/LANGUAGE.md
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("document")
    options = parser.parse_args()
    options.ncd = os.path.abspath(options.ncd)
    text = open(options.document, encoding="utf-8").read()
    blocks = [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in re.finditer(r"^```ncd\n(.*?)^```", text, re.S | re.M)]
    if not blocks:
        print(f"{options.document}: no ```ncd blocks found")
        return 1
    environment = dict(os.environ, NO_COLOR="1")
    environment.pop("NCD_PATH", None)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="ncd-doc-") as folder:
        for line, block in blocks:
            path = os.path.join(folder, f"line{line}.ncd")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(block)
            for verb in (["check", "--Werror"], ["fmt", "--check"]):
                result = subprocess.run([options.ncd] + verb + [path], capture_output=True, text=True, timeout=60,
                                        env=environment, cwd=folder)
                if result.returncode != 0:
                    failures += 1
                    print(f"{options.document}:{line}: `ncd {' '.join(verb)}` exits {result.returncode}:")
                    print((result.stderr + result.stdout).replace(folder + "/", ""))
    print(f"{len(blocks) - failures} of {len(blocks)} examples pass" if not failures else f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
