#!/usr/bin/env bash
# Benchmark section: time per training step, f32 against mixed bf16.
set -euo pipefail
rows=$(cargo run --quiet --release --example bench_train)
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
print("## Training step\n")
print("Command: `cargo run --release --example bench_train` (CPU, the shipped-prior UNet "
      "`UNetConfig::small`, 128², batch 8, CT phantoms: one step of `dps-recon train` = batch "
      "draw, forward, backward, Adam and EMA; median over 3 alternating runs of 6 steps per "
      "precision, each run's first step left out). `bf16` is `train --precision bf16`: forward "
      "and backward on a bf16 copy of the weights, master weights, Adam and EMA in f32. bf16 is "
      "fast only on CPUs with AVX512-BF16 or AMX (this one: "
      + ("yes" if "avx512_bf16" in open("/proc/cpuinfo").read() else "no") + ").\n")
print("| precision | size | batch | threads | steps timed | step (ms) | speed-up over f32 |")
print("|---|---:|---:|---:|---:|---:|---:|")
f32 = next(r["step_ms"] for r in rows if r["precision"] == "f32")
for r in rows:
    print(f"| {r['precision']} | {r['size']}² | {r['batch']} | {r['threads']} | {r['steps_timed']} | "
          f"{r['step_ms']:.0f} | {f32 / r['step_ms']:.2f}× |")
PY
