#!/usr/bin/env bash
# `make demo`: the "fine-tune on your own site" workflow, on a synthetic site, CPU only, <= 10 min.
#   1. record a site: `moadepth synth --bag` (one seed = one site), split by time into train / test bags
#   2. fine-tune on the FIRST part of the trajectory (`moadepth train --data BAG`), bounded in steps
#      (CHECKPOINT=path skips this)
#   3. `depth_node` (use_sim_time) on the REST of the trajectory, driven by `bag_replay --record`
#   4. `bag_eval --prediction-topic --costmap` scores the node's recorded outputs against the exact depth,
#      pixel by pixel and as the Nav2 voxel layer would mark them
#   5. a report folder (report.md/.html, plots, colourised depth, a PLY) whose path is printed last
# SUPERVISION=photometric (`make demo SUPERVISION=photometric`) fine-tunes with no depth in the loss
# (`moadepth train --supervision photometric`: the images and the robot's /tf; the depth topic only feeds the
# validation metrics), hands the node last.pt (not best.pt, which validation depth would have chosen), writes
# to demo-output-photometric/ and puts the depth-supervised demo's demo-output/eval beside it in the report.
# Knobs (env): SUPERVISION (depth | photometric), DEMO_OUT, SEED, FRAMES, TRAIN_FRACTION, STEPS, TRAIN_SECONDS,
# RATE, CHECKPOINT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUPERVISION=${SUPERVISION:-depth}
case "$SUPERVISION" in
    depth | photometric) ;;
    *) echo "demo: SUPERVISION=$SUPERVISION is not a supervision the demo runs: use depth (the default) or photometric (no depth in training)." >&2
       exit 2 ;;
esac
BIN=${MOADEPTH_VENV:-.venv}/bin
OUT=${DEMO_OUT:-demo-output}
[[ $SUPERVISION == depth ]] || OUT=${DEMO_OUT:-demo-output-photometric}  # make demo's demo-output/ stays
SEED=${SEED:-7}
FRAMES=${FRAMES:-160}
TRAIN_FRACTION=${TRAIN_FRACTION:-0.6}
STEPS=${STEPS:-300}
TRAIN_SECONDS=${TRAIN_SECONDS:-270}
RATE=${RATE:-0.4}
IMG=/camera/color/image_raw
INFO=/camera/color/camera_info
DEPTH=/camera/depth/image_raw
# Network rule: DDS discovery stays on this machine, one domain per run.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 101 ))}
export PYTHONUNBUFFERED=1

T_START=$SECONDS
stage() { echo; echo "== [$(( SECONDS - T_START ))s] $*"; }

if [[ -e "$OUT" ]]; then
    echo "demo: $OUT exists; removing the previous demo output"
    rm -rf "$OUT"
fi
mkdir -p "$OUT"

stage "1/5 record a synthetic site: $FRAMES frames, seed $SEED -> $OUT/site/bag"
"$BIN/moadepth" synth --out "$OUT/site" --frames "$FRAMES" --seed "$SEED" --bag
"$BIN/python" scripts/demo.py split --bag "$OUT/site/bag" --first "$OUT/site/train_bag" \
    --rest "$OUT/site/test_bag" --fraction "$TRAIN_FRACTION" --image-topic "$IMG"
TRAIN_FRAMES=$(python3 -c "print(round($FRAMES * $TRAIN_FRACTION))")
TEST_FRAMES=$(( FRAMES - TRAIN_FRAMES ))

if [[ -n "${CHECKPOINT:-}" ]]; then
    stage "2/5 CHECKPOINT=$CHECKPOINT given: no fine-tuning"
    CKPT=$CHECKPOINT
    TRAIN_WHAT="skipped (CHECKPOINT given)"
