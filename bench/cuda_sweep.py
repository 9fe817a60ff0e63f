#!/usr/bin/env python3
"""Every diagram ncd can emit, run on a GPU and checked against ncd's CPU backend.

`tests/cuda` compiles every emitted kernel; this script runs them. It has two halves:

  prepare  (the machine with ncd built; no GPU)  for every diagram of stdlib/std/, examples/,
           tests/cuda/cases/fused.ncd, scan.ncd and moe.ncd, at small sizes that the tiles do not divide, twice (as
           written, and after `ncd optimize -O2`): `ncd run --random 1` writes inputs, params and
           the CPU backend's outputs (the reference; that backend is itself checked against a NumPy
           oracle in tests/cpu), and `ncd emit --cuda --harness` writes the .cu. A diagram that
           cannot be emitted is listed with the reason. Profile cases (the GPT-2 block at its
           benchmark sizes) get a .cu and a tensor table only; their data is made on the GPU machine.
  run      (the GPU machine: nvcc, python3; no ncd, no NumPy)  compiles every .cu in parallel, runs
           each harness once, compares every output with the CPU reference, runs compute-sanitizer
           memcheck on each, and times every kernel of the profile cases with ncu.

Tolerance: outputs are compared in float32 after the harness writes them; the error allowed is
2^-6 of the output's largest magnitude (about two bf16 roundings of the largest value), plus
the same NaN positions. ncd's CPU backend rounds every bf16 value it stores; a fused GPU kernel
keeps some intermediates in float32, so the two legitimately differ by a few bf16 ulps.

  /usr/bin/python3 bench/cuda_sweep.py prepare --ncd build/bin/ncd --out device_sweep
  python3 bench/cuda_sweep.py run --kit device_sweep [--out DIR] [--only REGEX]

Only the Python standard library is used on both sides.
"""
import argparse
import array
import ast
import concurrent.futures
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# file -> -D overrides: small, odd where the axis is free, so tiles do not divide the sizes.
SOURCES = {
    "stdlib/std/attention.ncd": dict(q=200, k=150, d=64, seq=200, heads=4, window=64, kv_heads=2, group=2),
    "stdlib/std/conv.ncd": dict(c=32, o=48, t=300, h=20, w=21),
    "stdlib/std/nn.ncd": dict(d_in=200, d_out=136, model=256, hidden=520, vocab=1000, seq=200),
    "stdlib/std/transformer.ncd": dict(seq=200, heads=4, d=64, hidden=1024, vocab=1000, kv_heads=2, group=2, ffn=520),
    "examples/attention.ncd": dict(q=200, k=150, d=64),
    "examples/multihead.ncd": dict(seq=200, heads=4, d=64, model=256),
    "examples/gpt2.ncd": dict(batch=2, ctx=130, nh=4, hd=64, vocab=1000),
    "tests/cuda/cases/fused.ncd": dict(batch=3, seq=200),
    "stdlib/std/ssm.ncd": dict(l=300, d=136, n=16, r=24),
    "tests/cuda/cases/scan.ncd": dict(l=1000, m=33, d=64, n=16, t=257),
    "stdlib/std/moe.ncd": dict(seq=200, hidden_size=256, ffn=520, experts=8, top=2, routed=16, chosen=4,
                               expert_ffn=136, shared_ffn=272),
    "tests/cuda/cases/moe.ncd": dict(tokens=300),
}
# Narrower still where a diagram repeats a layer 12 times (the data must stay small to travel).
DIAGRAM_DEFINES = {
    ("stdlib/std/transformer.ncd", "GPT2"): dict(seq=130, heads=2, d=64, hidden=300, vocab=1000),
    ("examples/gpt2.ncd", "Model"): dict(batch=2, ctx=66, nh=2, hd=64, vocab=1000),
}
# Timed kernel by kernel (ncu), at the sizes of the device check's GPT-2 benchmark.
PROFILE = [
    ("prof_gpt2_d64", "stdlib/std/transformer.ncd", "GPT2Block", dict(d=64)),
    ("prof_gpt2_d128", "stdlib/std/transformer.ncd", "GPT2Block", dict(d=128)),
    ("prof_llama", "stdlib/std/transformer.ncd", "LlamaBlock", dict()),
]
DTYPES = {0: "f32", 1: "f16", 2: "bf16", 3: "f8e4m3", 4: "f8e5m2", 5: "i8", 6: "i32", 7: "bool"}
TOL = 2.0 ** -6


