#!/usr/bin/env bash
# The main job on the built-in tiny dataset: train a small RoPE-Mixed DINO (the ViT-S recipe with size overrides)
# with `mim train mmdet`, then evaluate it with `mim test mmdet` and print the COCO box AP table.
# About 10 minutes on 2 CPU cores. Extra arguments go to `mim train` (e.g. --cfg-options train_cfg.max_iters=200).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONFIG=configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py
DATA=data/tiny_coco
WORK_DIR=${WORK_DIR:-work_dirs/demo_dino_ropevit_tiny}
PY=.venv/bin/python
MIM=.venv/bin/mim

if [ ! -f "$DATA/annotations/instances_train.json" ]; then
    "$PY" -m ropevit_dense.data coco "$DATA" --num-images 16
fi
"$MIM" train mmdet "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT="$WORK_DIR/$(cat "$WORK_DIR/last_checkpoint" | xargs basename)"
echo "== COCO box AP of $CKPT on $DATA/val =="
"$MIM" test mmdet "$CONFIG" --checkpoint "$CKPT" --work-dir "$WORK_DIR/test" 2>&1 \
    | grep -E "Average (Precision|Recall)|bbox_mAP_copypaste"
