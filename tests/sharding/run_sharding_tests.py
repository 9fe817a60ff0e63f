#!/usr/bin/env python3
"""Tests of sharded schedules (docs/SHARDING.md): the directive, the inferred
collectives and their cost.

    run_sharding_tests.py --ncd BUILD/bin/ncd SECTION

Sections:
  directive   `shard` checks, round-trips through `ncd fmt` and `show --source`,
              and shows in `show --ir` and `show --json`.
  megatron    GPT-2 (12 layers) and the LLaMA decoder layer, sharded 8-way
              tensor-parallel, report exactly two all-reduces per layer of
              batch x seq x model elements in the forward pass (Megatron-LM's
              count) and nothing else; the ring formulas price them.
  context     GPT-2 sharded along the sequence (context parallel): attention
              all-gathers keys and values, nothing is all-reduced.
  experts     a mixture of experts sharded along its experts: all-to-all
              dispatch and combine.
  sweep       `--sweep devices=...`: the fastest mesh at each device count,
              counts that no mesh divides, the plot, and its errors.
  simulate    `ncd run --devices N` equals the unsharded run and the NumPy
              oracle (tests/cpu/oracle.py): the 12-layer GPT-2 and the LLaMA
              decoder layer, 8-way tensor parallel and context parallel; a 2-d
              mesh; a reduce-scatter; Mixtral and DeepSeek expert parallel; the
              same bits with 1 and 2 threads; errors.
  ranks       `ncd run --devices N --ranks` (each rank's own program, the one
              `ncd emit --nccl` prints) equals the unsharded run and NumPy:
              the 12-layer GPT-2 and the LLaMA layer tensor parallel, an MLP
              data parallel; the same bits with 1 and 2 threads; what a rank
              program declines (context parallel, a 2-d mesh, a
              reduce-scatter), exact; `ncd show --ir --ranks`.
  render      `ncd render` of a sharded diagram: collectives under their
              operations' glyphs (counted on a folded call), split wires
              marked with their device count, the legend line; both layouts,
              deterministic, no label overlapping.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cpu"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "render"))
import oracle  # noqa: E402  (the NumPy oracle of the CPU reference)
import svgcheck  # noqa: E402  (labels overlapping in an SVG drawing)

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL: " + message)


def run(ncd, args, cwd, expect=0):
    result = subprocess.run([ncd] + args, cwd=cwd, capture_output=True, text=True, timeout=300)
    if result.returncode != expect:
        FAILURES.append(f"ncd {' '.join(args)}: exit {result.returncode}, expected {expect}\n{result.stderr}")
        print(FAILURES[-1])
    return result


def write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def cost_json(ncd, folder, file, diagram, extra=()):
    result = run(ncd, ["cost", file, "--diagram", diagram, "--json", "--explain"] + list(extra), folder)
    if result.returncode != 0:
        return None, result.stderr
    return json.loads(result.stdout), result.stderr


DIRECTIVE = """axis batch = 4, seq = 16, heads = 4, d = 8, model = heads * d

diagram Block(X[batch, seq, model]) -> Y[batch, seq, model] {
  param W[model, heads, d], O[heads, d, model]
  H[batch, seq, heads, d] = X[batch, seq, model] * W[model, heads, d]
  Y[batch, seq, model] = H[batch, seq, heads, d] * O[heads, d, model]
}

