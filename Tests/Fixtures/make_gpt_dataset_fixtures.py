#!/usr/bin/env python3
"""Writes gpt_dataset_indices.json: Megatron GPTDataset's document, sample and shuffle indices for
small cases, computed with NumPy's RandomState the way megatron/core/datasets/gpt_dataset.py and
helpers.cpp (build_sample_idx) build them, re-expressed here in plain Python/NumPy, plus raw
MT19937 outputs and RandomState.shuffle results. Run by hand (needs NumPy); the Swift tests read
only the JSON.

Document d of every case holds tokens (d * 100 + position) % 60000, so samples can be checked too
(in a blend, dataset k's document d holds (k * 30000 + d * 100 + position) % 60000).

Blends follow megatron/core/datasets/blended_megatron_dataset_builder.py (weights normalised, the
blend takes ceil(size * w) samples of each dataset, each built with ceil(ceil(size * w) * 1.005)),
blended_dataset.py (which normalises the weights a second time) and helpers.cpp
build_blending_indices (greedy: the dataset lagging its weight most); without weights, each
dataset is one epoch and the blend weighs them by their sample counts. Weights are also written as
hexadecimal floats: the last bit matters, and a JSON parser need not round decimals correctly.
"""
import json
import math
import os

import numpy


def split_bounds(split, count):
    """--split "a,b,c": normalised weights, cumulative book-ends, rounded (Python's round: half to even)."""
    weights = [float(x) for x in split.split(",")]
    weights += [0.0] * (3 - len(weights))
    total = numpy.sum(numpy.array(weights, dtype=numpy.float64))
    weights = (numpy.array(weights, dtype=numpy.float64) / total).tolist()
    ends = [0]
    for w in weights:
        ends.append(ends[-1] + w)
    bounds = []
    for begin, end in zip(ends[:-1], ends[1:]):
        if end <= begin:
            bounds.append(None)
        else:
            bounds.append((int(round(begin * float(count))), int(round(end * float(count)))))
    return bounds


def build_indices(sizes, documents, sequence_length, num_samples, seed):
    sizes = numpy.array(sizes, dtype=numpy.int32)
    documents = numpy.array(documents, dtype=numpy.int32)
    tokens_per_epoch = int(numpy.sum(sizes[documents]))
    epochs, tokens = 1, tokens_per_epoch
    while num_samples is not None and tokens < num_samples * sequence_length + 1:
        epochs += 1
        tokens += tokens_per_epoch
    separate = False
    if epochs > 1:
        sans_final = ((epochs - 1) * tokens_per_epoch - 1) // sequence_length
        from_final = num_samples - sans_final
        per_epoch = (tokens_per_epoch - 1) // sequence_length
        separate = from_final < int(0.80 * per_epoch)
    state = numpy.random.RandomState(seed)

    def document_index(n_epochs):
        index = numpy.tile(documents, n_epochs).astype(numpy.int32)
        state.shuffle(index)
        return index

    if separate:
        doc_index = numpy.concatenate((document_index(epochs - 1), document_index(1)))
    else:
        doc_index = document_index(epochs)

    # Sample i starts at sample_index[i] = (position in doc_index, offset in that document) and
    # spans sequence_length + 1 tokens, overlapping the next sample by one.
    count = (epochs * tokens_per_epoch - 1) // sequence_length
    sample_index = [(0, 0)]
    position, offset = 0, 0
    while len(sample_index) <= count:
        remaining = sequence_length + 1
        while remaining != 0:
            length = int(sizes[doc_index[position]]) - offset
            remaining -= length
            if remaining <= 0:
                offset += remaining + length - 1
                remaining = 0
            else:
                if position == len(doc_index) - 1:
                    offset = int(sizes[doc_index[position]]) - 1
                    break
                position += 1
                offset = 0
        sample_index.append((position, offset))

    def shuffle_range(begin, end):
        values = numpy.arange(begin, end, dtype=numpy.uint32)
        state.shuffle(values)
        return values

    total = len(sample_index) - 1
    if separate:
        sans_final = ((epochs - 1) * tokens_per_epoch - 1) // sequence_length
        shuffle_index = numpy.concatenate((shuffle_range(0, sans_final), shuffle_range(sans_final, total)))
    else:
        shuffle_index = shuffle_range(0, total)
    return doc_index, sample_index, shuffle_index, epochs, separate


def token(document, position, dataset=0):
    return (dataset * 30000 + document * 100 + position) % 60000


