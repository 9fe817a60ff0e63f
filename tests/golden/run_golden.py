#!/usr/bin/env python3
"""Golden tests for the ncd command line: run a case, compare with what is expected.

A *case* lives in a category folder (tests/golden/<category>/) and is named by
its stem NAME. It is a case when the folder holds NAME.ncd or NAME.args.

  NAME.args     the arguments after `ncd`, one per line (blank lines and lines
                starting with `//` are ignored; `{name}` is replaced by NAME).
                Without it, the folder's ARGS file is used the same way, and
                without that, `check NAME.ncd`.
  NAME.stdout   expected standard output, byte for byte (absent: empty).
  NAME.stderr   expected standard error, byte for byte (absent: empty).
  NAME.stderr.re  instead of NAME.stderr: a Python regular expression that must
                match somewhere in standard error (for text owned by a library,
                such as CLI11's usage errors, where only the gist is ncd's).
  NAME.exit     expected exit status (absent: 0).
  NAME.files/   files the run must create or change, by path relative to the
                working folder, with their exact content. Any other file that
                the run creates or changes is a failure (so a leftover
                temporary file from an atomic write is caught).

Each case runs in a fresh temporary folder (so `fmt -i`, `-o` and `--MF` never
touch the source tree) holding a copy of what the case can read: NAME.ncd, the
top-level files its arguments name, every subfolder of the category folder
(helpers such as inc/), and the top-level files those import. That folder is
the working directory, NO_COLOR=1 and NCD_PATH unset. Before comparing, the copy's absolute
path is replaced by `$CASEDIR` and the source root by `$ROOT` in the output and
in the files written, so expectations are independent of where the tree lives.

Usage:
  run_golden.py --ncd BUILD/bin/ncd [--update] CASE_OR_FOLDER...

A CASE is a path to the case without extension (tests/golden/errors/unknown_axis)
or to any of its files; a FOLDER runs every case in it. --update rewrites the
expectations from what ncd does now: read every changed expectation before
committing it (`git diff tests/golden`).
"""

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXPECTATION_SUFFIXES = (".args", ".stdout", ".stderr", ".stderr.re", ".exit")
TIMEOUT_SECONDS = 60


class Case:
    def __init__(self, folder, name):
        self.folder = folder
        self.name = name

    def path(self, suffix):
        return os.path.join(self.folder, self.name + suffix)

    @property
    def label(self):
        return os.path.relpath(os.path.join(self.folder, self.name), ROOT)

    def arguments(self):
        source = self.path(".args")
        if not os.path.exists(source):
            source = os.path.join(self.folder, "ARGS")
        if os.path.exists(source):
            with open(source, encoding="utf-8") as handle:
                lines = handle.read().split("\n")
            out = []
            for line in lines:
                if not line.strip() or line.startswith("//"):
                    continue
                out.append(line.replace("{name}", self.name))
            return out
        return ["check", self.name + ".ncd"]


def read_bytes(path, default=b""):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return default


def write_or_remove(path, content):
    if content:
        with open(path, "wb") as handle:
            handle.write(content)
    elif os.path.exists(path):
        os.remove(path)


def find_cases(target):
    """Cases named by a path: a folder (all its cases), or one case."""
    target = os.path.abspath(target)
    if os.path.isdir(target) and not target.endswith(".files"):
        names = set()
        for entry in sorted(os.listdir(target)):
            full = os.path.join(target, entry)
            if not os.path.isfile(full):
                continue
            for suffix in (".ncd", ".args"):
                if entry.endswith(suffix) and entry != "ARGS":
                    names.add(entry[: -len(suffix)])
        return [Case(target, name) for name in sorted(names)]
    folder, base = os.path.split(target)
    for suffix in sorted(EXPECTATION_SUFFIXES + (".ncd", ".files"), key=len, reverse=True):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    case = Case(folder, base)
    if not (os.path.exists(case.path(".ncd")) or os.path.exists(case.path(".args"))):
        raise SystemExit(f"run_golden: no case {case.label} (neither {base}.ncd nor {base}.args exists)")
    return [case]


def snapshot(folder):
    """Every file under `folder` with its content."""
    files = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(directory, name)
            if os.path.islink(full) or not os.path.isfile(full):
                files[os.path.relpath(full, folder)] = None
                continue
            files[os.path.relpath(full, folder)] = read_bytes(full)
    return files


def normalise(data, workdir):
    for path, token in ((workdir, b"$CASEDIR"), (ROOT, b"$ROOT")):
        data = data.replace(path.encode(), token)
    return data


IMPORT_RE = re.compile(rb'import\s+"([^"\n]*)"')


def imported_names(path, root):
    """Names of the files directly in `root` that the .ncd file `path` imports."""
    for imported in IMPORT_RE.findall(read_bytes(path)):
        target = os.path.normpath(os.path.join(os.path.dirname(path), imported.decode("utf-8", "replace")))
        if os.path.dirname(target) == root:
            yield os.path.basename(target)


