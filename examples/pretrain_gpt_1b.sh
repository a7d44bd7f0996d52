#!/usr/bin/env bash
# A 1.01-billion-parameter GPT (h2048, 18 layers, 16 heads, GPT-2's vocabulary, seq 1024) on one
# 24 GiB machine: two MPI processes train it tensor-parallel (TP=2) with the distributed optimizer
# and full activation recomputation, save a sharded checkpoint, then two processes resume it
# pipeline-parallel (PP=2), resharding as they load. Each process's peak resident memory is printed
# (GNU time's maximum RSS). About 16 bytes a parameter (fp32 parameters, gradients, two Adam moments),
# so about 8 GB a rank; 10 bytes (5.1 GB of state a rank, 5.8 GB peak RSS measured) with 16-bit
# storage and the precision-aware optimizer appended: --bf16 --use-precision-aware-optimizer
# --main-grads-dtype bf16 --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16.
#
#   examples/pretrain_gpt_1b.sh DATA_PREFIX CHECKPOINT_DIR [extra pretrain flags]
#
# DATA_PREFIX is a GPT-2-tokenized .bin/.idx pair (megatron preprocess-data); mock data when "mock".
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 DATA_PREFIX|mock CHECKPOINT_DIR [pretrain flags]" >&2; exit 2; }
data=$1 checkpoint=$2
shift 2
swift build -c release --product megatron >/dev/null
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
if [ "$data" = mock ]; then
    data_flags=(--mock-data --tokenizer-type NullTokenizer --vocab-size 50257)
else
    data_flags=(--data-path "$data" --split 998,1,1 --tokenizer-type GPT2BPETokenizer
                --vocab-file "${VOCAB_FILE:-../shared/data/gpt2/gpt2-vocab.json}"
                --merge-file "${MERGE_FILE:-../shared/data/gpt2/gpt2-merges.txt}")
fi
model=(--num-layers 18 --hidden-size 2048 --num-attention-heads 16 --seq-length 1024 --max-position-embeddings 1024
       --micro-batch-size 1 --global-batch-size 2 --lr 1.5e-4 --min-lr 1e-5 --lr-decay-style cosine --lr-warmup-iters 2
       --lr-decay-iters 100 --weight-decay 0.1 --clip-grad 1.0 --log-interval 1 --log-throughput --seed 1234
       --use-distributed-optimizer --recompute-granularity full --recompute-method uniform --recompute-num-layers 1
       --eval-iters 0 --threads 1 --save "$checkpoint" --save-interval 1000)
run() {  # run NAME LAYOUT_FLAGS...: two ranks, each reporting its peak RSS
    local name=$1
    shift
    echo "== $name"
    mpirun "${mpi_flags[@]}" -np 2 /usr/bin/time -f "rank peak RSS: %M KiB ($name)" \
        .build/release/megatron pretrain "${data_flags[@]}" "${model[@]}" "$@"
}
# Megatron pads the vocabulary to a multiple of 128 × TP: a divisor of 64 at TP=2 keeps the model
# (50,304 rows) the one TP=1 builds, so the checkpoint loads there.
# Both runs plan the same 5 iterations (the learning-rate and weight-decay schedules a checkpoint
# holds must match, as in Megatron); the first stops after 3 and saves.
run "TP=2, 3 iterations, sharded save" --tensor-model-parallel-size 2 --make-vocab-size-divisible-by 64 \
    --train-iters 5 --exit-interval 3 "$@"
run "PP=2, resumed for 2 more" --pipeline-model-parallel-size 2 --load "$checkpoint" --train-iters 5 "$@"
