#!/usr/bin/env python3
"""Where a benchmark workload's time goes: runs `dualflow bench WORKLOAD` under `perf record`
(sampling the CPU, self time per function) and sorts the samples into kinds of work: GEMM,
convolution, normalisation and softmax, elementwise math, reductions, copies and fills, the
optimizer, memory management, the kernel and the rest (dispatch, autodiff bookkeeping, the
thread pool). Prints one markdown row per workload, percentages of all samples.

  tools/profile_breakdown.py toy2d-cfm toy2d-nll-exact
  STEPS=3 THREADS=1 tools/profile_breakdown.py fmnist-unet-cfm

Needs `perf` (Debian: linux-perf) with permission to sample (root, or
kernel.perf_event_paranoid <= 1). Environment: DUALFLOW (default build/train/dualflow),
STEPS (timed steps; default 200 for the millisecond steps of toy2d-cfm and toy2d-meanflow, so
that the process's start-up is a small part of the samples, and 3 for the rest), WARMUP (default 1), THREADS (default 1), KEEP=1 keeps the
perf.data files (in a temp folder whose name is printed), TOP=N also prints each workload's N
hottest functions.
"""
import os
import re
import subprocess
import sys
import tempfile

# First match wins; matched against the demangled function name.
KINDS = [
    # The engine's AVX-512 kernel's tiles, packing and block loop (multiply_block, not the
    # epilogue's multiply_block<T>, the product by a multiplier, which is elementwise work).
    ("GEMM", r"gemm|sgemm|dgemm|_kernel_SKYLAKEX|_kernel_HASWELL|_oncopy|_incopy|_itcopy|_otcopy|_beta_"
             r"|micro_tile|pack_a|pack_b|multiply_block(?!<)|small_m<|small_n<|small_k<"),
    ("convolution", r"conv|im2col|col2im"),
    ("norm/softmax", r"group_norm|normalize_rows|layer_norm|rowwise|softmax"),
    ("elementwise", r"unary|binary|where|sinf|cosf|expf|logf|tanhf|__exp|__log|__sin|__cos|erf|activate_block|multiply_block<"),
    ("reduction", r"reduce"),
    ("copy/fill", r"copy|fill|memset|memmove|memcpy|index_select|index_add|gather|scatter"),
    ("optimizer", r"adam|sgd_step|lerp_|clip_grad"),
    ("random", r"random|philox|bernoulli"),
    ("alloc", r"malloc|free|_int_|madvise|mmap|munmap|page_fault|clear_page|do_anonymous_page"),
    ("kernel", r"^\[k\]"),
    ("other (dispatch, autodiff, threads)", r"."),
]


def classify(symbol: str, kernel_space: bool) -> str:
    if kernel_space and not re.search(r"clear_page|page_fault|do_anonymous_page", symbol):
        return "kernel"
    for kind, pattern in KINDS:
        if kind == "kernel":
            continue
        if re.search(pattern, symbol):
            return kind
    return KINDS[-1][0]


def profile(dualflow: str, workload: str, folder: str, steps: int, warmup: int, threads: int):
    data = os.path.join(folder, f"{workload}.perf")
    cmd = ["perf", "record", "-q", "-o", data, "--", dualflow, "bench", workload, "--threads", str(threads), "--steps",
           str(steps), "--warmup", str(warmup), "--no-roofline"]  # the roofline's own GEMMs are not the step's
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"profile_breakdown: `{' '.join(cmd)}` failed:\n{run.stderr}{run.stdout}")
    timing = [line for line in run.stdout.splitlines() if line.split()[:1] == [workload]]
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    totals, hottest = {}, []
    for line in report.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+\[(.)\]\s+(.*\S)", line)
        if not m:
            continue
        share, space, symbol = float(m.group(1)), m.group(2), m.group(3)
        kind = classify(symbol, space == "k")
        totals[kind] = totals.get(kind, 0.0) + share
        hottest.append((share, kind, symbol))
    return totals, hottest, timing[0].split()[2] if timing else "?"


def main() -> None:
    workloads = sys.argv[1:]
    if not workloads or workloads[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if workloads else 2)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dualflow = os.environ.get("DUALFLOW", os.path.join(root, "build", "train", "dualflow"))
    warmup = int(os.environ.get("WARMUP", "1"))
    threads, top = int(os.environ.get("THREADS", "1")), int(os.environ.get("TOP", "0"))
    folder = tempfile.mkdtemp(prefix="dualflow_profile.")
    kinds = [k for k, _ in KINDS]
    print(f"| workload ({threads} thread(s), median ms) | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for w in workloads:
        steps = int(os.environ.get("STEPS", "200" if w in ("toy2d-cfm", "toy2d-meanflow") else "3"))
        totals, hottest, median = profile(dualflow, w, folder, steps, warmup, threads)
        print(f"| {w} ({median}) | " + " | ".join(f"{totals.get(k, 0.0):.1f}%" for k in kinds) + " |", flush=True)
        for share, kind, symbol in hottest[:top]:
            print(f"    {share:5.1f}%  {kind:<12} {symbol[:150]}")
    if os.environ.get("KEEP") == "1":
        print(f"perf data kept in {folder}")
    else:
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)


if __name__ == "__main__":
    main()
