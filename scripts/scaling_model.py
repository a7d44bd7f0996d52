#!/usr/bin/env python3
"""The scaling model of docs/scaling-model.md: step time and memory per device of a GPT training
layout (tensor × pipeline × data parallel, 1F1B or interleaved, full recomputation, Megatron's
mixed precision) from a device's compute rate and its links' bandwidths.

    scripts/scaling_model.py                   # Megatron's published layouts on A100s
    scripts/scaling_model.py --gemm-tflops 280 # another bound for the A100's GEMM rate
    scripts/scaling_model.py --this-machine GEMM_GFLOPS TP_GBPS PP_GBPS
                                               # our 1B runs on this machine, from rates measured here

Standard library only. The formulas and their sources are in docs/scaling-model.md.
"""
import argparse


def model_flops(batch, seq, layers, h, vocab):
    """Megatron's FLOPs of one iteration with full recomputation (Narayanan et al. 2021, eq. 3):
    every GEMM three times (forward, two gradients) plus the recomputed forward, 2 FLOPs per
    multiply-add, the attention scores and context whole."""
    return 96 * batch * seq * layers * h * h * (1 + seq / (6 * h) + vocab / (16 * layers * h))


def params(layers, h, vocab, seq):
    """Weights of a GPT with ffn 4h, biases, LayerNorms, learned positions, tied embeddings."""
    return layers * (12 * h * h + 13 * h) + vocab * h + seq * h + 2 * h


def ring_allreduce_seconds(nbytes, ranks, bandwidth):
    """A ring all-reduce: each rank sends and receives 2(n − 1)/n of the buffer."""
    return 0 if ranks == 1 else 2 * (ranks - 1) / ranks * nbytes / bandwidth


