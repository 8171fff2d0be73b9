#!/usr/bin/env bash
# SIGINT and SIGTERM sent to sample, nll and bench --json while they work: each command must die
# of the signal (status 128 + signal, "interrupted" on stderr), its output file must keep its
# previous content, and no temp file may be left beside it. (eval writes through the same
# atomic files; it needs a trained classifier, so it is not run here.)
#   interrupted_commands.sh DUALFLOW CONFIG_DIR
set -uo pipefail
dualflow=$1 configs=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "interrupted_commands: $*"; cat "$dir/log" 2>/dev/null; exit 1; }

"$dualflow" train "$configs/toy2d_cfm.toml" --out "$dir/run" --set train.steps=2 --set sample.n=10 \
  >"$dir/log" 2>&1 || fail "could not train the checkpoint"
ckpt="$dir/run/checkpoint.safetensors"

# interrupt SIGNAL OUTPUT ARGS...: runs dualflow ARGS, signals it after 2 s, checks the outcome.
interrupt() {
  local sig=$1 out=$2
  shift 2
  printf 'previous' >"$out"
  "$dualflow" "$@" >"$dir/log" 2>&1 &
  local pid=$!
  sleep 2
  kill -0 "$pid" 2>/dev/null || fail "dualflow $* ended before it could be interrupted"
  kill "-$sig" "$pid"
  wait "$pid"
  local rc=$? expected=$((128 + $(kill -l "$sig")))
  [ "$rc" -eq "$expected" ] || fail "dualflow $* after SIG$sig: status $rc, expected $expected"
  [ "$(cat "$out")" = previous ] || fail "dualflow $* after SIG$sig: $out changed"
  if ls "$dir" | grep -q '\.tmp\.'; then fail "dualflow $* after SIG$sig: a temp file is left: $(ls "$dir")"; fi
  grep -q interrupted "$dir/log" || fail "dualflow $* after SIG$sig: no word of the interruption"
  echo "interrupted_commands: SIG$sig to dualflow $1: status $rc, $out as it was"
}

interrupt INT "$dir/s.npy" sample --checkpoint "$ckpt" --n 400000 --steps 100 --out "$dir/s.npy"
interrupt TERM "$dir/s.npy" sample --checkpoint "$ckpt" --n 400000 --steps 100 --out "$dir/s.npy"
interrupt INT "$dir/n.json" nll --checkpoint "$ckpt" --n 20000 --solver rk4 --steps 200 --out "$dir/n.json"
interrupt TERM "$dir/b.json" bench models --json "$dir/b.json"
