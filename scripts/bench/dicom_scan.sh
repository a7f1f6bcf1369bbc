#!/usr/bin/env bash
# DICOM header scan benchmark, in one run over the same files: files per second of
# dps-recon's header scan (`scan_folder`: recursive walk, header read up to Pixel
# Data, summary) in process (examples/dicom_scan.rs) and as `dps-recon inspect
# --json DIR` (the whole process), against pydicom's
# `dcmread(f, stop_before_pixels=True)`. Prints one Markdown section on stdout.
#
# Usage: scripts/bench/dicom_scan.sh [TARGET_DIR]   (default target/release; the
#        binary and the example are built with cargo when missing)
# Env:   N (files, default 2000), RUNS (best of, default 3), PYTHON (with pydicom,
#        default python3 on PATH; `make bench` puts .venv/bin first).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${1:-$root/target/release}
bin=$target/dps-recon
example=$target/examples/dicom_scan
python=${PYTHON:-python3}
n=${N:-2000}
runs=${RUNS:-3}

if [ ! -x "$bin" ] || [ ! -x "$example" ]; then
    (cd "$root" && cargo build --release --quiet --bin dps-recon --example dicom_scan >&2)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# N copies of pydicom's CT_small.dcm (a real CT header, 128×128 pixels) with new
# SOP/Series UIDs and instance numbers, 200 files per series folder.
"$python" - "$tmp/files" "$n" <<'EOF'
import os, sys
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

out, n = sys.argv[1], int(sys.argv[2])
ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
per_series = 200
for i in range(n):
    if i % per_series == 0:
        series = generate_uid()
        folder = os.path.join(out, f"series_{i // per_series:03d}")
        os.makedirs(folder)
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = i % per_series + 1
    ds.save_as(os.path.join(folder, f"img_{i % per_series:04d}.dcm"))
EOF
bytes_per_file=$(stat -c %s "$tmp/files/series_000/img_0000.dcm")
cat "$tmp"/files/*/* >/dev/null  # warm the page cache for both tools

now() { date +%s.%N; }

best_ours=""
for _ in $(seq "$runs"); do
    start=$(now)
    "$bin" inspect --json "$tmp/files" >"$tmp/ours.jsonl"
    end=$(now)
    t=$(echo "$end - $start" | bc -l)
    if [ -z "$best_ours" ] || [ "$(echo "$t < $best_ours" | bc -l)" = 1 ]; then best_ours=$t; fi
done
ours_files=$(grep -c '"status":"image"' "$tmp/ours.jsonl" || true)

start=$(now)
"$bin" inspect --json "$tmp/files/series_000/img_0000.dcm" >/dev/null
startup=$(echo "$(now) - $start" | bc -l)

read -r best_scan scan_files scan_errors < <("$example" "$tmp/files" "$runs")

read -r best_py py_files py_version < <("$python" - "$tmp/files" "$runs" <<'EOF'
import os, sys, time
import pydicom

root, runs = sys.argv[1], int(sys.argv[2])
best, count = None, 0
for _ in range(runs):
    start = time.perf_counter()
    count = 0
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
            count += 1
    t = time.perf_counter() - start
    best = t if best is None else min(best, t)
print(f"{best:.6f} {count} {pydicom.__version__}")
EOF
)

if [ "$ours_files" != "$n" ] || [ "$scan_files" != "$n" ] || [ "$scan_errors" != 0 ] \
    || [ "$py_files" != "$n" ]; then
    echo "error: inspect saw $ours_files images, scan_folder $scan_files files" \
        "($scan_errors errors), pydicom $py_files files; expected $n" >&2
    exit 1
fi

rate() { echo "scale=0; $1 / $2" | bc -l; }
ratio() { echo "scale=2; $best_py / $1" | bc -l; }

cat <<EOF
## DICOM header scan ($n files)

\`scripts/bench/dicom_scan.sh\`: $n copies of pydicom's \`CT_small.dcm\` (CT,
128×128, Explicit VR Little Endian, $bytes_per_file bytes) with new UIDs, in
$(( (n + 199) / 200 )) series folders; page cache warm; best of $runs runs each.
In process (start-up excluded): dps-recon's \`scan_folder\` (walk, header read
up to Pixel Data, summary; \`examples/dicom_scan.rs\`) and pydicom (walk and
\`dcmread(f, stop_before_pixels=True)\`). \`dps-recon inspect --json DIR\` is
timed as a whole process, including loading libtorch (about
$(printf '%.2f' "$startup") s for one file) and writing one JSON line per file.

| tool | files | seconds | files/s | ratio |
|---|---:|---:|---:|---:|
| dps-recon \`scan_folder\` (in process) | $n | $(printf '%.3f' "$best_scan") | $(rate "$n" "$best_scan") | $(ratio "$best_scan")× |
| \`dps-recon inspect --json DIR\` (whole process) | $n | $(printf '%.3f' "$best_ours") | $(rate "$n" "$best_ours") | $(ratio "$best_ours")× |
| pydicom $py_version \`dcmread(stop_before_pixels=True)\` (in process) | $n | $(printf '%.3f' "$best_py") | $(rate "$n" "$best_py") | 1.00× |
EOF
