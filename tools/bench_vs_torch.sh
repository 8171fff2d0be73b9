#!/usr/bin/env bash
# dualflow and PyTorch side by side on one suite of docs/BENCHMARKS.md's workloads: `dualflow bench
# WORKLOAD` and tools/bench_torch.py (the same networks, parameter for parameter), one workload
# after the other on each side at each thread count (so both see the same machine state), then
# the table of speed-ups (PyTorch ms / dualflow ms, above 1 means dualflow is faster).
#
#   tools/bench_vs_torch.sh toy2d                 # threads 1 and 2, 20 timed steps, 3 warm-up steps
#   tools/bench_vs_torch.sh fmnist                # the image workloads: tens of minutes on 2 cores
#   THREADS="1 2 4" STEPS=30 tools/bench_vs_torch.sh toy2d
#   WORKLOADS="toy2d-cfm toy2d-nll-exact" tools/bench_vs_torch.sh toy2d
# (tools/bench_toy2d.sh and tools/bench_fmnist.sh are the two suites by name.)
#
# Suites: toy2d (toy2d-cfm, toy2d-meanflow, toy2d-euler, toy2d-nll-exact; those the build's
# `dualflow bench` lacks are left out) and fmnist (fmnist-unet-cfm, fmnist-dit-meanflow).
#
# Environment: DUALFLOW (default build/train/dualflow), TORCH_PYTHON (any Python that imports
# torch; default the first of /tmp/torchenv/bin/python and python3 that does. From PyPI:
#   python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
# about 3.0 GB downloaded and 5.3 GB installed, since PyPI's Linux wheel brings the CUDA
# libraries; it runs on machines without a GPU. Debian's python3-torch works too),
# THREADS, STEPS, WARMUP, WORKLOADS, OUT (folder for the JSON files; default a fresh temp dir),
# TORCH_PASSIVE=0 (skip the second PyTorch run with OMP_WAIT_POLICY=PASSIVE at more than one
# thread), and PyTorch's extra rows: FFJORD=0 skips the likelihood with FFJORD's verbatim
# create_graph=True divergence beside toy2d-nll-exact; FULLBATCH=0 skips MeanFlow with the JVP
# over the whole batch (as the official MeanFlow code writes it) beside fmnist-dit-meanflow.
set -euo pipefail

usage="usage: tools/bench_vs_torch.sh toy2d|fmnist"
suite=${1:?$usage}
case "$suite" in
  toy2d) default_workloads="toy2d-cfm toy2d-meanflow toy2d-euler toy2d-nll-exact" ;;
  fmnist) default_workloads="fmnist-unet-cfm fmnist-dit-meanflow" ;;
  *) echo "bench_vs_torch: unknown suite '$suite'; $usage" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
dualflow=${DUALFLOW:-$root/build/train/dualflow}
python=${TORCH_PYTHON:-}
if [[ -z $python ]]; then
  for candidate in /tmp/torchenv/bin/python python3; do
    if "$candidate" -c "import torch" 2>/dev/null; then python=$candidate; break; fi
  done
fi
python=${python:-/tmp/torchenv/bin/python}
threads=${THREADS:-1 2}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
out=${OUT:-$(mktemp -d "/tmp/bench_$suite.XXXXXX")}
mkdir -p "$out"

[[ -x $dualflow ]] || { echo "bench_vs_torch: no dualflow binary at $dualflow (build first: ninja -C build)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null ||
  { echo "bench_vs_torch: no Python here imports torch (tried ${TORCH_PYTHON:-/tmp/torchenv/bin/python and python3}); set TORCH_PYTHON or install it as the top of this script says" >&2; exit 1; }

workloads=""
if [[ -n ${WORKLOADS:-} ]]; then
  workloads=$WORKLOADS
else
  for w in $default_workloads; do
    # A build without a workload's subcommand leaves that workload out.
    if "$dualflow" bench "$w" --help >/dev/null 2>&1; then workloads+="$w "; fi
  done
fi

torch_run() {  # threads, json file, workloads...
  local t=$1 json=$2
  shift 2
  local args=()
  for w in "$@"; do args+=(--workload "$w"); done
  "$python" "$root/tools/bench_torch.py" "${args[@]}" --threads "$t" --steps "$steps" --warmup "$warmup" --json "$json"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for t in $threads; do
  for w in $workloads; do
    echo "== $w, $t thread(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$dualflow" bench "$w" --threads "$t" --steps "$steps" --warmup "$warmup" --json "$out/dualflow-$w-t$t.json"
    torch_workloads=("$w")
    [[ $w == toy2d-nll-exact && ${FFJORD:-1} == 1 ]] && torch_workloads+=(toy2d-nll-exact-ffjord)
    [[ $w == fmnist-dit-meanflow && ${FULLBATCH:-1} == 1 ]] && torch_workloads+=(fmnist-dit-meanflow-fullbatch)
    torch_run "$t" "$out/torch-$w-t$t.json" "${torch_workloads[@]}"
    # PyTorch's OpenMP threads spin while they wait; on a shared machine that can dominate, so
    # with more than one thread it is also timed with sleeping waits.
    if ((t > 1)) && [[ ${TORCH_PASSIVE:-1} == 1 ]]; then
      OMP_WAIT_POLICY=PASSIVE torch_run "$t" "$out/torch-passive-$w-t$t.json" "${torch_workloads[@]}"
    fi
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

cat "$out"/dualflow-*.json >"$out/dualflow.json"
cat "$out"/torch-*.json >"$out/torch.json"
"$python" "$root/tools/bench_torch.py" --report "$out/torch.json" --compare "$out/dualflow.json"
echo "JSON files: $out"
