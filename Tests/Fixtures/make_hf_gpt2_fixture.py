#!/usr/bin/env python3
"""Writes hf_gpt2_tiny/: a small randomly initialised Hugging Face GPT-2 (GPT2LMHeadModel) as
save_pretrained stores it (config.json, model.safetensors), plus expected.safetensors: two
sequences of token ids and the logits the Hugging Face model computes for them (eval mode, fp32),
and its greedy continuation (generate) of the prompt 5 17 99 by six tokens.
The Swift tests import the model and compare logits; run by hand (needs torch and transformers):

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch transformers
    /tmp/torch-venv/bin/python Tests/Fixtures/make_hf_gpt2_fixture.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_gpt2_tiny")
torch.manual_seed(0)
# A vocabulary that is not a multiple of 128, so the import pads it; biases and norms made non-trivial
# so that a weight imported into the wrong place shows in the logits.
config = GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                    attn_pdrop=0.0)
model = GPT2LMHeadModel(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith(".bias") or "ln_" in name:
            p.add_(0.1 * torch.randn_like(p))
model.save_pretrained(here, safe_serialization=True)
os.remove(os.path.join(here, "generation_config.json"))  # not needed: only config.json and the weights are read
ids = torch.tensor([[5, 17, 99, 0, 42, 42, 7, 63, 1, 88, 23, 54, 3, 71, 9, 30],
                    [98, 2, 2, 2, 11, 76, 45, 60, 19, 4, 37, 81, 66, 12, 50, 0]])
with torch.no_grad():
    logits = model(ids).logits
    # Greedy generation: `megatron generate` must continue the prompt with the same tokens.
    greedy = model.generate(torch.tensor([[5, 17, 99]]), max_new_tokens=6, do_sample=False, pad_token_id=0)
save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.contiguous(),
           "greedy": greedy.to(torch.int32).contiguous()},
          os.path.join(here, "expected.safetensors"))
print("wrote", here, sorted(os.listdir(here)))
