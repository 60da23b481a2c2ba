#!/usr/bin/env bash
# Demo run by `make demo` (after .venv/ is bootstrapped): network summary, a few
# synthetic RGB-D frames, and a depth prediction on one of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
OUT=${DEMO_OUT:-demo-output}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 1 ))}

echo "== moadepth summary"
"$BIN/moadepth" summary

echo "== moadepth synth -> $OUT/synth"
"$BIN/moadepth" synth --out "$OUT/synth" --frames 2

image=$(find "$OUT/synth/rgb" -name '*.png' | sort | head -n 1)
if [[ -z "$image" ]]; then
    echo "demo: no image written under $OUT/synth/rgb" >&2
    exit 1
fi

echo "== moadepth predict (untrained network: shows the pipeline, not real depth)"
"$BIN/moadepth" predict --allow-untrained "$image" --out "$OUT/predict"
echo "demo outputs in $OUT/"
