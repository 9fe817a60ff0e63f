#!/usr/bin/env python3
"""Acceptance tests of `ncd optimize`.

Each section optimizes diagrams at -O2 for h100-sxm (with the built-in
verification on), then checks the result independently of the optimizer:
`ncd check` accepts it, `ncd render` draws it (valid XML), `ncd equiv` of
input and output passes at small sizes, and the kernels have the expected
shape (read from `ncd show --json` and `ncd cost --json`, not from the
optimizer's own log).

Usage: run_optimize_tests.py --ncd NCD --root SOURCE_ROOT --miscompile SO SECTION
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.dom.minidom

ARGS = None
FAILURES = []


def run(*args, expect=0):
    process = subprocess.run([ARGS.ncd, *args], capture_output=True, text=True)
    if expect is not None and process.returncode != expect:
        raise AssertionError(f"ncd {' '.join(args)} exited {process.returncode} (expected {expect})\n"
                             f"stdout:\n{process.stdout}\nstderr:\n{process.stderr}")
    return process


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message)


def optimize(source, diagram, work, defines=()):
    out = os.path.join(work, f"{diagram}.opt.ncd")
    process = run("optimize", source, "--diagram", diagram, "--hw", "h100-sxm", "-O2", "--explain", "-o", out,
                  *defines)
    check("verify: output matches the input" in process.stderr, f"{diagram}: verification did not run")
    run("check", out)
    run("fmt", "--check", out)
    svg = os.path.join(work, f"{diagram}.svg")
    run("render", out, "--diagram", diagram, "-o", svg)
    xml.dom.minidom.parse(svg)
    run("cost", out, "--diagram", diagram, "--hw", "h100-sxm")  # every kernel's tiles fit where it is called
    ir = json.loads(run("show", "--json", out).stdout)
    return out, ir


def diagrams_by_name(ir):
    return {d["name"]: d for d in ir["diagrams"]}


def schedule_of(diagram):
    """{axis: (kind, amount)} of the diagram's first schedule, or None."""
    schedules = diagram.get("schedules") or []
    if not schedules:
        return None
    out = {}
    for directive in schedules[0]["directives"]:
        if directive["kind"] in ("group", "stream"):
            out[directive["axis"]] = (directive["kind"], directive["amount"])
    return out


def equiv(source, out, diagram, defines):
    process = run("equiv", source, out, "--diagram", diagram, *defines, expect=None)
    check(process.returncode == 0, f"{diagram}: ncd equiv of input and output failed:\n{process.stdout}{process.stderr}")


def attention_kernel(ir, name):
    d = diagrams_by_name(ir)[name]
    schedule = schedule_of(d)
    check(schedule is not None, f"{name}: no schedule")
    if schedule is None:
        return
    check(schedule.get("q", ("", 0))[0] == "group", f"{name}: q is not grouped: {schedule}")
    check(schedule.get("k", ("", 0))[0] == "stream", f"{name}: k is not streamed: {schedule}")
    calls = [op for op in d["ops"] if op["kind"] == "call"]
    check(not calls, f"{name}: not one kernel (calls {[c.get('callee') for c in calls]})")


def section_attention(work):
    source = os.path.join(ARGS.root, "examples/attention.ncd")
    out, ir = optimize(source, "Attention", work)
    attention_kernel(ir, "Attention")
    sizes = ["-D", "q=8192", "-D", "k=8192", "--hw", "h100-sxm", "--json"]
    before = json.loads(run("cost", source, *sizes).stdout)
    after = json.loads(run("cost", out, *sizes).stdout)
    unfused = sum(before["baseline"]["total"]["traffic"][0][side]["value"] for side in ("read", "write"))
    kernel = after["kernel"]
    check(kernel is not None, "Attention: the output is not priced as a kernel")
    fused = sum(kernel["traffic"][0][side]["value"] for side in ("read", "write"))
    print(f"attention at q = k = 8192, d = 64: unfused HBM {unfused / 1e6:.1f} MB, fused {fused / 1e6:.1f} MB, "
          f"ratio {unfused / fused:.1f}")
    check(unfused >= 10 * fused, f"Attention: HBM traffic only {unfused / fused:.1f}x lower (want >= 10x)")
    check(all(level["fits"] for level in kernel["memory"]), "Attention: tiles exceed a level's capacity")
    equiv(source, out, "Attention", ["-D", "q=128", "-D", "k=128"])


