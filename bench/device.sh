#!/usr/bin/env bash
# The one prepared GPU call: every GPU measurement, then toy GAN training from the committed state.
#
#   bench/device.sh OUTDIR [TRAIN_MINUTES]      (default 3; total well under 8 minutes on an H100/H200)
#
# Steps: f256 pipeline at fp32/bf16/fp16, encoders, StyleGAN3-T 256 at fp32/fp16, generator, 1024 memory, real-image labelling (projection time
# per image), then training toy-textured (from bench/toy-state-textured, else from toy-flat's bench/toy-state). Needs torch with CUDA and our tree (PYTHONPATH=.). Wheels for what the machine lacks (pycocotools,
# ultralytics for the FD judge) are installed from .whl/ when it is there: bench/device-wheels.sh
# fetches them on a connected machine. Each step is bounded and independent: one failing leaves the rest.
# OUTDIR receives at most 8 files (what the device tool brings back): steps.log (every step's output),
# results.jsonl (the JSON line of every bench step, named), BENCHMARKS.md as the benches rewrote it, and
# toy-state-textured/ (the new weights-only training state, one file per network: commit it to bench/toy-state-textured).
# DEVICE=cpu ONLY=train bench/device.sh /tmp/d 0.2 smoke-tests the training part on a CPU. TRAIN_ARGS adds options
# to the training step (say "--precision bf16"); the recipe is bench/toy-state's own (--same-recipe).
set -uo pipefail
OUT=${1:?usage: bench/device.sh OUTDIR [TRAIN_MINUTES]}
MIN=${2:-3}
DEV=${DEVICE:-cuda}
ONLY=${ONLY:-all}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}. YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
LOG=$OUT/steps.log
step() {  # step NAME SECONDS CMD...: one bounded step, its output appended to steps.log, its JSON to results.jsonl
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T))" | tee -a "$LOG"
  timeout "$limit" "$@" > /tmp/step.out 2>&1; local rc=$?
  cat /tmp/step.out >> "$LOG"; echo "rc=$rc" >> "$LOG"
  grep '^{' /tmp/step.out | sed "s/^{/{\"step\": \"$name\", /" >> "$OUT/results.jsonl"
  tail -n 3 /tmp/step.out
}
step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ "$ONLY" != train ]; then
  # end to end at 256, N=32, 16 seeds per chunk: fp32 (with an operator profile), bf16 and fp16 (with mask IoU
  # against fp32), then the encoding pool's size at fp16
  step pipeline-f256-fp32 120 python3 -m bench.pipeline f256 --device "$DEV" --precision fp32 --images 32 --batch 16 \
    --json --profile
  for p in bf16 fp16; do
    step "pipeline-f256-$p" 100 python3 -m bench.pipeline f256 --device "$DEV" --precision "$p" --images 32 --batch 16 --json
  done
  for e in 0 2 4 8; do
    step "encoders-$e" 60 python3 -m bench.pipeline f256 --device "$DEV" --precision fp16 --images 32 --batch 16 \
      --encoders "$e" --repeats 1 --json
  done
  # StyleGAN3-T at 256 (NVIDIA's layout, random weights): fp32, and fp16 by the snapshot's own layer flags
  for p in fp32 fp16; do
    step "pipeline-sg3t256-$p" 120 python3 -m bench.pipeline sg3t256 --device "$DEV" --precision "$p" --images 16 \
      --batch 16 --repeats 1 --json
  done
  step generator 60 python3 -m bench.generator --device "$DEV"
  step generator-sg3-t 60 python3 -m bench.generator --device "$DEV" --family sg3-t
  step memory-1024 60 python3 -m bench.memory --device "$DEV"
  step real-images 150 python3 -m bench.real --device "$DEV" --images 60 --quick
fi
# toy-textured first (the long pole): from its committed state, else from toy-flat's (same layouts)
TRAIN=$(mktemp -d)
if [ -f bench/toy-state-textured/state.json ]; then FROM=bench/toy-state-textured; else FROM=bench/toy-state; fi
step toy-train-textured "$(awk "BEGIN{print int($MIN * 60 + 90)}")" python3 -m instseg.cli toy train-gan --device "$DEV" \
  --out "$TRAIN" --resume-from "$FROM" --same-recipe --world textured --pool-first --r1-every 16 --reuse-fake \
  --channels-last --minutes "$MIN" --iters 10000000 --workers 12 \
  ${TRAIN_ARGS:-}
mkdir -p "$OUT/toy-state-textured"
for f in "$TRAIN"/state/*; do [ "$(basename "$f")" = opt.pt ] || cp "$f" "$OUT/toy-state-textured/"; done
# the world's targets on held-out seeds, at psi 1.0 and 0.7, as BENCHMARKS.md's toy-target-textured reads them
step toy-target-textured 300 python3 -m bench.toy_target "$TRAIN/generator.pt" --world textured --no-write
cp BENCHMARKS.md "$OUT/"
echo "done $(date +%T)"