def defines(d):
    out = []
    for k, v in d.items():
        out += ["-D", "%s=%d" % (k, v)]
    return out


def sh(cmd, timeout=600, cwd=None):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        return r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return 124, "timed out after %d s" % timeout


def first_error(text):
    for line in text.splitlines():
        if "error" in line:
            return line.strip()[:300]
    return " ".join(text.split())[:300]


# ------------------------------------------------------------------ prepare (CPU machine)

def diagrams_of(ncd, path, defs):
    rc, out = sh([ncd, "show", "--json", path] + defs)
    if rc != 0:
        raise RuntimeError("ncd show --json %s: %s" % (path, first_error(out)))
    data = json.loads(out[out.index("{"):])
    return [d["name"] for d in data["diagrams"] if not d.get("imported")]


def tensor_table(code):
    table = re.search(r"const NcdTensorInfo ncd_tensors_0\[\] = \{\n(.*?)\n\};", code, re.S)
    info = re.search(r'const NcdDiagramInfo kNcdDiagrams\[\] = \{\n\s*\{"[^"]*", (\d+), (\d+), (\d+), ', code)
    if not table or not info:
        raise RuntimeError("no harness tensor table in the emitted file")
    tensors = []
    for m in re.finditer(r'\{"([^"]*)", (\d+), (\d+), \{([^}]*)\}\}', table.group(1)):
        shape = [int(x) for x in m.group(4).split(",") if x.strip()][:int(m.group(3))]
        tensors.append(dict(name=m.group(1), dtype=DTYPES.get(int(m.group(2)), "?"), shape=shape))
    ni, npar = int(info.group(1)), int(info.group(2))
    return tensors[:ni], tensors[ni:ni + npar], tensors[ni + npar:]


def kernel_notes(code, stderr):
    lines = [l.strip()[3:] for l in code.splitlines() if l.strip().startswith(("// fallback", "// streamed attention",
                                                                                "// tiles:", "// GEMM"))]
    return [l for l in lines if l.startswith("fallback")], [l for l in lines if not l.startswith("fallback")]


def prepare_one(args, name, src, diagram, defs, optimize, profile):
    case = dict(name=name, source=src, diagram=diagram, optimize=optimize, profile=profile)
    emit_src, emit_defs = src, defs
    if optimize:
        opt = os.path.join(args.out, "src", name + ".opt.ncd")
        rc, out = sh([args.ncd, "optimize", src, "--diagram", diagram, "--hw", "h100-sxm", "-O2", "--no-verify",
                      "-o", opt] + defs)
        if rc != 0:
            case["skipped"] = "ncd optimize: " + first_error(out)
            return case
        emit_src, emit_defs = opt, []
    cu = os.path.join(args.out, "cases", name + ".cu")
    rc, out = sh([args.ncd, "emit", "--cuda", emit_src, "--diagram", diagram, "--harness", "--arch", "sm_90",
                  "-o", cu] + emit_defs)
    if rc != 0:
        case["skipped"] = "ncd emit: " + first_error(out)
        return case
    with open(cu) as f:
        code = f.read()
    case["inputs"], case["params"], case["outputs"] = tensor_table(code)
    case["fallbacks"], case["kernels"] = kernel_notes(code, out)
    case["kernel_count"] = len(re.findall(r"__global__", code))
    if not profile:
        # the CPU reference of the program as written, on the data the harness will read
        ref = os.path.join(args.out, "ref", name.replace("__opt", ""))
        if not os.path.isdir(ref):
            rc, out = sh([args.ncd, "run", src, "--diagram", diagram, "--random", "1", "--out-dir", ref] + defs)
            if rc != 0:
                os.remove(cu)
                case["skipped"] = "ncd run: " + first_error(out)
                return case
        case["ref"] = os.path.relpath(ref, args.out)
    case["file"] = os.path.relpath(cu, args.out)
    return case


