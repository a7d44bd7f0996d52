#!/usr/bin/env bash
# Training-step throughput of swift-megatron against PyTorch eager on this machine, back to back:
#   scripts/bench_vs_pytorch.sh [tiny|small|124m] [micro-batch] [steps]
# Needs PyTorch (python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch; or set
# PYTHON) and the reference script torch_gpt_bench.py (set TORCH_BENCH; by default it is looked for
# in ../shared/bench/ beside this checkout). PyTorch runs with glibc's default allocator and with
# the tuning that stops it returning freed memory to the OS; its better run is the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-124m}; batch=${2:-1}; steps=${3:-6}
python=${PYTHON:-/tmp/torch-venv/bin/python}
torch_bench=${TORCH_BENCH:-../shared/bench/torch_gpt_bench.py}
[ -x "$python" ] || { echo "no PyTorch python at $python (set PYTHON)" >&2; exit 1; }
[ -f "$torch_bench" ] || { echo "no torch_gpt_bench.py at $torch_bench (set TORCH_BENCH)" >&2; exit 1; }
swift build -c release --product megatron >/dev/null

logs=$(mktemp -d)
tokens() { sed -n 's/^RESULT //p' "$1" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'; }
.build/release/megatron bench gpt --config "$config" --micro-batch-size "$batch" --steps "$steps" --threads 2 \
    >"$logs/ours" 2>/dev/null
OMP_NUM_THREADS=2 "$python" "$torch_bench" train --config "$config" --batch "$batch" --steps "$steps" \
    >"$logs/torch_default" 2>/dev/null
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 OMP_NUM_THREADS=2 \
    "$python" "$torch_bench" train --config "$config" --batch "$batch" --steps "$steps" >"$logs/torch_tuned" 2>/dev/null
grep -v '^RESULT' "$logs/ours"
for run in torch_default torch_tuned; do echo "PyTorch ($run): $(sed -n 's/^RESULT //p' "$logs/$run")"; done
ours=$(tokens "$logs/ours"); torch_default=$(tokens "$logs/torch_default"); torch_tuned=$(tokens "$logs/torch_tuned")
rm -rf "$logs"
"$python" - "$ours" "$torch_default" "$torch_tuned" <<'PY'
import sys
ours, default, tuned = map(float, sys.argv[1:])
best = max(default, tuned)
print(f"swift-megatron {ours:.1f} tokens/s; PyTorch {default:.1f} (default malloc), {tuned:.1f} (tuned) → ratio {ours / best:.2f}× PyTorch's best")
PY