else
    stage "2/5 fine-tune on the first $TRAIN_FRAMES frames: up to $STEPS steps or ${TRAIN_SECONDS}s on CPU$(
        [[ $SUPERVISION == depth ]] || echo ", --supervision $SUPERVISION: no depth in the loss")"
    t0=$SECONDS
    # Bounded in wall time whatever the machine's load: SIGINT at the bound, keep what was written
    # (last.pt every 20 steps, best.pt at each validation). `timeout` exits 124 then, which is expected.
    # Without the bound, the epochs end it first: 96 frames - 10 held out = 21 batches of 4 per epoch,
    # x 10 epochs (config/train_synth.yaml) = 210 steps, under STEPS.
    # photometric: the depth topic only scores validation; the loss sees the images and /tf. Synthetic sites move
    # 4.999 cm a frame, under the 5 cm neighbour threshold: sources at +-2 frames (10 cm), docs/TRAINING.md.
    SUP_ARGS=()
    [[ $SUPERVISION == depth ]] || SUP_ARGS=(--supervision photometric --set photometric.frame_offset=2)
    rc=0
    timeout --foreground --signal=INT --kill-after=30 "$TRAIN_SECONDS" "$BIN/moadepth" train --config config/train_synth.yaml \
        --data "$OUT/site/train_bag" --image-topic "$IMG" --depth-topic "$DEPTH" --out "$OUT/run" \
        --max-steps "$STEPS" --device cpu --set ckpt_every=20 ${SUP_ARGS[@]+"${SUP_ARGS[@]}"} || rc=$?
    # The node gets best.pt (network only, ~124 MB; the best validation AbsRel), not last.pt (~371 MB:
    # also the optimiser state, for --resume). best.pt exists once one validation ran (every epoch).
    CKPT=$OUT/run/best.pt
    # photometric: best.pt is the best validation AbsRel, i.e. chosen by depth; that node gets the last weights.
    [[ $SUPERVISION == depth ]] || CKPT=$OUT/run/last.pt
    if [[ ! -f "$CKPT" && $SUPERVISION == depth ]]; then
        echo "demo: training wrote no best.pt (exit $rc; no validation finished); raise TRAIN_SECONDS or pass CHECKPOINT=" >&2
        exit 1
    elif [[ ! -f "$CKPT" ]]; then
        echo "demo: training wrote no last.pt (exit $rc; it writes one every 20 steps); raise TRAIN_SECONDS or pass CHECKPOINT=" >&2
        exit 1
    fi
    [[ $rc == 0 ]] || echo "demo: training stopped at the ${TRAIN_SECONDS}s bound; using $CKPT"
    step_of() { "$BIN/python" -c "import sys; from moadepth_core.model.checkpoint import read_checkpoint; \
print(read_checkpoint(sys.argv[1]).get('step', '?'))" "$1"; }
    DONE_STEPS=$(step_of "$OUT/run/last.pt")
    BEST_STEP=$(step_of "$OUT/run/best.pt" 2>/dev/null || echo none)
    TRAIN_WHAT="$DONE_STEPS steps of config/train_synth.yaml on CPU in $(( SECONDS - t0 )) s on the first \
$TRAIN_FRAMES frames (the last 10 % of those held out for validation); best.pt is the best validation, \
at step $BEST_STEP"
    if [[ $SUPERVISION == photometric ]]; then
        TRAIN_WHAT="$DONE_STEPS steps of config/train_synth.yaml --supervision photometric \
(photometric.frame_offset=2: sources 2 frames either side) on CPU in $(( SECONDS - t0 )) s on the first \
$TRAIN_FRAMES frames: the loss saw only the images, CameraInfo and /tf, no depth; the depth topic fed only \
the validation metrics of the last 10 %. The node runs last.pt (step $DONE_STEPS), not best.pt (the best \
validation AbsRel, at step $BEST_STEP), so no depth chose the checkpoint"
    fi
fi

stage "3/5 depth_node (use_sim_time) on the last $TEST_FRAMES frames, driven by bag_replay at x$RATE"
mkdir -p "$OUT/replay"
# The node's defaults (max_uncertainty among them, chosen from this demo's costmap sweep: docs/ROS.md);
# a cloud of every 4th pixel, as a Nav2 user would set it for a 640x480 camera. A photometric model's
# bin spread stays wide (only the depth loss sharpens it), so its run turns the filter off
# (docs/TRAINING.md).
NODE_ARGS=(-p point_stride:=4)
[[ $SUPERVISION == depth ]] || NODE_ARGS+=(-p max_uncertainty:=1000.0)
NODE_PARAMS=$(printf '%s ' "${NODE_ARGS[@]}" | sed 's/-p //g; s/ $//')
"$BIN/depth_node" --ros-args -p checkpoint:="$CKPT" -p use_sim_time:=true "${NODE_ARGS[@]}" \
    -r image:=$IMG -r camera_info:=$INFO > "$OUT/replay/depth_node.log" 2>&1 &
NODE_PID=$!
# SIGTERM, not SIGINT: a background job of a non-interactive shell ignores SIGINT.
stop_node() {
    kill -TERM "$NODE_PID" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$NODE_PID" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$NODE_PID" 2>/dev/null || true
}
trap stop_node EXIT
"$BIN/bag_replay" --bag "$OUT/site/test_bag" --image-topic "$IMG" --depth-topic "$DEPTH" --rate "$RATE" \
    --wait-for-subscribers --wait-timeout 180 --record "$OUT/replay/recording" --json "$OUT/replay/stats.json" \
    > /dev/null
stop_node
wait "$NODE_PID" 2>/dev/null || true
trap - EXIT

stage "4/5 bag_eval: the node's recorded depth against the ground truth"
# --costmap: the recording holds /tf, so the node's depth also goes through config/nav2_depth_costmap.yaml's
# voxel layer (with depth_node's default max_uncertainty applied to /depth/confidence, and without it);
# --uncertainty-sweep scores the other max_uncertainty values the node's default is chosen from.
"$BIN/bag_eval" --bag "$OUT/replay/recording" --image-topic "$IMG" --depth-topic "$DEPTH" \
    --prediction-topic /depth/image --out "$OUT/eval" --costmap --uncertainty-sweep

stage "5/5 report"
REPORT_ARGS=()
# photometric: the depth-supervised demo (`make demo`, demo-output/) goes beside it in the report when it ran
[[ $SUPERVISION == depth ]] || REPORT_ARGS=(--supervision photometric --beside "depth-supervised (make demo)=demo-output")
"$BIN/python" scripts/demo.py report --out "$OUT/report" --eval "$OUT/eval" --recording "$OUT/replay/recording" \
    --replay-stats "$OUT/replay/stats.json" --image-topic "$IMG" --depth-topic "$DEPTH" --checkpoint "$CKPT" \
    --train-info "$(python3 -c 'import json,sys; print(json.dumps({"what": sys.argv[1]}))' "$TRAIN_WHAT")" \
    --node-params "$NODE_PARAMS" --seed "$SEED" --frames "$FRAMES" --train-frames "$TRAIN_FRAMES" --test-frames "$TEST_FRAMES" \
    ${REPORT_ARGS[@]+"${REPORT_ARGS[@]}"}

echo
echo "demo finished in $(( SECONDS - T_START )) s"
echo "report: $(cd "$OUT/report" && pwd)/report.md (and report.html)"
