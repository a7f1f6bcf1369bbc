#!/usr/bin/env bash
# Benchmark section: operator forward/adjoint times, and our parallel-beam Radon
# against scikit-image's radon (forward) on the same cases, in the same run.
set -euo pipefail
ours=$(cargo run --quiet --release -p dps-operators --example bench_operators)
python3 - "$ours" <<'PY'
import json, sys, time
import numpy as np
from skimage.transform import radon

rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]

def median_ms(f, runs):
    f()
    t = []
    for _ in range(runs):
        s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1e3)
    return sorted(t)[runs // 2]

sk = {}
for size, views in [(128, 30), (256, 180), (512, 180)]:
    img = np.random.default_rng(0).random((size, size))
    theta = np.arange(views) * 180.0 / views
    sk[f"ct_parallel_{size}_{views}views"] = median_ms(lambda: radon(img, theta, circle=True), 5)

print("## Operators (forward and adjoint)\n")
print("Command: `cargo run --release -p dps-operators --example bench_operators` (CPU, "
      "median of 11-21 alternating forward/adjoint runs after a first forward call, timed "
      "on its own) and scikit-image `radon(circle=True)` on the same sizes "
      "(median of 5 runs), same machine, same run. The CT projector's first call builds its "
      "sparse matrix, which every later call without gradient tracking multiplies by; the "
      "`_sampled` rows time the ray sampling it runs when a gradient is tracked, or when the "
      "matrix would exceed 2²⁷ entries (2 GiB; the 512² case has about 105 M, and its "
      "sampled adjoint takes seconds, so it has no `_sampled` row).\n")
print("| case | first forward (ms) | forward (ms) | adjoint (ms) | scikit-image radon (ms) | radon speed-up vs scikit-image |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    s = sk.get(r["case"])
    extra = f"{s:.1f} | {s / r['forward_ms']:.1f}x" if s else "– | –"
    print(f"| {r['case']} | {r['first_forward_ms']:.1f} | {r['forward_ms']:.1f} | {r['adjoint_ms']:.1f} | {extra} |")
PY
