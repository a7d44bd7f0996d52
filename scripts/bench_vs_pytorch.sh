#!/usr/bin/env bash
# Training-step throughput of swift-megatron against PyTorch eager on this machine, back to back:
#   scripts/bench_vs_pytorch.sh [tiny|small|124m] [micro-batch] [steps] [rounds]
# Needs PyTorch (python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch; or set
# PYTHON) and the reference script torch_gpt_bench.py (set TORCH_BENCH; by default it is looked for
# in ../shared/bench/ beside this checkout). PyTorch runs with glibc's default allocator and with
# the tuning that stops it returning freed memory to the OS; its better run is the baseline. With
# rounds > 1, ours and PyTorch tuned run again, alternately, and each round's ratio is printed with
# their median: this machine's speed drifts by tens of percent over minutes, and runs minutes apart
# should only be compared in pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-124m}; batch=${2:-1}; steps=${3:-6}; rounds=${4:-1}
python=${PYTHON:-/tmp/torch-venv/bin/python}
torch_bench=${TORCH_BENCH:-../shared/bench/torch_gpt_bench.py}
[ -x "$python" ] || { echo "no PyTorch python at $python (set PYTHON)" >&2; exit 1; }
[ -f "$torch_bench" ] || { echo "no torch_gpt_bench.py at $torch_bench (set TORCH_BENCH)" >&2; exit 1; }
swift build -c release --product megatron >/dev/null

logs=$(mktemp -d)
tokens() { sed -n 's/^RESULT //p' "$1" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'; }
ours() {
    .build/release/megatron-bench gpt --config "$config" --micro-batch-size "$batch" --steps "$steps" --threads 2 \
        >"$logs/$1" 2>/dev/null
}
torch_default() {
    OMP_NUM_THREADS=2 "$python" "$torch_bench" train --config "$config" --batch "$batch" --steps "$steps" \
        >"$logs/$1" 2>/dev/null
}
torch_tuned() {
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 OMP_NUM_THREADS=2 \
        "$python" "$torch_bench" train --config "$config" --batch "$batch" --steps "$steps" >"$logs/$1" 2>/dev/null
}
ours ours1; torch_default torch_default; torch_tuned torch_tuned1
grep -v '^RESULT' "$logs/ours1"
for run in torch_default torch_tuned1; do echo "PyTorch ($run): $(sed -n 's/^RESULT //p' "$logs/$run")"; done
pairs="$(tokens "$logs/ours1") $(tokens "$logs/torch_tuned1")"
for ((round = 2; round <= rounds; round++)); do
    ours "ours$round"; torch_tuned "torch_tuned$round"
    pairs="$pairs $(tokens "$logs/ours$round") $(tokens "$logs/torch_tuned$round")"
done
torch_default=$(tokens "$logs/torch_default")
rm -rf "$logs"
"$python" - "$torch_default" $pairs <<'PY'
import statistics, sys
default, rest = float(sys.argv[1]), list(map(float, sys.argv[2:]))
rounds = list(zip(rest[0::2], rest[1::2]))
ours, tuned = rounds[0]
print(f"swift-megatron {ours:.1f} tokens/s; PyTorch {default:.1f} (default malloc), {tuned:.1f} (tuned) "
      f"→ ratio {ours / max(default, tuned):.2f}× PyTorch's best")
if len(rounds) > 1:
    # Each round against PyTorch's best: its tuned run of that round, or the default-malloc run.
    ratios = [o / max(t, default) for o, t in rounds]
    for i, ((o, t), r) in enumerate(zip(rounds, ratios), 1):
        print(f"  round {i}: swift-megatron {o:.1f}, PyTorch tuned {t:.1f} → {r:.2f}×")
    print(f"median over {len(rounds)} rounds: {statistics.median(ratios):.2f}× PyTorch's best")
PY
