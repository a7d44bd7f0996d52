#!/usr/bin/env bash
# Data-parallel pretraining on mock data with MPI: 2 processes (override with NP=4), each with its
# own replica, gradients reduced in buckets during backward (--overlap-grad-reduce) and the Adam
# state sharded (--use-distributed-optimizer). Without mpirun, the same run on threads:
#   .build/release/megatron pretrain … --distributed-backend in-process --in-process-ranks 2
# Extra arguments go to `megatron pretrain`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product megatron >/dev/null
np=${NP:-2}
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)

mpirun "${mpi_flags[@]}" -np "$np" .build/release/megatron pretrain \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 \
    --num-layers 4 --hidden-size 256 --num-attention-heads 4 \
    --seq-length 256 --max-position-embeddings 256 \
    --micro-batch-size 4 --global-batch-size 16 --train-iters 60 \
    --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 6 \
    --weight-decay 0.01 --clip-grad 1.0 --log-interval 10 --log-throughput --seed 1234 \
    --overlap-grad-reduce --ddp-bucket-size 1000000 --use-distributed-optimizer \
    --eval-iters 10 --sample-tokens 24 "$@"
