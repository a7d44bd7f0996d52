#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for swift-megatron's GPT parity tests.

Run by hand (needs torch; CI reads only the committed .safetensors files):

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch
    /tmp/torch-venv/bin/python Tests/Fixtures/make_gpt_fixtures.py

For each architecture variant this builds a small GPT the way Megatron-LM defines it (pre-norm,
fused QKV in Megatron's [groups, (heads/groups + 2) * head_dim] layout, rotate-half RoPE,
tanh-GELU (exact GELU when Megatron would not fuse it with a bias) or SwiGLU MLP, output layer tied to the word embedding unless untied), in float64, with
random weights, and records:
  - the weights, under Megatron-core parameter names;
  - the loss and every parameter's gradient for one micro-batch (one step);
  - the samples and losses of 10 training iterations: 2 micro-batches of 2 per iteration, AdamW
    (no decay on 1-D parameters), clipping at 1.0, Megatron's warm-up + cosine schedule in samples.
The file is safetensors, the configuration JSON in its metadata.
"""
import json
import math
import os
import struct

import torch

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))

BASE = dict(num_layers=2, hidden_size=16, num_attention_heads=4, num_query_groups=4, kv_channels=4,
            ffn_hidden_size=24, vocab_size=50, padded_vocab_size=64, max_position_embeddings=16, seq_length=8,
            position_embedding_type="learned_absolute", rotary_base=10000.0, rotary_percent=1.0,
            normalization="LayerNorm", norm_epsilon=1e-5, swiglu=False, add_bias_linear=True, add_qkv_bias=False,
            untie_embeddings_and_output_weights=False, bias_gelu_fusion=True)

VARIANTS = {
    "base": {},
    "rope": dict(position_embedding_type="rope", rotary_percent=0.5, rotary_base=500.0),
    "rmsnorm": dict(normalization="RMSNorm", norm_epsilon=1e-6),
    "swiglu": dict(swiglu=True),
    "gqa": dict(num_query_groups=2),
    "no_bias_qkv_bias": dict(add_bias_linear=False, add_qkv_bias=True),
    "untied": dict(untie_embeddings_and_output_weights=True),
    "kv_channels_ffn": dict(kv_channels=6, ffn_hidden_size=40),
    "no_bias_gelu_fusion": dict(bias_gelu_fusion=False),
}


def parameter_shapes(c):
    h, qkv = c["hidden_size"], (c["num_attention_heads"] + 2 * c["num_query_groups"]) * c["kv_channels"]
    att = c["num_attention_heads"] * c["kv_channels"]
    fc1 = 2 * c["ffn_hidden_size"] if c["swiglu"] else c["ffn_hidden_size"]
    norm_bias = c["normalization"] == "LayerNorm"
    shapes = {"embedding.word_embeddings.weight": [c["padded_vocab_size"], h]}
    if c["position_embedding_type"] == "learned_absolute":
        shapes["embedding.position_embeddings.weight"] = [c["max_position_embeddings"], h]
    for i in range(c["num_layers"]):
        p = f"decoder.layers.{i}."
        shapes[p + "input_layernorm.weight"] = [h]
        if norm_bias:
            shapes[p + "input_layernorm.bias"] = [h]
        shapes[p + "self_attention.linear_qkv.weight"] = [qkv, h]
        if c["add_bias_linear"] or c["add_qkv_bias"]:
            shapes[p + "self_attention.linear_qkv.bias"] = [qkv]
        shapes[p + "self_attention.linear_proj.weight"] = [h, att]
        if c["add_bias_linear"]:
            shapes[p + "self_attention.linear_proj.bias"] = [h]
        shapes[p + "pre_mlp_layernorm.weight"] = [h]
        if norm_bias:
            shapes[p + "pre_mlp_layernorm.bias"] = [h]
        shapes[p + "mlp.linear_fc1.weight"] = [fc1, h]
        if c["add_bias_linear"]:
            shapes[p + "mlp.linear_fc1.bias"] = [fc1]
        shapes[p + "mlp.linear_fc2.weight"] = [h, c["ffn_hidden_size"]]
        if c["add_bias_linear"]:
            shapes[p + "mlp.linear_fc2.bias"] = [h]
    shapes["decoder.final_layernorm.weight"] = [h]
    if norm_bias:
        shapes["decoder.final_layernorm.bias"] = [h]
    if c["untie_embeddings_and_output_weights"]:
        shapes["output_layer.weight"] = [c["padded_vocab_size"], h]
    return shapes


def norm(x, w, b, c):
    if c["normalization"] == "LayerNorm":
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, c["norm_epsilon"])
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["norm_epsilon"]) * w


def rope(x, positions, c):
    """Rotate-half RoPE on the first rotary_dim features of each head; x is [b, s, heads, d]."""
    d = c["kv_channels"]
    rot = int(d * c["rotary_percent"]) // 2 * 2
    inv_freq = 1.0 / (c["rotary_base"] ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))
    angles = torch.outer(positions.to(torch.float32), inv_freq).to(torch.float64)  # fp32 like Megatron
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    x1, x2, rest = x[..., : rot // 2], x[..., rot // 2: rot], x[..., rot:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


def forward(params, tokens, c):
    """Mean cross-entropy of next-token prediction; tokens is [b, s + 1]."""
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    b, s = inputs.shape
    np_, ng, d = c["num_attention_heads"], c["num_query_groups"], c["kv_channels"]
    positions = torch.arange(s)
    x = params["embedding.word_embeddings.weight"][inputs]
    if c["position_embedding_type"] == "learned_absolute":
        x = x + params["embedding.position_embeddings.weight"][positions][None]
    get = lambda name: params.get(name)
    for i in range(c["num_layers"]):
        p = f"decoder.layers.{i}."
        n1 = norm(x, get(p + "input_layernorm.weight"), get(p + "input_layernorm.bias"), c)
        qkv = torch.nn.functional.linear(n1, get(p + "self_attention.linear_qkv.weight"), get(p + "self_attention.linear_qkv.bias"))
        qkv = qkv.view(b, s, ng, (np_ // ng + 2) * d)
        q = qkv[..., : np_ // ng * d].reshape(b, s, np_, d)
        k = qkv[..., np_ // ng * d: (np_ // ng + 1) * d]
        v = qkv[..., (np_ // ng + 1) * d:]
        if c["position_embedding_type"] == "rope":
            q, k = rope(q, positions, c), rope(k, positions, c)
        k = k.repeat_interleave(np_ // ng, dim=2)
        v = v.repeat_interleave(np_ // ng, dim=2)
        att = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                               is_causal=True, scale=1 / math.sqrt(d))
        att = att.transpose(1, 2).reshape(b, s, np_ * d)
        x = x + torch.nn.functional.linear(att, get(p + "self_attention.linear_proj.weight"), get(p + "self_attention.linear_proj.bias"))
        n2 = norm(x, get(p + "pre_mlp_layernorm.weight"), get(p + "pre_mlp_layernorm.bias"), c)
        h = torch.nn.functional.linear(n2, get(p + "mlp.linear_fc1.weight"), get(p + "mlp.linear_fc1.bias"))
        if c["swiglu"]:
            h1, h2 = torch.chunk(h, 2, dim=-1)
            h = torch.nn.functional.silu(h1) * h2
        else:
            # Megatron's fused bias_gelu is the tanh form; without biases or with --no-bias-gelu-fusion
            # its MLP calls F.gelu, the exact erf form.
            fused = c["add_bias_linear"] and c["bias_gelu_fusion"]
            h = torch.nn.functional.gelu(h, approximate="tanh" if fused else "none")
        x = x + torch.nn.functional.linear(h, get(p + "mlp.linear_fc2.weight"), get(p + "mlp.linear_fc2.bias"))
    x = norm(x, get("decoder.final_layernorm.weight"), get("decoder.final_layernorm.bias"), c)
    out = params.get("output_layer.weight", params["embedding.word_embeddings.weight"])
    logits = x @ out.T
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def megatron_lr(num_samples, max_lr, min_lr, warmup, decay):
    if warmup > 0 and num_samples <= warmup:
        return max_lr * num_samples / warmup
    if num_samples > decay:
        return min_lr
    ratio = (num_samples - warmup) / (decay - warmup)
    return min_lr + 0.5 * (math.cos(math.pi * ratio) + 1.0) * (max_lr - min_lr)


# 10 iterations: global batch 4 = 2 micro-batches of 2, AdamW, clipping, Megatron's warm-up + cosine.
TRAIN = dict(micro_batch_size=2, global_batch_size=4, train_iters=10, lr=1e-2, min_lr=1e-3, lr_warmup_iters=2,
             lr_decay_style="cosine", weight_decay=0.01, clip_grad=1.0)


def train_adamw(params, loss_of):
    """TRAIN's iterations over the parameters `params`, `loss_of(rows)` the loss of the samples
    `rows` (a slice) of the training set; returns each iteration's loss."""
    micro, gbs, iters = TRAIN["micro_batch_size"], TRAIN["global_batch_size"], TRAIN["train_iters"]
    optimizer = torch.optim.AdamW([dict(params=[p for p in params if p.dim() > 1], weight_decay=TRAIN["weight_decay"]),
                                   dict(params=[p for p in params if p.dim() <= 1], weight_decay=0.0)],
                                  lr=0.0, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for it in range(iters):
        optimizer.zero_grad()
        total = 0.0
        for m in range(gbs // micro):
            l = loss_of(slice(it * gbs + m * micro, it * gbs + (m + 1) * micro)) / (gbs // micro)
            l.backward()
            total += l.item()
        losses.append(total)
        torch.nn.utils.clip_grad_norm_(params, TRAIN["clip_grad"])
        lr = megatron_lr(it * gbs, TRAIN["lr"], TRAIN["min_lr"], warmup=TRAIN["lr_warmup_iters"] * gbs, decay=iters * gbs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
    return losses


def make(name, overrides, seed):
    c = dict(BASE, **overrides)
    g = torch.Generator().manual_seed(seed)
    shapes = parameter_shapes(c)
    params = {n: (torch.randn(*shape, generator=g) * 0.3).requires_grad_() for n, shape in shapes.items()}
    vocab, s = c["vocab_size"], c["seq_length"]
    step_tokens = torch.randint(0, vocab, (2, s + 1), generator=g)
    loss = forward(params, step_tokens, c)
    loss.backward()
    tensors = {n: p.detach().float() for n, p in params.items()}
    tensors.update({"grad." + n: p.grad.detach().float() for n, p in params.items()})
    tensors["step.tokens"] = step_tokens.to(torch.int32)

    samples = torch.randint(0, vocab, (TRAIN["train_iters"] * TRAIN["global_batch_size"], s + 1), generator=g)
    losses = train_adamw(list(params.values()), lambda rows: forward(params, samples[rows], c))
    tensors["train.samples"] = samples.to(torch.int32)
    tensors["train.losses"] = torch.tensor(losses, dtype=torch.float64).float()
    tensors["step.loss"] = loss.detach().reshape(1).float()
    metadata = {"config": json.dumps(c, sort_keys=True), "train": json.dumps(TRAIN)}
    write_safetensors(os.path.join(HERE, f"gpt_{name}.safetensors"), tensors, metadata)
    print(f"gpt_{name}: loss {loss.item():.6f}, 10-step losses {[round(x, 4) for x in losses]}")


def write_safetensors(path, tensors, metadata):
    dtypes = {torch.float32: "F32", torch.int32: "I32"}
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        blob = t.numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, sort_keys=True).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


if __name__ == "__main__":
    for seed, (name, overrides) in enumerate(VARIANTS.items()):
        make(name, overrides, seed)
