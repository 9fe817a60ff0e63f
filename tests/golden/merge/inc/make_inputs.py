"""Writes the checkpoints under tests/golden/merge/inc/ that the merge error cases read.

    /usr/bin/python3 tests/golden/merge/inc/make_inputs.py [FOLDER]

Each is a small safetensors file for inc/two_layer.ncd's params (W1[n, m],
W2[m, n], b[n] at n = 2, m = 3) with one thing wrong, or none (a, b): the
header is JSON padded with spaces to a multiple of 8 bytes, as torch writes
it. The output is byte-identical to the committed files.
"""

import json
import os
import struct
import sys

import numpy as np


def checkpoint(tensors):
    """safetensors bytes of [(name, dtype, shape, values)] in that order."""
    header = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, dtype, shape, values in tensors:
        raw = np.asarray(values, dtype={"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def layers(scale, w1_shape=(2, 3), w1=None, w2=True, bias=None, bias_dtype="F32", extra=False):
    ramp = np.arange(1, 7, dtype=np.float64)
    out = [("W1", "F32", w1_shape, scale * ramp if w1 is None else w1)]
    if w2:
        out.append(("W2", "F32", (3, 2), scale * ramp + 0.5))
    out.append(("b", bias_dtype, (2,), [scale, -scale] if bias is None else bias))
    if extra:
        out.append(("W3", "F32", (2,), [0, 0]))
    return out


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    files = {
        "a": checkpoint(layers(1)),
        "b": checkpoint(layers(2)),
        "dtype": checkpoint(layers(3, bias=[1, 2], bias_dtype="F16")),  # b is f16
        "extra": checkpoint(layers(3, extra=True)),  # a tensor the diagram has no param for
        "missing": checkpoint(layers(3, w2=False)),  # no W2
        "shape": checkpoint(layers(3, w1_shape=(3, 2), w1=np.zeros(6))),  # W1 transposed
    }
    files["truncated"] = files["a"][:200]  # the header says 232 bytes, 192 follow the length
    for name, content in files.items():
        with open(os.path.join(folder, name + ".safetensors"), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main()
