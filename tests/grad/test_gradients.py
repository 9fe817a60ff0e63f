"""Checks every gradient `ncd grad` derives against central finite differences in float64.

    /usr/bin/python3 tests/grad/test_gradients.py [--ncd BUILD/bin/ncd] [FILTER]

For every diagram of stdlib/std (small sizes, -D dtype=f32), `ncd grad` writes
D_grad. The float64 interpreter (ir_numpy.py, which reads ncd's IR but never
runs ncd code) runs D_grad on the inputs and params `ncd run --random`
generated and on random output cotangents c. For each differentiated tensor x
and a random direction v along it, the derivative of f = Σ c·D(x) along v by
central differences, (f(x + hv) − f(x − hv)) / 2h with D run by the same
interpreter, must equal ⟨∂f/∂x, v⟩ to a relative error below 1e-6. `ncd run`
of D_grad at f32 must agree with the interpreter within 1e-3 of the largest
gradient. Split with `--save flash`, D_forward then D_backward must give
D_grad's gradients. A diagram ncd declines to differentiate must decline with
the message DECLINED lists for it, and nothing else may decline.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import ir_numpy  # noqa: E402
from test_ir_numpy import NARROW, read_folder, run_suite  # noqa: E402

RTOL = 1e-6
ATOL = 1e-8
STEP = 1e-5

# Diagrams whose derivative ncd does not state yet, and the start of the reason it gives.
DECLINED = {
    "semantics.ncd:Loops": "param 'W' is declared inside a repeat",
}


def gradient_names(path):
    """What each gradient output is the gradient of, from the header `ncd grad` writes."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#   (\w+): the gradient of (\S+)$", line.rstrip())
            if m:
                out[m.group(1)] = m.group(2)
    return out


def objective(outputs, cotangents):
    return sum(float(np.sum(np.asarray(outputs[name], dtype=np.float64) * c)) for name, c in cotangents.items())