def populate(case, arguments, workdir):
    """Copies what a case can read into its working folder: its NAME.ncd, the
    top-level files its arguments name, every subfolder (helpers; not the
    NAME.files/ expectations), and the top-level files any of those import.
    Symlinks (e.g. to examples/) are copied as the files they name."""
    folder = os.path.realpath(case.folder)
    os.makedirs(workdir)
    top_files = set()
    for entry in sorted(os.listdir(folder)):
        source = os.path.join(folder, entry)
        if os.path.isdir(source):
            if not entry.endswith(".files"):
                shutil.copytree(source, os.path.join(workdir, entry), symlinks=False)
        else:
            top_files.add(entry)
    queue = [case.name + ".ncd"] + [argument.split("/")[0] for argument in arguments]
    for directory, _, names in os.walk(workdir):  # helpers may import top-level files (../x.ncd)
        for name in names:
            if name.endswith(".ncd"):
                queue += imported_names(os.path.join(directory, name), workdir)
    wanted = set()
    while queue:
        name = queue.pop()
        if name in wanted or name not in top_files:
            continue
        wanted.add(name)
        if name.endswith(".ncd"):
            queue += imported_names(os.path.join(folder, name), folder)
    for name in wanted:
        shutil.copyfile(os.path.join(folder, name), os.path.join(workdir, name))


def run_case(ncd, case, update):
    """Runs one case; returns a list of failure descriptions (empty: passed)."""
    arguments = case.arguments()
    scratch = tempfile.mkdtemp(prefix="ncd-golden-")
    try:
        workdir = os.path.realpath(os.path.join(scratch, os.path.basename(case.folder)))
        populate(case, arguments, workdir)
        before = snapshot(workdir)
        environment = dict(os.environ)
        environment["NO_COLOR"] = "1"
        environment.pop("NCD_PATH", None)
        environment.pop("NCD_PLUGIN_PATH", None)
        try:
            result = subprocess.run([ncd] + arguments, cwd=workdir, env=environment, stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return [f"timed out after {TIMEOUT_SECONDS} s: ncd {' '.join(arguments)}"]
        stdout = normalise(result.stdout, workdir)
        stderr = normalise(result.stderr, workdir)
        after = snapshot(workdir)
        changed = {path: (content if content is None else normalise(content, workdir))
                   for path, content in after.items() if before.get(path, b"\0missing") != content}

        if update:
            write_or_remove(case.path(".stdout"), stdout)
            if not os.path.exists(case.path(".stderr.re")):
                write_or_remove(case.path(".stderr"), stderr)
            with open(case.path(".exit"), "w", encoding="utf-8") as handle:
                handle.write(f"{result.returncode}\n")
            expected_files = case.path(".files")
            if os.path.isdir(expected_files):
                shutil.rmtree(expected_files)
            for path, content in sorted(changed.items()):
                target = os.path.join(expected_files, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as handle:
                    handle.write(content or b"")
            return []

        failures = []
        command = "ncd " + " ".join(arguments)
        expected_exit = int(read_bytes(case.path(".exit"), b"0").decode().strip() or "0")
        if result.returncode != expected_exit:
            failures.append(f"exit status {result.returncode}, expected {expected_exit} ({command})")
        compare(failures, "stdout", read_bytes(case.path(".stdout")), stdout)
        pattern_path = case.path(".stderr.re")
        if os.path.exists(pattern_path):
            pattern = read_bytes(pattern_path).decode("utf-8").strip()
            if not re.search(pattern, stderr.decode("utf-8", "replace"), re.MULTILINE):
                failures.append(f"stderr does not match /{pattern}/:\n" + indent(stderr))
        else:
            compare(failures, "stderr", read_bytes(case.path(".stderr")), stderr)
        expected_files = snapshot(case.path(".files")) if os.path.isdir(case.path(".files")) else {}
        for path in sorted(set(expected_files) | set(changed)):
            if path not in changed:
                failures.append(f"file {path} was not written")
            elif path not in expected_files:
                failures.append(f"unexpected file written or changed: {path}")
            else:
                compare(failures, "file " + path, expected_files[path], changed[path] or b"")
        return failures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def indent(data):
    return "".join("    " + line + "\n" for line in data.decode("utf-8", "replace").splitlines())


def compare(failures, what, expected, actual):
    if expected == actual:
        return
    diff = difflib.unified_diff(expected.decode("utf-8", "replace").splitlines(keepends=True),
                                actual.decode("utf-8", "replace").splitlines(keepends=True),
                                f"expected {what}", f"actual {what}")
    text = "".join(line if line.endswith("\n") else line + "\n\\ no newline at end\n" for line in diff)
    if not text:  # differences only in bytes that decode alike
        text = f"expected {expected!r}\nactual   {actual!r}\n"
    failures.append(f"{what} differs:\n{text}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True, help="the ncd executable")
    parser.add_argument("--update", action="store_true", help="rewrite the expectations from the actual results")
    parser.add_argument("targets", nargs="+", help="cases or category folders")
    options = parser.parse_args()
    ncd = os.path.abspath(options.ncd)
    cases = [case for target in options.targets for case in find_cases(target)]
    failed = 0
    for case in cases:
        failures = run_case(ncd, case, options.update)
        if failures:
            failed += 1
            print(f"FAIL {case.label}")
            for failure in failures:
                print("  " + failure.replace("\n", "\n  ").rstrip())
        elif options.update:
            print(f"updated {case.label}")
    if not options.update:
        print(f"{len(cases) - failed} of {len(cases)} golden cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
