#!/bin/sh
# Step 4: LoRA training. Flags pass through to train.py (see `python train.py --help`), for example:
#   sh train.sh --config scripts/qwen2-vl-2b_coco.yaml --deepspeed scripts/zero2.json
# ACCELERATE_CONFIG=scripts/accelerate_multi_gpu.yaml uses every GPU. The console is also kept in logs/.
mkdir -p logs
log="logs/train-$(date +%Y%m%d-%H%M%S)-$$.log"
pipe="$log.pipe"
mkfifo "$pipe"
tee "$log" <"$pipe" &
# --quiet: on failure accelerate exits 1 after train.py's message, without a traceback of its own.
VLMTUNE_STOP_WITH_LAUNCHER=1 accelerate launch --quiet --config_file "${ACCELERATE_CONFIG:-scripts/accelerate.yaml}" \
    train.py "$@" >"$pipe" 2>&1 &
run=$!
# Killing this script (kill, a scheduler's SIGTERM, Ctrl-C) stops the training: the launcher is ended, and train.py
# ends with it (vlmtune/stopping.py), saying where it stopped and how to resume.
trap 'kill -TERM "$run" 2>/dev/null' INT TERM
code=
while [ -z "$code" ]; do  # a trapped signal interrupts `wait`; wait again until the launcher has really ended
    wait "$run"
    status=$?
    kill -0 "$run" 2>/dev/null || code=$status
done
wait  # tee, until the last line is in the log
rm -f "$pipe"
echo "console output saved to $log"
exit "$code"
