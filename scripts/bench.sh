#!/usr/bin/env bash
# `make bench`: runs every benchmark section in scripts/bench/*.sh and writes
# docs/BENCHMARKS.md with the machine and the date. Sections print Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/BENCHMARKS.md
mkdir -p docs
tmp=$(mktemp)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`make bench\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM;"
    echo "libtorch $(python3 -c 'import torch; print(torch.__version__)') (CPU), $(rustc --version)."
    echo "Timings on a shared machine vary by ±20 %; compare ratios within one run."
    echo
    for section in scripts/bench/*.sh; do
        bash "$section"
        echo
    done
} > "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
