#!/usr/bin/env bash
# A short GPT pretraining run on Megatron-style mock data (about two minutes on 2 cores): a 4-layer,
# 4.3M-parameter GPT learns the documents' counting pattern, then continues a prompt greedily.
# The flags are Megatron-LM's pretrain_gpt.py flags; extra arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product megatron >/dev/null

.build/release/megatron pretrain \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 \
    --num-layers 4 --hidden-size 256 --num-attention-heads 4 \
    --seq-length 256 --max-position-embeddings 256 \
    --micro-batch-size 8 --global-batch-size 16 --train-iters 120 \
    --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 12 \
    --weight-decay 0.01 --clip-grad 1.0 --log-interval 20 --log-throughput --seed 1234 \
    --eval-iters 10 --sample-tokens 24 "$@"