def stdlib_attention(work, name):
    source = os.path.join(ARGS.root, "stdlib/std/attention.ncd")
    out, ir = optimize(source, name, work)
    attention_kernel(ir, name)
    equiv(source, out, name, ["-D", "q=96", "-D", "k=96"])


def section_causal(work):
    stdlib_attention(work, "CausalAttention")


def section_sliding_window(work):
    stdlib_attention(work, "SlidingWindowAttention")


def layered(work, source, name, attention, defines):
    out, ir = optimize(source, name, work)
    diagrams = diagrams_by_name(ir)
    attention_kernel(ir, attention)
    kernels = [d for d in diagrams.values() if schedule_of(d) is not None]
    check(len(kernels) >= 3, f"{name}: only {len(kernels)} kernels: {[d['name'] for d in kernels]}")
    equiv(source, out, name, defines)
    return diagrams


def section_multihead(work):
    diagrams = layered(work, os.path.join(ARGS.root, "stdlib/std/attention.ncd"), "MultiHeadAttention", "Attention",
                       ["-D", "seq=64"])
    # The projections are matmuls with the bias fused as an epilogue.
    epilogue = [d for name, d in diagrams.items() if name.startswith("MultiHeadAttention_kernel")
                and any(op.get("function") == "add" for op in d["ops"])
                and any(op["kind"] == "contract" for op in d["ops"])]
    check(len(epilogue) >= 3, "MultiHeadAttention: projection + bias kernels missing")


def section_grouped_query(work):
    layered(work, os.path.join(ARGS.root, "stdlib/std/attention.ncd"), "GroupedQueryAttention", "CausalAttention",
            ["-D", "seq=64"])


def block(work, name, norm, ffn):
    diagrams = layered(work, os.path.join(ARGS.root, "stdlib/std/transformer.ncd"), name, "CausalAttention",
                       ["-D", "seq=32", "-D", "hidden=64"])
    check(schedule_of(diagrams[norm]) is not None, f"{name}: {norm} is not one fused kernel")
    fused_ffn = [d for n, d in diagrams.items() if n.startswith(ffn + "_kernel")
                 and any(op["kind"] == "contract" for op in d["ops"])
                 and any(op["kind"] == "elementwise" for op in d["ops"])]
    check(fused_ffn, f"{name}: no {ffn} kernel fuses its epilogue")


def section_gpt2_block(work):
    block(work, "GPT2Block", "LayerNorm", "FFN")


def section_llama_block(work):
    block(work, "LlamaBlock", "RMSNorm", "SwiGLU")


def section_examples(work):
    for name in sorted(os.listdir(os.path.join(ARGS.root, "examples"))):
        if not name.endswith(".ncd"):
            continue
        source = os.path.join(ARGS.root, "examples", name)
        ir = json.loads(run("show", "--json", source).stdout)
        for diagram in ir["diagrams"]:
            if diagram.get("module", 0) not in (0, None) and diagram.get("module") != ir["modules"][0]["path"]:
                continue
            optimize(source, diagram["name"], work, ["-D", "seq=32"] if "seq" in json.dumps(diagram) else [])


def section_verify_catches(work):
    source = os.path.join(ARGS.root, "stdlib/std/nn.ncd")
    out = os.path.join(work, "broken.ncd")
    process = run("optimize", source, "--diagram", "FFN", "--plugin", ARGS.miscompile, "--passes", "miscompile",
                  "-o", out, expect=1)
    check("differs from the input on the CPU backend" in process.stderr and "DIFFERS" in process.stderr,
          f"verify did not report the difference:\n{process.stderr}")
    check(not os.path.exists(out), "a wrong optimization was written")
    run("optimize", source, "--diagram", "FFN", "--plugin", ARGS.miscompile, "--passes", "miscompile", "--no-verify",
        "-o", out)
    check(os.path.exists(out), "--no-verify did not write the output")


