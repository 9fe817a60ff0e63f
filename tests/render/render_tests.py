#!/usr/bin/python3
"""Tests of `ncd render` (the render-dot and render-svg plugins).

    render_tests.py --ncd NCD golden CASE [--update]
        CASE.args (arguments after `ncd`, one per line, run in CASE's folder)
        must print exactly CASE.dot; --update rewrites CASE.dot instead.
    render_tests.py --ncd NCD svg FILE
        every diagram of FILE renders to SVG that parses as XML with an <svg>
        root, twice with byte-identical output, and no text overlaps another
        element; also folded (--depth 0 and 1) where the diagram has calls.
    render_tests.py --ncd NCD crossings GOLDEN ROOT [--update]
        every stdlib and example diagram laid out by ncd has exactly the wire
        crossings GOLDEN pins (crossings.py counts them from the SVG), and no
        more than Graphviz's dot layout, whose count is pinned beside it,
        but on the rows marked exceeds-dot (--update recounts both).
    render_tests.py --ncd NCD cli ROOT
        formats, output rules and errors of the verb.

Standard library only; exit status 0 when the test passes.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crossings  # noqa: E402
import svgcheck  # noqa: E402


def run(ncd, args, cwd=None, env=None):
    full_env = dict(os.environ, NO_COLOR="1")
    full_env.pop("NCD_PLUGIN_PATH", None)
    if env:
        full_env.update(env)
    return subprocess.run([ncd] + args, cwd=cwd, env=full_env, capture_output=True, timeout=300)


# `--highlight` naming no kernel the diagram calls (%s: the file's path).
HIGHLIGHT_ERROR = ("%s:70:9: error: --highlight: diagram 'MultiHeadAttention' calls no kernel "
                   "'MultiHeadAttention_kernel5'; did you mean 'MultiHeadAttention_kernel1'? (it calls "
                   "MultiHeadAttention_kernel1, MultiHeadAttention_kernel2, MultiHeadAttention_kernel3, Attention, "
                   "MultiHeadAttention_kernel4)\n"
                   "  diagram MultiHeadAttention(X[seq, model]) -> Y[seq, model] {\n"
                   "          ^~~~~~~~~~~~~~~~~~\n")


EXCEEDS = "exceeds-dot"  # a crossings.golden row where ncd's layout is known to cross more than dot's
# A crossings.golden row's wires that run behind a box (crossings.count_hidden), full and paper
# style together.
BEHIND = "behind="


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


# ---------------------------------------------------------------- golden

def golden(ncd, case, update):
    folder = os.path.dirname(os.path.abspath(case))
    with open(case + ".args", encoding="utf-8") as handle:
        args = [line.rstrip("\n") for line in handle if line.strip() and not line.startswith("#")]
    result = run(ncd, args, cwd=folder)
    expect(result.returncode == 0, "ncd %s: exit %d\n%s" % (" ".join(args), result.returncode, result.stderr.decode()))
    expect(not result.stderr, "unexpected stderr:\n" + result.stderr.decode())
    expected_path = case + ".dot"
    if update:
        with open(expected_path, "wb") as handle:
            handle.write(result.stdout)
        print("updated", expected_path)
        return
    with open(expected_path, "rb") as handle:
        expected = handle.read()
    if result.stdout != expected:
        import difflib
        diff = difflib.unified_diff(expected.decode().splitlines(), result.stdout.decode().splitlines(),
                                    expected_path, "ncd output", lineterm="", n=1)
        raise Failure("DOT differs from %s (rerun with --update to accept):\n%s" % (expected_path, "\n".join(list(diff)[:80])))
    # The golden DOT must also lay out.
    svg = run(ncd, [a if a != "dot" else "svg" for a in args], cwd=folder)
    expect(svg.returncode == 0, "the golden drawing does not render as svg: " + svg.stderr.decode())


# ---------------------------------------------------------------- svg

def diagrams_of(ncd, path):
    result = run(ncd, ["show", "--json", path])
    expect(result.returncode == 0, "ncd show --json %s failed: %s" % (path, result.stderr.decode()))
    program = json.loads(result.stdout)
    return [(d["name"], any(op.get("kind") == "call" for op in walk(d["ops"]))) for d in program["diagrams"]]


def walk(ops):
    for op in ops:
        yield op
        yield from walk(op.get("body", []) or [])


def svg_file(ncd, path):
    diagrams = diagrams_of(ncd, path)
    expect(diagrams, "%s defines no diagram" % path)
    for name, has_calls in diagrams:
        # ncd's layout in both styles and at every folding; Graphviz's dot layout as it was.
        # Top to bottom in both styles.
        variants = [[], ["--layout", "ncd"], ["--style", "paper"],
                    ["--style", "paper", "--label-intermediates", "--sizes"], ["--layout", "dot"],
                    ["--direction", "tb"], ["--direction", "tb", "--style", "paper", "--label-intermediates"]]
        if has_calls:
            variants += [["--depth", "0"], ["--depth", "1"], ["--layout", "ncd", "--depth", "0"],
                         ["--layout", "ncd", "--depth", "1"], ["--depth", "1", "--style", "paper"],
                         ["--direction", "tb", "--depth", "1"]]
        for extra in variants:
            args = ["render", path, "--diagram", name] + extra
            first = run(ncd, args)
            expect(first.returncode == 0, "ncd %s: exit %d\n%s" % (" ".join(args), first.returncode, first.stderr.decode()))
            problems = svgcheck.check_svg(first.stdout)
            expect(not problems, "ncd %s:\n  %s" % (" ".join(args), "\n  ".join(problems[:20])))
            second = run(ncd, args)
            expect(second.stdout == first.stdout, "ncd %s: two runs gave different SVG" % " ".join(args))
            print("ok %s %s %s (%d bytes)" % (os.path.basename(path), name, " ".join(extra), len(first.stdout)))


# ---------------------------------------------------------------- crossings

def all_diagrams(ncd, root):
    out = []
    for folder in ("stdlib/std", "examples"):
        for entry in sorted(os.listdir(os.path.join(root, folder))):
            if entry.endswith(".ncd"):
                path = os.path.join(folder, entry)
                out += [(path, name) for name, _ in diagrams_of(ncd, os.path.join(root, path))]
    return out


def count(ncd, root, path, name, layout):
    """The drawing's crossings (full style), and its wires behind boxes in full and paper style."""
    hidden = 0
    for style in ("paper", "full"):
        args = ["render", os.path.join(root, path), "--diagram", name, "--layout", layout, "--style", style]
        result = run(ncd, args)
        expect(result.returncode == 0, "ncd %s: %s" % (" ".join(args), result.stderr.decode()))
        hidden += crossings.count_hidden(result.stdout)
    return crossings.count_crossings(result.stdout), hidden


