#!/bin/sh
# Step 4: LoRA training. Flags pass through to train.py (see `python train.py --help`), for example:
#   sh train.sh --config scripts/qwen2-vl-2b_coco.yaml --deepspeed scripts/zero2.json
# ACCELERATE_CONFIG=scripts/accelerate_multi_gpu.yaml uses every GPU. The console is also kept in logs/.
mkdir -p logs
log="logs/train-$(date +%Y%m%d-%H%M%S).log"
status="$log.status"
# --quiet: on failure accelerate exits 1 after train.py's message, without a traceback of its own.
# A pipe into tee would hand on tee's exit status, not train.py's: the subshell writes train.py's to a file.
( accelerate launch --quiet --config_file "${ACCELERATE_CONFIG:-scripts/accelerate.yaml}" train.py "$@" 2>&1; echo $? >"$status" ) | tee "$log"
code=$(cat "$status")
rm -f "$status"
echo "console output saved to $log"
exit "$code"
