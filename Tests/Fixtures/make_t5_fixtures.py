#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for swift-megatron's T5 parity tests.

Run by hand (needs torch and transformers; CI reads only the committed .safetensors files):

    /tmp/torch-venv/bin/python Tests/Fixtures/make_t5_fixtures.py

transformers' T5ForConditionalGeneration, small, random weights, float64, is Megatron's T5Model with
--position-embedding-type relative, --normalization RMSNorm, --disable-bias-linear, --swiglu
(feed_forward_proj "gated-silu": SiLU(wi_0·x) ⊙ wi_1·x) and tied embeddings, once two differences
are folded into the weights: T5 does not scale its attention scores by 1/√d, which Megatron does
(so Megatron's query weights are transformers' times √d), and the original T5 scales the decoder's
output by d_model^-½ before the tied output layer (folded into the decoder's final norm weight).
Megatron's output layer has a bias, zero here, whose gradient the fixture computes too. Gradients
convert by the same factors (∂L/∂(c·W) = ∂L/∂W / c).

Variants:
  - t5_relative: d_kv 4 and the scaled decoder output: one step's loss and every gradient.
  - t5_unscaled: d_kv 1 and no output scaling (transformers' tie_word_embeddings=False, T5 v1.1),
    so the parameters are transformers' own and 10 AdamW iterations compare too (Adam's updates are
    not invariant to rescaling a parameter).

Each file holds the weights under Megatron-core T5Model names, one micro-batch of 3 samples
(encoder tokens padded at the end with their mask, decoder input, labels, loss mask), its loss and
gradients ("grad." + name), and for t5_unscaled 10 iterations' samples and losses ("train.") and
transformers' greedy generation of 5 tokens for 3 prompts from the untrained weights ("generate.").
"""
import copy
import json
import math
import os

import torch
import transformers

from make_gpt_fixtures import TRAIN, train_adamw, write_safetensors

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
BASE = dict(vocab_size=64, d_model=16, num_heads=4, d_ff=24, num_layers=2, num_decoder_layers=2, relative_attention_num_buckets=8,
            relative_attention_max_distance=20, encoder_seq_length=10, decoder_seq_length=6)
VARIANTS = {"t5_relative": dict(d_kv=4, scale_decoder_outputs=True), "t5_unscaled": dict(d_kv=1, scale_decoder_outputs=False)}


def hf_model(v, seed):
    c = BASE
    config = transformers.T5Config(vocab_size=c["vocab_size"], d_model=c["d_model"], d_kv=v["d_kv"], d_ff=c["d_ff"],
                                   num_layers=c["num_layers"], num_decoder_layers=c["num_decoder_layers"], num_heads=c["num_heads"],
                                   relative_attention_num_buckets=c["relative_attention_num_buckets"],
                                   relative_attention_max_distance=c["relative_attention_max_distance"], dropout_rate=0.0,
                                   layer_norm_epsilon=1e-6, feed_forward_proj="gated-silu", decoder_start_token_id=0,
                                   tie_word_embeddings=v["scale_decoder_outputs"], attn_implementation="eager")
    model = transformers.T5ForConditionalGeneration(config).double()
    assert model.config.scale_decoder_outputs == v["scale_decoder_outputs"]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            # Rounded to float32, the precision the fixture stores them in.
            p.copy_((torch.randn(p.shape, generator=g) * 0.25 + (1.0 if n.endswith("layer_norm.weight") else 0.0)).float().double())
    return model, g


def megatron_tensors(model, v, bias, grads=False):
    """The model's parameters (or their gradients) under Megatron-core T5Model names."""
    c, d, heads = BASE, v["d_kv"], BASE["num_heads"]
    t = {n: (p.grad if grads else p).detach() for n, p in model.named_parameters()}
    q_factor = math.sqrt(d) if not grads else 1 / math.sqrt(d)
    norm_factor = c["d_model"] ** -0.5 if v["scale_decoder_outputs"] else 1.0
    if grads:
        norm_factor = 1 / norm_factor
    out = {"embedding.word_embeddings.weight": t["shared.weight"],
           "encoder_relative_pos_emb.relative_attention_bias.weight": t["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
           "decoder_relative_pos_emb.relative_attention_bias.weight": t["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]}

    def per_head(*ws):
        return torch.stack([w.reshape(heads, d, -1) for w in ws], dim=1).reshape(len(ws) * heads * d, -1)

    def mlp(dst, src):
        out[dst + "mlp.linear_fc1.weight"] = torch.cat([t[src + "DenseReluDense.wi_0.weight"], t[src + "DenseReluDense.wi_1.weight"]])
        out[dst + "mlp.linear_fc2.weight"] = t[src + "DenseReluDense.wo.weight"]

    for side, layers in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
        for i in range(layers):
            dst, src = f"{side}.layers.{i}.", f"{side}.block.{i}.layer."
            a = src + "0.SelfAttention."
            out[dst + "input_layernorm.weight"] = t[src + "0.layer_norm.weight"]
            out[dst + "self_attention.linear_qkv.weight"] = per_head(t[a + "q.weight"] * q_factor, t[a + "k.weight"], t[a + "v.weight"])
            out[dst + "self_attention.linear_proj.weight"] = t[a + "o.weight"]
            if side == "decoder":
                x = src + "1.EncDecAttention."
                out[dst + "pre_cross_attn_layernorm.weight"] = t[src + "1.layer_norm.weight"]
                out[dst + "cross_attention.linear_q.weight"] = t[x + "q.weight"] * q_factor
                out[dst + "cross_attention.linear_kv.weight"] = per_head(t[x + "k.weight"], t[x + "v.weight"])
                out[dst + "cross_attention.linear_proj.weight"] = t[x + "o.weight"]
            last = "2." if side == "decoder" else "1."
            out[dst + "pre_mlp_layernorm.weight"] = t[src + last + "layer_norm.weight"]
            mlp(dst, src + last)
        out[f"{side}.final_layernorm.weight"] = t[f"{side}.final_layer_norm.weight"] * (norm_factor if side == "decoder" else 1.0)
    out["lm_head.output_layer.bias"] = (bias.grad if grads else bias).detach()
    return out


def random_batch(g, n):
    """n samples: encoder tokens padded at the end (mask 1 then 0), decoder input and labels with
    the last decoder positions of some samples left out of the loss."""
    c = BASE
    se, sd = c["encoder_seq_length"], c["decoder_seq_length"]
    enc = torch.randint(1, c["vocab_size"], (n, se), generator=g)
    lengths = torch.randint(3, se + 1, (n,), generator=g)
    enc_mask = (torch.arange(se)[None, :] < lengths[:, None]).long()
    dec = torch.randint(1, c["vocab_size"], (n, sd), generator=g)
    labels = torch.randint(0, c["vocab_size"], (n, sd), generator=g)
    dec_lengths = torch.randint(2, sd + 1, (n,), generator=g)
    loss_mask = (torch.arange(sd)[None, :] < dec_lengths[:, None]).long()
    return dict(text_enc=enc * enc_mask, enc_mask=enc_mask, text_dec=dec, labels=labels, loss_mask=loss_mask)


def loss_of(model, bias, batch):
    """pretrain_t5.py's loss: the masked mean of the decoder tokens' cross-entropy."""
    logits = model(input_ids=batch["text_enc"], attention_mask=batch["enc_mask"], decoder_input_ids=batch["text_dec"]).logits + bias
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), reduction="none")
    mask = batch["loss_mask"].reshape(-1).double()
    return (ce * mask).sum() / mask.sum()


def make(name, v, seed):
    model, g = hf_model(v, seed)
    untrained = copy.deepcopy(model)
    bias = torch.zeros(BASE["vocab_size"], requires_grad=True)
    tensors = {n: x.float() for n, x in megatron_tensors(model, v, bias).items()}
    step = random_batch(g, 3)
    loss = loss_of(model, bias, step)
    loss.backward()
    tensors.update({"grad." + n: x.float() for n, x in megatron_tensors(model, v, bias, grads=True).items()})
    tensors.update({"step." + k: x.to(torch.int32) for k, x in step.items()})
    tensors["step.loss"] = loss.detach().reshape(1).float()
    metadata = {"config": json.dumps(dict(BASE, **v), sort_keys=True), "train": json.dumps(TRAIN)}
    history = []
    if not v["scale_decoder_outputs"]:
        model.zero_grad()
        bias.grad = None
        train = random_batch(g, TRAIN["train_iters"] * TRAIN["global_batch_size"])
        history = train_adamw(list(model.parameters()) + [bias], lambda rows: loss_of(model, bias, {k: x[rows] for k, x in train.items()}))
        tensors.update({"train." + k: x.to(torch.int32) for k, x in train.items()})
        tensors["train.losses"] = torch.tensor(history).float()
    if not v["scale_decoder_outputs"]:
        # transformers' greedy generation from the untrained weights (decoder start 0, end of text 1).
        prompts = random_batch(g, 3)
        with torch.no_grad():
            generated = untrained.generate(input_ids=prompts["text_enc"], attention_mask=prompts["enc_mask"], max_new_tokens=5,
                                           do_sample=False, num_beams=1)
        tensors["generate.text_enc"] = prompts["text_enc"].to(torch.int32)
        tensors["generate.enc_mask"] = prompts["enc_mask"].to(torch.int32)
        tensors["generate.output"] = generated.to(torch.int32)
    write_safetensors(os.path.join(HERE, f"{name}.safetensors"), tensors, metadata)
    print(f"{name}: loss {loss.item():.6f}, 10-step losses {[round(x, 4) for x in history]}")


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for seed, (name, v) in enumerate(VARIANTS.items()):
        make(name, v, 200 + seed)
