#!/usr/bin/env python3
"""docs/CLI.md and the command line agree, flag for flag.

    check_cli_flags.py --ncd BUILD/bin/ncd --root SRC

For every verb of `ncd --help`: every option its `--help` lists is named in the
verb's section of docs/CLI.md (`## \\`ncd VERB\\``), in the front-end options
section (for the options every compiling verb shares), or in the document the
section points to for the rest (docs/COST.md for `cost`); and every option
written in backticks in the verb's section exists in its `--help`. Exit 1
naming each mismatch.
"""

import argparse
import re
import subprocess
import sys

FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
# Options named in a verb's section that belong to another command (examples of
# other verbs, nvcc, make) are written after the verb they belong to.
OTHER_TOOLS = {"nvcc", "make", "python3", "/usr/bin/python3", "gcc", "cmake"}


def help_flags(ncd, verb):
    out = subprocess.run([ncd, verb, "--help"], capture_output=True, text=True, timeout=60).stdout
    flags = set()
    in_options = False
    for line in out.splitlines():
        if line.strip().endswith(":"):
            in_options = line.strip() in ("Options:", "Flags:")
            continue
        if in_options and line.startswith("  ") and line.strip().startswith("-"):
            spec = line.strip().split("  ")[0]
            for part in re.split(r"[ ,]", re.sub(r"\{[^}]*\}", "", spec)):
                m = FLAG.fullmatch(part.split("=")[0])
                if m:
                    flags.add(m.group(1).lstrip("!"))
    return flags


def sections(text):
    parts, name, lines = {}, None, []
    for line in text.splitlines():
        m = re.match(r"^## (.*)", line)
        if m:
            if name is not None:
                parts[name] = "\n".join(lines)
            name, lines = m.group(1), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        parts[name] = "\n".join(lines)
    return parts


def flags_in_backticks(text, verb):
    """Flags written in backticks in `text` that belong to `ncd VERB` (not to another ncd verb or tool)."""
    found = set()
    for span in re.findall(r"`([^`\n]+)`", text) + re.findall(r"^```\n(.*?)^```", text, re.S | re.M):
        for line in span.splitlines() or [span]:
            words = line.split()
            if words and words[0] in OTHER_TOOLS:
                continue
            if len(words) >= 2 and words[0] == "ncd" and words[1] != verb:
                continue
            if line.lstrip().startswith(("#", "$", "ncd:")):
                continue
            found.update(m.group(1) for m in FLAG.finditer(line.split("#")[0]))
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    with open(f"{args.root}/docs/CLI.md", encoding="utf-8") as f:
        cli = sections(f.read())
    with open(f"{args.root}/docs/COST.md", encoding="utf-8") as f:
        cost_doc = f.read()
    top = subprocess.run([args.ncd, "--help"], capture_output=True, text=True, timeout=60).stdout
    verbs = re.findall(r"^  (\w+)\s{2,}", top.split("Subcommands:")[1], re.M)
    common = next(text for name, text in cli.items() if name.startswith("Front-end options"))
    problems = []
    for verb in verbs:
        have = help_flags(args.ncd, verb) - {"-h", "--help"}
        section = cli.get(f"`ncd {verb}`")
        if section is None and verb != "cost":
            problems.append(f"ncd {verb}: no '## `ncd {verb}`' section in docs/CLI.md")
            continue
        documented = section or ""
        where = documented + common + (cost_doc if verb == "cost" else "")
        for flag in sorted(have):
            if not re.search(r"`[^`]*(?<![\w-])" + re.escape(flag) + r"(?![\w-])[^`]*`", where):
                problems.append(f"ncd {verb}: {flag} is in --help but not in docs/CLI.md"
                                + (" or docs/COST.md" if verb == "cost" else ""))
        for flag in sorted(flags_in_backticks(documented, verb) - have - {"-h", "--help"}):
            problems.append(f"ncd {verb}: docs/CLI.md names {flag}, which `ncd {verb} --help` does not list")
    for problem in problems:
        print("FAIL:", problem)
    print(f"cli flags: {len(verbs)} verbs, {len(problems)} mismatch(es)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
