#!/usr/bin/env bash
# Straight (CondOT) against curved (curved2d) probability paths on Gaussian -> two moons
# (configs/toy2d_moons_curved.toml): trains both, then samples each with Euler 1, 2, 10 and 100
# steps and with rk45 (Dopri5), printing the energy-distance ratio to the data (1 is the floor of
# two independent data draws) and the NFE; then draws 40 paths of each flow over its samples
# (OUT_DIR/condot_paths.png, OUT_DIR/curved2d_paths.png) with their distance from straight.
#   tools/compare_paths.sh [OUT_DIR]     (default runs/compare_paths; build first)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/compare_paths}
dualflow=build/train/dualflow
config=configs/toy2d_moons_curved.toml
mkdir -p "$out"
for path in condot curved2d; do
  "$dualflow" train "$config" --out "$out/$path" --set method.path="$path" >/dev/null
done
printf '%-9s %-16s %6s %7s\n' path sampler NFE ratio
for path in condot curved2d; do
  for how in "euler 1" "euler 2" "euler 10" "euler 100" "rk45 -"; do
    set -- $how
    args=(--solver "$1")
    [ "$2" != "-" ] && args+=(--steps "$2")
    line=$("$dualflow" sample --checkpoint "$out/$path/checkpoint.safetensors" --out "$out/$path/s.npy" --n 2000 \
      "${args[@]}")
    nfe=$(sed -n 's/.*(\([0-9]*\) NFE.*/\1/p' <<<"$line" | head -n 1)
    ratio=$(sed -n 's/.*ratio \([0-9.]*\);.*/\1/p' <<<"$line")
    label="euler $2"
    [ "$2" = "-" ] && label="rk45 (dopri5)"
    printf '%-9s %-16s %6s %7s\n' "$path" "$label" "$nfe" "$ratio"
  done
done
# The learned paths themselves: 40 of them through Euler 100 over the samples, and how far they
# bend from their chords (the straight path's flow need not be straight; the curved one's bends
# by design).
for path in condot curved2d; do
  text=$("$dualflow" sample --checkpoint "$out/$path/checkpoint.safetensors" --out "$out/$path/paths.npy" --n 2000 \
    --solver euler --steps 100 --trajectories 40)
  cp "$out/$path/paths.png" "$out/${path}_paths.png"
  echo "$path: $(sed -n 's/.*\(mean squared distance.*\)/\1/p' <<<"$text") -> $out/${path}_paths.png"
done
