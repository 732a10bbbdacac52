#!/bin/sh
# Step 4: LoRA training. Flags pass through to train.py (see `python train.py --help`), for example:
#   sh train.sh --config scripts/qwen2-vl-2b_coco.yaml --deepspeed scripts/zero2.json
# The machine decides how it runs: every GPU (one process each) on a machine with several, the one GPU, or every
# CPU core in one process. ACCELERATE_CONFIG=scripts/<file>.yaml chooses instead (scripts/ has one for N CPU
# processes and one for several machines). The console is also kept in logs/.
mkdir -p logs
log="logs/train-$(date +%Y%m%d-%H%M%S)-$$.log"
gpus=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null) || gpus=0
if [ -z "$ACCELERATE_CONFIG" ]; then
    ACCELERATE_CONFIG=scripts/accelerate.yaml
    [ "${gpus:-0}" -gt 1 ] && ACCELERATE_CONFIG=scripts/accelerate_multi_gpu.yaml
fi
launch=""
if [ "$ACCELERATE_CONFIG" = scripts/accelerate_multi_gpu.yaml ] && [ "${gpus:-0}" -gt 1 ]; then
    launch="--num_processes $gpus"  # every GPU, one process each
elif [ "$ACCELERATE_CONFIG" = scripts/accelerate.yaml ] && [ "${gpus:-0}" -eq 0 ]; then
    # accelerate gives a process one thread unless told; on the CPU that leaves the other cores idle.
    launch="--num_cpu_threads_per_process $(nproc)"
fi
pipe="$log.pipe"
mkfifo "$pipe"
tee "$log" <"$pipe" &
# --quiet: on failure accelerate exits 1 after train.py's message, without a traceback of its own.
# shellcheck disable=SC2086  # $launch is flags, split on purpose
VLMTUNE_STOP_WITH_LAUNCHER=1 accelerate launch --quiet --config_file "$ACCELERATE_CONFIG" $launch \
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
