#!/usr/bin/env python3
"""PyTorch eager reference for `megatron-bench bert`: transformers' BertForPreTraining (post-norm
BERT with the next-sentence head) trained on the CPU on the same batch as ours (the same linear
congruential ids, two segments, every 7th token from the second masked), no dropout, AdamW with
clipping at 1.0; prints one `RESULT {json}` line with the median step time and tokens/s.

    python3 scripts/torch_bert_bench.py --config base --batch 2 --steps 3   (needs torch, transformers)
"""
import argparse

import torch
import transformers

from torch_train_steps import time_training

CONFIGS = {"tiny": (2, 256, 4, 128), "small": (4, 512, 8, 128), "base": (12, 768, 12, 512)}
VOCABULARY, PADDED = 30522, 30592


def batch(count, s):
    state = 1

    def next_id(bound):
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) % bound

    ids, labels = [], []
    for _ in range(count):
        masked = [p > 0 and p % 7 == 1 for p in range(s)]
        text = [5 + next_id(VOCABULARY - 5) for _ in range(s)]
        ids.append(text)
        labels.append([t % 1000 + 1000 if m else -100 for m, t in zip(masked, text)])
    types = [[0 if p < s // 2 else 1 for p in range(s)] for _ in range(count)]
    return (torch.tensor(ids), torch.tensor(types), torch.tensor(labels), torch.tensor([b % 2 for b in range(count)]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="base", choices=CONFIGS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers, hidden, heads, s = CONFIGS[args.config]
    config = transformers.BertConfig(vocab_size=PADDED, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                     intermediate_size=4 * hidden, max_position_embeddings=s, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, hidden_act="gelu")
    model = transformers.BertForPreTraining(config).train()
    ids, types, labels, order = batch(args.batch, s)
    time_training(model, lambda: model(input_ids=ids, token_type_ids=types, labels=labels, next_sentence_label=order).loss,
                  args.warmup, args.steps, args.batch * s, config=args.config, batch=args.batch)


if __name__ == "__main__":
    main()
