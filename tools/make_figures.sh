#!/usr/bin/env bash
# The README's 2-D figures: one run of each objective's config (shortened to STEPS steps),
# sampled with 40 trajectories drawn over the samples beside the data, each picture copied to
# docs/images/objectives/NAME.png; the loss curves of OT-CFM against independent-coupling CFM
# (docs/images/loss_ot_vs_independent.png); and demo.png (`dualflow demo`).
#
#   tools/make_figures.sh            # about 10 minutes on 2 cores
#   STEPS=1000 RUNS=/tmp/figs tools/make_figures.sh
#
# Environment: DUALFLOW (default build/train/dualflow), STEPS (3000), RUNS (runs/figures: the
# runs themselves), OUT (docs/images).
set -euo pipefail
cd "$(dirname "$0")/.."
dualflow=${DUALFLOW:-build/train/dualflow}
steps=${STEPS:-3000}
runs=${RUNS:-runs/figures}
out=${OUT:-docs/images}
mkdir -p "$runs" "$out/objectives"

train() {  # NAME CONFIG [--set ...]
  local name=$1 config=$2
  shift 2
  echo "== $name: $config, $steps steps"
  rm -rf "${runs:?}/$name"
  "$dualflow" train "configs/$config" --out "$runs/$name" --set "train.steps=$steps" --set train.checkpoint_every=0 \
    --set sample.n=2000 "$@" | tail -n 1
}
figure() {  # NAME [sample options]
  local name=$1
  shift
  "$dualflow" sample --checkpoint "$runs/$name/checkpoint.safetensors" --n 5000 --trajectories 40 \
    --out "$runs/$name/figure.npy" "$@" | tail -n 3
  cp "$runs/$name/figure.png" "$out/objectives/$name.png"
}

train cfm toy2d_cfm.toml
figure cfm --solver euler --steps 100
train cfm_independent toy2d_cfm.toml --set 'method.coupling="independent"'
figure cfm_independent --solver euler --steps 100
train vp toy2d_vp.toml
figure vp --solver euler --steps 100
train ve toy2d_ve.toml
figure ve --solver euler --steps 100
train score_vp toy2d_score_vp.toml
figure score_vp --solver euler --steps 100
train reflow toy2d_reflow.toml --set "reflow.teacher=\"$runs/cfm/checkpoint.safetensors\"" --set reflow.pairs=20000
figure reflow --solver euler --steps 2
train meanflow toy2d_meanflow.toml
figure meanflow
train moons_curved toy2d_moons_curved.toml
figure moons_curved --solver euler --steps 100
# Maximum likelihood keeps its own (short) schedule: each step integrates the ODE.
steps=1000 train cnf_mle toy2d_cnf_mle.toml
figure cnf_mle

"$dualflow" plot "$runs/cfm" "$runs/cfm_independent" --label "exact-OT coupling" --label "independent coupling" \
  --out "$out/loss_ot_vs_independent.png"
"$dualflow" demo --out "$runs/demo"
cp "$runs/demo/demo.png" "$out/demo.png"
echo "figures in $out"
