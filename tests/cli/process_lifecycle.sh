#!/usr/bin/env bash
# 200 short dualflow processes that end early: refused options, missing files, --help, a sampler
# the checkpoint does not offer (an error right after the first parallel op) and tiny jobs that
# finish. Each must exit within its timeout; a process that hangs at exit (a thread-pool worker
# waiting for a wake-up that was lost) fails the test.
#   process_lifecycle.sh DUALFLOW CONFIG_DIR [RUNS]
set -uo pipefail
dualflow=$1 configs=$2 runs=${3:-200}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# A tiny MeanFlow checkpoint to sample from.
"$dualflow" train "$configs/toy2d_meanflow.toml" --out "$dir/run" --set train.steps=2 --set sample.n=10 \
  >"$dir/setup.log" 2>&1 || { cat "$dir/setup.log"; echo "process_lifecycle: could not train the checkpoint"; exit 1; }
ckpt="$dir/run/checkpoint.safetensors"

# The refusal right after the first parallel op is the one that hung most often: it comes often.
refused="sample --checkpoint $ckpt --solver rk45 --out $dir/x.npy"
commands=(
  "$refused" "$refused" "$refused" "$refused"
  "sample --checkpoint $ckpt --n 4 --out $dir/y.npy"           # a tiny job that finishes
  "sample --checkpoint $dir/missing.safetensors --out $dir/z.npy"
  "train $configs/toy2d_cfm.toml --out $dir/t --set train.steps=1 --set sample.n=4 --set model.width=8"
  "train $configs/toy2d_cfm.toml --out $dir/u --set optim.lr=-1"
  "nll --checkpoint $ckpt --out $dir/n.json --n 4 --solver euler --steps 2"
  "--help"
  "sample --help"
  "info"
  "no-such-command"
)

hangs=0
for i in $(seq 1 "$runs"); do
  cmd=${commands[$(((i - 1) % ${#commands[@]}))]}
  # shellcheck disable=SC2086
  timeout 30 "$dualflow" $cmd >"$dir/out.log" 2>&1
  rc=$?
  if [ "$rc" -eq 124 ]; then
    hangs=$((hangs + 1))
    echo "process_lifecycle: run $i hung (killed after 30 s): dualflow $cmd"
  fi
done
if [ "$hangs" -gt 0 ]; then
  echo "process_lifecycle: $hangs of $runs processes hung"
  exit 1
fi
echo "process_lifecycle: $runs processes, none hung"
