#!/usr/bin/env bash
# The main job: tokenize the default corpus (Shakespeare, fetched by scripts/setup.sh) into
# Megatron's .bin/.idx, pretrain a small GPT on it for about two minutes on 2 cores, and print a
# continuation of a line of Romeo's (top-k 40 sampling: after two minutes the model is at a validation
# loss of about 5.6, and its greedy continuation is a comma and 39 newlines; `--top-k 1` shows it).
# Flags are Megatron-LM's; extra arguments go to `megatron pretrain`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product megatron >/dev/null
megatron=.build/release/megatron
tokenizer=(--tokenizer-type GPT2BPETokenizer --vocab-file data/gpt2/gpt2-vocab.json --merge-file data/gpt2/gpt2-merges.txt)

if [ ! -s data/shakespeare_text_document.idx ]; then
    $megatron preprocess-data --input data/shakespeare.jsonl --json-keys text --output-prefix data/shakespeare \
        "${tokenizer[@]}" --append-eod --workers 2
fi

$megatron pretrain \
    --data-path data/shakespeare_text_document "${tokenizer[@]}" \
    --num-layers 4 --hidden-size 256 --num-attention-heads 4 \
    --seq-length 128 --max-position-embeddings 128 \
    --micro-batch-size 8 --global-batch-size 8 --train-iters 150 \
    --lr 2e-3 --min-lr 2e-4 --lr-decay-style cosine --lr-warmup-iters 15 \
    --hidden-dropout 0 --attention-dropout 0 \
    --weight-decay 0.01 --clip-grad 1.0 --log-interval 25 --log-throughput --eval-interval 50 --eval-iters 10 --seed 1234 \
    --save runs/shakespeare \
    --sample-tokens 40 --top-k 40 --temperature 0.8 --sample-prompt "ROMEO. O, she doth teach the torches to" "$@"
