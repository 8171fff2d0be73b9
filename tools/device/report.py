#!/usr/bin/env python3
"""Gathers what tools/device/check.sh left in its report folder into one report.json and prints
its summary: the stages (status, seconds), the [cuda] tests (from ctest's JUnit file), and every
benchmark row, with the training/sampling steps paired dualflow against PyTorch (speed-up =
PyTorch ms / dualflow ms, above 1 means dualflow is faster).

  python3 tools/device/report.py OUT_DIR [--budget S] [--device D]

Standard library only: it runs on the GPU machine's Python and here alike.
"""
import argparse
import json
import os
import sys
import xml.etree.ElementTree as ElementTree


def read_stages(path):
    stages = []
    if not os.path.exists(path):
        return stages
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                continue
            name, status, rc, seconds = fields[:4]
            stages.append({"stage": name, "status": status, "exit": None if rc == "-" else int(rc),
                           "seconds": float(seconds), "last_line": fields[4] if len(fields) > 4 else ""})
    return stages


def read_junit(path):
    """CTest's JUnit output: one entry per CTest test (each a whole Catch2 executable run)."""
    if not os.path.exists(path):
        return []
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        status = case.get("status") or "run"
        if case.find("failure") is not None:
            status = "failed"
        elif case.find("skipped") is not None:
            status = "skipped"
        elif status == "run":
            status = "passed"
        tests.append({"test": case.get("name"), "status": status, "seconds": float(case.get("time") or 0)})
    return tests


def read_json_lines(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append({"unparsed": line[:200]})
    return rows


def pair_steps(rows):
    """dualflow and PyTorch rows of the same workload side by side."""
    by_workload = {}
    for row in rows:
        if "workload" in row:
            by_workload.setdefault(row["workload"], {})[row.get("framework")] = row
    pairs = []
    for workload, sides in by_workload.items():
        ours, theirs = sides.get("dualflow"), sides.get("pytorch")
        pair = {"workload": workload,
                "dualflow_ms": ours and ours.get("median_ms"), "pytorch_ms": theirs and theirs.get("median_ms"),
                "dualflow_peak_mib": ours and ours.get("peak_mib")}
        if pair["dualflow_ms"] and pair["pytorch_ms"]:
            pair["speed_up"] = round(pair["pytorch_ms"] / pair["dualflow_ms"], 3)
        pairs.append(pair)
    return pairs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--budget", type=float, default=0)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    d = args.out_dir
    inventory = ""
    log = os.path.join(d, "check.log")
    if os.path.exists(log):  # the inventory stage's output, as the log holds it
        with open(log, errors="replace") as f:
            text = f.read()
        start = text.find("===== inventory:")
        if start >= 0:
            end = text.find("\n===== ", start + 1)
            inventory = text[start:end if end > 0 else len(text)].split("\n", 1)[-1].strip()
    steps = read_json_lines(os.path.join(d, "bench_steps.jsonl"))
    report = {
        "device": args.device,
        "budget_s": args.budget,
        "machine": inventory.splitlines(),
        "stages": read_stages(os.path.join(d, "stages.tsv")),
        "cuda_tests": read_junit(os.path.join(d, "ctest_cuda.xml")),
        "steps": pair_steps(steps),
        "step_rows": steps,
        "kernels": read_json_lines(os.path.join(d, "bench_kernels.jsonl")),
        "models": read_json_lines(os.path.join(d, "bench_models.jsonl")),
    }
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(report, f, indent=1)

    print(f"{'stage':<14} {'status':<8} {'seconds':>8}  last line")
    for s in report["stages"]:
        print(f"{s['stage']:<14} {s['status']:<8} {s['seconds']:>8.1f}  {s['last_line'][:90]}")
    tests = report["cuda_tests"]
    if tests:
        counts = {}
        for t in tests:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        print("cuda tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        for t in tests:
            if t["status"] == "failed":
                print(f"  FAILED {t['test']}")
    if report["steps"]:
        print(f"\n{'workload':<22} {'dualflow ms':>12} {'pytorch ms':>11} {'speed-up':>9} {'peak MiB':>9}")
        for s in report["steps"]:
            def fmt(v, width, decimals, suffix=""):
                return f"{v:{width}.{decimals}f}{suffix}" if isinstance(v, (int, float)) else "-".rjust(width + len(suffix))
            print(f"{s['workload']:<22} {fmt(s['dualflow_ms'], 12, 3)} {fmt(s['pytorch_ms'], 11, 3)} "
                  f"{fmt(s.get('speed_up'), 8, 2, 'x')} {fmt(s['dualflow_peak_mib'], 9, 1)}")
    gemm = [k for k in report["kernels"] if k.get("kernel") == "matmul"]
    if gemm:
        best = max(gemm, key=lambda k: k.get("gflops", 0))
        print(f"\nkernels: {len(report['kernels'])} rows; best matmul {best.get('dtype')} {best.get('shape')}: "
              f"{best.get('gflops')} GFLOP/s")
    print(f"report: {os.path.join(d, 'report.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
