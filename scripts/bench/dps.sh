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
      "‖y − A(x̂0)‖ through single-coil MRI (4×) + its gradient through the network; the bare "
      "pass = UNet forward + backward to the input. Goal: overhead ≤ 10 %.\n")
print("| size | batch | UNet fwd+bwd (ms) | DPS step (ms) | overhead |")
print("|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['size']}² | {r['batch']} | {r['unet_fwd_bwd_ms']:.1f} | {r['dps_step_ms']:.1f} | {r['overhead_pct']:.1f} % |")
PY