schedule Block {
  shard batch over 2
  shard heads over 4
}
"""


def section_directive(ncd, folder):
    path = write(folder, "block.ncd", DIRECTIVE)
    run(ncd, ["check", "--Werror", path], folder)
    fmt = run(ncd, ["fmt", path], folder)
    check(fmt.stdout == DIRECTIVE, "fmt does not keep the canonical shard lines:\n" + fmt.stdout)
    ir = run(ncd, ["show", "--ir", path], folder).stdout
    check("mesh 2 x 4 (8 devices)" in ir, "show --ir lacks the mesh:\n" + ir)
    check("shard batch over 2" in ir and "shard heads over 4" in ir, "show --ir lacks the shards:\n" + ir)
    check("all-reduce over mesh 1 of Y[batch, seq, model] at Block" in ir, "show --ir lacks the collective:\n" + ir)
    shown = json.loads(run(ncd, ["show", "--json", path], folder).stdout)
    diagrams = shown["diagrams"] if isinstance(shown, dict) else shown
    block = [d for d in diagrams if d.get("name") == "Block"][0]
    check(block.get("shards") == [
        {"axes": ["batch"], "devices": 2, "location": block["shards"][0]["location"]},
        {"axes": ["heads"], "devices": 4, "location": block["shards"][1]["location"]},
    ], f"show --json shards: {block.get('shards')}")
    check(block.get("schedules") == [], "a block of shards alone made a schedule")
    # The IR written back keeps the mesh, and reads again.
    source = run(ncd, ["show", "--source", path], folder).stdout
    check("shard batch over 2" in source and "shard heads over 4" in source, "show --source lost the shards:\n" + source)
    again = write(folder, "again.ncd", source)
    run(ncd, ["check", again], folder)
    # Row-parallel: the contraction over the heads held split is one all-reduce.
    report, log = cost_json(ncd, folder, path, "Block")
    if report:
        kinds = [c["kind"] for c in report["sharding"]["collectives"]]
        check(kinds.count("all-reduce") == 1, f"Block: {kinds}")
        check("all-reduce over mesh 1 (4 devices)" in log, "--explain lacks the all-reduce:\n" + log)
        # Memory by hand (f32): W and O hold 32 x 4 x 8 elements each, a rank the
        # quarter of its heads. X, H and Y hold 4 x 16 x 32; a rank half the batch
        # of each and, of H, a quarter of the heads. Live at most: X and H, then H and Y.
        check(report["sharding"]["memory"] == {
            "param_bytes": 2 * 1024 * 4 / 4, "param_bytes_one_device": 2 * 1024 * 4,
            "activation_peak": (2048 / 2 + 2048 / 8) * 4, "activation_peak_one_device": 2 * 2048 * 4},
            f"Block memory: {report['sharding']['memory']}")
    # Megatron's sequence parallelism: a sum over the split hidden axis whose
    # result stays split along the sequence on the same devices is a reduce-scatter.
    scatter = write(folder, "scatter.ncd", """axis seq = 16, hidden = 32, model = 8

diagram Down(H[hidden, seq]) -> Y[seq, model] {
  param W[hidden, model]
  Y[seq, model] = H[hidden, seq] * W[hidden, model]
}

schedule Down {
  shard hidden, seq over 4
}
""")
    report, log = cost_json(ncd, folder, scatter, "Down")
    if report:
        collectives = report["sharding"]["collectives"]
        kinds = [c["kind"] for c in collectives]
        check(kinds == ["reduce-scatter", "all-gather"], f"Down: {kinds}\n{log}")
        check(collectives[0]["elements"] == 16 * 8, f"Down: reduce-scatter of {collectives[0]['elements']} elements")
        check(abs(collectives[0]["wire_bytes"] - 3 / 4 * 16 * 8 * collectives[0]["element_bytes"]) < 1e-9, f"Down: {collectives[0]['wire_bytes']}")
    # Errors.
    bad = write(folder, "bad.ncd", DIRECTIVE.replace("shard heads over 4", "shard heads over 3"))
    err = run(ncd, ["check", bad], folder, expect=1).stderr
    check("3 does not divide the size of 'heads' (4)" in err, "no divisibility error:\n" + err)
    check("bad.ncd:11:20: error" in err, "divisibility error not located at the device count:\n" + err)
    unknown = write(folder, "unknown.ncd", DIRECTIVE.replace("shard heads over 4", "shard head over 4"))
    err = run(ncd, ["check", unknown], folder, expect=1).stderr
    check("has no axis 'head'; did you mean 'heads'?" in err, "no did-you-mean:\n" + err)
    # A call that fails leaves its callee's axes unreached: its error alone is reported, not a shard's after it.
    broken = write(folder, "broken.ncd", """import "std/gpt2.ncd"

axis seq = 16, n_embd = 64

diagram Model(ids[seq]: i32) -> H[seq, n_embd] {
  H[seq, n_embd] = GPT2Model(ids)
}

