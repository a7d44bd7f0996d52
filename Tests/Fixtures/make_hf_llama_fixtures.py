#!/usr/bin/env python3
"""Writes three small randomly initialised Hugging Face decoders of the Llama family as save_pretrained stores
them (config.json and safetensors weights), each with an expected.safetensors beside it:
  hf_llama_tiny/    LlamaForCausalLM: grouped-query attention (4 heads, 2 KV heads), an FFN size that is not the
                    default SwiGLU size, rope_theta 500000, untied output layer, weights sharded over several
                    model-0000K-of-0000N.safetensors files with a model.safetensors.index.json;
  hf_mistral_tiny/  MistralForCausalLM: one KV head (multi-query), sliding_window null, untied, one file;
  hf_qwen2_tiny/    Qwen2ForCausalLM: biases on the q/k/v projections, tied embeddings, one file;
  hf_llama31_tiny/  LlamaForCausalLM with Llama 3.1's rotary scaling (rope type llama3), tied, one file.
expected.safetensors holds two sequences of token ids (input_ids, int32 [2,16]), the logits the Hugging Face model
computes for them (logits, float32 [2,16,100]; eval mode, fp32, eager attention), and its greedy continuation
(generate) of the prompt 5 17 99 by six tokens (greedy, int32 [1,9]).
The Swift tests import the models and compare logits; run by hand (needs torch and transformers):

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch transformers
    /tmp/torch-venv/bin/python Tests/Fixtures/make_hf_llama_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

fixtures = os.path.dirname(os.path.abspath(__file__))
ids = torch.tensor([[5, 17, 99, 0, 42, 42, 7, 63, 1, 88, 23, 54, 3, 71, 9, 30],
                    [98, 2, 2, 2, 11, 76, 45, 60, 19, 4, 37, 81, 66, 12, 50, 0]])


def write(name, model_class, config, qk_scale=1.0, **save_options):
    here = os.path.join(fixtures, name)
    config._attn_implementation = "eager"
    model = model_class(config).float().eval()
    with torch.no_grad():
        # Norm weights start at one and biases at zero: make them non-trivial so that a weight imported into the
        # wrong place shows in the logits.
        for pname, p in model.named_parameters():
            if pname.endswith(".bias") or pname.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
            # Larger queries and keys make attention (so the logits) sensitive to small changes of rotary angles.
            if pname.endswith("q_proj.weight") or pname.endswith("k_proj.weight"):
                p.mul_(qk_scale)
    model.save_pretrained(here, safe_serialization=True, **save_options)
    os.remove(os.path.join(here, "generation_config.json"))  # not needed: only config.json and the weights are read
    with torch.no_grad():
        logits = model(ids).logits
        # Greedy generation: `megatron generate` must continue the prompt with the same tokens.
        greedy = model.generate(torch.tensor([[5, 17, 99]]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.float().contiguous(),
               "greedy": greedy.to(torch.int32).contiguous()},
              os.path.join(here, "expected.safetensors"))
    print("wrote", here, sorted(os.listdir(here)))


torch.manual_seed(0)
# A vocabulary that is not a multiple of 128, so the import pads it.
write("hf_llama_tiny", LlamaForCausalLM,
      LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, rope_theta=500000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
      max_shard_size="50KB")  # small shards, so that the import must read the index
write("hf_mistral_tiny", MistralForCausalLM,
      MistralConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, max_position_embeddings=32, rope_theta=10000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, sliding_window=None))
write("hf_qwen2_tiny", Qwen2ForCausalLM,
      Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, use_sliding_window=False))
# Llama 3.1's scaled rotary frequencies (rope type "llama3" with its bands: low/high frequency factors 1 and 4 over
# an original context of 8192): with head_dim 8 and theta 500000, one frequency is unscaled, one blended, one slowed.
write("hf_llama31_tiny", LlamaForCausalLM,
      LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
      qk_scale=40.0)
