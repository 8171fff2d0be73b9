#!/usr/bin/env bash
# The toy2d workloads of BENCHMARKS.md side by side: `dualflow bench toy2d-*` and
# tools/bench_torch.py, one workload after the other on each side at each thread count (so
# both see the same machine state), then the table of speed-ups (PyTorch ms / dualflow ms).
#
#   tools/bench_toy2d.sh                 # threads 1 and 2, 20 timed steps, 3 warm-up steps
#   THREADS="1 2 4" STEPS=30 tools/bench_toy2d.sh
#   WORKLOADS="toy2d-cfm toy2d-nll-exact" tools/bench_toy2d.sh
#
# Environment: DUALFLOW (default build/train/dualflow), TORCH_PYTHON (a Python with PyTorch;
# default /tmp/torchenv/bin/python, made by
#   python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu),
# THREADS, STEPS, WARMUP, WORKLOADS, OUT (folder for the JSON files; default a fresh temp dir),
# FFJORD=0 (skip PyTorch's create_graph=True likelihood row), TORCH_PASSIVE=0 (skip the second
# PyTorch run with OMP_WAIT_POLICY=PASSIVE at more than one thread).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dualflow=${DUALFLOW:-$root/build/train/dualflow}
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
threads=${THREADS:-1 2}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
out=${OUT:-$(mktemp -d /tmp/bench_toy2d.XXXXXX)}
mkdir -p "$out"

[[ -x $dualflow ]] || { echo "bench_toy2d: no dualflow binary at $dualflow (build first: ninja -C build)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null ||
  { echo "bench_toy2d: $python cannot import torch (set TORCH_PYTHON; see the top of this script)" >&2; exit 1; }

if [[ -z ${WORKLOADS:-} ]]; then
  WORKLOADS=""
  for w in toy2d-cfm toy2d-meanflow toy2d-euler toy2d-nll-exact; do
    # A build without a workload's subcommand leaves that workload out.
    if "$dualflow" bench "$w" --help >/dev/null 2>&1; then WORKLOADS+="$w "; fi
  done
fi

torch_run() {  # threads, json file, workloads...
  local t=$1 json=$2
  shift 2
  local args=()
  for w in "$@"; do args+=(--workload "$w"); done
  "$python" "$root/tools/bench_torch.py" "${args[@]}" --threads "$t" --steps "$steps" --warmup "$warmup" --json "$json"
}

for t in $threads; do
  for w in $WORKLOADS; do
    echo "== $w, $t thread(s)"
    "$dualflow" bench "$w" --threads "$t" --steps "$steps" --warmup "$warmup" --json "$out/dualflow-$w-t$t.json"
    torch_workloads=("$w")
    # The likelihood's PyTorch side also runs FFJORD's verbatim divergence (create_graph=True).
    [[ $w == toy2d-nll-exact && ${FFJORD:-1} == 1 ]] && torch_workloads+=(toy2d-nll-exact-ffjord)
    torch_run "$t" "$out/torch-$w-t$t.json" "${torch_workloads[@]}"
    # PyTorch's OpenMP threads spin while they wait; on a shared machine that can dominate, so
    # with more than one thread it is also timed with sleeping waits.
    if ((t > 1)) && [[ ${TORCH_PASSIVE:-1} == 1 ]]; then
      OMP_WAIT_POLICY=PASSIVE torch_run "$t" "$out/torch-passive-$w-t$t.json" "${torch_workloads[@]}"
    fi
  done
done

cat "$out"/dualflow-*.json >"$out/dualflow.json"
cat "$out"/torch-*.json >"$out/torch.json"
"$python" "$root/tools/bench_torch.py" --report "$out/torch.json" --compare "$out/dualflow.json"
echo "JSON files: $out"
