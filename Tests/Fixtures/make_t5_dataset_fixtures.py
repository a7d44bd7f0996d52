#!/usr/bin/env python3
"""Writes bert_dataset/t5_samples.json: the sample index and samples of Megatron's own
T5MaskedWordPieceDataset (megatron-core, run on the CPU, as make_bert_dataset_fixtures.py runs the
BERT one) over the same corpus and vocabulary, with pretrain_t5.py's masking (spans of geometric
length, p = 0.2, up to 10 n-grams, whole words) and 100 sentinel ids (--vocab-extra-ids 100).
Run by hand after make_bert_dataset_fixtures.py (needs torch, numpy, megatron-core)."""
import json
import os
import tempfile

import numpy
import torch
import torch.distributed

from make_bert_dataset_fixtures import HERE, VOCAB, Tokenizer
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.t5_dataset import T5MaskedWordPieceDataset, T5MaskedWordPieceDatasetConfig
from megatron.core.datasets.utils import Split

CASES = [
    dict(name="t5", sequence_length=32, sequence_length_decoder=16, masking_probability=0.15, short_sequence_probability=0.1,
         seed=1234, documents=[0, 40], num_samples=60),
    dict(name="t5_dense", sequence_length=24, sequence_length_decoder=20, masking_probability=0.3, short_sequence_probability=0.0,
         seed=99, documents=[3, 29], num_samples=20),
]


def main():
    torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:29534", rank=0, world_size=1)
    tokenizer = Tokenizer(VOCAB, extra_ids=100)
    prefix = os.path.join(HERE, "corpus")
    indexed = IndexedDataset(prefix)
    out = dict(vocab_size=tokenizer.vocab_size, extra_ids=100, cases=[])
    for case in CASES:
        with tempfile.TemporaryDirectory() as cache:
            config = T5MaskedWordPieceDatasetConfig(
                random_seed=case["seed"], sequence_length=case["sequence_length"],
                sequence_length_decoder=case["sequence_length_decoder"], blend=([prefix], None), split="100,0,0",
                path_to_cache=cache, tokenizer=tokenizer, masking_probability=case["masking_probability"],
                short_sequence_probability=case["short_sequence_probability"], masking_max_ngram=10, masking_do_full_word=True,
                masking_do_permutation=False, masking_use_longer_ngrams=False, masking_use_geometric_distribution=True)
            first, last = case["documents"]
            dataset = T5MaskedWordPieceDataset(indexed, prefix, numpy.arange(first, last, dtype=numpy.int32), case["num_samples"],
                                               Split.train, config)
            samples = []
            for i in range(len(dataset)):
                s = dataset[i]
                samples.append({k: (v.tolist() if isinstance(v, numpy.ndarray) else int(v)) for k, v in s.items()})
            out["cases"].append(dict(case, sample_index=numpy.asarray(dataset.sample_index).tolist(), samples=samples))
            print(f"{case['name']}: {len(dataset)} samples, {sum(s['truncated'] for s in samples)} truncated")
    with open(os.path.join(HERE, "t5_samples.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
