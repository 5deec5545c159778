#!/usr/bin/env bash
# Keep the toy-textured GAN training on this CPU while the machine is otherwise idle: one thread, `nice`,
# a checkpoint every 250 iterations, and paused (SIGSTOP) while a benchmark (python -m bench.NAME) runs,
# so timings stay clean. Stop it with Ctrl-C or SIGTERM: the trainer checkpoints as it goes.
#
#   bench/train-background.sh [DIR] [MINUTES]
#
# DIR (default toy-train/textured) resumes DIR/state, else bench/toy-state-textured, else toy-flat's
# bench/toy-state (the same layouts: only the appearance changes). MINUTES 0 trains until stopped. The recipe
# is the state's own (--same-recipe) with the cheaper iteration measured in BENCHMARKS.md (train-cost).
# Commit the new state with: cp DIR/state/{G,G_ema,D,D_joint}.pt DIR/state/state.json bench/toy-state-textured/
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-toy-train/textured}
MIN=${2:-0}
INSTSEG=${INSTSEG:-instseg}
if [ -f bench/toy-state-textured/state.json ]; then FROM=bench/toy-state-textured; else FROM=bench/toy-state; fi
nice -n 19 "$INSTSEG" toy train-gan --out "$DIR" --resume-from "$FROM" --same-recipe --world textured \
  --pool-first --r1-every 16 --reuse-fake --channels-last --threads 1 --workers 1 \
  --minutes "$MIN" --snapshot-every 250 --iters 10000000 &
pid=$!
trap 'kill -CONT $pid 2>/dev/null; kill -TERM $pid 2>/dev/null; wait $pid' INT TERM  # SIGTERM: a background child ignores SIGINT
paused=0
while kill -0 "$pid" 2>/dev/null; do
  if pgrep -f "python[0-9.]* (-m bench\.|[^ ]*bench/)[a-z_]+" > /dev/null; then
    if [ "$paused" = 0 ]; then kill -STOP "$pid"; paused=1; echo "$(date +%T) paused: a benchmark runs"; fi
  elif [ "$paused" = 1 ]; then
    kill -CONT "$pid"; paused=0; echo "$(date +%T) resumed"
  fi
  sleep 10
done
wait "$pid"