def crossing_goldens(ncd, golden_path, root, update):
    pinned = {}
    if os.path.exists(golden_path):
        with open(golden_path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip() and not line.startswith("#"):
                    fields = line.split()
                    path, name, ncd_count, dot_count = fields[:4]
                    behind = [int(field[len(BEHIND):]) for field in fields[4:] if field.startswith(BEHIND)]
                    pinned[(path, name)] = (int(ncd_count), int(dot_count), EXCEEDS in fields[4:], sum(behind))
    rows = []
    failures = []
    for path, name in all_diagrams(ncd, root):
        ours, hidden = count(ncd, root, path, name, "ncd")
        if update:
            theirs = count(ncd, root, path, name, "dot")[0]
            rows.append("%s %s %d %d%s%s" % (path, name, ours, theirs, " " + EXCEEDS if ours > theirs else "",
                                             " %s%d" % (BEHIND, hidden) if hidden else ""))
            print("%s %s: ncd %d, dot %d, %d behind boxes" % (path, name, ours, theirs, hidden))
            continue
        if (path, name) not in pinned:
            failures.append("%s %s has no pinned count (rerun with --update)" % (path, name))
            continue
        want, theirs, known, want_hidden = pinned[(path, name)]
        if ours != want:
            failures.append("%s %s: %d crossings, %d pinned" % (path, name, ours, want))
        # Wires behind boxes (tests/KNOWN_ISSUES.md) are pinned too, and none where the row says none.
        if hidden != want_hidden:
            failures.append("%s %s: %d wires behind boxes, %d pinned" % (path, name, hidden, want_hidden))
        # The bar: ncd's layout crosses no more wires than Graphviz's dot layout. The rows marked
        # exceeds-dot (tests/KNOWN_ISSUES.md) are the known exceptions; the list may only shrink.
        if ours > theirs and not known:
            failures.append("%s %s: ncd's layout has %d crossings, more than dot's %d" % (path, name, ours, theirs))
        if known and ours <= theirs:
            failures.append("%s %s: no longer exceeds dot's count (%d <= %d); drop its %s mark"
                            % (path, name, ours, theirs, EXCEEDS))
        print("ok %s %s: %d crossings (dot: %d)" % (path, name, ours, theirs))
    if update:
        with open(golden_path, "w", encoding="utf-8") as handle:
            handle.write("# file diagram ncd-layout-crossings dot-layout-crossings [exceeds-dot] [behind=N: wires behind\n"
                         "# boxes, full and paper style] (tests/render/crossings.py counts them; regenerate with\n"
                         "# render_tests.py --ncd NCD crossings GOLDEN ROOT --update)\n")
            handle.write("\n".join(rows) + "\n")
        return
    expect(not failures, "\n".join(failures))


# ---------------------------------------------------------------- cli

def cli(ncd, root):
    attention = os.path.join(root, "examples", "attention.ncd")
    stdlib_attention = os.path.join(root, "stdlib", "std", "attention.ncd")
    with tempfile.TemporaryDirectory() as temp:
        # Format from -o's extension; PNG and PDF through cairo.
        for extension, magic in (("svg", b"<?xml"), ("dot", b"digraph"), ("gv", b"digraph"), ("png", b"\x89PNG"),
                                 ("pdf", b"%PDF")):
            out = os.path.join(temp, "a." + extension)
            result = run(ncd, ["render", attention, "-o", out])
            expect(result.returncode == 0, "-o a.%s: %s" % (extension, result.stderr.decode()))
            with open(out, "rb") as handle:
                expect(handle.read().startswith(magic), "a.%s does not start with %r" % (extension, magic))
        # --format beats the extension.
        out = os.path.join(temp, "b.txt")
        result = run(ncd, ["render", attention, "--format", "dot", "-o", out])
        expect(result.returncode == 0, result.stderr.decode())
        expect(open(out, "rb").read().startswith(b"digraph"), "--format dot -o b.txt did not write DOT")
        # Text formats default to standard output; binary ones need -o.
        result = run(ncd, ["render", attention, "--format", "dot"])
        expect(result.returncode == 0 and result.stdout.startswith(b"digraph"), "dot to stdout")
        result = run(ncd, ["render", attention, "--format", "png"])
        expect(result.returncode == 2, "png without -o: exit %d" % result.returncode)
        expect(result.stderr.decode() == "ncd: error: format 'png' is binary; name the output file with -o FILE "
               "(or -o - for standard output)\n", "png without -o: " + result.stderr.decode())
        result = run(ncd, ["render", attention, "--format", "png", "-o", "-"])
        expect(result.returncode == 0 and result.stdout.startswith(b"\x89PNG"), "png to -o -")
        # An unknown format or renderer: did-you-mean and the known names.
        result = run(ncd, ["render", attention, "--format", "sgv"])
        expect(result.returncode == 1, "unknown format: exit %d" % result.returncode)
        expect(result.stderr.decode() == "ncd: error: no renderer writes format 'sgv'; did you mean 'svg'? "
               "known formats: dot, pdf, png, svg\n", "unknown format: " + result.stderr.decode())
        result = run(ncd, ["render", attention, "--renderer", "svgg"])
        expect(result.returncode == 1, "unknown renderer: exit %d" % result.returncode)
        expect(result.stderr.decode() == "ncd: error: unknown renderer 'svgg'; did you mean 'svg'? known: dot, svg\n",
               "unknown renderer: " + result.stderr.decode())
        result = run(ncd, ["render", attention, "--renderer", "dot", "--format", "svg"])
        expect(result.returncode == 1 and result.stderr.decode() ==
               "ncd: error: renderer 'dot' cannot write format 'svg'; it writes dot\n",
               "renderer/format mismatch: " + result.stderr.decode())
        # Several diagrams and no --diagram; an unknown one.
        result = run(ncd, ["render", stdlib_attention])
        expect(result.returncode == 1 and "choose one with --diagram NAME" in result.stderr.decode(),
               "several diagrams: " + result.stderr.decode())
        result = run(ncd, ["render", stdlib_attention, "--diagram", "Atention"])
        expect(result.returncode == 1 and "did you mean 'Attention'?" in result.stderr.decode(),
               "unknown diagram: " + result.stderr.decode())
        # A failing run leaves no output file; errors in the input are diagnostics, exit 1.
        bad = os.path.join(temp, "bad.ncd")
        with open(bad, "w") as handle:
            handle.write("axis a = 2\ndiagram D(X[a]) -> Y[a] {\n  Y[a] = X[b]\n}\n")
        out = os.path.join(temp, "bad.svg")
        result = run(ncd, ["render", bad, "-o", out])
        expect(result.returncode == 1 and "error:" in result.stderr.decode(), "bad input: exit %d" % result.returncode)
        expect(not os.path.exists(out), "a failing render left %s" % out)
        # -MD writes a dependency file naming the imports.
        out = os.path.join(temp, "mh.svg")
        multihead = os.path.join(root, "examples", "multihead.ncd")
        result = run(ncd, ["render", multihead, "-o", out, "--MD"])
        expect(result.returncode == 0, result.stderr.decode())
        deps = open(out + ".d").read()
        expect(deps.startswith(out + ":") and "attention.ncd" in deps, "dependency file: " + deps)
        # --depth folds calls into boxes; --title names the drawing.
        result = run(ncd, ["render", multihead, "--format", "dot", "--depth", "0", "--title", "Fused QKV"])
        text = result.stdout.decode()
        expect(result.returncode == 0 and "folded call" in text and "cluster_" not in text and 'label="Fused QKV"' in text,
               "--depth 0 / --title")
        result = run(ncd, ["render", multihead, "--format", "dot"])
        expect("cluster_n" in result.stdout.decode(), "calls are clusters when unfolded")
        result = run(ncd, ["render", multihead, "--depth", "-1"])
        expect(result.returncode == 2, "--depth -1 is a usage error: exit %d" % result.returncode)
        # ncd's layout by default (auto) at every size and style, Graphviz's dot on request;
        # paper style drops the sizes.
        result = run(ncd, ["render", attention])
        expect(result.returncode == 0 and b"ncd's own layout" in result.stdout, "auto: ncd for a small drawing")
        result = run(ncd, ["render", attention, "--layout", "dot"])
        expect(result.returncode == 0 and b"Generated by graphviz" in result.stdout, "--layout dot")
        result = run(ncd, ["render", attention, "--layout", "ncd"])
        expect(result.returncode == 0 and b"ncd's own layout" in result.stdout, "--layout ncd")
        result = run(ncd, ["render", attention, "--style", "paper"])
        expect(result.returncode == 0 and b"ncd's own layout" in result.stdout, "auto: ncd for paper style")
        result = run(ncd, ["render", attention, "--layout", "ncd", "-o", os.path.join(temp, "n.png")])
        expect(result.returncode == 0 and open(os.path.join(temp, "n.png"), "rb").read().startswith(b"\x89PNG"),
               "--layout ncd -o n.png: " + result.stderr.decode())
        result = run(ncd, ["render", attention, "--layout", "neato"])
        expect(result.returncode == 2, "--layout neato is a usage error: exit %d" % result.returncode)
        result = run(ncd, ["render", attention, "--style", "journal"])
        expect(result.returncode == 2, "--style journal is a usage error: exit %d" % result.returncode)
        full = run(ncd, ["render", attention, "--layout", "ncd"]).stdout
        paper = run(ncd, ["render", attention, "--style", "paper"]).stdout
        expect(b">q(" in full and b">q(" not in paper and b">q<" in paper, "paper style: names without sizes")
        sized = run(ncd, ["render", attention, "--style", "paper", "--sizes"]).stdout
        expect(b">q(" in sized, "--sizes puts the sizes back")
        # Paper width: the GPT-2 blocks fit 2,400 px at the default scale.
        for path, name, extra in (("stdlib/std/gpt2.ncd", "GPT2Block", ["--style", "paper"]),
                                  ("examples/gpt2.ncd", "Block", ["--style", "paper"]),
                                  ("stdlib/std/transformer.ncd", "GPT2Block", ["--style", "paper"])):
            result = run(ncd, ["render", os.path.join(root, path), "--diagram", name] + extra)
            expect(result.returncode == 0, "%s %s: %s" % (path, name, result.stderr.decode()))
            width = float(re.search(rb'<svg width="([0-9.]+)"', result.stdout).group(1))
            expect(width <= 2400, "%s %s %s: %.0f px wide, over the 2,400 px paper width" % (path, name, " ".join(extra), width))
        # Top to bottom: the same drawing turned, so the same crossings, taller than wide; wire
        # labels read up the page; Graphviz's layouts draw left to right only.
        gpt2 = os.path.join(root, "stdlib", "std", "gpt2.ncd")
        for extra in ([], ["--style", "paper"]):
            across = run(ncd, ["render", gpt2, "--diagram", "GPT2Block"] + extra)
            down = run(ncd, ["render", gpt2, "--diagram", "GPT2Block", "--direction", "tb"] + extra)
            expect(down.returncode == 0, "--direction tb: " + down.stderr.decode())
            size = re.search(rb'<svg width="([0-9.]+)" height="([0-9.]+)"', down.stdout)
            expect(float(size.group(2)) > 2 * float(size.group(1)),
                   "--direction tb %s: %s x %s px, not a tall drawing" % (" ".join(extra), size.group(1), size.group(2)))
            expect(b'transform="rotate(-90 ' in down.stdout and b"transform=" not in across.stdout,
                   "--direction tb %s: wire labels not turned" % " ".join(extra))
            expect(crossings.count_crossings(down.stdout) == crossings.count_crossings(across.stdout),
                   "--direction tb %s: %d crossings, left to right %d" % (" ".join(extra), crossings.count_crossings(
                       down.stdout), crossings.count_crossings(across.stdout)))
        # ... and as PNG through Graphviz's cairo plugin, turned labels and all.
        result = run(ncd, ["render", gpt2, "--diagram", "GPT2Block", "--direction", "tb", "--format", "png", "-o", "-"])
        expect(result.returncode == 0 and result.stdout[:8] == b"\x89PNG\r\n\x1a\n", "--direction tb PNG: " + result.stderr.decode())
        png_width, png_height = int.from_bytes(result.stdout[16:20], "big"), int.from_bytes(result.stdout[20:24], "big")
        expect(png_height > 2 * png_width, "--direction tb PNG: %d x %d px, not a tall picture" % (png_width, png_height))
        out = os.path.join(temp, "tb.svg")
        for extra, status, message in (
                (["--layout", "dot"], 2,
                 "ncd: error: --direction tb needs ncd's layout; Graphviz's (--layout dot) draws left to right\n"),
                (["--format", "dot"], 1,
                 "ncd: error: cannot render Attention as dot: the dot renderer draws left to right only "
                 "(--direction tb needs the svg renderer)\n")):
            result = run(ncd, ["render", attention, "--direction", "tb", "-o", out] + extra)
            expect(result.returncode == status and result.stderr.decode() == message,
                   "--direction tb %s: exit %d\n%s" % (" ".join(extra), result.returncode, result.stderr.decode()))
            expect(not os.path.exists(out), "--direction tb %s left %s" % (" ".join(extra), out))
        result = run(ncd, ["render", attention, "--direction", "up"])
        expect(result.returncode == 2 and b"--direction" in result.stderr and not result.stdout,
               "--direction up is a usage error: exit %d" % result.returncode)
        # --highlight names a kernel the diagram calls; anything else is a located error, no output.
        optimized = os.path.join(root, "tests", "render", "golden", "multihead_optimized.ncd")
        out = os.path.join(temp, "hl.svg")
        result = run(ncd, ["render", optimized, "--diagram", "MultiHeadAttention", "--highlight",
                           "MultiHeadAttention_kernel2", "--layout", "ncd", "-o", out])
        expect(result.returncode == 0 and b"#fde68a" in open(out, "rb").read(), "--highlight: " + result.stderr.decode())
        os.remove(out)
        result = run(ncd, ["render", optimized, "--diagram", "MultiHeadAttention", "--highlight",
                           "MultiHeadAttention_kernel5", "-o", out])
        expect(result.returncode == 1 and result.stderr.decode() == HIGHLIGHT_ERROR % optimized,
               "unknown kernel: exit %d\n%s" % (result.returncode, result.stderr.decode()))
        expect(not os.path.exists(out), "a failing --highlight left %s" % out)
        # -D reaches the labels.
        result = run(ncd, ["render", attention, "--format", "dot", "-D", "q=8192"])
        expect('label="q(8192)"' in result.stdout.decode(), "-D q=8192 not in the wire labels")
    print("ok cli")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden")
    g.add_argument("case")
    g.add_argument("--update", action="store_true")
    s = sub.add_parser("svg")
    s.add_argument("file")
    c = sub.add_parser("cli")
    c.add_argument("root")
    x = sub.add_parser("crossings")
    x.add_argument("golden")
    x.add_argument("root")
    x.add_argument("--update", action="store_true")
    options = parser.parse_args()
    try:
        if options.command == "golden":
            golden(options.ncd, options.case, options.update)
        elif options.command == "svg":
            svg_file(options.ncd, options.file)
        elif options.command == "crossings":
            crossing_goldens(options.ncd, options.golden, options.root, options.update)
        else:
            cli(options.ncd, options.root)
    except Failure as failure:
        print("FAIL:", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
