#!/usr/bin/env python3
"""Writes bert_dataset/: a small sentence-split corpus (corpus.bin/.idx, Megatron's indexed format,
one sequence per sentence), its WordPiece vocabulary (vocab.txt: the five BERT specials, words
"wN" and continuations "##sN") and samples.json: for each case, the sample index and samples of
Megatron's own BERTMaskedWordPieceDataset (megatron-core, `pip install megatron-core` with its
compiled helpers, run on the CPU) with pretrain_bert.py's masking settings (3-grams, whole words,
no permutation, no geometric spans).

The dataset reads of its tokenizer only cls, sep, pad, mask, eos/eod and inv_vocab, so the
tokenizer here is those fields of Megatron's _BertWordPieceTokenizer over vocab.txt (which appends
[BOS] and [EOS] to the vocabulary). Run by hand (needs torch, numpy, megatron-core); the Swift tests
read only the files.
"""
import json
import os
import tempfile

import numpy
import torch
import torch.distributed

from megatron.core.datasets.bert_dataset import BERTMaskedWordPieceDataset, BERTMaskedWordPieceDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
from megatron.core.datasets.utils import Split

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bert_dataset")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + [f"w{i}" for i in range(60)] + [f"##s{i}" for i in range(30)]

CASES = [
    # pretrain_bert.py's defaults: binary head, 15 % masking, 10 % short sequences; several epochs.
    dict(name="binary_head", sequence_length=32, masking_probability=0.15, short_sequence_probability=0.1, seed=1234,
         classification_head=True, documents=[0, 40], num_samples=70),
    # --bert-no-binary-head on a document range, heavier masking, no short sequences.
    dict(name="no_binary_head", sequence_length=20, masking_probability=0.3, short_sequence_probability=0.0, seed=7,
         classification_head=False, documents=[6, 31], num_samples=25),
]


class Tokenizer:
    """The fields of Megatron's _BertWordPieceTokenizer (with --vocab-extra-ids) that the datasets read."""

    def __init__(self, tokens, extra_ids=0):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        extras = [f"<extra_id_{i}>" for i in range(extra_ids)]
        for extra in ["[BOS]", "[EOS]"] + extras:
            self.vocab[extra] = len(self.vocab)
        self.inv_vocab = {i: t for t, i in self.vocab.items()}
        self.cls, self.sep, self.pad, self.mask = (self.vocab[t] for t in ["[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        self.bos = self.vocab["[BOS]"]
        self.eos = self.eod = self.vocab["[EOS]"]
        self.additional_special_tokens_ids = [self.vocab[t] for t in extras]
        self.vocab_size = len(self.vocab)
        # What Megatron's description of a dataset records of its tokenizer.
        self.unique_identifiers = {"class": "_BertWordPieceTokenizer", "vocab_size": self.vocab_size}


def write_corpus(prefix, g):
    """40 documents of 1 to 7 sentences of 1 to 14 tokens (whole words: a "wN" and 0 to 2 "##sN"),
    one document holding a sentence over 512 tokens (Megatron skips such documents)."""
    words = list(range(5, 65))
    continuations = list(range(65, 95))
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=numpy.uint16)
    for d in range(40):
        sentences = []
        for _ in range(int(g.integers(1, 8))):
            sentence = []
            target = int(g.integers(1, 15)) if d != 17 or sentences else 520
            while len(sentence) < target:
                sentence.append(int(g.choice(words)))
                sentence += [int(g.choice(continuations)) for _ in range(int(g.integers(0, 3)))]
            sentences.append(sentence[:target])
        builder.add_document(torch.tensor(sum(sentences, [])), [len(s) for s in sentences])
    builder.finalize(prefix + ".idx")


def main():
    os.makedirs(HERE, exist_ok=True)
    with open(os.path.join(HERE, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    prefix = os.path.join(HERE, "corpus")
    write_corpus(prefix, numpy.random.default_rng(2024))
    torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:29533", rank=0, world_size=1)
    tokenizer = Tokenizer(VOCAB)
    indexed = IndexedDataset(prefix)
    out = dict(vocab_size=tokenizer.vocab_size, cases=[])
    for case in CASES:
        with tempfile.TemporaryDirectory() as cache:
            config = BERTMaskedWordPieceDatasetConfig(
                random_seed=case["seed"], sequence_length=case["sequence_length"], blend=([prefix], None), split="100,0,0",
                path_to_cache=cache, tokenizer=tokenizer, masking_probability=case["masking_probability"],
                short_sequence_probability=case["short_sequence_probability"], masking_max_ngram=3, masking_do_full_word=True,
                masking_do_permutation=False, masking_use_longer_ngrams=False, masking_use_geometric_distribution=False,
                classification_head=case["classification_head"])
            first, last = case["documents"]
            dataset = BERTMaskedWordPieceDataset(indexed, prefix, numpy.arange(first, last, dtype=numpy.int32),
                                                 case["num_samples"], Split.train, config)
            samples = []
            for i in range(len(dataset)):
                s = dataset[i]
                samples.append({k: (v.tolist() if isinstance(v, numpy.ndarray) else int(v)) for k, v in s.items()})
            out["cases"].append(dict(case, sample_index=numpy.asarray(dataset.sample_index).tolist(), samples=samples))
            print(f"{case['name']}: {len(dataset)} samples, "
                  f"{sum(s['truncated'] for s in samples)} truncated, {sum(s['is_random'] for s in samples)} swapped")
    with open(os.path.join(HERE, "samples.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
