#!/usr/bin/env bash
# Kill -9 trials against checkpoint saves: `megatron pretrain` saves every iteration (a model whose
# saves take most of the run's time) and is killed, with every process of its group, at a random
# instant; then the latest checkpoint must load and continue, and must be at least the last save the
# run reported complete ("successfully saved"). Each trial cycles through four setups: one process
# with synchronous and with asynchronous (--async-save) sharded saves, and two ranks under mpirun
# (tensor-parallel 2; data-parallel 2 with the distributed optimizer and --async-save). Resumption
# runs on one process, so the two-rank saves are also resharded.
#   scripts/kill_during_save.sh [trials] [pretrain flags]   (default 20 trials; prints one line a trial
#   and a summary; the flags, e.g. --bf16, go to every run, the resumptions included)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
shift $(( $# > 0 ? 1 : 0 ))
swift build -c release --product megatron >/dev/null 2>&1 || swift build -c release --product megatron
megatron=$PWD/.build/release/megatron
model=(--mock-data --tokenizer-type NullTokenizer --vocab-size 32768 --num-layers 2 --hidden-size 512 --num-attention-heads 4
       --seq-length 16 --max-position-embeddings 16 --micro-batch-size 1 --global-batch-size 2 --lr 1e-3 --log-interval 1
       --threads 1 --eval-iters 0 "$@")
setups=("sync" "async" "mpi-tp2" "mpi-dp2-async")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

launch() {  # setup, directory, log: the run to kill, in its own process group; its pid in $pid
    local flags=("${model[@]}" --train-iters 8 --save "$2" --save-interval 1)
    case $1 in
        sync) setsid "$megatron" pretrain "${flags[@]}" >"$3" 2>&1 & ;;
        async) setsid "$megatron" pretrain "${flags[@]}" --async-save >"$3" 2>&1 & ;;
        mpi-tp2) setsid mpirun --allow-run-as-root --oversubscribe -np 2 "$megatron" pretrain "${flags[@]}" --tensor-model-parallel-size 2 >"$3" 2>&1 & ;;
        mpi-dp2-async) setsid mpirun --allow-run-as-root --oversubscribe -np 2 "$megatron" pretrain "${flags[@]}" --global-batch-size 2 \
                           --use-distributed-optimizer --async-save >"$3" 2>&1 & ;;
    esac
    pid=$!
}

# How long an uninterrupted run of each setup takes bounds the instants drawn.
declare -A duration
for setup in "${setups[@]}"; do
    start=$(date +%s.%N)
    launch "$setup" "$work/full-$setup" "$work/full-$setup.log"
    wait "$pid" || { echo "$setup: the uninterrupted run failed:"; cat "$work/full-$setup.log"; exit 1; }
    duration[$setup]=$(echo "$(date +%s.%N) - $start" | bc)
    echo "uninterrupted $setup run: ${duration[$setup]} s"
    rm -rf "$work/full-$setup"
done

lost=0 midsave=0
for trial in $(seq 1 "$trials"); do
    setup=${setups[$(( (trial - 1) % ${#setups[@]} ))]}
    directory=$work/trial-$trial log=$work/trial-$trial.log
    instant=$(python3 -c "import random; print(round(random.uniform(0.3, ${duration[$setup]}), 2))")
    launch "$setup" "$directory" "$log"
    sleep "$instant"
    # mpirun's ranks run outside its process group: kill them by their --save directory too, and
    # wait until none is left.
    kill -9 -- "-$pid" 2>/dev/null || true
    pkill -9 -f -- "--save $directory " || true
    wait "$pid" 2>/dev/null || true  # (bash reports the kill)
    while pgrep -f -- "--save $directory " >/dev/null; do sleep 0.05; done
    reported=$(grep -o 'successfully saved checkpoint from iteration *[0-9]*' "$log" | tail -1 | awk '{print $NF}' || true)
    reported=${reported:-0}
    # A save started and not reported complete when the kill came.
    started=$(grep -c 'saving checkpoint at iteration' "$log" || true)
    finished=$(grep -c 'successfully saved checkpoint' "$log" || true)
    state="between saves"
    [ "$started" -gt "$finished" ] && { state="during a save"; midsave=$((midsave + 1)); }
    if [ -f "$directory/latest_checkpointed_iteration.txt" ]; then
        latest=$(cat "$directory/latest_checkpointed_iteration.txt")
        if "$megatron" pretrain "${model[@]}" --train-iters $((latest + 1)) --load "$directory" --use-checkpoint-opt_param-scheduler >"$log.resume" 2>&1 \
            && grep -q "successfully loaded checkpoint from .* at iteration $latest" "$log.resume" && [ "$latest" -ge "$reported" ]; then
            verdict="latest $latest loads and continues"
        else
            verdict="LOST (latest $latest, reported $reported): $(grep -E 'loaded|rror' "$log.resume" | head -3)"; lost=$((lost + 1))
        fi
    elif [ "$reported" -gt 0 ]; then
        verdict="LOST: no tracker, though iteration $reported was reported saved"; lost=$((lost + 1))
    else
        verdict="killed before the first save completed"
    fi
    printf 'trial %2d  %-13s kill at %5.2f s (%s, %s reported saved): %s\n' "$trial" "$setup" "$instant" "$state" "$reported" "$verdict"
    rm -rf "$directory"
done
echo "$trials trials, $midsave killed during a save, $lost lost"
[ "$lost" -eq 0 ]
