#!/usr/bin/env bash
# Data-parallel scaling on this machine: training throughput of one process with T threads
# against T ranks of one thread each (mpirun), on the toy2d CFM run and the Fashion-MNIST U-Net
# CFM run, from the runs' own metrics (the last logging window, after warm-up; the median of
# REPEATS alternated runs). Prints steps/s,
# the scaling efficiency (ranks' steps/s over the one process's), and the gradient exchange's
# time per step (sync_ms) and share of the step.
#   tools/bench_scaling.sh [RANKS [REPEATS]]   (default 2 and 3; build first with tools/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2}
repeats=${2:-3}
dualflow=build/train/dualflow
[ -x "$dualflow" ] || { echo "bench_scaling: build first (tools/build.sh)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# field NAME LINE: a number field of a metrics line
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"; }

# run NAME CONFIG STEPS WINDOW PROCS THREADS: trains and prints the last metrics line
run() {
  local name=$1 config=$2 steps=$3 window=$4 procs=$5 threads=$6 out="$work/$1-$5x$6"
  local sets=(--set train.steps="$steps" --set train.log_every="$window" --set train.checkpoint_every=0
              --set run.threads="$threads" --set sample.n=10 --set sample.steps=1)
  if [ "$procs" -eq 1 ]; then
    "$dualflow" train "$config" --out "$out" "${sets[@]}" >/dev/null
  else
    mpirun -np "$procs" --oversubscribe --bind-to core "$dualflow" train "$config" --out "$out" "${sets[@]}" >/dev/null
  fi
  tail -n 1 "$out/metrics.jsonl"
}

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

bench() {
  local name=$1 config=$2 steps=$3 window=$4
  local one_its=() ranked_its=() syncs=() line
  # Alternated and repeated: this machine's speed drifts by 10-20% between runs.
  for _ in $(seq 1 "$repeats"); do
    line=$(run "$name" "$config" "$steps" "$window" 1 "$ranks")
    one_its+=("$(field it_per_s "$line")")
    line=$(run "$name" "$config" "$steps" "$window" "$ranks" 1)
    ranked_its+=("$(field it_per_s "$line")")
    syncs+=("$(field sync_ms "$line")")
  done
  local one ranked sync
  one=$(median "${one_its[@]}")
  ranked=$(median "${ranked_its[@]}")
  sync=$(median "${syncs[@]}")
  printf '%-16s %-22s %9.3f %10s %9s %11s\n' "$name" "1 process x $ranks threads" "$one" "" "" ""
  printf '%-16s %-22s %9.3f %9.2fx %9.3f %10.1f%%\n' "$name" "$ranks ranks x 1 thread" "$ranked" \
    "$(awk -v a="$ranked" -v b="$one" 'BEGIN{print a/b}')" "$sync" \
    "$(awk -v s="$sync" -v i="$ranked" 'BEGIN{print 100*s*i/1000}')"
}
echo "medians of $repeats alternated runs each; sync_ms includes waiting for the slowest rank"
printf '%-16s %-22s %9s %10s %9s %11s\n' workload layout "steps/s" efficiency sync_ms "sync share"
bench toy2d-cfm configs/toy2d_cfm.toml 600 300
bench fmnist-unet-cfm configs/fmnist_unet_cfm.toml 60 30
