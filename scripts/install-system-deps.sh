#!/usr/bin/env bash
# Installs what the build and the tests need from Debian, when missing: cmake and a
# C++ compiler (to build CharLS, the JPEG-LS codec), and the independent references
# of the tests, dicom3tools (dciodvfy, the DICOM IOD validator), dcmtk (dcmdump,
# storescu) and orthanc (a PACS that the tests store the inputs and outputs in).
# Does nothing where they are present; warns (and the tests that need them skip
# loudly) where apt is not available.
#   --data  also mricron-data: the Colin27 T1 volume that the sample-data, training
#           and report scripts read (no test needs it)
set -u
need=()
if [[ ${1:-} == --data && ! -f /usr/share/mricron/templates/ch2.nii.gz ]]; then
    need+=(mricron-data)
fi
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: apt-get not available; please install: ${need[*]}" >&2
    exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
$sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
    || echo "warning: could not install ${need[*]}" >&2