def predict(layers, h, heads, vocab, seq, batch, micro, tp, pp, dp, chunks, rate, tp_bw, pp_bw, dp_bw,
            bytes_per_value=2, distributed_optimizer=False, sequence_parallel=False):
    """Seconds of one iteration and its parts, and GB of memory on the first pipeline stage."""
    devices = tp * pp * dp
    m = batch // (micro * dp)                         # micro-batches per pipeline per iteration
    flops = model_flops(batch, seq, layers, h, vocab)
    compute = flops / devices / rate
    bubble = compute * (pp - 1) / (chunks * m)
    # Tensor parallelism: per layer and micro-batch, 2 all-reduces (or reduce-scatter + all-gather
    # pairs, the same bytes) in the forward, 2 in the backward, 2 in the recomputed forward, of
    # the [s·b, h] activations, on the critical path.
    activation = seq * micro * h * bytes_per_value
    tp_comm = 6 * (layers // pp) * m * ring_allreduce_seconds(activation, tp, tp_bw)
    # Pipeline parallelism: each micro-batch's activations forward and gradients back across each
    # stage boundary, split over the tensor-parallel ranks (Megatron's scatter-gather) and each
    # waited for by the next stage: 2·m transfers per stage, v times under interleaving.
    pp_comm = 0 if pp == 1 else 2 * m * chunks * activation / tp / pp_bw
    # Data parallelism: the gradients of a device's share (fp32 buffers) all-reduced once per
    # iteration, not overlapped with the backward (as in the 2021 runs).
    local = params(layers, h, vocab, seq) / (tp * pp)
    dp_comm = ring_allreduce_seconds(local * 4, dp, dp_bw)
    step = compute + bubble + tp_comm + pp_comm + dp_comm
    # Memory: 16-bit weights (2), fp32 gradients (4), fp32 main weights and two Adam moments (12,
    # sharded over dp by the distributed optimizer); full recomputation keeps each layer's input for
    # every micro-batch in flight (1F1B's first stage: pp of them, each holding a pp-th of the
    # layers; interleaving adds (pp − 1)/(pp·v): its warm-up of 2(pp − 1) + (v − 1)·pp chunk
    # forwards of L/(pp·v) layers each), and one layer's activations while recomputing it
    # (Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) bytes at 16 bits, split by tensor parallelism).
    state = local * (2 + 4 + (12 / dp if distributed_optimizer else 12))
    kept = 2 * layers * seq * micro * h / (tp if sequence_parallel else 1) * (1 if chunks == 1 else 1 + (pp - 1) / (pp * chunks))
    working = seq * micro * h * (34 + 5 * heads * seq / h) / tp
    return dict(step=step, compute=compute, bubble=bubble, tp=tp_comm, pp=pp_comm, dp=dp_comm, m=m,
                tflops=flops / devices / step / 1e12, memory=(state + kept + working) / 1e9, state=state / 1e9,
                params=params(layers, h, vocab, seq))


# Megatron's published layouts: Narayanan et al. 2021 ("Efficient Large-Scale Language Model
# Training on GPU Clusters Using Megatron-LM", arXiv 2104.04473), Table 1 (sequence 2048,
# vocabulary 51,200, micro-batch 1, A100 80 GB; TFLOP/s per GPU counting the recomputed forward),
# and the GPT-3 175B layout of Megatron's examples/gpt3 (TP 8, PP 16) at the paper's 1024 GPUs and
# batch 1536 (its section 5.1 estimate of end-to-end training time).
CALIBRATION = ("1.7B", 24, 2304, 24, 1, 1, 32, 512, 137)
PUBLISHED = [
    # name, layers, hidden, heads, tp, pp, gpus, batch, published TFLOP/s per GPU
    ("GPT-3 175B", 96, 12288, 96, 8, 16, 1024, 1536, 140),
    ("145.6B", 80, 12288, 96, 8, 8, 1536, 2304, 148),
    ("529.6B", 105, 20480, 128, 8, 35, 2520, 2520, 163),
    ("1008.0B", 128, 25600, 160, 8, 64, 3072, 3072, 163),
]


def published_run(row, gemm, nvlink, ib, chunks, **kwargs):
    name, layers, h, heads, tp, pp, gpus, batch, _ = row
    chunks = chunks if pp > 1 and (layers // pp) % chunks == 0 else 1
    return predict(layers, h, heads, 51200, 2048, batch, 1, tp, pp, gpus // (tp * pp), chunks, gemm, nvlink, ib, ib, **kwargs), chunks


def calibrated_rate(nvlink, ib):
    """The per-GPU rate of the GEMMs and everything else a layer runs, in model FLOP/s, that makes
    the model reproduce the published 1.7B row (no model parallelism: only its data-parallel
    all-reduce is communication)."""
    row = CALIBRATION
    probe = 1e15  # the row's communication does not depend on the rate
    r, _ = published_run(row, probe, nvlink, ib, 1)
    per_gpu = model_flops(row[7], 2048, row[1], row[2], 51200) / row[6]
    return per_gpu / (per_gpu / (row[8] * 1e12) - (r["step"] - r["compute"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gemm-tflops", type=float, default=250.0,
                        help="dense bf16 GEMM rate of an A100 at these shapes, for the bound (default 250: 80 %% of its 312 peak)")
    parser.add_argument("--nvlink-gbps", type=float, default=240.0,
                        help="all-reduce bus bandwidth within a node (default 240 GB/s of NVLink 3's 300 per direction)")
    parser.add_argument("--ib-gbps", type=float, default=22.0,
                        help="per-GPU bandwidth between nodes (default 22 GB/s of HDR InfiniBand's 25)")
    parser.add_argument("--chunks", type=int, default=2, help="model chunks per pipeline stage (interleaving) where the layers allow")
    parser.add_argument("--this-machine", nargs=3, type=float, metavar=("GEMM_GFLOPS", "TP_GBPS", "PP_GBPS"),
                        help="predict our 1B runs here instead: measured per-rank GEMM GFLOP/s and link GB/s")
    a = parser.parse_args()
    if a.this_machine:
        gemm, tp_bw, pp_bw = a.this_machine[0] * 1e9, a.this_machine[1] * 1e9, a.this_machine[2] * 1e9
        print("| run | predicted step | compute | bubble | TP comm | PP comm | parameters, gradients, Adam GB/rank |")
        print("|---|---|---|---|---|---|---|")
        for name, tp, pp in [("1.01B TP=2", 2, 1), ("1.01B PP=2", 1, 2)]:
            r = predict(18, 2048, 16, 50304, 1024, 2, 1, tp, pp, 1, 1, gemm, tp_bw, pp_bw, 1e12, bytes_per_value=4)
            print(f"| {name} | {r['step']:.1f} s | {r['compute']:.1f} s | {r['bubble']:.1f} s | {r['tp']:.2f} s | "
                  f"{r['pp']:.3f} s | {params(18, 2048, 50304, 1024) * 16 / (tp * pp) / 1e9:.1f} |")
        return
    nvlink, ib = a.nvlink_gbps * 1e9, a.ib_gbps * 1e9
    calibrated = calibrated_rate(nvlink, ib)
    print(f"calibrated on the published {CALIBRATION[0]} row ({CALIBRATION[8]} TFLOP/s/GPU, DP={CALIBRATION[6]}): "
          f"{calibrated / 1e12:.0f} TFLOP/s per GPU of compute; bound: GEMMs at {a.gemm_tflops:.0f} TFLOP/s\n")
    print("| model | TP × PP × DP, v | micro-batches | step: bound / calibrated | calibrated step: compute + bubble + TP + PP + DP (s) "
          "| TFLOP/s/GPU: bound / calibrated / published | memory GB/GPU: as published / distributed optimizer + SP |")
    print("|---|---|---|---|---|---|---|")
    for row in PUBLISHED:
        name, layers, h, heads, tp, pp, gpus, batch, published = row
        bound, chunks = published_run(row, a.gemm_tflops * 1e12, nvlink, ib, a.chunks)
        r, _ = published_run(row, calibrated, nvlink, ib, a.chunks)
        sharded, _ = published_run(row, calibrated, nvlink, ib, a.chunks, distributed_optimizer=True, sequence_parallel=True)
        print(f"| {name} ({r['params'] / 1e9:.0f}B) | {tp} × {pp} × {gpus // (tp * pp)}, v={chunks} | {r['m']} | "
              f"{bound['step']:.1f} / {r['step']:.1f} s | {r['compute']:.1f} + {r['bubble']:.1f} + {r['tp']:.1f} + {r['pp']:.1f} + "
              f"{r['dp']:.1f} | {bound['tflops']:.0f} / {r['tflops']:.0f} / {published} | {r['memory']:.0f} / {sharded['memory']:.0f} |")


if __name__ == "__main__":
    main()