schedule Model {
  shard heads over 2
}
""")
    err = run(ncd, ["check", broken], folder, expect=1).stderr
    check(err.count("error:") == 1 and "axis sizes disagree at this call" in err, "a cascade after a failed call:\n" + err)
    err = run(ncd, ["cost", path, "--devices", "3"], folder, expect=2).stderr
    check("the mesh of 'Block' has 8 devices in 2 dimensions" in err, "--devices on a 2-d mesh:\n" + err)


def megatron(ncd, folder, name, text, diagram, per_layer_elements, layers, extra=()):
    path = write(folder, name, text)
    run(ncd, ["check", path] + list(extra), folder)
    report, log = cost_json(ncd, folder, path, diagram, extra)
    if not report:
        return None
    sharding = report["sharding"]
    check(sharding["devices"] == 8, f"{name}: {sharding['devices']} devices")
    collectives = sharding["collectives"]
    kinds = sorted({c["kind"] for c in collectives})
    check(kinds == ["all-reduce"], f"{name}: collectives other than all-reduces: {kinds}\n{log}")
    reduces = [c for c in collectives if c["kind"] == "all-reduce"]
    total = sum(c["count"] for c in reduces)
    check(total == 2 * layers, f"{name}: {total} all-reduces per forward, expected {2 * layers}\n{log}")
    for c in reduces:
        check(c["elements"] == per_layer_elements,
              f"{name}: all-reduce of {c['value']} at {c['site']} has {c['elements']} elements, expected {per_layer_elements}")
        check(c["group"] == 8, f"{name}: group {c['group']}")
        # Ring all-reduce: 2(p-1)/p of the bytes, on NVLink (8 devices fit one node).
        expected_wire = 2 * 7 / 8 * c["elements"] * c["element_bytes"]
        check(abs(c["wire_bytes"] - expected_wire) <= 1e-6 * expected_wire, f"{name}: wire bytes {c['wire_bytes']}")
        expected_time = expected_wire / 450e9 + 2 * 7 * 3e-6
        check(abs(c["time"] - expected_time) <= 1e-9 * expected_time + 1e-15, f"{name}: time {c['time']} vs {expected_time}")
        check(c["link"] == "nvlink", f"{name}: link {c['link']}")
    check(0 < sharding["rank_share"] < 0.2, f"{name}: the busiest rank does {sharding['rank_share']} of the work")
    return sharding


def section_megatron(ncd, folder):
    # Axes are never imported: the wrapper declares its own, bound to GPT-2's by name.
    gpt2 = """import "std/gpt2.ncd"

axis batch = 2, seq = 1024, heads = 12, head_dim = 64, n_embd = heads * head_dim

diagram Batched(ids[batch, seq]: i32) -> H[batch, seq, n_embd] {
  H[batch, seq, n_embd] = GPT2Model(ids)
}

schedule Batched {
  shard heads, inner over 8
}
"""
    # GPT-2 small has 12 heads, which 8 does not divide: 16 heads of 64 (n_embd 1024), 12 layers.
    sharding = megatron(ncd, folder, "gpt2_tp.ncd", gpt2, "Batched", 2 * 1024 * 1024, 12, ["-D", "heads=16"])
    if sharding:
        # Megatron's partition of the params (bf16, 2 bytes): per layer the QKV and
        # fc weights and biases and the two output weights are split 8 ways; the
        # output biases, layer norms, embeddings and ln_f are whole.
        m, vocab, positions = 1024, 50257, 1024
        whole = m * (3 * m) + 3 * m + m * m + m + m * 4 * m + 4 * m + 4 * m * m + m + 4 * m
        split = (3 * m * m + 3 * m + m * m + 4 * m * m + 4 * m + 4 * m * m) / 8 + m + m + 4 * m
        shared = vocab * m + positions * m + 2 * m
        memory = sharding["memory"]
        check(memory["param_bytes_one_device"] == 2 * (12 * whole + shared), f"GPT-2 params: {memory}")
        check(memory["param_bytes"] == 2 * (12 * split + shared), f"GPT-2 params per device: {memory}")
        check(memory["activation_peak"] < memory["activation_peak_one_device"] / 4, f"GPT-2 activations: {memory}")
    # 4-way on GPT-2 small itself.
    path = write(folder, "gpt2_tp4.ncd", gpt2.replace("over 8", "over 4"))
    report, log = cost_json(ncd, folder, path, "Batched")
    if report:
        reduces = [c for c in report["sharding"]["collectives"] if c["kind"] == "all-reduce"]
        check(sum(c["count"] for c in reduces) == 24 and all(c["elements"] == 2 * 1024 * 768 for c in reduces),
              f"GPT-2 small 4-way: {reduces}")
        check(len(report["sharding"]["collectives"]) == len(reduces), "GPT-2 small 4-way: other collectives")
    # The same file with --devices 8 and 16 heads.
    report, _ = cost_json(ncd, folder, path, "Batched", ["-D", "heads=16", "--devices", "8"])
    if report:
        check(report["sharding"]["devices"] == 8, "--devices 8 did not take")
    llama = """import "std/llama.ncd"

axis batch = 2, seq = 8192, hidden_size = 4096

diagram Batched(X[batch, seq, hidden_size]) -> Y[batch, seq, hidden_size] {
  Y[batch, seq, hidden_size] = LlamaDecoderLayer(X)
}

schedule Batched {
  shard kv_heads, intermediate over 8
}
"""
    megatron(ncd, folder, "llama_tp.ncd", llama, "Batched", 2 * 512 * 4096, 1, ["-D", "seq=512"])


def section_context(ncd, folder):
    text = """import "std/gpt2.ncd"

