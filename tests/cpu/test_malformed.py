#!/usr/bin/env python3
"""Malformed, truncated and mismatched tensor files and inputs given to `ncd run`.

    test_malformed.py --ncd BUILD/bin/ncd --root SRC [--print]

Each case builds its files in a fresh folder, runs ncd there (so messages show
relative paths) and expects exit status 1 (2 for usage errors), exactly the
given standard error (`$IO` stands for the path of tests/cpu/io.ncd), and no
output file written. --print shows what ncd says instead of comparing.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

F32_SLOT = "input 'X' [a=3, b=4] f32"
AFFINE_W = "param 'W' [a=3, b=4] f32"


def npy_bytes(array, version=(1, 0)):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def raw_npy(header, data=b"", major=1):
    """A .npy file with a hand-written header (padded, newline-terminated)."""
    text = header.encode("latin1")
    length_bytes = 2 if major == 1 else 4
    total = 6 + 2 + length_bytes + len(text) + 1
    text += b" " * ((64 - total % 64) % 64) + b"\n"
    length = struct.pack("<H" if major == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([major, 0]) + length + text + data


def safetensors(header, data=b"", length=None):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text) if length is None else length) + text + data


GOOD = np.arange(12, dtype=np.float32).reshape(3, 4)
W = np.ones((3, 4), dtype="<f4").tobytes()
C = np.ones(4, dtype="<u2").tobytes()


def st_params(extra=None, w=None, c=None):
    header = {"W": w or {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "c": c or {"dtype": "BF16", "shape": [4], "data_offsets": [48, 56]}}
    if extra:
        header.update(extra)
    return header


# (name, files {path: bytes}, arguments after `ncd run $IO`, exit status, expected stderr)
CASES = [
    # ------------------------------------------------------------ .npy
    ("npy_empty", {"x.npy": b""}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: not a .npy file (the magic string \\x93NUMPY is missing) (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_text", {"x.npy": b"1 2 3\n4 5 6\n"}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: not a .npy file (the magic string \\x93NUMPY is missing) (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_preamble", {"x.npy": b"\x93NUMPY\x01"}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: truncated: the file ends inside its preamble (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_version", {"x.npy": b"\x93NUMPY\x04\x00" + npy_bytes(GOOD)[8:]}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0) (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_header_truncated", {"x.npy": npy_bytes(GOOD)[:40]}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: truncated: the header says it is 118 bytes long, but the file has only 30 bytes after the "
     "preamble (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_no_newline", {"x.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4' "},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: it does not end with a newline (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_not_dict", {"x.npy": raw_npy("['<f4', False, (3, 4)]")}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: the header is not a dict literal (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_no_shape", {"x.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, }")},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: the header has no 'shape' (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_fortran_value", {"x.npy": raw_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4), }")},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: 'fortran_order' must be True or False (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_bad_shape", {"x.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4), }")},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: 'shape' must hold non-negative integers (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_complex", {"x.npy": npy_bytes(GOOD.astype(np.complex64))}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: unsupported dtype '<c8' (supported: bool, int8/16/32/64, uint8/16/32/64, float16/32/64) "
     "(for input 'X' [a=3, b=4] f32)\n"),
    ("npy_structured", {"x.npy": npy_bytes(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: structured dtypes (a descr list) are not supported (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_no_byte_order", {"x.npy": raw_npy("{'descr': '|f4', 'fortran_order': False, 'shape': (3, 4), }", GOOD.tobytes())},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: dtype '|f4' has no byte order (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_data_truncated", {"x.npy": npy_bytes(GOOD)[:-5]}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: truncated: shape (3, 4) of float32 needs 48 bytes of data, but the file has 43 (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_data_extra", {"x.npy": npy_bytes(GOOD) + b"\0\0\0\0"}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed: 4 unexpected bytes after the data of shape (3, 4) (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_non_ascii", {"x.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'é': 1}", GOOD.tobytes())},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: malformed header: non-ASCII text in a version 1.0 header (for input 'X' [a=3, b=4] f32)\n"),
    ("npy_wrong_dtype", {"x.npy": npy_bytes(GOOD.astype(np.float64))}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has dtype float64, but f32 data is stored as float32 for input 'X' [a=3, b=4] f32\n"),
    ("npy_bool_for_float", {"x.npy": npy_bytes(GOOD > 3)}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has dtype bool, but f32 data is stored as float32 for input 'X' [a=3, b=4] f32\n"),
    ("npy_float_for_f16", {"x.npy": npy_bytes(GOOD)}, ["--diagram", "CopyF16", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has dtype float32, but f16 data is stored as float16 for input 'X' [a=3, b=4] f16\n"),
    ("npy_transposed", {"x.npy": npy_bytes(GOOD.T.copy())}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has shape (4, 3), expected shape (3, 4) for input 'X' [a=3, b=4] f32\n"),
    ("npy_rank", {"x.npy": npy_bytes(GOOD.ravel())}, ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has shape (12,), expected shape (3, 4) for input 'X' [a=3, b=4] f32\n"),
    # The header is checked before the data is read: a shape that cannot match is refused at once.
    ("npy_wrong_shape_header_first", {"x.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }", b"")},
     ["--diagram", "CopyF32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: has shape (65536, 65536), expected shape (3, 4) for input 'X' [a=3, b=4] f32\n"),
    ("npy_int64_range", {"x.npy": npy_bytes(np.full((3, 4), 2**40, dtype=np.int64))},
     ["--diagram", "CopyI32", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: holds 1099511627776 at element 0, which does not fit in i32 for input 'X' [a=3, b=4] i32\n"),
    ("npy_missing_file", {}, ["--diagram", "CopyF32", "--in", "X=nowhere.npy"], 1,
     "ncd: error: nowhere.npy: cannot open: No such file or directory (for input 'X' [a=3, b=4] f32)\n"),
    # ------------------------------------------------------------ inputs
    ("input_unknown", {"x.npy": npy_bytes(GOOD)}, ["--diagram", "CopyF32", "--in", "x=x.npy"], 1,
     "ncd: error: x.npy: --in names 'x', which is not an input; did you mean 'X'? (inputs: X)\n"),
    ("input_twice", {"x.npy": npy_bytes(GOOD)}, ["--diagram", "CopyF32", "--in", "X=x.npy", "--in", "X=x.npy"], 1,
     "ncd: error: x.npy: input 'X' is given twice\n"),
    ("input_missing", {}, ["--diagram", "CopyF8"], 1,
     "ncd: error: input 'X' [a=3, b=4] f8e4m3 was not given; pass --in X=FILE.npy or --random SEED\n"
     "ncd: error: input 'Z' [a=3, b=4] f8e5m2 was not given; pass --in Z=FILE.npy or --random SEED\n"),
    ("input_syntax", {}, ["--diagram", "CopyF32", "--in", "x.npy"], 2,
     "ncd: error: --in expects NAME=FILE.npy, not 'x.npy'\n"),
    # ------------------------------------------------------------ params
    ("params_missing", {"X.npy": np.zeros(3, dtype=np.float32).tobytes()}, ["--diagram", "Affine", "--in", "X=x3.npy"], 1,
     None),  # replaced below: a missing param without --params
    ("params_dir_missing_file", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                                 "p/W.npy": npy_bytes(np.zeros((3, 4), dtype=np.float32))},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p"], 1,
     "ncd: error: p/c.npy: no such file, for param 'c' [b=4] bf16\n"),
    ("params_dir_wrong_shape", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                                "p/W.npy": npy_bytes(np.zeros((4, 3), dtype=np.float32)),
                                "p/c.npy": npy_bytes(np.zeros(4, dtype=np.float32))},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p"], 1,
     "ncd: error: p/W.npy: has shape (4, 3), expected shape (3, 4) for param 'W' [a=3, b=4] f32\n"),
    ("params_nowhere", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32))},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "weights"], 1,
     "ncd: error: weights: no such file or folder (--params takes a folder of .npy files or a .safetensors file)\n"),
    # ------------------------------------------------------------ safetensors
    ("st_short", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)), "p.safetensors": b"\x10\0\0\0"},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: truncated: a safetensors file starts with an 8-byte header length, but the file has 4 bytes\n"),
    ("st_header_huge", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                        "p.safetensors": safetensors(st_params(), W + C, length=1 << 40)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed: the header length is 1099511627776 bytes (more than 100 MiB)\n"),
    ("st_header_truncated", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                             "p.safetensors": safetensors(st_params(), b"", length=5000)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     None),  # the byte counts depend on the JSON text: checked with a pattern below
    ("st_bad_json", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)), "p.safetensors": safetensors(b'{"W": [1, 2', b"")},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1, None),
    ("st_not_object", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)), "p.safetensors": safetensors([1, 2], b"")},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed header: the JSON header is not an object\n"),
    ("st_no_offsets", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                       "p.safetensors": safetensors({"W": {"dtype": "F32", "shape": [3, 4]}}, W)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed header: tensor 'W' needs \"dtype\", \"shape\" and \"data_offsets\"\n"),
    ("st_unknown_dtype", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                          "p.safetensors": safetensors(st_params(w={"dtype": "F128", "shape": [3, 4], "data_offsets": [0, 48]}), W + C)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: tensor 'W' has unsupported dtype \"F128\"\n"),
    ("st_data_truncated", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                           "p.safetensors": safetensors(st_params(), W + C[:4])},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: truncated: tensor 'c' has data up to byte 56 of the buffer, but the buffer has 52 bytes\n"),
    ("st_size_mismatch", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                          "p.safetensors": safetensors(st_params(w={"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 40]},
                                                                 c={"dtype": "BF16", "shape": [4], "data_offsets": [40, 48]}), W[:40] + C)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed: tensor 'W' of shape (3, 4) and dtype F32 needs 48 bytes, but its data_offsets span 40\n"),
    ("st_overlap", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                    "p.safetensors": safetensors(st_params(c={"dtype": "BF16", "shape": [4], "data_offsets": [40, 48]}), W)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed: the data of tensor 'c' overlaps another tensor's\n"),
    ("st_hole", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                 "p.safetensors": safetensors(st_params(c={"dtype": "BF16", "shape": [4], "data_offsets": [52, 60]}), W + b"\0" * 4 + C)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed: bytes 48 to 52 of the buffer belong to no tensor\n"),
    ("st_missing_tensor", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                           "p.safetensors": safetensors({"W": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}, W)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: no tensor 'c', for param 'c' [b=4] bf16\n"),
    ("st_wrong_shape", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                        "p.safetensors": safetensors(st_params(w={"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]}), W + C)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: tensor 'W' has shape (4, 3), expected shape (3, 4) for param 'W' [a=3, b=4] f32\n"),
    ("st_number_overflow", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                            "p.safetensors": safetensors(b'{"W": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 0]}}')},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed header: invalid JSON (number overflow parsing '1e400')\n"),
    ("st_huge_extent_beside_zero", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                                    "p.safetensors": safetensors(b'{"W": {"dtype": "F32", "shape": [0, 18446744073709551615], '
                                                                 b'"data_offsets": [0, 0]}}')},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: malformed header: the shape of tensor 'W' is too large\n"),
    ("st_wrong_dtype", {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32)),
                        "p.safetensors": safetensors(st_params(w={"dtype": "I32", "shape": [3, 4], "data_offsets": [0, 48]}), W + C)},
     ["--diagram", "Affine", "--in", "X=x3.npy", "--params", "p.safetensors"], 1,
     "ncd: error: p.safetensors: tensor 'W' has dtype int32, but f32 data is stored as float32 for param 'W' [a=3, b=4] f32\n"),
]

PATTERNS = {
    "params_missing": "ncd: error: param 'W' [a=3, b=4] f32 was not given; pass --params DIR|FILE.safetensors or --random SEED\n"
                      "ncd: error: param 'c' [b=4] bf16 was not given; pass --params DIR|FILE.safetensors or --random SEED\n",
    "st_header_truncated": "ncd: error: p.safetensors: truncated: the header is 5000 bytes long, but the file has only {n} "
                           "bytes after the header length\n",
    "st_bad_json": "ncd: error: p.safetensors: malformed header: invalid JSON (parse error at line 1, column 12: syntax error "
                   "while parsing array - unexpected end of input; expected ']')\n",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--print", action="store_true")
    args = parser.parse_args()
    ncd = os.path.abspath(args.ncd)
    io_ncd = os.path.join(os.path.abspath(args.root), "tests/cpu/io.ncd")
    failures = 0
    for name, files, arguments, status, expected in CASES:
        work = tempfile.mkdtemp(prefix="ncd-malformed-")
        try:
            if name == "params_missing":
                files = {"x3.npy": npy_bytes(np.zeros(3, dtype=np.float32))}
            for path, data in files.items():
                os.makedirs(os.path.join(work, os.path.dirname(path)), exist_ok=True)
                with open(os.path.join(work, path), "wb") as f:
                    f.write(data)
            command = [ncd, "run", io_ncd] + arguments + ["--out-dir", "out"]
            result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=60)
            if expected is None:
                expected = PATTERNS[name]
                if name == "st_header_truncated":
                    expected = expected.format(n=len(files["p.safetensors"]) - 8)
            problems = []
            if result.returncode != status:
                problems.append(f"exit {result.returncode}, expected {status}")
            if result.stderr != expected:
                problems.append(f"stderr:\n    {result.stderr!r}\n  expected:\n    {expected!r}")
            if os.path.exists(os.path.join(work, "out")):
                problems.append("an output folder was written")
            if args.print:
                print(f"{name}: exit {result.returncode}: {result.stderr!r}")
            elif problems:
                failures += 1
                print(f"FAIL {name}: " + "; ".join(problems))
            else:
                print(f"ok   {name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(CASES)} cases, {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
