#!/usr/bin/env bash
# Benchmark section: memory per image of a guided DPS step through built-in UNets,
# measured, against the lower bound that `run` and `validate` check before
# sampling (src/memory.rs, `EpsModel::guided_step_bytes`).
set -euo pipefail
cargo build --quiet --release --example activation_memory
ex=target/release/examples/activation_memory
rows=""
# base channels, channel mults, residual blocks, attention levels, size, precision
for net in "16 1,2,4,4 2 3 128 f32" "16 1,2,4,4 2 3 128 bf16" "16 1,2,4,4 2 3 256 f32" \
    "16 1,2,4,4 2 3 512 f32" \
    "32 1,2,2 1 2 128 f32" "16 1,2 3 1 128 f32" "8 1,1,2,2,4 2 - 128 f32"; do
    read -r base mults res attn size precision <<<"$net"
    for batch in 1 5; do
        rows+=$("$ex" "$base" "$mults" "$res" "$attn" "$size" "$batch" "$precision")$'\n'
    done
done
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
print("## Sampling memory per image\n")
print("Command: `scripts/bench/sampling_memory.sh`, which runs `cargo run --release --example "
      "activation_memory -- BASE MULTS RES ATTN SIZE BATCH PRECISION` (one thread, random "
      "weights, three guided DPS steps) at batch 1 and 5: the measured memory per image is the "
      "growth of the peak resident memory (VmHWM) over the four extra images. Before sampling, "
      "`run` and `validate` refuse a batch whose estimate (slices × samples × parts × the "
      "estimate per image) exceeds the memory available, and `train` a training batch, "
      "instead of being killed by the kernel mid-run; the estimate is the activation values the network keeps for the "
      "gradient (`UNetConfig::saved_values_per_pixel`) at their element size, meant as a "
      "lower bound: measured ÷ estimate must stay ≥ 1.\n")
print("| network (base, mults, blocks, attention) | size | precision | saved values per pixel | "
      "measured (MiB per image) | estimate (MiB per image) | measured ÷ estimate |")
print("|---|---:|---|---:|---:|---:|---:|")
for a, b in zip(rows[::2], rows[1::2]):
    per = (b["peak_mib"] - a["peak_mib"]) / (b["batch"] - a["batch"])
    net = f"{a['base']}, [{a['mults']}], {a['res']}, [{a['attn'].replace('-', '')}]"
    print(f"| {net} | {a['size']}² | {a['precision']} | {a['saved_values_per_pixel']:.0f} | "
          f"{per:.1f} | {a['estimate_mib_per_image']:.1f} | {per / a['estimate_mib_per_image']:.2f} |")
PY