axis seq = 1024, n_embd = 768

diagram Model(ids[seq]: i32) -> H[seq, n_embd] {
  H[seq, n_embd] = GPT2Model(ids)
}

schedule Model {
  shard seq over 4
}
"""
    path = write(folder, "gpt2_cp.ncd", text)
    run(ncd, ["check", path], folder)
    report, log = cost_json(ncd, folder, path, "Model")
    if not report:
        return
    collectives = report["sharding"]["collectives"]
    kinds = [c["kind"] for c in collectives]
    check("all-reduce" not in kinds, f"context parallel all-reduces: {kinds}\n{log}")
    attention = [c for c in collectives if c["kind"] == "all-gather" and "attn" in c["site"]]
    # Keys and values, once per layer each.
    check(sum(c["count"] for c in attention) == 24, f"context parallel: K and V all-gathers {attention}\n{log}")
    for c in attention:  # all 12 heads' keys (or values): seq x n_embd
        check(c["elements"] == 1024 * 768, f"context parallel all-gather of {c['elements']} elements")


def section_experts(ncd, folder):
    text = """import "std/moe.ncd"

axis seq = 4096, hidden_size = 4096

diagram Moe(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = MixtralSparseMoeBlock(X)
}

schedule Moe {
  shard experts over 8
}
"""
    path = write(folder, "moe_ep.ncd", text)
    run(ncd, ["check", path], folder)
    report, log = cost_json(ncd, folder, path, "Moe", ["-D", "seq=64"])
    if not report:
        return
    kinds = [c["kind"] for c in report["sharding"]["collectives"]]
    check(kinds.count("all-to-all") == 2, f"expert parallel: {kinds}\n{log}")
    # Memory by hand: the root's X (f32) and, at the peak, three routed [seq, top, ffn] bf16 values (G, U and
    # silu(G); then U, silu(G) and H) with Weight (bf16) and I (i32); the gathered weights are read in place,
    # never held. A device holds its experts' share of the routed rows (1/8 for uniform routing).
    routed = 64 * 2 * 14336 * 2
    small = 64 * 2 * 2 + 64 * 2 * 4
    memory = report["sharding"]["memory"]
    check(memory["activation_peak_one_device"] == 64 * 4096 * 4 + 3 * routed + small, f"MoE activations: {memory}")
    check(memory["activation_peak"] == 64 * 4096 * 4 + 3 * routed / 8 + small, f"MoE activations per device: {memory}")


def section_sweep(ncd, folder):
    path = write(folder, "block.ncd", DIRECTIVE)
    result = run(ncd, ["cost", path, "--sweep", "devices=1..16", "--json", "--explain"], folder)
    points = json.loads(result.stdout)["points"] if result.returncode == 0 else []
    check([p["devices"] for p in points] == [1, 2, 4, 8, 16], f"device counts: {[p['devices'] for p in points]}")
    for p in points:
        sharding = p.get("sharding", {})
        mesh = sharding.get("mesh", [])
        check(len(mesh) == 2 and mesh[0] * mesh[1] == p["devices"] and mesh[0] <= 4 and mesh[1] <= 4,
              f"{p['devices']} devices: mesh {mesh}")
    # Every mesh of a count is priced (2 x 4 and 4 x 2 at 8), and the fastest kept.
    tried = [line for line in result.stderr.splitlines() if line.startswith("sweep: 8 devices")]
    check(len(tried) == 2, f"meshes tried at 8 devices: {tried}")
    for p in points:
        single = run(ncd, ["cost", path, "--json"], folder) if p["devices"] == 8 else None
        if single and single.returncode == 0:
            mine = json.loads(single.stdout)["sharding"]  # the file's own mesh is 2 x 4
            best = p["sharding"]
            check(best["overlap_time"] <= mine["overlap_time"], "the sweep kept a slower mesh than 2 x 4")
    # One device: no communication, the one-device time.
    if points:
        one = points[0]["sharding"]
        check(one["communication_time"] == 0 and one["speedup"] == 1, f"1 device: {one}")
    # GPT-2 with 16 heads: 32 and 64 devices divide no mesh.
    gpt2 = write(folder, "gpt2.ncd", """import "std/gpt2.ncd"

axis batch = 2, seq = 1024, heads = 12, head_dim = 64, n_embd = heads * head_dim

diagram Batched(ids[batch, seq]: i32) -> H[batch, seq, n_embd] {
  H[batch, seq, n_embd] = GPT2Model(ids)
}

