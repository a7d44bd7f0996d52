#!/usr/bin/env python3
"""PyTorch eager reference for `megatron-bench t5`: transformers' T5ForConditionalGeneration (relative
positions, RMSNorm, gated SiLU MLP, no biases) trained on the CPU on the same batch as ours (the
same linear congruential ids, encoder 512 and decoder 128 tokens, every decoder token in the loss),
no dropout, AdamW with clipping at 1.0; prints one `RESULT {json}` line with the median step time
and tokens/s (encoder + decoder).

    python3 scripts/torch_t5_bench.py --config small --batch 2 --steps 3   (needs torch, transformers)
"""
import argparse

import torch
import transformers

from torch_train_steps import time_training

CONFIGS = {"tiny": (2, 256, 4, 1024), "small": (6, 512, 8, 2048)}
ENCODER, DECODER, VOCABULARY = 512, 128, 32128


def batch(count):
    state = 1

    def next_id():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return 5 + (state >> 33) % (VOCABULARY - 5)

    enc, dec, labels = [], [], []
    for _ in range(count):
        enc.append([next_id() for _ in range(ENCODER)])
        dec.append([next_id() for _ in range(DECODER)])
        labels.append([next_id() for _ in range(DECODER)])
    return torch.tensor(enc), torch.tensor(dec), torch.tensor(labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="small", choices=CONFIGS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers, hidden, heads, ffn = CONFIGS[args.config]
    config = transformers.T5Config(vocab_size=VOCABULARY, d_model=hidden, d_kv=64, d_ff=ffn, num_layers=layers, num_decoder_layers=layers,
                                   num_heads=heads, dropout_rate=0.0, feed_forward_proj="gated-silu", tie_word_embeddings=False)
    model = transformers.T5ForConditionalGeneration(config).train()
    enc, dec, labels = batch(args.batch)
    time_training(model, lambda: model(input_ids=enc, decoder_input_ids=dec, labels=labels).loss,
                  args.warmup, args.steps, args.batch * (ENCODER + DECODER), config=args.config, batch=args.batch)


if __name__ == "__main__":
    main()
