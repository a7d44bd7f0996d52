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

command -v swift >/dev/null || {
    echo "setup: no swift on PATH; install the Swift 6 toolchain (swift.org) and add its usr/bin to PATH" >&2
    exit 1
}