schedule Batched {
  shard heads, inner over 8
}
""")
    plot = os.path.join(folder, "devices.svg")
    sixteen = ["-D", "heads=16"]  # every file's heads: GPT-2's own too
    text = run(ncd, ["cost", gpt2, "--sweep", "devices=1..64", "--plot", plot] + sixteen, folder).stdout
    check("       32  no mesh: 32 does not divide the size of 'heads' (16)" in text, "no refusal at 32:\n" + text)
    check("fastest: " in text, "no fastest line:\n" + text)
    import xml.dom.minidom
    with open(plot) as f:
        svg = f.read()
    xml.dom.minidom.parseString(svg)
    check(svg.count("<path") == 7, f"the plot has {svg.count('<path')} curves, expected 7")
    run(ncd, ["cost", gpt2, "--sweep", "devices=1..64", "--plot", plot + "2"] + sixteen, folder)
    with open(plot + "2") as f:
        check(f.read() == svg, "the device plot is not deterministic")
    # Errors.
    err = run(ncd, ["cost", gpt2, "--sweep", "devices=1..8", "--devices", "8"] + sixteen, folder, expect=2).stderr
    check(err == "ncd cost: error: --devices and --sweep devices=... choose the device count twice; keep one\n", err)
    err = run(ncd, ["cost", gpt2, "--sweep", "devices,seq=1..8"] + sixteen, folder, expect=2).stderr
    check(err == "ncd cost: error: --sweep devices,seq=1..8: the device count sweeps alone (--sweep devices=FROM..TO)\n", err)
    plain = write(folder, "plain.ncd", DIRECTIVE.split("schedule")[0])
    err = run(ncd, ["cost", plain, "--sweep", "devices=1..8"], folder, expect=2).stderr
    check("diagram 'Block' has no `shard` directive, so there is nothing to spread" in err, err)


GPT2_SIM = """import "std/gpt2.ncd"

axis seq = 16, n_embd = 64

diagram Model(ids[seq]: i32) -> H[seq, n_embd] {
  H[seq, n_embd] = GPT2Model(ids)
}

schedule Model {
  SHARD
}
"""
GPT2_SIZES = ["-D", "heads=8", "-D", "head_dim=8", "-D", "vocab=97", "-D", "positions=32", "-D", "dtype=f32"]

LLAMA_SIM = """import "std/llama.ncd"

axis seq = 16, hidden_size = 128

diagram Layer(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = LlamaDecoderLayer(X)
}

schedule Layer {
  SHARD
}
"""
LLAMA_SIZES = ["-D", "kv_heads=8", "-D", "group=2", "-D", "head_dim=8", "-D", "intermediate=64", "-D", "dtype=f32"]


def load_folder(folder, strip=""):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".npy"):
            out[name[:-4][len(strip):] if name.startswith(strip) else name[:-4]] = np.load(os.path.join(folder, name))
    return out


def simulate(ncd, folder, name, text, diagram, sizes, devices, oracle_fn=None, strip="", extra=()):
    """Runs `text` unsharded (random data), then with --devices (and `extra`): they must agree, and both
    the oracle."""
    path = write(folder, name + ".ncd", text)
    one, many = os.path.join(folder, name + ".one"), os.path.join(folder, name + ".many")
    if run(ncd, ["run", path, "--diagram", diagram, "--random", "7", "--out-dir", one] + sizes, folder).returncode:
        return
    given = ["--params", os.path.join(one, "params")]
    inputs = load_folder(os.path.join(one, "inputs"))
    for input_name in inputs:
        given += ["--in", f"{input_name}={os.path.join(one, 'inputs', input_name + '.npy')}"]
    base = ["run", path, "--diagram", diagram, "--devices", str(devices)] + given + sizes + list(extra)
    if run(ncd, base + ["--out-dir", many], folder).returncode:
        return
    expected, got = load_folder(one), load_folder(many)
    check(sorted(expected) == sorted(got), f"{name}: outputs {sorted(got)}")
    for output, reference in expected.items():
        result = got.get(output)
        if result is None:
            continue
        check(not np.isnan(result).any(), f"{name}: {output} has NaN: a device read what it does not hold")
        scale = max(1.0, float(np.abs(reference).max()))
        error = float(np.abs(result - reference).max())
        # Partial sums add in another order than one device's sum: float32 rounding only.
        check(error <= 1e-5 * scale, f"{name}: {output} differs from the unsharded run by {error} (scale {scale})")
        if oracle_fn:
            params = load_folder(os.path.join(one, "params"), strip)
            want = oracle_fn(inputs, params)[output]
            oracle_error = float(np.abs(result - want).max())
            check(oracle_error <= 1e-4 * scale, f"{name}: {output} differs from NumPy by {oracle_error}")
    # The same bits whatever the thread count.
    threads = os.path.join(folder, name + ".threads")
    if run(ncd, base + ["--out-dir", threads, "--threads", "1"], folder).returncode == 0:
        for output in got:
            with open(os.path.join(many, output + ".npy"), "rb") as a, open(os.path.join(threads, output + ".npy"), "rb") as b:
                check(a.read() == b.read(), f"{name}: {output} differs between 1 thread and the default")
    return got


def section_simulate(ncd, folder):
    r = oracle.rounder("f32")
    gpt2 = lambda x, p: oracle.hf_GPT2Model({"input_ids": x["ids"]}, p, r, {"heads": 8, "layers": 12})  # noqa: E731
    rename = lambda out: {"H": out["last_hidden_state"]}  # noqa: E731
    for label, shard in [("tp", "shard heads, inner over 8"), ("cp", "shard seq over 8")]:
        simulate(ncd, folder, "gpt2_" + label, GPT2_SIM.replace("SHARD", shard), "Model", GPT2_SIZES, 8,
                 lambda x, p: rename(gpt2(x, p)), "GPT2Model.")
    llama = lambda x, p: oracle.hf_LlamaDecoderLayer(x, p, r, {"kv_heads": 8, "group": 2})  # noqa: E731
    for label, shard in [("tp", "shard kv_heads, intermediate over 8"), ("cp", "shard seq over 8")]:
        simulate(ncd, folder, "llama_" + label, LLAMA_SIM.replace("SHARD", shard), "Layer", LLAMA_SIZES, 8, llama,
                 "LlamaDecoderLayer.")
    # A 2-d mesh (batch x heads) and a reduce-scatter.
    block = lambda x, p: {"Y": np.einsum("bsm,mhd,hdn->bsn", x["X"], p["W"], p["O"])}  # noqa: E731
    simulate(ncd, folder, "block", DIRECTIVE, "Block", [], 8, block)
    down = write(folder, "down.ncd", """axis seq = 16, hidden = 32, model = 8

