#!/usr/bin/env python3
"""Writes tests/fixtures/mixed.safetensors with the reference `safetensors` library, so the C++
reader is checked against files it did not write itself. Every value follows a formula that
tests/engine/test_safetensors.cpp rebuilds in C++ and compares bit for bit; keep both in step.

numpy has no bfloat16, so the fixture holds no BF16 tensor; BF16 is covered by the C++ round
trip and by verify_safetensors_from_dualflow.py on a file dualflow wrote.

Usage: python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install safetensors numpy
       /tmp/stvenv/bin/python tools/reference/make_safetensors_fixture.py
"""
import pathlib
import sys

import numpy as np
from safetensors.numpy import save_file


def fixture_tensors():
    i12 = np.arange(12)
    return {
        # (i - 6) * 0.75: negatives and non-integers, all exact in binary
        "f32": ((i12 - 6) * 0.75).astype(np.float32).reshape(3, 4),
        # (i - 2) / 3: not exact in binary, but IEEE division rounds the same everywhere
        "f64": (np.arange(5, dtype=np.float64) - 2.0) / 3.0,
        # (i - 4) * 0.125, exact in half precision
        "f16": ((np.arange(8) - 4) * 0.125).astype(np.float16).reshape(2, 4),
        # (i - 3) * 10^12: needs all 64 bits
        "i64": ((np.arange(6, dtype=np.int64) - 3) * 1_000_000_000_000).reshape(2, 3),
        # (i - 4) * 7
        "i32": ((np.arange(8, dtype=np.int32) - 4) * 7).reshape(2, 2, 2),
        # i % 3 == 0
        "bool": np.arange(6) % 3 == 0,
        "scalar": np.array(2.5, dtype=np.float32),  # 0-d
        "empty": np.zeros((0, 3), dtype=np.float32),  # zero-sized
    }


FIXTURE_METADATA = {"format": "np", "source": "make_safetensors_fixture.py"}


def main():
    root = pathlib.Path(__file__).resolve().parents[2]
    out = root / "tests" / "fixtures" / "mixed.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(fixture_tensors(), str(out), metadata=FIXTURE_METADATA)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