def check_case(ncd, work, path, diagram, defines):
    base = os.path.basename(path)
    grad_file = os.path.join(work, diagram + ".grad.ncd")
    command = [ncd, "grad", path, "--diagram", diagram, "--no-train", "-o", grad_file, "-w"]
    for d in defines:
        command += ["-D", d]
    result = subprocess.run(command, capture_output=True, text=True)
    expected = DECLINED.get("%s:%s" % (base, diagram))
    if result.returncode != 0:
        if expected and expected in result.stderr and result.returncode == 1:
            return "pass", "declined as expected: " + expected
        return "fail", "ncd grad failed (%d): %s" % (result.returncode, result.stderr.strip())
    if expected:
        return "fail", "ncd grad no longer declines; remove it from DECLINED"
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    command = [ncd, "run", path, "--diagram", diagram, "--random", "1", "--out-dir", out, "--threads", "2", "-w"]
    for d in defines:
        command += ["-D", d]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return "fail", "ncd run failed: " + result.stderr.strip()
    inputs = read_folder(os.path.join(out, "inputs"))
    params = read_folder(os.path.join(out, "params"))
    forward = ir_numpy.load(path, diagram, defines)
    backward = ir_numpy.load(grad_file, diagram + "_grad")
    rng = np.random.default_rng(7)
    outputs = forward.run(inputs, params)
    cotangents = {}
    for o in forward.signature()["outputs"]:
        if o["dtype"] in ("i32", "i8", "bool"):
            continue
        cotangents[o["name"]] = rng.standard_normal(np.shape(outputs[o["name"]]))
    grad_inputs = dict(inputs)
    for name, c in cotangents.items():
        grad_inputs["d_" + name] = c
    grads = backward.run(grad_inputs, params)
    if not np.isfinite(objective(outputs, cotangents)):
        return "pass", "skipped: the forward is not finite on random data (a diagram of NaN semantics)"
    narrow = any(entry["dtype"] in NARROW for entry in backward.signature()["inputs"] + backward.signature()["outputs"])
    of = gradient_names(grad_file)
    errors = []
    for grad_name, target in of.items():
        is_input = target in inputs
        x = inputs[target] if is_input else params[target]
        v = rng.standard_normal(np.shape(x))

        def f(sign):
            moved = dict(inputs if is_input else params)
            moved[target] = np.asarray(x, dtype=np.float64) + sign * STEP * v
            return objective(forward.run(moved, params) if is_input else forward.run(inputs, moved), cotangents)

        numeric = (f(1) - f(-1)) / (2 * STEP)
        analytic = float(np.sum(np.asarray(grads[grad_name], dtype=np.float64) * v))
        if not (np.isfinite(numeric) and np.isfinite(analytic)):
            errors.append("%s: finite differences %r, gradient %r" % (target, numeric, analytic))
            continue
        # A gradient that is zero (a key bias under softmax) leaves only the differences' rounding, ~1e-10.
        error = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-30)
        if abs(numeric - analytic) > RTOL * max(abs(numeric), abs(analytic)) + ATOL:
            errors.append("%s: finite differences %.9g, gradient %.9g (relative error %.2g)" %
                          (target, numeric, analytic, error))
    # Split at what FlashAttention saves, the forward pass then the backward pass give the same gradients.
    split_file = os.path.join(work, diagram + ".split.ncd")
    command = [ncd, "grad", path, "--diagram", diagram, "--no-train", "--save", "flash", "-o", split_file, "-w"]
    for d in defines:
        command += ["-D", d]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors.append("ncd grad --save flash failed: " + result.stderr.strip())
    else:
        saved = ir_numpy.load(split_file, diagram + "_forward").run(inputs, params)
        backward_program = ir_numpy.load(split_file, diagram + "_backward")
        given = {}
        for entry in backward_program.signature()["inputs"]:
            name = entry["name"]
            given[name] = grad_inputs[name] if name in grad_inputs else saved[name]
        split = backward_program.run(given, params)
        for grad_name in of:
            want = np.asarray(grads[grad_name], dtype=np.float64)
            if not np.allclose(np.asarray(split[grad_name], dtype=np.float64), want, rtol=1e-9, atol=1e-12):
                errors.append("%s: forward then backward (--save flash) differs from D_grad" % grad_name)
    if narrow:  # ncd rounds f16/bf16/f8 values and the interpreter by design does not
        return ("fail", "; ".join(errors)) if errors else ("pass", "%d gradients (ncd run not compared: narrow "
                                                                   "float values)" % len(of))
    # The CPU backend runs the gradient diagram too.
    grad_out = os.path.join(work, "grad_out")
    shutil.rmtree(grad_out, ignore_errors=True)
    command = [ncd, "run", grad_file, "--diagram", diagram + "_grad", "--out-dir", grad_out, "--threads", "2", "-w",
               ] + (["--params", os.path.join(out, "params")] if params else [])
    os.makedirs(os.path.join(work, "in"), exist_ok=True)
    for name, array in grad_inputs.items():
        file = os.path.join(work, "in", name + ".npy")
        np.save(file, array.astype(np.int32) if array.dtype.kind in "iu" else array.astype(np.float32))
        command += ["--in", "%s=%s" % (name, file)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors.append("ncd run of the gradient failed: " + result.stderr.strip())
    else:
        # Against the largest gradient of the case: a gradient that is zero is f32 rounding in ncd.
        largest = max(float(np.max(np.abs(np.asarray(grads[n], dtype=np.float64)))) for n in of) if of else 1.0
        for grad_name in of:
            got = np.load(os.path.join(grad_out, grad_name + ".npy")).astype(np.float64)
            want = np.asarray(grads[grad_name], dtype=np.float64)
            scale = max(largest, 1e-30)
            if not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
                errors.append("%s: not finite (ncd run or the interpreter)" % grad_name)
                continue
            if float(np.max(np.abs(got - want))) > 1e-3 * scale:
                errors.append("%s: ncd run differs from the interpreter by %.3g of the largest gradient" %
                              (grad_name, float(np.max(np.abs(got - want))) / scale))
    if errors:
        return "fail", "; ".join(errors)
    return "pass", "%d gradients" % len(of)


def main():
    def paths(work):
        found = sorted(glob.glob(os.path.join(ROOT, "stdlib", "std", "*.ncd")))
        found.append(os.path.join(ROOT, "tests", "cpu", "semantics.ncd"))  # every pointwise function, scans, selections
        found.append(os.path.join(HERE, "scans.ncd"))  # running extremes on data without NaN
        return found

    return run_suite(__doc__.splitlines()[0], "ncd-grad-", ("pass", "fail"), paths, check_case,
                     lambda path, diagram: "%s:%s" % (os.path.basename(path), diagram))


if __name__ == "__main__":
    sys.exit(main())
