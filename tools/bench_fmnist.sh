#!/usr/bin/env bash
# The image workloads of BENCHMARKS.md side by side: `dualflow bench fmnist-unet-cfm |
# fmnist-dit-meanflow` and tools/bench_torch.py (the same U-Net and DiT-S/4, parameter for
# parameter), one workload after the other on each side at each thread count (so both see the
# same machine state), then the table of speed-ups (PyTorch ms / dualflow ms) with both sides'
# parameter counts.
#
#   tools/bench_fmnist.sh                  # threads 1 and 2, 20 timed steps, 3 warm-up steps
#   THREADS=1 STEPS=30 tools/bench_fmnist.sh
#   WORKLOADS=fmnist-unet-cfm tools/bench_fmnist.sh
#
# A step is seconds long on a 2-core CPU (the DiT MeanFlow step most), so the default run takes
# tens of minutes.
#
# Environment: DUALFLOW (default build/train/dualflow), TORCH_PYTHON (a Python with PyTorch;
# default /tmp/torchenv/bin/python, made by
#   python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu),
# THREADS, STEPS, WARMUP, WORKLOADS, OUT (folder for the JSON files; default a fresh temp dir),
# FULLBATCH=0 (skip PyTorch's MeanFlow row with the JVP over the whole batch, as the official
# MeanFlow code writes it, beside the row that splits the batch as dualflow's meanflow_loss does),
# TORCH_PASSIVE=0 (skip the second PyTorch run with OMP_WAIT_POLICY=PASSIVE at more than one thread).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dualflow=${DUALFLOW:-$root/build/train/dualflow}
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
threads=${THREADS:-1 2}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
workloads=${WORKLOADS:-fmnist-unet-cfm fmnist-dit-meanflow}
out=${OUT:-$(mktemp -d /tmp/bench_fmnist.XXXXXX)}
mkdir -p "$out"

[[ -x $dualflow ]] || { echo "bench_fmnist: no dualflow binary at $dualflow (build first: ninja -C build)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null ||
  { echo "bench_fmnist: $python cannot import torch (set TORCH_PYTHON; see the top of this script)" >&2; exit 1; }

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
