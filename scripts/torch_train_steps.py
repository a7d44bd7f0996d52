"""The timed training loop shared by scripts/torch_bert_bench.py and scripts/torch_t5_bench.py."""
import json
import resource
import statistics
import sys
import time

import torch
import transformers


def time_training(model, loss_of_step, warmup, steps, tokens_per_step, **result):
    """`warmup` untimed and `steps` timed AdamW steps (lr 1e-4, weight decay 0.01, clipping at 1.0)
    of `model` on the loss `loss_of_step()` gives, each step's time and loss on standard error; prints
    one `RESULT {json}` line: `result`, the median step time, tokens/s and peak RSS."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of_step()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds = time.perf_counter() - start
        print(f"  step {step} {'warm' if step < warmup else 'meas'} {seconds * 1e3:.1f} ms loss {loss.item():.4f}", file=sys.stderr)
        if step >= warmup:
            times.append(seconds)
    median = statistics.median(times)
    print("RESULT " + json.dumps(dict(result, tokens_per_s=round(tokens_per_step / median, 1), step_ms_median=round(median * 1e3, 1),
                                      peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                                      torch=torch.__version__, transformers=transformers.__version__)))