def normalize(weights):
    """megatron/core/datasets/utils.py normalize: numpy's float64 sum, then a division."""
    w = numpy.array(weights, dtype=numpy.float64)
    return (w / numpy.sum(w)).tolist()


def blending_indices(weights, size):
    drawn = [0] * len(weights)
    dataset_index, dataset_sample_index = [], []
    for i in range(size):
        at = max(float(i), 1.0)
        errors = [w * at - drawn[d] for d, w in enumerate(weights)]
        best = 0
        for d in range(1, len(weights)):
            if errors[d] > errors[best]:
                best = d
        dataset_index.append(best)
        dataset_sample_index.append(drawn[best])
        drawn[best] += 1
    return dataset_index, dataset_sample_index


def sample(i, sizes, doc_index, sample_index, shuffle_index, sequence_length, dataset=0):
    j = int(shuffle_index[i])
    (begin, begin_offset), (end, end_offset) = sample_index[j], sample_index[j + 1]
    out = []
    for p in range(begin, end + 1):
        d = int(doc_index[p])
        start = begin_offset if p == begin else 0
        stop = end_offset + 1 if p == end else int(sizes[d])
        out += [token(d, q, dataset) for q in range(start, stop)]
    assert len(out) == sequence_length + 1
    return out


def main():
    rng = numpy.random.RandomState(7)
    cases = []
    for name, n_docs, split, sequence_length, num_samples, seed in [
        ("one epoch", 30, "1", 16, 20, 1234),
        ("final epoch separated", 25, "1", 8, 130, 1234),
        ("final epoch shuffled with the rest", 25, "1", 8, 250, 42),
        ("split 80,15,5 train", 40, "80,15,5", 12, 300, 7),
        ("split 969,30,1 train", 200, "969,30,1", 32, 500, 1234),
    ]:
        sizes = rng.randint(1, 60, size=n_docs).tolist()
        begin, end = split_bounds(split, n_docs)[0]
        doc_index, sample_index, shuffle_index, epochs, separate = build_indices(
            sizes, list(range(begin, end)), sequence_length, num_samples, seed)
        cases.append({
            "name": name, "sizes": sizes, "split": split, "sequence_length": sequence_length,
            "num_samples": num_samples, "seed": seed, "train_documents": [begin, end],
            "epochs": epochs, "separate_final_epoch": separate,
            "document_index": doc_index.tolist(),
            "sample_index": [list(map(int, s)) for s in sample_index],
            "shuffle_index": shuffle_index.tolist(),
            "first_samples": [sample(i, sizes, doc_index, sample_index, shuffle_index, sequence_length)
                              for i in range(min(6, len(shuffle_index)))],
        })
    blends = []
    for name, raw_weights, n_docs, split, sequence_length, size, seed in [
        ("30/70 blend of two", [30.0, 70.0], [20, 35], "1", 8, 150, 1234),
        ("three-way blend with a split", [0.5, 0.2, 0.3], [30, 12, 50], "90,8,2", 16, 400, 99),
        ("0.79/0.15: normalised twice, samples 282 and 283 swap", [0.79, 0.15], [40, 10], "1", 8, 400, 1234),
        ("nine datasets: numpy's pairwise sum, not a running sum", [0.36, 0.31, 0.26, 0.1, 0.15, 0.1, 0.34, 0.25, 0.01],
         [10] * 9, "1", 8, 300, 5),
        ("one weighted prefix: built with the surplus, a third epoch", [1.0], [25], "1", 8, 198, 1234),
        ("unweighted: one epoch each, blended by size", None, [20, 35, 8], "1", 8, 60, 1234),
    ]:
        if raw_weights is None:
            # No weights: each dataset is one epoch (num_samples None), blended by its sample count.
            target, build = None, [None] * len(n_docs)
        else:
            weights = normalize(raw_weights)
            target = [int(math.ceil(size * w)) for w in weights]
            build = [int(math.ceil(t * 1.005)) for t in target]
        datasets = []
        for k, count in enumerate(n_docs):
            sizes = rng.randint(1, 60, size=count).tolist()
            begin, end = split_bounds(split, count)[0]
            doc_index, sample_index, shuffle_index, _, _ = build_indices(
                sizes, list(range(begin, end)), sequence_length, build[k], seed)
            datasets.append((sizes, doc_index, sample_index, shuffle_index))
        if raw_weights is None:
            weights = normalize([len(d[3]) for d in datasets])
            blend_size = min(size, sum(len(d[3]) for d in datasets))
        else:
            blend_size = sum(target)
        dataset_index, dataset_sample_index = blending_indices(normalize(weights), blend_size)
        samples = []
        for i in range(8):
            k, j = dataset_index[i], dataset_sample_index[i]
            sizes, doc_index, sample_index, shuffle_index = datasets[k]
            samples.append(sample(j, sizes, doc_index, sample_index, shuffle_index, sequence_length, k))
        blends.append({
            "name": name, "weights": None if raw_weights is None else [w.hex() for w in raw_weights],
            "normalized_weights": [w.hex() for w in weights],
            "split": split,
            "sequence_length": sequence_length, "size": size, "seed": seed,
            "dataset_sizes": [d[0] for d in datasets], "target": target, "build": build,
            "dataset_index": dataset_index, "dataset_sample_index": dataset_sample_index, "first_samples": samples,
        })
    # numpy.random.default_rng: SeedSequence words, raw PCG64 outputs, bounded 32-bit integers, and
    # Megatron's mock data (MockGPTLowLevelDataset: default_rng(0) lengths in [1, 4096), document i
    # is (arange(length - 1) + 1) % vocab then the end of document) through GPTDataset's indices.
    lengths = numpy.random.default_rng(0).integers(1, 4096, size=100000, dtype=numpy.int32)
    mock_vocab, mock_sequence_length, mock_samples, mock_seed = 50304, 256, 1000, 1234
    mock_begin, mock_end = split_bounds("969,30,1", 100000)[0]
    mock_sizes = lengths.tolist()
    m_doc, m_sample, m_shuffle, m_epochs, _ = build_indices(
        mock_sizes, list(range(mock_begin, mock_end)), mock_sequence_length, mock_samples, mock_seed)

    def mock_token(document, position):
        return mock_vocab - 1 if position == mock_sizes[document] - 1 else (position + 1) % mock_vocab

    def mock_sample(i):
        j = int(m_shuffle[i])
        (begin, begin_offset), (end, end_offset) = m_sample[j], m_sample[j + 1]
        out = []
        for p in range(begin, end + 1):
            d = int(m_doc[p])
            stop = end_offset + 1 if p == end else mock_sizes[d]
            out += [mock_token(d, q) for q in range(begin_offset if p == begin else 0, stop)]
        return out

    default_rng = {
        "seed_sequence_words": {str(seed): numpy.random.SeedSequence(seed).generate_state(8).tolist()
                                for seed in [0, 1234, 2**40 + 5]},
        "pcg64_seed_0_first_3": [str(int(x)) for x in numpy.random.default_rng(0).bit_generator.random_raw(3)],
        "mock_lengths_head": lengths[:10].tolist(), "mock_lengths_tail": lengths[-3:].tolist(),
        "mock_lengths_sum": int(lengths.astype(numpy.int64).sum()),
        "mock": {"vocab_size": mock_vocab, "sequence_length": mock_sequence_length, "num_samples": mock_samples,
                 "seed": mock_seed, "train_documents": [mock_begin, mock_end], "epochs": m_epochs,
                 "count": len(m_shuffle), "first_samples": [mock_sample(i) for i in range(3)]},
    }
    state = numpy.random.RandomState(1234)
    raw = numpy.frombuffer(state.bytes(4 * 1000), dtype="<u4").tolist()
    shuffles = []
    for n, seed in [(2, 0), (10, 1234), (1000, 5), (70000, 99)]:
        values = numpy.arange(n, dtype=numpy.int64)
        numpy.random.RandomState(seed).shuffle(values)
        shuffles.append({"n": n, "seed": seed, "head": values[:50].tolist(), "sum_of_squares_weighted": int(
            sum(int(v) * (i % 97) for i, v in enumerate(values.tolist())))})
    split_cases = [{"split": s, "count": c, "bounds": split_bounds(s, c)}
                   for s, c in [("969,30,1", 1000), ("969,30,1", 12345), ("99,1,0", 500), ("1", 7),
                                ("80,15,5", 40), ("2,1,1", 10), ("98,2", 333)]]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_dataset_indices.json")
    with open(out, "w") as f:
        json.dump({"numpy": numpy.__version__, "mt19937_seed_1234_first_1000": raw, "shuffles": shuffles,
                   "splits": split_cases, "cases": cases,
                   "blends": blends, "default_rng": default_rng}, f, separators=(",", ":"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
