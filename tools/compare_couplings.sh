#!/usr/bin/env bash
# Couplings of a data-to-data flow (configs/toy2d_8gaussians_moons.toml: 8 gaussians to two moons
# by conditional flow matching): trains it with the independent, exact_ot and sb couplings, then
# samples each with one Euler step and with dopri5, printing the energy-distance ratio to the
# data (1 is the floor of two independent data draws), the NFE, and the straightness of the
# learned paths (the mean squared distance of 40 ODE paths' points from their chords, through
# dopri5). Each run's picture with the paths is left as OUT_DIR/COUPLING.png.
#   tools/compare_couplings.sh [OUT_DIR] [STEPS]    (default runs/compare_couplings, the config's steps)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/compare_couplings}
steps=${2:-}
dualflow=build/train/dualflow
config=configs/toy2d_8gaussians_moons.toml
mkdir -p "$out"
couplings="independent exact_ot sb"
for c in $couplings; do
  rm -rf "${out:?}/$c"
  extra=()
  [ -n "$steps" ] && extra+=(--set "train.steps=$steps")
  "$dualflow" train "$config" --out "$out/$c" --set method.coupling="\"$c\"" "${extra[@]}" >/dev/null
done
printf '%-12s %-10s %6s %7s %12s\n' coupling sampler NFE ratio chord_msd
for c in $couplings; do
  for how in "euler 1" "dopri5 -"; do
    set -- $how
    args=(--solver "$1")
    [ "$2" != "-" ] && args+=(--steps "$2")
    [ "$1" = dopri5 ] && args+=(--trajectories 40)
    text=$("$dualflow" sample --checkpoint "$out/$c/checkpoint.safetensors" --out "$out/$c/s.npy" --n 2000 "${args[@]}")
    nfe=$(sed -n 's/.*(\([0-9]*\) NFE.*/\1/p' <<<"$text" | head -n 1)
    ratio=$(sed -n 's/.*ratio \([0-9.]*\);.*/\1/p' <<<"$text")
    msd=$(sed -n 's/.*from their chords: \([0-9.]*\).*/\1/p' <<<"$text")
    label="euler 1"
    [ "$1" = dopri5 ] && label=dopri5 && cp "$out/$c/s.png" "$out/$c.png"
    printf '%-12s %-10s %6s %7s %12s\n' "$c" "$label" "$nfe" "$ratio" "${msd:--}"
  done
done
