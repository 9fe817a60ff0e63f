#!/usr/bin/env python3
"""Robustness: generated inputs that must never crash or hang ncd.

Every run must end within its time limit with exit status 0, or 1 with an
`error:` diagnostic on standard error; never a signal, a status of 2 or more
(usage or internal error), or the words "internal error". Inputs are generated
from a fixed seed, so a failure reproduces; the failing input is kept under
$NCD_ROBUSTNESS_KEEP (default: the system temporary folder) and named in the
report.

Sections (one CTest test each):
  random_bytes   random bytes, random printable text, random token soup
  truncations    every stdlib/ and examples/ file cut at many points
  nesting        parentheses, brackets and braces 255, 300 and 100000 deep
  long_chain     `a + a + ... + a` with 1000 and 50,000 terms (+ and *)
  big_file       5 MB files: real code, comments, one long line
  invalid_utf8   invalid UTF-8 at various positions, with the reported place
  mutations      token-level mutations of the stdlib, the examples and the golden inputs
  file_size      every writing verb under a 64-byte file-size limit (`ulimit -f`): exit 1,
                 "cannot write", and no output or temporary file left behind

Usage: run_robustness.py --ncd BUILD/bin/ncd [--root SOURCE] SECTION...
"""

import argparse
import concurrent.futures
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SEED = 20240613

# Inputs that hit known core bugs (tests/KNOWN_ISSUES.md) are left out unless
# --include-known-bugs is given, so the suite stays green until they are fixed.
INCLUDE_KNOWN_BUGS = False
# validate_bytes() takes bytes 0xF5-0xFF for 3-byte leads: "\xff\x80\x80" reaches
# ANTLR's decoder and ends in "internal error: wstring_convert::from_bytes".
KNOWN_BAD_LEADS = {bytes([b]) for b in range(0xF5, 0x100)}


