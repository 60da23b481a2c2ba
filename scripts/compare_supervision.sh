#!/usr/bin/env bash
# The supervision comparison of docs/TRAINING.md ("Without a depth sensor"), on the demo's site:
#   1. record the site as scripts/demo.sh does (`moadepth synth --bag`, SEED 7, FRAMES 160) and split it by
#      time: the first TRAIN_FRACTION trains, the rest is held out (the same frames score every row)
#   2. three runs from the same untrained network, each STEPS steps of config/train_synth.yaml on CPU:
#      --supervision depth (today's demo), photometric (images + /tf only) and mixed
#   3. scripts/compare_supervision.py: untrained, best constant and the three runs' last.pt on the held-out
#      frames, each scored by bag_eval (its --costmap on the bag's /tf): AbsRel, delta1, RMSE, costmap IoU,
#      scale ratio (no median scaling) -> OUT/table.md, OUT/table.json, each row's bag_eval output in OUT/eval/
# Knobs (env): OUT, SEED, FRAMES, TRAIN_FRACTION, STEPS, OFFSET (photometric.frame_offset), SIZE (model
# H,W), RUNS (which of depth photometric mixed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
OUT=${OUT:-demo-output/compare}
SEED=${SEED:-7}
FRAMES=${FRAMES:-160}
TRAIN_FRACTION=${TRAIN_FRACTION:-0.6}
STEPS=${STEPS:-300}
OFFSET=${OFFSET:-2}
SIZE=${SIZE:-128,160}
RUNS=${RUNS:-depth photometric mixed}
IMG=/camera/color/image_raw
DEPTH=/camera/depth/image_raw
# The last 10 % of the training part validates (by time) as in the demo; last.pt, not best.pt, is scored,
# so no run picks its checkpoint by depth it must not use.
COMMON=(--config config/train_synth.yaml --image-topic "$IMG" --depth-topic "$DEPTH" --max-steps "$STEPS"
        --device cpu --no-progress --set "model.image_size=[$SIZE]" --set epochs=1000 --set val_every=0
        --set val_at_epoch_end=false --set ckpt_every=0 --set "photometric.frame_offset=$OFFSET")

mkdir -p "$OUT"
if [[ ! -d "$OUT/site/bag" ]]; then
    "$BIN/moadepth" synth --out "$OUT/site" --frames "$FRAMES" --seed "$SEED" --bag --quiet
    "$BIN/python" scripts/demo.py split --bag "$OUT/site/bag" --first "$OUT/site/train_bag" \
        --rest "$OUT/site/test_bag" --fraction "$TRAIN_FRACTION" --image-topic "$IMG"
fi
ARGS=()
for sup in $RUNS; do
    if [[ ! -f "$OUT/run_$sup/last.pt" ]]; then
        t0=$SECONDS
        "$BIN/moadepth" train "${COMMON[@]}" --data "$OUT/site/train_bag" --supervision "$sup" --out "$OUT/run_$sup"
        echo "$sup: $STEPS steps in $(( SECONDS - t0 )) s" | tee -a "$OUT/timings.txt"
    fi
    ARGS+=(--run "$sup=$OUT/run_$sup/last.pt")
done
"$BIN/python" scripts/compare_supervision.py --bag "$OUT/site/test_bag" --image-topic "$IMG" --depth-topic "$DEPTH" \
    --untrained-config config/train_synth.yaml --set "model.image_size=[$SIZE]" "${ARGS[@]}" \
    --eval-dir "$OUT/eval" --md "$OUT/table.md" --json "$OUT/table.json"
