#!/usr/bin/env bash
# `make demo`: reconstructs the demo cases on the CPU and says where the output went.
# Until the DICOM pipeline lands this is the phantom/operator demo: a Shepp–Logan
# phantom, sparse-view CT (FBP vs TV) and 4x 8-coil MRI (zero-filled vs CG-SENSE).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/dps-recon}
out=out/demo
mkdir -p "$out"
"$bin" phantom --size 256 -o "$out/shepp_logan.png"
echo "phantom: $out/shepp_logan.png"
cargo run --quiet --release --example demo -- "$out"