diagram Down(H[hidden, seq]) -> Y[seq, model] {
  param W[hidden, model]
  Y[seq, model] = H[hidden, seq] * W[hidden, model]
}

schedule Down {
  shard hidden, seq over 4
}
""")
    with open(down) as f:
        simulate(ncd, folder, "down", f.read(), "Down", [], 4, lambda x, p: {"Y": x["H"].T @ p["W"]})
    # Errors: exact messages, exit 2 for a bad count, 1 for what the simulation declines.
    path = write(folder, "block.ncd", DIRECTIVE)
    err = run(ncd, ["run", path, "--random", "1", "--devices", "4", "--out-dir", "x"], folder, expect=2).stderr
    check(err == "ncd run: error: --devices 4: the mesh of 'Block' has 8 devices in 2 dimensions; change its `shard` "
          "lines instead\n", err)
    plain = write(folder, "plain.ncd", DIRECTIVE.split("schedule")[0])
    err = run(ncd, ["run", plain, "--random", "1", "--devices", "2", "--out-dir", "x"], folder, expect=2).stderr
    check(err.startswith("ncd run: error: --devices 2: diagram 'Block' has no `shard` directive"), err)
    # Expert parallel: each device holds its experts' rows; routed rows come back from their experts' devices.
    moe = """import "std/moe.ncd"

axis seq = 8, hidden_size = 16

diagram Moe(X[seq, hidden_size]) -> Y[seq, hidden_size] {
  Y[seq, hidden_size] = BLOCK(X)
}

