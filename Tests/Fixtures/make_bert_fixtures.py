#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for swift-megatron's BERT parity tests.

Run by hand (needs torch and transformers; CI reads only the committed .safetensors files):

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch transformers
    /tmp/torch-venv/bin/python Tests/Fixtures/make_bert_fixtures.py

Two small models with random weights, in float64, built by transformers itself:
  - bert_post_ln: `BertForPreTraining`, the original (post-norm) BERT. In Megatron's terms that is
    --apply-residual-connection-post-layernorm: each norm moves one place down (the embeddings'
    LayerNorm is layer 0's input_layernorm, a layer's attention-output LayerNorm its
    pre_mlp_layernorm, its output LayerNorm the next layer's input_layernorm or, after the last
    layer, the encoder's final_layernorm).
  - bert_pre_ln: `MegatronBertForPreTraining`, Megatron's own (pre-norm) BERT, names one to one.
Both use exact (erf) GELU, as Megatron's MLP does under --no-bias-gelu-fusion and its LM head always.

Each file records, under Megatron-core's BertModel names (the fused QKV in Megatron's
[heads, (q, k, v), d] layout):
  - the weights;
  - one micro-batch of 3 padded sequences (tokens, token types, padding mask, masked-LM labels and
    loss mask, sentence-order label) with the lm loss, the sop loss and every parameter's gradient
    of their sum (pretrain_bert.py's loss);
  - 10 training iterations, 2 micro-batches of 2 each: AdamW (no decay on 1-D parameters),
    clipping at 1.0, Megatron's warm-up + cosine schedule in samples, and the loss of each;
  - "holes.": a micro-batch whose padding mask also hides keys inside the sequences (as
    Megatron's dataset marks a masked token replaced by [PAD]), its losses and gradients.
The configuration is JSON in the file's metadata.
"""
import copy
import json
import os

import torch
import transformers

from make_gpt_fixtures import TRAIN, train_adamw, write_safetensors

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = dict(num_layers=2, hidden_size=16, num_attention_heads=4, ffn_hidden_size=24, vocab_size=50, padded_vocab_size=64,
              max_position_embeddings=16, seq_length=10, norm_epsilon=1e-12, bias_gelu_fusion=False,
              bert_binary_head=True)
VARIANTS = {"post_ln": True, "pre_ln": False}


def hf_model(post_ln, seed):
    c = CONFIG
    kwargs = dict(vocab_size=c["padded_vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_layers"],
                  num_attention_heads=c["num_attention_heads"], intermediate_size=c["ffn_hidden_size"], hidden_act="gelu",
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=c["max_position_embeddings"],
                  type_vocab_size=2, layer_norm_eps=c["norm_epsilon"], attn_implementation="eager")
    if post_ln:
        model = transformers.BertForPreTraining(transformers.BertConfig(**kwargs))
    else:
        model = transformers.MegatronBertForPreTraining(transformers.MegatronBertConfig(**kwargs))
    model = model.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            is_norm_weight = n.endswith(("LayerNorm.weight", "ln.weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if is_norm_weight else 0.0))
    return model, g


def megatron_tensors(model, post_ln, grads=False):
    """The model's parameters (or their gradients) under Megatron-core BertModel names."""
    c = CONFIG
    all_tensors = {n: (p.grad if grads else p).detach() for n, p in model.named_parameters()}
    used = set()

    def take(name):
        used.add(name)
        return all_tensors[name]
    heads, d, L = c["num_attention_heads"], c["hidden_size"] // c["num_attention_heads"], c["num_layers"]
    out = {}

    def qkv(prefix, suffix):
        q, k, v = (take(f"{prefix}.attention.self.{x}.{suffix}") for x in ("query", "key", "value"))
        parts = [t.reshape(heads, d, *t.shape[1:]) for t in (q, k, v)]
        return torch.stack(parts, dim=1).reshape(3 * heads * d, *q.shape[1:])

    def norm(dst, src):
        out[dst + ".weight"], out[dst + ".bias"] = take(src + ".weight"), take(src + ".bias")

    out["embedding.word_embeddings.weight"] = take("bert.embeddings.word_embeddings.weight")
    out["embedding.position_embeddings.weight"] = take("bert.embeddings.position_embeddings.weight")
    out["embedding.tokentype_embeddings.weight"] = take("bert.embeddings.token_type_embeddings.weight")
    for i in range(L):
        h, m = f"bert.encoder.layer.{i}", f"encoder.layers.{i}"
        if post_ln:
            norm(f"{m}.input_layernorm", "bert.embeddings.LayerNorm" if i == 0 else f"bert.encoder.layer.{i - 1}.output.LayerNorm")
            norm(f"{m}.pre_mlp_layernorm", f"{h}.attention.output.LayerNorm")
        else:
            norm(f"{m}.input_layernorm", f"{h}.attention.ln")
            norm(f"{m}.pre_mlp_layernorm", f"{h}.ln")
        out[f"{m}.self_attention.linear_qkv.weight"] = qkv(h, "weight")
        out[f"{m}.self_attention.linear_qkv.bias"] = qkv(h, "bias")
        for dst, src in (("self_attention.linear_proj", "attention.output.dense"), ("mlp.linear_fc1", "intermediate.dense"),
                         ("mlp.linear_fc2", "output.dense")):
            out[f"{m}.{dst}.weight"], out[f"{m}.{dst}.bias"] = take(f"{h}.{src}.weight"), take(f"{h}.{src}.bias")
    norm("encoder.final_layernorm", f"bert.encoder.layer.{L - 1}.output.LayerNorm" if post_ln else "bert.encoder.ln")
    out["pooler.dense.weight"], out["pooler.dense.bias"] = take("bert.pooler.dense.weight"), take("bert.pooler.dense.bias")
    out["lm_head.dense.weight"] = take("cls.predictions.transform.dense.weight")
    out["lm_head.dense.bias"] = take("cls.predictions.transform.dense.bias")
    norm("lm_head.layer_norm", "cls.predictions.transform.LayerNorm")
    out["output_layer.bias"] = take("cls.predictions.bias")
    out["binary_head.weight"], out["binary_head.bias"] = take("cls.seq_relationship.weight"), take("cls.seq_relationship.bias")
    assert used == set(all_tensors), f"unmapped: {set(all_tensors) - used}"
    return out


def random_batch(g, n):
    """n random samples padded at the end as Megatron's BertDataset pads them. Id 0 is the padding
    ([PAD]) and only there: transformers' BERT embeddings give it no gradient (padding_idx), which
    Megatron's do not special-case."""
    c, s = CONFIG, CONFIG["seq_length"]
    tokens = torch.randint(1, c["vocab_size"], (n, s), generator=g)
    lengths = torch.randint(s // 2, s + 1, (n,), generator=g)
    padding = (torch.arange(s)[None, :] < lengths[:, None]).long()
    split = torch.stack([torch.randint(1, int(l), (1,), generator=g)[0] for l in lengths])
    types = ((torch.arange(s)[None, :] >= split[:, None]) & (padding == 1)).long()
    masked = (torch.rand(n, s, generator=g) < 0.3) & (padding == 1)
    masked[:, 1] = True
    labels = torch.where(masked, torch.randint(0, c["vocab_size"], (n, s), generator=g), torch.full((n, s), -1))
    is_random = torch.randint(0, 2, (n,), generator=g)
    tokens = tokens * padding
    return dict(tokens=tokens, types=types, padding_mask=padding, labels=labels, loss_mask=masked.long(), is_random=is_random)


def losses(model, batch):
    """pretrain_bert.py's loss: lm (masked mean) + sop (mean over samples)."""
    out = model(input_ids=batch["tokens"], token_type_ids=batch["types"], attention_mask=batch["padding_mask"])
    logits, sop_logits = out.prediction_logits, out.seq_relationship_logits
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].clamp(min=0).reshape(-1),
                                           reduction="none")
    mask = batch["loss_mask"].reshape(-1).double()
    lm = (ce * mask).sum() / mask.sum()
    sop = torch.nn.functional.cross_entropy(sop_logits, batch["is_random"])
    return lm, sop


def make(name, post_ln, seed):
    model, g = hf_model(post_ln, seed)
    untrained = copy.deepcopy(model)
    tensors = {n: t.float() for n, t in megatron_tensors(model, post_ln).items()}
    step = random_batch(g, 3)
    lm, sop = losses(model, step)
    (lm + sop).backward()
    tensors.update({"grad." + n: t.float() for n, t in megatron_tensors(model, post_ln, grads=True).items()})
    tensors.update({"step." + k: v.to(torch.int32) for k, v in step.items()})
    tensors["step.lm_loss"] = lm.detach().reshape(1).float()
    tensors["step.sop_loss"] = sop.detach().reshape(1).float()

    train = random_batch(g, TRAIN["train_iters"] * TRAIN["global_batch_size"])
    history = train_adamw(list(model.parameters()), lambda rows: sum(losses(model, {k: v[rows] for k, v in train.items()})))
    tensors.update({"train." + k: v.to(torch.int32) for k, v in train.items()})
    tensors["train.losses"] = torch.tensor(history).float()

    # Padding inside sequences (Megatron's dataset marks a masked token replaced by [PAD] as
    # padding): keys hidden by the attention mask, the tokens themselves still counted.
    holes = random_batch(g, 3)
    holes["padding_mask"][:, 3] = 0
    holes["padding_mask"][0, 2] = 0
    holes["loss_mask"][:, 3] = 1
    holes["labels"][:, 3] = 7
    lm, sop = losses(untrained, holes)
    (lm + sop).backward()
    tensors.update({"holes.grad." + n: t.float() for n, t in megatron_tensors(untrained, post_ln, grads=True).items()})
    tensors.update({"holes." + k: v.to(torch.int32) for k, v in holes.items()})
    tensors["holes.lm_loss"] = lm.detach().reshape(1).float()
    tensors["holes.sop_loss"] = sop.detach().reshape(1).float()
    config = dict(CONFIG, apply_residual_connection_post_layernorm=post_ln)
    metadata = {"config": json.dumps(config, sort_keys=True), "train": json.dumps(TRAIN)}
    write_safetensors(os.path.join(HERE, f"bert_{name}.safetensors"), tensors, metadata)
    print(f"bert_{name}: lm {tensors['step.lm_loss'].item():.6f} sop {tensors['step.sop_loss'].item():.6f}, "
          f"10-step losses {[round(x, 4) for x in history]}")


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for seed, (name, post_ln) in enumerate(VARIANTS.items()):
        make(name, post_ln, 100 + seed)
