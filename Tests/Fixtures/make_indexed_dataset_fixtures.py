#!/usr/bin/env python3
"""Writes indexed_{uint16,int32}.{bin,idx}: small Megatron indexed datasets as
megatron/core/datasets/indexed_dataset.py's _IndexWriter and IndexedDatasetBuilder lay them out,
re-expressed here with NumPy: the .bin holds every sequence's tokens back to back; the .idx holds
b"MMIDIDX\\x00\\x00", version 1 (<Q), the dtype code (<B: 8 uint16, 4 int32), the sequence count
(<Q), the document-index count (<Q), then int32 sequence lengths, int64 byte offsets of each
sequence and int64 document indices (0, then the sequence count after each document). Run by hand
(needs NumPy); the Swift tests compare our writer's files with these byte for byte.
"""
import os
import struct

import numpy

DOCUMENTS = [  # each document: its sequences (a document may hold several, e.g. split sentences)
    [[15496, 995, 50256]],
    [],
    [[64, 275], [11, 50256]],
    [[318, 257, 1332, 13, 50256]],
]
DTYPES = {"uint16": (numpy.uint16, 8), "int32": (numpy.int32, 4)}


def write(prefix, dtype_name):
    dtype, code = DTYPES[dtype_name]
    lengths, document_indices = [], [0]
    with open(prefix + ".bin", "wb") as data:
        for document in DOCUMENTS:
            for sequence in document:
                data.write(numpy.array(sequence, dtype=dtype).tobytes(order="C"))
                lengths.append(len(sequence))
            document_indices.append(len(lengths))
    item = numpy.dtype(dtype).itemsize
    pointers = numpy.concatenate(([0], numpy.cumsum(numpy.array(lengths[:-1], dtype=numpy.int64) * item))).astype(numpy.int64)
    with open(prefix + ".idx", "wb") as index:
        index.write(b"MMIDIDX\x00\x00")
        index.write(struct.pack("<Q", 1))
        index.write(struct.pack("<B", code))
        index.write(struct.pack("<Q", len(lengths)))
        index.write(struct.pack("<Q", len(document_indices)))
        index.write(numpy.array(lengths, dtype=numpy.int32).tobytes(order="C"))
        index.write(pointers.tobytes(order="C"))
        index.write(numpy.array(document_indices, dtype=numpy.int64).tobytes(order="C"))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for name in DTYPES:
        write(os.path.join(here, f"indexed_{name}"), name)
        print(f"wrote {here}/indexed_{name}.bin/.idx")
