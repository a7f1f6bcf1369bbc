#!/usr/bin/env bash
# Benchmark section: DPS time per step against a bare UNet forward+backward.
set -euo pipefail
rows=$(cargo run --quiet --release --example bench_dps)
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
print("## DPS sampler overhead\n")
print("Command: `cargo run --release --example bench_dps` (CPU, the shipped-prior UNet "
      "`UNetConfig::small`, median of 9 alternating pairs). A DPS step = ε̂ + Tweedie + ancestral update + "
      "the data term through the case's operator + its gradient through the network; the bare "
      "pass = UNet forward + backward to the input. Cases: `mri-4x` single-coil MRI, 4× random "
      "lines; `ct-30` parallel beam, 30 views, ramp guidance; `ct-180-counts` 180 views, "
      "transmission counts (I0 = 1e4), guidance `ramp:0.02` (the sparse-view and low-dose "
      "presets' operators at 128²). Goal: overhead ≤ 10 %. Each case runs with the network "
      "in f32 and in bf16 (`--precision bf16`: the same weights cast, the sampler in f32); "
      "the last column is the f32 step's time over this row's. bf16 is fast only on CPUs with "
      "AVX512-BF16 or AMX (this one: " + ("yes" if "avx512_bf16" in open("/proc/cpuinfo").read() else "no") + ").\n")
print("| case | precision | size | batch | UNet fwd+bwd (ms) | DPS step (ms) | overhead | speed-up over f32 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
f32 = {(r["case"], r["batch"]): r["dps_step_ms"] for r in rows if r["precision"] == "f32"}
for r in rows:
    speedup = f32[(r["case"], r["batch"])] / r["dps_step_ms"]
    print(f"| {r['case']} | {r['precision']} | {r['size']}² | {r['batch']} | {r['unet_fwd_bwd_ms']:.1f} | "
          f"{r['dps_step_ms']:.1f} | {r['overhead_pct']:.1f} % | {speedup:.2f}× |")
PY
