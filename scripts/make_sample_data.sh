#!/usr/bin/env bash
# Makes sample_data/ with `dps-recon simulate` (see sample_data/README.md):
#   mri-brain-4x            3 held-out Colin27 slices, 8-coil k-space, 4x random lines
#   ct-shepp-logan-sparse   Shepp-Logan in HU, 30 parallel-beam views
# Usage: scripts/make_sample_data.sh [BINARY]   (default target/release/dps-recon)
# Colin27 is the ch2 template of Debian's mricron-data package (installed when
# missing); COLIN27=PATH overrides.
# UIDs and dates are new on every run; the data are the same for the same build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/dps-recon}
[[ -n ${COLIN27:-} ]] || scripts/install-system-deps.sh --data
colin=${COLIN27:-/usr/share/mricron/templates/ch2.nii.gz}
out=sample_data

if [[ ! -x $bin ]]; then
    echo "no binary at $bin: run 'make build' first" >&2
    exit 1
fi
if [[ ! -f $colin ]]; then
    echo "Colin27 not found at $colin: apt-get install mricron-data, or set COLIN27" >&2
    exit 1
fi

rm -rf "$out/mri-brain-4x" "$out/ct-shepp-logan-sparse"

# Held-out slices z = 85, 95, 105: the brain prior never trains on z in 80-110.
"$bin" simulate --source "nifti:$colin:85,95,105" --modality mr --size 128 \
    --coils 8 --mask random --acceleration 4 --acs 0.08 --noise-sigma 0.005 \
    --body-part HEAD \
    --seed 0 -o "$out/mri-brain-4x"

"$bin" simulate --source shepp-logan-hu --size 128 --fov-mm 256 \
    --geometry parallel --views 30 --arc 180 --noise-sigma 0.01 \
    --seed 0 -o "$out/ct-shepp-logan-sparse"

du -sh "$out/mri-brain-4x" "$out/ct-shepp-logan-sparse"
