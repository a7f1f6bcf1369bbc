#!/usr/bin/env bash
# Trains (or resumes) the two shipped priors with the exact commands their model
# cards record. Resumable: rerun to continue from models/*/checkpoint-*; each run
# stops at --steps (pass STEPS=N to stop earlier, e.g. to finish a stretch and write
# the card and EMA weights). Deterministic for the seed at --threads 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/dps-recon}
steps=${STEPS:-12000}
which=${1:-both}
scripts/install-system-deps.sh --data   # Colin27 (mricron-data) for the brain prior

if [ "$which" = both ] || [ "$which" = brain ]; then
    "$bin" --device cpu --threads 1 train \
        --data nifti:/usr/share/mricron/templates/ch2.nii.gz --exclude-z 80-110 \
        --out models/brain-t1-128 --name brain-t1-128 \
        --description "T1-weighted head MRI prior (Colin27 axial slices, 128x128)" \
        --steps "$steps" --batch-size 8 --lr 2e-4 --ema 0.999 --seed 0 \
        --checkpoint-every 100 --log-every 50
fi
if [ "$which" = both ] || [ "$which" = ct ]; then
    # Two stretches: standard phantoms up to step 4200, then the family with
    # scalp-free heads (bone against air, see docs/priors.md). A resumed run skips
    # the first stretch once the checkpoint is past it.
    ct_step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' \
        models/ct-phantom-128/checkpoint.json 2>/dev/null || echo 0)
    if [ "$ct_step" -lt 4200 ]; then
        "$bin" --device cpu --threads 1 train \
            --data phantoms:ct \
            --out models/ct-phantom-128 --name ct-phantom-128 \
            --description "CT prior in HU (random-ellipse head/thorax/abdomen phantoms, 128x128)" \
            --steps "$(( steps < 4200 ? steps : 4200 ))" --batch-size 8 --lr 2e-4 --ema 0.999 \
            --seed 0 --checkpoint-every 100 --log-every 50
    fi
    if [ "$steps" -gt 4200 ]; then
        "$bin" --device cpu --threads 1 train \
            --data phantoms:ct-bare-skull \
            --out models/ct-phantom-128 --name ct-phantom-128 \
            --description "CT prior in HU (random-ellipse head/thorax/abdomen phantoms, half of the heads with bare skull, 128x128)" \
            --steps "$steps" --batch-size 8 --lr 2e-4 --ema 0.999 --seed 0 \
            --checkpoint-every 100 --log-every 50
    fi
fi