def prepare(args):
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    for sub in ("cases", "ref", "src"):
        os.makedirs(os.path.join(args.out, sub))
    jobs = []
    for src, d in SOURCES.items():
        for diagram in diagrams_of(args.ncd, src, defines(d)):
            defs = defines(DIAGRAM_DEFINES.get((src, diagram), d))
            stem = os.path.splitext(os.path.basename(src))[0]
            base = "%s%s__%s" % ("ex_" if src.startswith("examples/") else "", stem, diagram)
            if args.only and not re.search(args.only, base):
                continue
            jobs.append((base, src, diagram, defs, False, False))
            jobs.append((base + "__opt", src, diagram, defs, True, False))
    for name, src, diagram, d in PROFILE:
        if not args.only or re.search(args.only, name):
            jobs.append((name, src, diagram, defines(d), True, True))
    # plain variants first: the optimized variant reuses its reference data
    cases = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        plain = [j for j in jobs if not j[4] or j[5]]
        cases += list(pool.map(lambda j: prepare_one(args, *j), plain))
        cases += list(pool.map(lambda j: prepare_one(args, *j), [j for j in jobs if j[4] and not j[5]]))
    cases.sort(key=lambda c: c["name"])
    for c in cases:
        print("%-4s %-48s %s" % ("skip" if "skipped" in c else "ok", c["name"],
                                 c.get("skipped") or "%d kernels%s" % (c["kernel_count"], ", %d fallback" %
                                                                       len(c["fallbacks"]) if c["fallbacks"] else "")))
    commit = sh(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"])[1].strip()
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(dict(commit=commit, tolerance=TOL, cases=cases), f, indent=1, sort_keys=True)
    ready = [c for c in cases if "skipped" not in c]
    print("prepared %d of %d cases in %s" % (len(ready), len(cases), args.out))
    return 0 if ready else 1


# ------------------------------------------------------------------ run (GPU machine)

def read_npy(path):
    """(shape, list of floats) of a little-endian .npy file (f4, f8, f2, i4, i8, i1, b1)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError("%s is not a .npy file" % path)
    major = data[6]
    hlen = struct.unpack("<H", data[8:10])[0] if major == 1 else struct.unpack("<I", data[8:12])[0]
    start = 10 if major == 1 else 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    body = data[start + hlen:]
    code = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "|i1": "b", "|b1": "B", "<f2": "e"}.get(header["descr"])
    if code is None:
        raise ValueError("%s: dtype %s not read here" % (path, header["descr"]))
    if header.get("fortran_order"):
        raise ValueError("%s: Fortran order not read here" % path)
    if code == "e":
        values = list(struct.unpack("<%de" % (len(body) // 2), body))
    else:
        a = array.array(code)
        a.frombytes(body)
        values = a.tolist()
    return tuple(header["shape"]), values


def compare(got_path, ref_path):
    gshape, got = read_npy(got_path)
    rshape, ref = read_npy(ref_path)
    if gshape != rshape:
        return False, "shape %s, reference %s" % (gshape, rshape)
    scale = max([abs(x) for x in ref if math.isfinite(x)] or [0.0])
    tol = TOL * scale + 1e-6
    worst, nan_bad, inf_bad = 0.0, 0, 0
    for g, r in zip(got, ref):
        if math.isnan(r) or math.isnan(g):
            nan_bad += math.isnan(r) != math.isnan(g)
        elif math.isinf(r) or math.isinf(g):
            inf_bad += g != r
        else:
            worst = max(worst, abs(g - r))
    ok = worst <= tol and not nan_bad and not inf_bad
    detail = "max|err| %.3g (tol %.3g; max|ref| %.3g)" % (worst, tol, scale)
    if nan_bad or inf_bad:
        detail += "; %d NaN and %d inf mismatches" % (nan_bad, inf_bad)
    if scale == 0.0:
        detail += "; the reference is all zeros"
    return ok, detail


def synth_data(case, folder):
    """Random inputs and params in the harness's layout (float32 .npy; i32 tokens below 1000)."""
    rng = random.Random(1)
    for kind, tensors in (("inputs", case["inputs"]), ("params", case["params"])):
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
        for t in tensors:
            n = 1
            for s in t["shape"]:
                n *= s
            if t["dtype"] in ("i32", "i8"):
                a, descr = array.array("i", (rng.randrange(1000) for _ in range(n))), "<i4"
            elif t["dtype"] == "bool":
                a, descr = array.array("B", (rng.randrange(2) for _ in range(n))), "|b1"
            else:
                a, descr = array.array("f", (rng.gauss(0.0, 0.5) for _ in range(n))), "<f4"
            header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
                descr, "".join("%d, " % s for s in t["shape"]))
            header = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + "\n"
            with open(os.path.join(folder, kind, t["name"] + ".npy"), "wb") as f:
                f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
                f.write(a.tobytes())