schedule Moe {
  shard EXPERTS over 8
}
"""
    mixtral = lambda x, p: oracle.MixtralSparseMoeBlock(x, p, r, {"top": 2})  # noqa: E731
    simulate(ncd, folder, "mixtral_ep", moe.replace("BLOCK", "MixtralSparseMoeBlock").replace("EXPERTS", "experts"),
             "Moe", ["-D", "ffn=8", "-D", "dtype=f32"], 8, mixtral, "MixtralSparseMoeBlock.")
    # Tokens split along the sequence on the experts' devices: the dispatch is declined, exit 1, no output.
    both = write(folder, "moe_both.ncd", moe.replace("BLOCK", "MixtralSparseMoeBlock").replace("EXPERTS", "seq, experts"))
    out = os.path.join(folder, "declined")
    err = run(ncd, ["run", both, "--random", "1", "--devices", "8", "--out-dir", out, "-D", "ffn=8"], folder,
              expect=1).stderr
    check(err == "ncd: error: running 'Moe': 'MixtralSparseMoeBlock': an all-to-all dispatch of tokens that the "
          "devices hold in slices is not simulated; run it without --devices\n", err)
    check(not os.path.exists(os.path.join(out, "Y.npy")), "a declined simulation wrote an output")
    deepseek = lambda x, p: oracle.DeepseekMoE(x, p, r, {"chosen": 6})  # noqa: E731
    simulate(ncd, folder, "deepseek_ep", moe.replace("BLOCK", "DeepseekMoE").replace("EXPERTS", "routed"), "Moe",
             ["-D", "expert_ffn=8", "-D", "shared_ffn=16", "-D", "dtype=f32"], 8, deepseek, "DeepseekMoE.")


def section_ranks(ncd, folder):
    r = oracle.rounder("f32")
    gpt2 = lambda x, p: {"H": oracle.hf_GPT2Model({"input_ids": x["ids"]}, p, r,  # noqa: E731
                                                  {"heads": 8, "layers": 12})["last_hidden_state"]}
    simulate(ncd, folder, "gpt2_tp_ranks", GPT2_SIM.replace("SHARD", "shard heads, inner over 8"), "Model", GPT2_SIZES,
             8, gpt2, "GPT2Model.", ["--ranks"])
    llama = lambda x, p: oracle.hf_LlamaDecoderLayer(x, p, r, {"kv_heads": 8, "group": 2})  # noqa: E731
    simulate(ncd, folder, "llama_tp_ranks", LLAMA_SIM.replace("SHARD", "shard kv_heads, intermediate over 8"), "Layer",
             LLAMA_SIZES, 8, llama, "LlamaDecoderLayer.", ["--ranks"])
    # Data parallel: each rank's slice of the batch, the output put together from the ranks' slices.
    dp = """axis batch = 8, model = 16, hidden = 32

diagram M(X[batch, model]) -> Y[batch, model], Z[model] {
  param W1[model, hidden], W2[hidden, model]
  H[batch, hidden] = X[batch, model] * W1[model, hidden]
  Y[batch, model] = relu(H[batch, hidden]) * W2[hidden, model]
  Z[model] = W2[hidden, model]
}

schedule M {
  shard batch over 4
}
"""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    simulate(ncd, folder, "dp_ranks", dp, "M", [], 4,
             lambda x, p: {"Y": relu(x["X"] @ p["W1"]) @ p["W2"], "Z": p["W2"].sum(0)}, "", ["--ranks"])
    # What a rank program does not state: exit 1, the exact reason, no output file.
    out = os.path.join(folder, "declined")
    for name, text, sizes, message in [
            ("gpt2_cp", GPT2_SIM.replace("SHARD", "shard seq over 8"), GPT2_SIZES,
             "ncd: error: running 'Model': 'Model' has no rank program: at GPT2Model.h.attn.CausalAttention, %4 is read "
             "whole along 'q' beside a rank's share of it, which the plan does not cut\n"),
            ("mesh", DIRECTIVE, [],
             "ncd: error: running 'Block': 'Block' has no rank program: its mesh has 2 dimensions, and a rank program "
             "is built for one shard line\n"),
            ("scatter", """axis seq = 16, hidden = 32, model = 8

diagram Down(H[hidden, seq]) -> Y[seq, model] {
  param W[hidden, model]
  Y[seq, model] = H[hidden, seq] * W[hidden, model]
}

schedule Down {
  shard hidden, seq over 4
}
""", [], "ncd: error: running 'Down': 'Down' has no rank program: its plan reduce-scatters Y at Down, and a rank "
               "program states only all-reduces\n")]:
        path = write(folder, name + "_ranks.ncd", text)
        err = run(ncd, ["run", path, "--random", "1", "--devices", "8" if name != "scatter" else "4", "--ranks",
                        "--out-dir", out] + sizes, folder, expect=1).stderr
        check(err == message, f"{name}: {err}")
        check(not os.path.exists(out) or not os.listdir(out), f"{name}: a declined rank run wrote outputs")
    path = write(folder, "dp.ncd", dp)
    err = run(ncd, ["run", path, "--random", "1", "--ranks", "--out-dir", out], folder, expect=2).stderr
    check(err == "ncd run: error: --ranks runs a sharded diagram's ranks: give --devices N\n", err)
    # `ncd show --ir --ranks`: the rank program itself, a Megatron MLP over 4 ranks.
    tp = write(folder, "tp.ncd", """axis tokens = 8, model = 16, hidden = 64

diagram TP(X[tokens, model]) -> Y[tokens, model] {
  param W1[model, hidden], W2[hidden, model], b2[model]
  H[tokens, hidden] = X[tokens, model] * W1[model, hidden]
  Y[tokens, model] = relu(H[tokens, hidden]) * W2[hidden, model] + b2[model]
}

