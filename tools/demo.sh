#!/usr/bin/env bash
# The main job on the built-in tiny dataset: train a small RoPE-Mixed DINO (the ViT-S recipe with size overrides)
# with `mim train mmdet`, evaluate it with `mim test mmdet` (COCO box AP table of the held-out images), then draw
# its predictions on those images with `python -m ropevit_dense.infer` and print the overlay paths.
#
# The training budget is an iteration count (DEMO_ITERS, default 450, learning rate x0.1 after 90% of them), chosen
# to keep the whole demo under 10 minutes on 2 CPU cores. Extra arguments go to `mim train`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONFIG=configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py
DATA=data/tiny_coco
WORK_DIR=${WORK_DIR:-work_dirs/demo_dino_ropevit_tiny}
ITERS=${DEMO_ITERS:-450}
PY=.venv/bin/python
MIM=.venv/bin/mim

if ! [[ "$ITERS" =~ ^[1-9][0-9]*$ ]]; then
    echo "DEMO_ITERS must be a positive integer, got '$ITERS'" >&2
    exit 2
fi
if [ ! -f "$DATA/annotations/instances_train.json" ]; then
    "$PY" -m ropevit_dense.data coco "$DATA" --num-images 16
fi
# no validation inside training (mim test below evaluates the last checkpoint once)
"$MIM" train mmdet "$CONFIG" --work-dir "$WORK_DIR" --cfg-options "train_cfg.max_iters=$ITERS" \
    val_cfg=None val_dataloader=None val_evaluator=None "param_scheduler.0.end=$ITERS" \
    "param_scheduler.0.milestones=[$((ITERS * 9 / 10))]" "default_hooks.checkpoint.interval=$ITERS" "$@"
CKPT="$WORK_DIR/$(cat "$WORK_DIR/last_checkpoint" | xargs basename)"
echo "== COCO box AP of $CKPT on $DATA/val =="
"$MIM" test mmdet "$CONFIG" --checkpoint "$CKPT" --work-dir "$WORK_DIR/test" 2>&1 \
    | grep -E "Average (Precision|Recall)|bbox_mAP_copypaste"
echo "== predictions on the held-out images ($DATA/val) =="
LOG="$WORK_DIR/predictions.log"
if ! "$PY" -m ropevit_dense.infer "$CONFIG" "$CKPT" "$DATA/val" --out "$WORK_DIR/predictions" --force \
        --no-progress --ann-file "$DATA/annotations/instances_val.json" 2>"$LOG"; then
    tail -n 20 "$LOG" >&2
    exit 1
fi
