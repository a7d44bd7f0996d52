#!/usr/bin/env bash
# BERT or T5 training-step throughput of swift-megatron against PyTorch eager (transformers'
# BertForPreTraining / T5ForConditionalGeneration), back to back on this machine:
#   scripts/bench_encoder_models_vs_pytorch.sh bert [tiny|small|base] [micro-batch] [steps]
#   scripts/bench_encoder_models_vs_pytorch.sh t5 [tiny|small] [micro-batch] [steps]
# Needs torch and transformers (set PYTHON; default /tmp/torch-venv/bin/python). PyTorch runs with
# glibc's default allocator and with the tuning that stops it returning freed memory to the OS; its
# better run is the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-bert}; config=${2:-}; batch=${3:-2}; steps=${4:-3}
case "$model" in
    bert) config=${config:-base} ;;
    t5) config=${config:-small} ;;
    *) echo "model $model: expected bert or t5" >&2; exit 1 ;;
esac
python=${PYTHON:-/tmp/torch-venv/bin/python}
[ -x "$python" ] || { echo "no PyTorch python at $python (set PYTHON)" >&2; exit 1; }
swift build -c release --product megatron-bench >/dev/null
logs=$(mktemp -d)
.build/release/megatron-bench "$model" --config "$config" --micro-batch-size "$batch" --steps "$steps" --threads 2 >"$logs/ours" 2>/dev/null
OMP_NUM_THREADS=2 "$python" "scripts/torch_${model}_bench.py" --config "$config" --batch "$batch" --steps "$steps" >"$logs/default" 2>/dev/null
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 OMP_NUM_THREADS=2 \
    "$python" "scripts/torch_${model}_bench.py" --config "$config" --batch "$batch" --steps "$steps" >"$logs/tuned" 2>/dev/null
grep -v '^RESULT' "$logs/ours"
for run in default tuned; do echo "PyTorch ($run malloc): $(sed -n 's/^RESULT //p' "$logs/$run")"; done
"$python" - "$logs" <<'PY'
import json, sys
read = lambda name: json.loads(next(l for l in open(f"{sys.argv[1]}/{name}") if l.startswith("RESULT "))[7:])
ours, best = read("ours")["tokens_per_s"], max(read("default")["tokens_per_s"], read("tuned")["tokens_per_s"])
print(f"swift-megatron {ours:.1f} tokens/s; PyTorch's best {best:.1f} → ratio {ours / best:.2f}×")
PY
rm -rf "$logs"
