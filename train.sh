#!/bin/sh
# Step 4: LoRA training. Flags pass through to train.py (see `python train.py --help`), for example:
#   sh train.sh --config scripts/qwen2-vl-2b_coco.yaml --deepspeed scripts/zero2.json
# ACCELERATE_CONFIG=scripts/accelerate_multi_gpu.yaml picks every GPU. A timestamped copy of the console output is kept in logs/.
set -e
mkdir -p logs
log="logs/train-$(date +%Y%m%d-%H%M%S).log"
# `tee` would hide train.py's exit status behind its own; the subshell hands it on.
{ accelerate launch --config_file "${ACCELERATE_CONFIG:-scripts/accelerate.yaml}" train.py "$@" 2>&1; echo $? > "$log.status"; } | tee "$log"
status=$(cat "$log.status"); rm -f "$log.status"
echo "console output saved to $log"
exit "$status"
