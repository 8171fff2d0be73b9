#!/usr/bin/env bash
# Faults of 2-rank runs. A command that runs as one process (nll) is refused. SIGTERM to mpirun
# stops every rank at one step, which rank 0 saves. Rank 0 fails (its output folder cannot be made): every
# rank must end within 60 s, non-zero, with the error naming the rank. Then one rank is killed
# with SIGKILL mid-run: the run must end, mpirun exiting non-zero, within 60 s, with no dualflow
# process left behind; the last checkpoint must load, and --resume must continue from it.
#   rank_faults.sh DUALFLOW CONFIG MPIRUN...
set -uo pipefail
dualflow=$1 config=$2
shift 2
mpirun=("$@")
dir=$(mktemp -d)
trap 'pkill -9 -f "$dir/run" 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "rank_faults: $*" >&2; echo "--- the run's output:" >&2; cat "$dir/log" >&2; exit 1; }

# A command that does not split across ranks is refused under mpirun, not run twice over.
if "${mpirun[@]}" "$dualflow" nll --checkpoint "$config" --out "$dir/nll.json" >"$dir/log" 2>&1; then
  fail "nll ran under mpirun"
fi
grep -q "dualflow nll runs as one process" "$dir/log" || fail "nll under mpirun: no clear refusal"

touch "$dir/a-file"
started=$(date +%s)
timeout 60 "${mpirun[@]}" "$dualflow" train "$config" --out "$dir/a-file/run" --set run.threads=1 >"$dir/log" 2>&1
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a failing rank 0: status $rc (124: still running after 60 s)"
grep -q "error (rank 0 of 2" "$dir/log" || fail "the error does not name the rank"
echo "rank_faults: rank 0 failed; the run ended after $(($(date +%s) - started)) s with status $rc"

# SIGTERM to mpirun reaches every rank; they agree on the step, and rank 0 saves there.
"${mpirun[@]}" "$dualflow" train "$config" --out "$dir/stop" --set train.steps=1000000 --set train.log_every=50 \
  --set run.threads=1 --set sample.n=10 >"$dir/log" 2>&1 &
launcher=$!
sleep 3
kill -TERM "$launcher"
for _ in $(seq 1 600); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
kill -0 "$launcher" 2>/dev/null && fail "the run still runs 60 s after SIGTERM"
wait "$launcher"
stopped=$(sed -n 's/.*stopped at step \([0-9]*\).*/\1/p' "$dir/log" | head -n 1)
[ -n "$stopped" ] || fail "SIGTERM: no rank reported a save-and-stop"
saved=$(head -c 65536 "$dir/stop/checkpoint.safetensors" | grep -ao '"dualflow.step":"[0-9]*"' | tr -dc '0-9')
[ "$saved" = "$stopped" ] || fail "SIGTERM: stopped at step $stopped but the checkpoint holds step $saved"
echo "rank_faults: SIGTERM to mpirun: both ranks stopped at step $stopped and rank 0 saved it"

"${mpirun[@]}" "$dualflow" train "$config" --out "$dir/run" --set train.steps=1000000 --set train.checkpoint_every=20 \
  --set train.log_every=20 --set run.threads=1 --set sample.n=100 >"$dir/log" 2>&1 &
launcher=$!

for _ in $(seq 1 600); do
  [ -f "$dir/run/checkpoint.safetensors" ] && break
  sleep 0.1
done
[ -f "$dir/run/checkpoint.safetensors" ] || fail "no checkpoint after 60 s"
sleep 1  # a few more steps and checkpoints, so the kill lands mid-run

victim=""
for pid in $(pgrep -f "$dir/run"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$pid; fi
done
[ -n "$victim" ] || fail "rank 1 not found"
kill -9 "$victim"
killed_at=$(date +%s)

while kill -0 "$launcher" 2>/dev/null; do
  [ $(($(date +%s) - killed_at)) -le 60 ] || fail "the run still runs 60 s after rank 1 was killed"
  sleep 0.2
done
wait "$launcher"
rc=$?
elapsed=$(($(date +%s) - killed_at))
[ "$rc" -ne 0 ] || fail "mpirun exited 0 after rank 1 was killed"
if pgrep -f "$dir/run" >/dev/null; then fail "dualflow processes are left behind"; fi
echo "rank_faults: rank 1 killed; the run ended after ${elapsed} s with status $rc"

step=$(head -c 65536 "$dir/run/checkpoint.safetensors" | grep -ao '"dualflow.step":"[0-9]*"' | tr -dc '0-9')
[ -n "$step" ] || fail "the checkpoint holds no step"
"$dualflow" sample --checkpoint "$dir/run/checkpoint.safetensors" --out "$dir/s.npy" --n 10 >/dev/null ||
  fail "the checkpoint left by the killed run does not load"
"$dualflow" train --resume --out "$dir/run" --set train.steps=$((step + 10)) >"$dir/resume.log" 2>&1 ||
  { cat "$dir/resume.log" >&2; fail "--resume from step $step failed"; }
grep -q "\"step\":$((step + 10))" "$dir/run/metrics.jsonl" || fail "the resumed run did not reach step $((step + 10))"
echo "rank_faults: the checkpoint at step $step loads and the run resumes to step $((step + 10))"
