#!/usr/bin/env bash
# `make demo`: reconstructs the two bundled sample cases (sample_data/) on the CPU
# with the fast presets, writes DICOM series, scores DPS against the baselines on the
# ground truth, and says where everything went.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/dps-recon}
out=out/demo
mkdir -p "$out"

# case | fast preset | prior card | baselines to score instead of the preset's (empty: its own)
cases=(
    "mri-brain-4x|mri-cartesian-4x-fast|models/brain-t1-128/brain-t1-128.json|zero-filled,cg-sense,tv"
    "ct-shepp-logan-sparse|ct-sparse-view-fast|models/ct-phantom-128/ct-phantom-128.json|"
)
skipped=0
ran=0
for entry in "${cases[@]}"; do
    IFS='|' read -r case preset card baselines <<<"$entry"
    if [ ! -f "$card" ]; then
        echo "skipping DPS on $case: prior $card is not trained yet (see docs/priors.md)"
        skipped=1
        continue
    fi
    echo "== $case: dps-recon run --pipeline $preset"
    # --force: out/demo is the demo's own; a rerun after the preset changed (an
    # update) replaces the series instead of refusing them as another recipe's.
    "$bin" --device cpu -q run --force --pipeline "$preset" "sample_data/$case/raw" -o "$out/series"
    echo "== $case: dps-recon validate --pipeline $preset (the same recipe, scored on the truth)"
    "$bin" --device cpu -q validate --case "sample_data/$case" --pipeline "$preset" \
        ${baselines:+--baselines "$baselines"} -o "$out/$case"
    ran=1
done
if [ "$skipped" = 1 ]; then
    echo "== classical baselines on a Shepp–Logan phantom (CT FBP vs TV, MRI zero-filled vs CG-SENSE)"
    cargo run --quiet --release --example demo -- "$out/baselines"
fi
if [ "$ran" = 1 ]; then
    echo
    echo "DICOM series: $out/series/<study>/<series>/ (dps/, baselines, manifest.json)"
    echo "reports and montages: $out/<case>/report.md and $out/<case>/montage.png"
fi