def nvcc_path():
    for p in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def tool(name):
    nvcc = nvcc_path()
    for p in (shutil.which(name), nvcc and os.path.join(os.path.dirname(nvcc), name)):
        if p and os.access(p, os.X_OK):
            return p
    for root in ("/usr/local/cuda", "/opt/nvidia"):
        for dirpath, _, files in os.walk(root):
            if name in files and os.access(os.path.join(dirpath, name), os.X_OK):
                return os.path.join(dirpath, name)
    return None


def kernel_times(exe, folder):
    """Per-kernel GPU time (microseconds, median over the harness's runs) with ncu, clocks unlocked."""
    ncu = tool("ncu")
    if not ncu:
        return None, "ncu not found"
    rc, out = sh([ncu, "--csv", "--clock-control", "none", "--metrics", "gpu__time_duration.sum", exe, folder,
                  "--runs", "5", "--warmup", "1", "--no-write"], 500)
    if rc != 0:
        return None, "ncu failed: " + first_error(out)
    import csv
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
    per = {}
    for row in csv.DictReader([l for l in out.splitlines() if l.startswith('"')]):
        if row.get("Metric Name") == "gpu__time_duration.sum":
            value = float(row["Metric Value"].replace(",", ""))
            per.setdefault(row["Kernel Name"], []).append(value * scale.get(row.get("Metric Unit", "ns"), 1e-3))
    rows = []
    for name, values in per.items():
        values.sort()
        rows.append((name, len(values), values[len(values) // 2]))
    return "ncu", rows


def run(args):
    start = time.time()
    kit = args.kit
    with open(os.path.join(kit, "manifest.json")) as f:
        manifest = json.load(f)
    cases = [c for c in manifest["cases"] if "skipped" not in c and (not args.only or re.search(args.only, c["name"]))]
    work = args.work
    os.makedirs(work, exist_ok=True)
    results = []
    out_lines = []

    def say(status, phase, name, detail):
        line = "%-4s %-9s %-44s %s" % (status, phase, name, detail)
        print(line, flush=True)
        out_lines.append(line)
        results.append((status, phase, name, detail))

    for c in manifest["cases"]:
        if "skipped" in c and (not args.only or re.search(args.only, c["name"])):
            say("SKIP", "emit", c["name"], c["skipped"])
    nvcc = nvcc_path()
    if not nvcc:
        say("FAIL", "env", "-", "nvcc not found")
        return 1

    def build(c):
        exe = os.path.join(work, c["name"])
        rc, out = sh([nvcc, "-O3", "-std=c++17", "-arch=sm_90", "-lineinfo", "-o", exe, os.path.join(kit, c["file"])],
                     600)
        return c, exe, rc, out

    built = {}
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for c, exe, rc, out in pool.map(build, cases):
            if rc == 0:
                built[c["name"]] = exe
            else:
                say("FAIL", "compile", c["name"], first_error(out))
    print("compiled %d of %d in %.0f s" % (len(built), len(cases), time.time() - start), flush=True)

    def late(phase, name):
        if args.deadline and time.time() - start > args.deadline:
            say("SKIP", phase, name, "out of time (--deadline %d s)" % args.deadline)
            return True
        return False

    checks = [c for c in cases if not c["profile"] and c["name"] in built]
    for c in checks:
        if late("check", c["name"]):
            continue
        folder = os.path.join(kit, c["ref"])
        dest = os.path.join(work, c["name"] + "_out")
        rc, out = sh([built[c["name"]], folder, "--runs", "3", "--warmup", "1", "--out", dest], 120)
        if rc != 0:
            say("FAIL", "check", c["name"], "harness exit %d: %s" % (rc, first_error(out)))
            continue
        timing = re.search(r"median ([0-9.]+) ms", out)
        fails, details = 0, []
        for t in c["outputs"]:
            ok, detail = compare(os.path.join(dest, t["name"] + ".npy"), os.path.join(folder, t["name"] + ".npy"))
            fails += not ok
            details.append("%s: %s" % (t["name"], detail))
        fb = " [%d fallback kernel(s)]" % len(c["fallbacks"]) if c["fallbacks"] else ""
        say("PASS" if not fails else "FAIL", "check", c["name"], "; ".join(details) + fb +
            (" (%.3f ms)" % float(timing.group(1)) if timing else ""))

    san = tool("compute-sanitizer")
    if san and not args.no_sanitizer:
        def memcheck(c):
            if args.deadline and time.time() - start > args.deadline:
                return c, None, "out of time (--deadline %d s)" % args.deadline
            folder = os.path.join(kit, c["ref"])
            rc, out = sh([san, "--tool", "memcheck", "--error-exitcode", "9", built[c["name"]], folder, "--runs", "1",
                          "--warmup", "0", "--no-write"], 300)
            return c, rc, out
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for c, rc, out in pool.map(memcheck, checks):
                bad = [l for l in out.splitlines() if "=========" in l and ("Invalid" in l or "Error" in l
                                                                           or "error" in l)]
                if rc is None:
                    say("SKIP", "memcheck", c["name"], out)
                elif rc == 0:
                    say("PASS", "memcheck", c["name"], "no errors")
                else:
                    say("FAIL", "memcheck", c["name"], (bad[0] if bad else first_error(out)).strip()[:300])
    else:
        say("SKIP", "memcheck", "-", "compute-sanitizer not found" if not san else "--no-sanitizer")

    profiles = {}
    for c in cases:
        if not c["profile"] or c["name"] not in built or late("profile", c["name"]):
            continue
        folder = os.path.join(work, c["name"] + "_data")
        synth_data(c, folder)
        rc, out = sh([built[c["name"]], folder, "--no-write"], 300)
        m = re.search(r"median ([0-9.]+) ms", out)
        if rc != 0 or not m:
            say("FAIL", "profile", c["name"], "harness exit %d: %s" % (rc, first_error(out)))
            continue
        how, rows = kernel_times(built[c["name"]], folder)
        if how is None:
            say("SKIP", "profile", c["name"], rows)
            continue
        profiles[c["name"]] = dict(total_ms=float(m.group(1)), tool=how, kernels=[list(r) for r in rows])
        say("INFO", "profile", c["name"], "median %s ms; %d kernels timed with %s" % (m.group(1), len(rows), how))
        for k, n, us in rows:
            print("     %-70s x%-4d %10.2f us" % (k[:70], n, us))

    failed = sum(1 for r in results if r[0] == "FAIL")
    passed = sum(1 for r in results if r[0] == "PASS")
    summary = "%d passed, %d failed, %d skipped (%.0f s)" % (passed, failed, sum(1 for r in results if r[0] == "SKIP"),
                                                             time.time() - start)
    print(summary)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "sweep.json"), "w") as f:
            json.dump(dict(commit=manifest["commit"], results=results, profiles=profiles, summary=summary), f,
                      indent=1)
        with open(os.path.join(args.out, "sweep.txt"), "w") as f:
            f.write("\n".join(out_lines + [summary]) + "\n")
    return 1 if failed else 0


def report(args):
    """Markdown tables of a run's sweep.json: one row per case, and each profile's kernels."""
    with open(args.json) as f:
        run_data = json.load(f)
    rows = {}
    for status, phase, name, detail in run_data["results"]:
        rows.setdefault(name, {})[phase] = (status, detail)
    out = ["| case | check | memcheck | outputs against the CPU reference (harness median) |", "|---|---|---|---|"]
    for name in sorted(n for n in rows if n != "-" and ("check" in rows[n] or "memcheck" in rows[n])):
        check = rows[name].get("check", ("-", ""))
        mem = rows[name].get("memcheck", ("-", ""))
        out.append("| %s | %s | %s | %s |" % (name, check[0], mem[0], check[1].replace("|", "\\|")))
    for name, prof in sorted(run_data.get("profiles", {}).items()):
        out += ["", "%s: harness median %.3f ms; kernels timed with %s (median of their launches):" % (
            name, prof["total_ms"], prof["tool"]), "", "| kernel | launches | us |", "|---|---|---|"]
        for kernel, launches, us in prof["kernels"]:
            out.append("| `%s` | %d | %.1f |" % (kernel.split("(")[0].replace("<unnamed>::", ""), launches, us))
    print("\n".join(out))
    print("\n" + run_data["summary"])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--ncd", default="build/bin/ncd")
    a.add_argument("--out", default="device_sweep")
    a.add_argument("--only")
    a.add_argument("--jobs", type=int, default=2)
    b = sub.add_parser("run")
    b.add_argument("--kit", default="device_sweep")
    b.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ncd_sweep"))
    b.add_argument("--out")
    b.add_argument("--only")
    b.add_argument("--no-sanitizer", action="store_true")
    b.add_argument("--deadline", type=int, default=0, help="seconds after which remaining steps are skipped")
    c = sub.add_parser("report")
    c.add_argument("--json", required=True, help="the sweep.json a run wrote")
    args = p.parse_args()
    if args.cmd == "report":
        return report(args)
    os.chdir(ROOT)
    return prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
