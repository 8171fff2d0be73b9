#!/usr/bin/env python3
"""Checks with the reference `safetensors` library that a file dualflow wrote reads back with
the expected names, dtypes, shapes, metadata and bit-exact values.

The file comes from the hidden test case in tests/engine/test_safetensors.cpp:
    DUALFLOW_SAFETENSORS_EXPORT=/tmp/dualflow_export.safetensors \
        build/tests/test_engine "[safetensors-export]"
    /tmp/stvenv/bin/python tools/reference/verify_safetensors_from_dualflow.py /tmp/dualflow_export.safetensors

It holds the tensors of make_safetensors_fixture.py plus a BF16 tensor and float specials.
numpy has no bfloat16, so BF16 is checked through the library's slice API (dtype, shape) and
its raw bytes at the offsets the header gives; the library has validated that header on open.
"""
import json
import pathlib
import struct
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_safetensors_fixture import fixture_tensors  # noqa: E402

EXPECTED_METADATA = {"format": "dualflow", "note": "see verify_safetensors_from_dualflow.py"}


def expected_arrays():
    arrays = dict(fixture_tensors())
    arrays["specials"] = np.array([0x7FC00001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001],
                                  dtype=np.uint32).view(np.float32)
    return arrays


def expected_bf16_bits():
    values = ((np.arange(8) - 4) * 0.375).astype(np.float32)  # exact in bfloat16
    return (values.view(np.uint32) >> 16).astype(np.uint16).reshape(2, 4)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def main(path):
    failures = []
    arrays = expected_arrays()
    with safe_open(path, framework="np") as f:
        names = set(f.keys())
        want = set(arrays) | {"bf16"}
        if names != want:
            failures.append(f"names: got {sorted(names)}, expected {sorted(want)}")
        if f.metadata() != EXPECTED_METADATA:
            failures.append(f"metadata: got {f.metadata()}, expected {EXPECTED_METADATA}")
        for name, expected in arrays.items():
            if name not in names:
                continue
            got = f.get_tensor(name)
            if not same_bits(got, expected):
                failures.append(f"{name}: got {got.dtype}{list(got.shape)} {got!r}, expected "
                                f"{expected.dtype}{list(expected.shape)} {expected!r}")
        if "bf16" in names:
            s = f.get_slice("bf16")
            if s.get_dtype() != "BF16" or list(s.get_shape()) != [2, 4]:
                failures.append(f"bf16: got {s.get_dtype()} {s.get_shape()}, expected BF16 [2, 4]")

    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if n % 8 != 0:
        failures.append(f"header length {n} is not a multiple of 8")
    begin, end = header["bf16"]["data_offsets"]
    bits = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype="<u2").reshape(2, 4)
    if not np.array_equal(bits, expected_bf16_bits()):
        failures.append(f"bf16 bits: got {bits}, expected {expected_bf16_bits()}")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"OK: {path}: {len(arrays) + 1} tensors and metadata match bit for bit "
          f"(header {n} bytes, header order {[k for k in header if k != '__metadata__']})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