class Runner:
    def __init__(self, ncd, workdir):
        self.ncd = ncd
        self.workdir = workdir
        self.failures = []
        self.runs = 0
        self.counter = 0
        self.environment = dict(os.environ, NO_COLOR="1")
        self.environment.pop("NCD_PATH", None)

    def write(self, data, name=None):
        self.counter += 1
        path = os.path.join(self.workdir, name or f"input{self.counter}.ncd")
        with open(path, "wb") as handle:
            handle.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    def run(self, arguments, path, timeout=30):
        """Runs ncd; returns (status, stdout, stderr) or records a failure and returns None."""
        self.runs += 1
        command = [self.ncd] + arguments + [path]
        try:
            result = subprocess.run(command, capture_output=True, timeout=timeout, env=self.environment,
                                    cwd=self.workdir, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.fail(path, arguments, f"did not finish within {timeout} s")
            return None
        stderr = result.stderr.decode("utf-8", "replace")
        if result.returncode < 0:
            self.fail(path, arguments, f"killed by signal {-result.returncode}\n{stderr[-2000:]}")
        elif result.returncode not in (0, 1):
            self.fail(path, arguments, f"exit status {result.returncode}\n{stderr[-2000:]}")
        elif "internal error" in stderr:
            self.fail(path, arguments, f"internal error reported\n{stderr[-2000:]}")
        elif result.returncode == 1 and "error:" not in stderr:
            self.fail(path, arguments, f"exit status 1 without an error diagnostic\n{stderr[-2000:]}")
        else:
            return result.returncode, result.stdout, stderr
        return None

    def fail(self, path, arguments, what):
        keep = os.environ.get("NCD_ROBUSTNESS_KEEP") or tempfile.gettempdir()
        os.makedirs(keep, exist_ok=True)
        kept = os.path.join(keep, "ncd-robustness-" + os.path.basename(path))
        try:
            shutil.copyfile(path, kept)
        except OSError:
            kept = path
        self.failures.append(f"ncd {' '.join(arguments)} {kept}: {what}")

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)

    def map(self, function, items):
        """Runs `function` over items on a few threads (the work is in subprocesses)."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
            return list(pool.map(function, items))


def corpus(root, with_golden):
    patterns = ["stdlib/**/*.ncd", "examples/**/*.ncd"]
    if with_golden:
        patterns.append("tests/golden/**/*.ncd")
    files = []
    for pattern in patterns:
        files += sorted(glob.glob(os.path.join(root, pattern), recursive=True))
    # pending/ holds inputs that hit known core bugs.
    pending = os.path.join(root, "tests", "golden", "pending") + os.sep
    return [path for path in files if os.path.isfile(path) and not path.startswith(pending)]


TOKENS = ["axis", "diagram", "param", "repeat", "schedule", "import", "default", "dtype", "inf", "for", "group",
          "stream", "level", "by", "shard", "over", "q", "k", "d", "X", "Y", "S", "softmax", "sum", "max", "where", "exp", "f32",
          "bf16", "i32", "0", "1", "64", "1e-5", ".5", "#d", "# c\n", "\"std/nn.ncd\"", "(", ")", "[", "]", "{", "}",
          ",", "=", "->", ":", ";", "*", "/", "+", "-", "<", "<=", "==", "!=", "&&", "||", "!", "\n", " "]


def section_random_bytes(runner, rng, root):
    inputs = []
    for i in range(60):
        data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64, 512, 4096])))
        if not INCLUDE_KNOWN_BUGS:
            data = bytes(min(b, 0xF4) for b in data)
        inputs.append(data)
    printable = "".join(chr(c) for c in range(32, 127)) + "\n\t"
    for i in range(60):
        inputs.append("".join(rng.choice(printable) for _ in range(rng.choice([1, 16, 256, 2048]))).encode())
    for i in range(80):
        inputs.append(" ".join(rng.choice(TOKENS) for _ in range(rng.choice([3, 20, 200, 1000]))).encode())
    paths = [runner.write(data) for data in inputs]
    runner.map(lambda path: runner.run(["check"], path), paths)
    runner.map(lambda path: runner.run(["fmt"], path), paths[::3])
    runner.map(lambda path: runner.run(["show", "--json"], path), paths[1::3])


def section_truncations(runner, rng, root):
    files = corpus(root, with_golden=False)
    runner.expect(files, "no stdlib/ or examples/ files to truncate")
    jobs = []
    for source in files:
        data = open(source, "rb").read()
        cuts = sorted(set([0, 1, len(data) - 1] + [len(data) * i // 40 for i in range(1, 40)] +
                          [rng.randrange(len(data) + 1) for _ in range(20)]))
        for cut in cuts:
            name = f"{os.path.basename(source)[:-4]}-cut{cut}.ncd"
            jobs.append(runner.write(data[:cut], name))
    runner.map(lambda path: runner.run(["check"], path), jobs)
    runner.map(lambda path: runner.run(["fmt"], path), jobs[::4])
    runner.map(lambda path: runner.run(["show", "--ir"], path), jobs[2::4])


def diagram(body, inputs="X[i]", outputs="Y[i]"):
    return f"axis i = 4\ndiagram F({inputs}) -> {outputs} {{\n{body}\n}}\n"


def section_nesting(runner, rng, root):
    cases = []  # (name, text, expected status or None, expected message or None)
    for depth in (254, 300, 100000):
        fits = depth < 255  # the diagram's brace is one level
        expect = (0, None) if fits else (1, "nested too deeply")
        cases.append((f"parens{depth}", diagram("  Y[i] = " + "(" * depth + "X[i]" + ")" * depth), *expect))
        cases.append((f"index{depth}", diagram("  Y[i] = X[" + "(" * depth + "i" + ")" * depth + "]"), *expect))
        cases.append((f"call{depth}", diagram("  Y[i] = " + "exp(" * depth + "X[i]" + ")" * depth), *expect))
        cases.append((f"size{depth}", "axis a = " + "(" * depth + "1" + ")" * depth + "\n",
                      *(((0, None) if depth < 257 else (1, "nested too deeply")))))
        cases.append((f"repeat{depth}", diagram("  H[i] = X\n" + "repeat 1 {\n" * depth + "H = H * 2\n" + "}\n" * depth +
                                                 "  Y = H"), *expect))
        cases.append((f"open{depth}", "(" * depth, 1, None))
        cases.append((f"brackets{depth}", diagram("  Y[i] = X" + "[" * depth), 1, None))
        cases.append((f"close{depth}", ")]}" * depth, 1, None))

    def check(case):
        name, text, status, message = case
        result = runner.run(["check"], runner.write(text, name + ".ncd"))
        if result is None:
            return
        runner.expect(status is None or result[0] == status,
                      f"{name}: exit status {result[0]}, expected {status}\n{result[2][-1000:]}")
        runner.expect(message is None or message in result[2], f"{name}: expected '{message}' in\n{result[2][-1000:]}")
        if text.count("(") < 1000:
            runner.run(["fmt"], os.path.join(runner.workdir, name + ".ncd"))

    runner.map(check, cases)


def section_long_chain(runner, rng, root):
    cases = []
    for terms, ops in ((1000, ("+", "*", "-", "&&")), (50000, ("+", "*"))):
        for op in ops:
            text = diagram("  Y[i] = " + f" {op} ".join(["X[i]"] * terms))
            cases.append((f"chain{op}{terms}".replace("*", "mul").replace("&&", "and").replace("+", "add")
                          .replace("-", "sub"), text, terms))
    # Many statements, each small: a long diagram body.
    body = "\n".join(f"  T{n}[i] = X[i] * {n}" for n in range(20000)) + "\n  Y[i] = " + \
        " + ".join(f"T{n}[i]" for n in range(0, 20000, 1000))
    cases.append(("statements20000", diagram(body), 20000))

    def check(case):
        name, text, terms = case
        path = runner.write(text, name + ".ncd")
        result = runner.run(["check", "-w"], path, timeout=60)
        # A chain of a thousand terms is ordinary code and must be accepted.
        if result is not None and terms <= 1000:
            runner.expect(result[0] == 0, f"{name}: exit status {result[0]}, expected 0\n{result[2][-1000:]}")
        runner.run(["fmt"], path, timeout=60)

    runner.map(check, cases)


def section_big_file(runner, rng, root):
    target = 5 * 1024 * 1024
    parts, size, n = ["axis i = 4, j = 8\n"], 0, 0
    while size < target:
        part = (f"# Diagram number {n}.\ndiagram F{n}(X[i, j], W[j]) -> Y[i] {{\n"
                f"  T[i, j] = X[i, j] * W[j] + 1.5  # scaled\n  Y[i] = sum[j](T[i, j])\n}}\n\n")
        parts.append(part)
        size += len(part)
        n += 1
    code = runner.write("".join(parts), "big_code.ncd")
    comments = runner.write("".join("# " + "x" * 98 + "\n" for _ in range(target // 101 + 1)) + "axis q = 4\n",
                            "big_comments.ncd")
    one_line = runner.write("axis i = 4  # " + "y" * target + "\n", "big_one_line.ncd")
    garbage = runner.write("".join(rng.choice("abij=+*,; \n") for _ in range(target)), "big_garbage.ncd")
    for path in (code, comments, one_line, garbage):
        runner.expect(os.path.getsize(path) >= target, f"{path} is smaller than 5 MB")
    result = runner.run(["check"], code, timeout=240)
    runner.expect(result is None or result[0] == 0, f"big_code.ncd: expected exit 0, got {result and result[0]}")
    for path in (comments, one_line, garbage):
        runner.run(["check"], path, timeout=240)
    result = runner.run(["fmt", "--check"], one_line, timeout=240)
    runner.expect(result is None or result[0] == 0, "big_one_line.ncd: canonical, but fmt --check disagrees")


def section_invalid_utf8(runner, rng, root):
    base = "axis q = 4  # caf\u00e9\ndiagram F(X[q]) -> Y[q] {\n  Y[q] = X[q] * 2  # \u2192 ok\n}\n".encode()
    result = runner.run(["check"], runner.write(base, "valid_utf8.ncd"))
    runner.expect(result is None or result[0] == 0, "valid UTF-8 in comments must be accepted")
    bad_sequences = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc3", b"\xe2\x82",
                     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf0\x82\x82\xac", b"\xe0\x80\xaf",
                     b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xff\x80\x80"]
    cases = []
    for index, bad in enumerate(bad_sequences):
        if bad[:1] in KNOWN_BAD_LEADS and len(bad) > 1 and not INCLUDE_KNOWN_BUGS:
            continue
        for position in sorted(set([0, 5, 13, 20, base.index(b"Y[q]"), base.index(b"2  #") + 1, len(base)])):
            if position < len(base) and (base[position] & 0xC0) == 0x80:
                continue  # inside a character of the base text
            data = base[:position] + bad + base[position:]
            line = data[:position].count(b"\n") + 1
            column = position - (data.rfind(b"\n", 0, position) + 1) + 1
            cases.append((f"utf8_{index}_{position}", data, line, column))
    cases.append(("utf8_truncated_at_end", base + b"# \xe2\x86", base.count(b"\n") + 1, 3))

    def check(case):
        name, data, line, column = case
        result = runner.run(["check"], runner.write(data, name + ".ncd"))
        if result is None:
            return
        where = f"{name}.ncd:{line}:{column}: error: invalid UTF-8 byte 0x"
        runner.expect(result[0] == 1 and where in result[2], f"{name}: expected '{where}..' in\n{result[2][-600:]}")
        runner.run(["fmt"], os.path.join(runner.workdir, name + ".ncd"))

    runner.map(check, cases)


TOKEN_RE = re.compile(rb'\s+|#[a-zA-Z_]\w*|#[^\n]*|[A-Za-z_]\w*|\d+\.?\d*(?:[eE][+-]?\d+)?|->|<=|>=|==|!=|&&|\|\||"[^"\n]*"|.',
                      re.S)


def section_mutations(runner, rng, root):
    sources = [open(path, "rb").read() for path in corpus(root, with_golden=True)]
    sources = [data for data in sources if b"\0" not in data and len(data) < 20000]
    runner.expect(len(sources) >= 10, "too few files to mutate")
    extra = [t.encode() for t in TOKENS] + [b"(heads, d)", b"99999999999999999999", b"1e999", b"\xc3\xa9"]
    jobs = []
    for n in range(300):
        tokens = TOKEN_RE.findall(rng.choice(sources))
        if not tokens:
            continue
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(tokens))
            choice = rng.random()
            if choice < 0.3:
                del tokens[i]
            elif choice < 0.6:
                tokens.insert(i, rng.choice(extra))
            elif choice < 0.8:
                tokens[i] = rng.choice(extra)
            else:
                j = rng.randrange(len(tokens))
                tokens[i], tokens[j] = tokens[j], tokens[i]
            if not tokens:
                break
        jobs.append((runner.write(b"".join(tokens), f"mutant{n}.ncd"), n))

    def check(job):
        path, n = job
        verbs = [["check"], ["fmt"], ["show", "--ir"], ["show", "--json"], ["show", "--ast"]]
        runner.run(verbs[0], path)
        runner.run(verbs[1 + n % 4], path)
        # Whatever fmt accepts, it formats idempotently.
        result = runner.run(["fmt"], path)
        if result and result[0] == 0:
            again = runner.write(result[1], os.path.basename(path)[:-4] + "-fmt.ncd")
            second = runner.run(["fmt"], again)
            runner.expect(second is None or (second[0] == 0 and second[1] == result[1]),
                          f"fmt is not idempotent on {path}")

    runner.map(check, jobs)


def section_file_size(runner, rng, root):
    import resource
    example = os.path.join(root, "examples", "attention.ncd")
    merge = os.path.join(root, "tests", "golden", "merge", "inc")
    commands = [
        (["grad", example, "-o", "out.ncd"], "out.ncd"),
        (["optimize", example, "-O2", "-o", "out.ncd"], "out.ncd"),
        (["render", example, "-o", "out.svg"], "out.svg"),
        (["emit", "--cuda", example, "-o", "out.cu"], "out.cu"),
        (["cost", example, "--plot", "out.svg"], "out.svg"),
        (["show", "--ir", example, "-o", "out.json"], "out.json"),
        (["fmt", example, "-o", "out.ncd"], "out.ncd"),
        (["run", example, "--random", "1", "--out-dir", "outdir"], "outdir/O.npy"),
        (["merge", os.path.join(merge, "two_layer.ncd"), os.path.join(merge, "a.safetensors"),
          os.path.join(merge, "b.safetensors"), "--method", "linear", "-o", "out.safetensors"], "out.safetensors"),
    ]

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    for arguments, output in commands:
        runner.runs += 1
        before = set(os.listdir(runner.workdir))
        result = subprocess.run([runner.ncd] + arguments, capture_output=True, timeout=60, env=runner.environment,
                                cwd=runner.workdir, stdin=subprocess.DEVNULL, preexec_fn=limited)
        stderr = result.stderr.decode("utf-8", "replace")
        what = f"ncd {' '.join(arguments)} under a 64-byte file-size limit"
        runner.expect(result.returncode == 1 and "cannot write" in stderr,
                      f"{what}: exit {result.returncode}, expected 1 with 'cannot write': {stderr[-500:]}")
        runner.expect(not os.path.exists(os.path.join(runner.workdir, output)), f"{what}: {output} was written")
        left = sorted(name for name in set(os.listdir(runner.workdir)) - before if name.startswith("."))
        runner.expect(not left, f"{what}: temporary files left: {left}")
        shutil.rmtree(os.path.join(runner.workdir, "outdir"), ignore_errors=True)


SECTIONS = {
    "random_bytes": section_random_bytes,
    "truncations": section_truncations,
    "nesting": section_nesting,
    "long_chain": section_long_chain,
    "big_file": section_big_file,
    "invalid_utf8": section_invalid_utf8,
    "mutations": section_mutations,
    "file_size": section_file_size,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", default=ROOT, help="the source tree (for stdlib/, examples/, tests/golden/)")
    parser.add_argument("--include-known-bugs", action="store_true",
                        help="also run the inputs that hit known core bugs (expected to fail until fixed)")
    parser.add_argument("sections", nargs="*", default=sorted(SECTIONS), help=", ".join(sorted(SECTIONS)))
    options = parser.parse_args()
    global INCLUDE_KNOWN_BUGS
    INCLUDE_KNOWN_BUGS = options.include_known_bugs
    status = 0
    for section in options.sections:
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}; known: {', '.join(sorted(SECTIONS))}")
        with tempfile.TemporaryDirectory(prefix=f"ncd-robust-{section}-") as workdir:
            runner = Runner(os.path.abspath(options.ncd), workdir)
            SECTIONS[section](runner, random.Random(f"{SEED}-{section}"), options.root)
            for failure in runner.failures:
                print(f"FAIL {section}: {failure}")
            print(f"{section}: {runner.runs} runs, {len(runner.failures)} failures")
            status = status or (1 if runner.failures else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
