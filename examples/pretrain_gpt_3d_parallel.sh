#!/usr/bin/env bash
# Tensor, sequence, pipeline and data parallelism together on mock data with MPI: 8 processes as
# TP=2 (with --sequence-parallel) × PP=2 × DP=2, the Adam state sharded over the data-parallel pair.
# They oversubscribe a small machine; the point is the layout, which trains the one-rank model
# (same losses to rounding). Extra arguments go to `megatron pretrain`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product megatron >/dev/null
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)

mpirun "${mpi_flags[@]}" -np 8 .build/release/megatron pretrain \
    --tensor-model-parallel-size 2 --sequence-parallel --pipeline-model-parallel-size 2 \
    --use-distributed-optimizer --threads 1 \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 \
    --num-layers 4 --hidden-size 256 --num-attention-heads 4 \
    --seq-length 256 --max-position-embeddings 256 \
    --micro-batch-size 2 --global-batch-size 16 --train-iters 40 \
    --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 4 \
    --weight-decay 0.01 --clip-grad 1.0 --log-interval 10 --log-throughput --seed 1234 \
    --eval-iters 5 --sample-tokens 24 "$@"