schedule TP {
  shard hidden over 4
}
""")
    text = run(ncd, ["show", "--ir", "--ranks", tp], folder).stdout
    check(text.startswith("# the rank program of TP, one of 4 ranks"), text[:200])
    check("param  %2:W1 : [model(16), hidden_local(16)] f32" in text, "W1 is not the rank's slice:\n" + text)
    check("param  %4:b2 : [model(16)] f32" in text, "b2 is not whole:\n" + text)
    check(text.count("all-reduce (sum) of ") == 1 and "all-reduce (sum) of %7 in TP  @" in text and
          text.rstrip().endswith("tp.ncd:6:22"), "the reductions:\n" + text)
    err = run(ncd, ["show", "--ir", "--ranks", write(folder, "cp.ncd", GPT2_SIM.replace("SHARD", "shard seq over 8"))]
              + GPT2_SIZES, folder, expect=1).stderr
    check(err == "ncd: error: diagram 'Model' has no rank program: at GPT2Model.h.attn.CausalAttention, %4 is read "
          "whole along 'q' beside a rank's share of it, which the plan does not cut\n", err)
    err = run(ncd, ["show", "--ir", "--ranks", write(folder, "plain.ncd", dp.split("schedule")[0])], folder,
              expect=1).stderr
    check(err == "ncd: error: diagram 'M' has no shard lines, so it has no rank program\n", err)
    err = run(ncd, ["show", "--json", "--ranks", tp], folder, expect=2).stderr
    check(err == "ncd: error: --ranks shows a rank program's IR: use it with --ir, without --passes\n", err)


def section_render(ncd, folder):
    path = write(folder, "block.ncd", DIRECTIVE)
    legend = "sharded over 8 devices (mesh 2 x 4): \u00f7N wires are split, outlined operations communicate"
    for layout in ("dot", "ncd"):
        svg = run(ncd, ["render", path, "--layout", layout, "-o", "-"], folder).stdout
        text = svg.replace("&#45;", "-")
        check("all-reduce Y over 4" in text, f"{layout}: no all-reduce under the contraction")
        # X and Y are split along the batch (mesh 0); H along the batch and the heads (mesh 1);
        # W and O are held as their heads' slices.
        check(text.count("batch(4) \u00f72") == 3 and text.count("heads(4) \u00f74") == 3,
              f"{layout}: split wires {text.count('batch(4) ÷2')}, {text.count('heads(4) ÷4')}")
        check(legend in text or layout == "ncd", f"{layout}: no legend line")
        check(svgcheck.check_svg(svg) == [], f"{layout}: {svgcheck.check_svg(svg)}")
        again = run(ncd, ["render", path, "--layout", layout, "-o", "-"], folder).stdout
        check(again == svg, f"{layout}: not deterministic")
    with_legend = run(ncd, ["render", path, "--layout", "ncd", "--legend", "-o", "-"], folder).stdout
    check(legend in with_legend, "ncd layout --legend: no sharding line")
    # GPT-2 tensor parallel: each folded block shows its two all-reduces; its attention and MLP one each.
    gpt2 = write(folder, "gpt2.ncd", GPT2_SIM.replace("SHARD", "shard heads, inner over 8"))
    folded = run(ncd, ["render", gpt2, "--format", "dot", "--depth", "1", "-o", "-"] + GPT2_SIZES, folder).stdout
    check(folded.count("2 all-reduce over 8") == 1, "GPT-2 at depth 1: " + str(folded.count("all-reduce")))
    inner = run(ncd, ["render", gpt2, "--format", "dot", "--depth", "2", "-o", "-"] + GPT2_SIZES, folder).stdout
    check(inner.count("1 all-reduce over 8") == 2, "GPT-2 at depth 2: " + str(inner.count("all-reduce")))
    # Without shard lines nothing changes.
    plain = write(folder, "plain.ncd", DIRECTIVE.split("schedule")[0])
    text = run(ncd, ["render", plain, "--format", "dot", "-o", "-"], folder).stdout
    check("\u00f7" not in text and "sharded over" not in text and "7c3aed" not in text, "an unsharded drawing is marked")


SECTIONS = {"directive": section_directive, "megatron": section_megatron, "context": section_context,
            "experts": section_experts, "sweep": section_sweep, "simulate": section_simulate,
            "ranks": section_ranks, "render": section_render}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("sections", nargs="*", default=list(SECTIONS))
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    for section in args.sections:
        with tempfile.TemporaryDirectory() as folder:
            SECTIONS[section](ncd, folder)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