def section_verify_catches_shrunk(work):
    # The wrong pass is still caught when the sizes given are large and verification shrinks them.
    source = os.path.join(ARGS.root, "stdlib/std/nn.ncd")
    out = os.path.join(work, "broken.ncd")
    process = run("optimize", source, "--diagram", "FFN", "--plugin", ARGS.miscompile, "--passes", "miscompile",
                  "-D", "model=4096", "-D", "hidden=16384", "-o", out, expect=1)
    check("differs from the input on the CPU backend (sizes: -D model=64 -D hidden=64)" in process.stderr
          and "DIFFERS" in process.stderr, f"verify did not report the difference at shrunk sizes:\n{process.stderr}")
    check(not os.path.exists(out), "a wrong optimization was written")


def section_verify_shrinks(work):
    # -D axes are verified small: at q = k = 65536 a full-size verification
    # would need S[q, k] in f32 (16 GiB) twice; shrunk, it takes megabytes.
    import resource
    import time
    source = os.path.join(ARGS.root, "examples/attention.ncd")
    out = os.path.join(work, "long.ncd")
    start = time.monotonic()
    process = run("optimize", source, "--diagram", "Attention", "-O2", "--explain", "-D", "q=65536", "-D", "k=65536",
                  "-o", out)
    seconds = time.monotonic() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    line = [l for l in process.stderr.splitlines() if l.startswith("verify: output matches")]
    import re
    sizes = re.search(r"sizes: -D q=(\d+) -D k=(\d+)\)", line[0]) if line else None
    check(sizes and int(sizes.group(1)) <= 256 and int(sizes.group(2)) <= 256, f"verify sizes: {line}")
    check(peak_mib < 400, f"optimize -D q=65536 peaked at {peak_mib:.0f} MiB (want < 400)")
    check(seconds < 30, f"optimize -D q=65536 took {seconds:.1f} s (want < 30)")
    # The 12-layer GPT-2: derived widths (width = nh * hd, ff = 4 * width) shrink too.
    source = os.path.join(ARGS.root, "examples/gpt2.ncd")
    process = run("optimize", source, "--diagram", "Model", "-O2", "--explain", "-o", os.path.join(work, "gpt2.ncd"))
    line = [l for l in process.stderr.splitlines() if l.startswith("verify: output matches")]
    check(line and "derived:" in line[0] and "width=768" not in line[0], f"GPT-2 verify sizes: {line}")
    check("verification keeps" not in process.stderr, f"GPT-2: an axis was kept:\n{process.stderr}")


def section_no_scratch_file(work):
    # Verification compiles the optimized text in memory: nothing is written to
    # TMPDIR (no predictable name to plant a link at, nothing left when killed).
    source = os.path.join(ARGS.root, "examples/attention.ncd")
    tmpdir = os.path.join(work, "tmp")
    os.mkdir(tmpdir)
    before = set(os.listdir(tempfile.gettempdir()))
    out = os.path.join(work, "out.ncd")
    process = subprocess.run([ARGS.ncd, "optimize", source, "--diagram", "Attention", "-o", out],
                             capture_output=True, text=True, env=dict(os.environ, TMPDIR=tmpdir))
    check(process.returncode == 0, f"optimize failed:\n{process.stderr}")
    check(os.listdir(tmpdir) == [], f"optimize wrote to TMPDIR: {os.listdir(tmpdir)}")
    made = [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("ncd-optimize")]
    check(not made, f"optimize wrote scratch files: {made}")


def section_determinism(work):
    source = os.path.join(ARGS.root, "stdlib/std/transformer.ncd")
    texts = []
    for attempt in range(2):
        out = os.path.join(work, f"gpt2_{attempt}.ncd")
        run("optimize", source, "--diagram", "GPT2Block", "--no-verify", "-o", out)
        texts.append(open(out, "rb").read())
    check(texts[0] == texts[1], "two runs wrote different bytes")
    # Verified runs too, and their verify lines (sizes, outcome) are the same.
    source = os.path.join(ARGS.root, "examples/attention.ncd")
    runs = []
    for attempt in range(2):
        out = os.path.join(work, f"attention_{attempt}.ncd")
        process = run("optimize", source, "--diagram", "Attention", "--explain", "-D", "q=8192", "-o", out)
        runs.append((open(out, "rb").read(), process.stderr))
    check(runs[0] == runs[1], "two verified runs differ")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--miscompile", required=True)
    parser.add_argument("section")
    ARGS = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        try:
            globals()["section_" + ARGS.section](work)
        except AssertionError as error:
            FAILURES.append(str(error))
            print("FAIL:", error)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
