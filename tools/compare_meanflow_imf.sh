#!/usr/bin/env bash
# MeanFlow against improved MeanFlow (iMF) on the checkerboard at equal training time: each
# trains the demo-sized network (width 128, depth 3, batch 256, EMA 0.995) from
# configs/toy2d_meanflow.toml and configs/toy2d_imf.toml with three seeds, MeanFlow for
# MF_STEPS and iMF for IMF_STEPS (an iMF step costs about 1.5 MeanFlow steps: a further pass of
# the v head for the tangent, and the JVP on half the batch instead of a quarter), then samples
# 2,000 points in 1 and in 2 steps and prints the energy-distance ratio to the data (1 is the
# floor of two independent data draws), each run's training time and the means.
#   tools/compare_meanflow_imf.sh [OUT_DIR] [MF_STEPS] [IMF_STEPS]   (default runs/compare_imf 5000 3500)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/compare_imf}
mf_steps=${2:-5000}
imf_steps=${3:-3500}
dualflow=build/train/dualflow
mkdir -p "$out"
small=(--set train.batch=256 --set model.width=128 --set model.depth=3 --set optim.ema_decay=0.995
  --set train.checkpoint_every=0)
ratio() { sed -n 's/.*ratio \([0-9.]*\);.*/\1/p'; }
printf '%-9s %4s %6s %8s %7s %7s\n' method seed steps train_s 1-step 2-step
for method in meanflow imf; do
  steps=$mf_steps
  [ "$method" = imf ] && steps=$imf_steps
  sum1=0 sum2=0
  for seed in 1 2 3; do
    run="$out/${method}_$seed"
    rm -rf "$run"
    start=$(date +%s.%N)
    "$dualflow" train "configs/toy2d_$method.toml" --out "$run" --set run.seed="$seed" --set train.steps="$steps" \
      "${small[@]}" >/dev/null
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    r1=$("$dualflow" sample --checkpoint "$run/checkpoint.safetensors" --n 2000 --out "$run/1.npy" | ratio)
    r2=$("$dualflow" sample --checkpoint "$run/checkpoint.safetensors" --n 2000 --steps 2 --out "$run/2.npy" | ratio)
    printf '%-9s %4s %6s %8.1f %7s %7s\n' "$method" "$seed" "$steps" "$seconds" "$r1" "$r2"
    sum1=$(awk -v a="$sum1" -v b="$r1" 'BEGIN { print a + b }')
    sum2=$(awk -v a="$sum2" -v b="$r2" 'BEGIN { print a + b }')
  done
  printf '%-9s mean %22.2f %7.2f\n' "$method" "$(awk -v a="$sum1" 'BEGIN { print a / 3 }')" \
    "$(awk -v a="$sum2" 'BEGIN { print a / 3 }')"
done
