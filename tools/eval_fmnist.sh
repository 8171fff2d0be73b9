#!/usr/bin/env bash
# The Fashion-MNIST evaluation table of the README: FD (classifier features, N samples against N
# test images) and class accuracy of the CFM U-Net (Euler 50 steps, Dopri5) and of the MeanFlow
# DiT (1 and 2 steps), the real-data floor at the same N, and the CFM model's bits per dimension
# on test images (Hutchinson, Dopri5). Each result is one JSON line appended to OUT; grids of the
# first 100 samples go beside it.
#
#   tools/eval_fmnist.sh [CLASSIFIER_RUN] [CFM_RUN] [MEANFLOW_RUN] [N] [OUT]
#
# Defaults: runs/classifier runs/fmnist_unet_cfm runs/fmnist_dit_meanflow 500 runs/eval.jsonl.
set -euo pipefail
clf=${1:-runs/classifier}/checkpoint.safetensors
cfm=${2:-runs/fmnist_unet_cfm}/checkpoint.safetensors
mf=${3:-runs/fmnist_dit_meanflow}/checkpoint.safetensors
n=${4:-500}
out=${5:-runs/eval.jsonl}
bin=${DUALFLOW:-build/train/dualflow}
dir=$(dirname "$out")
mkdir -p "$dir"
"$bin" eval --classifier "$clf" --n "$n" --out "$out"
"$bin" eval --classifier "$clf" --checkpoint "$cfm" --n "$n" --solver euler --steps 50 --grid "$dir/cfm_euler50.png" \
  --bpd "${BPD_IMAGES:-100}" --out "$out"
"$bin" eval --classifier "$clf" --checkpoint "$cfm" --n "$n" --solver dopri5 --rtol 1e-3 --atol 1e-3 \
  --grid "$dir/cfm_dopri5.png" --out "$out"
"$bin" eval --classifier "$clf" --checkpoint "$mf" --n "$n" --steps 1 --grid "$dir/meanflow_1step.png" --out "$out"
"$bin" eval --classifier "$clf" --checkpoint "$mf" --n "$n" --steps 2 --grid "$dir/meanflow_2step.png" --out "$out"
