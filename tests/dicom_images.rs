//! Image series in (all codecs, rescale, geometry, sorting, multi-frame) and
//! reconstructed series out (dciodvfy, pydicom, provenance, safe names).

mod dicom_support;

use std::path::{Path, PathBuf};

use dps_recon::dicom::uid::new_uid;
use dps_recon::dicom::{
    read_image, read_series, write_series, DicomError, ImageModality, ImageRole, InstanceRef,
    OutputSlice, ReadLimits, SeriesSpec, Window,
};

use dicom_support::*;

fn test_file(name: &str) -> Option<PathBuf> {
    let dir = pydicom_test_files();
    if dir.is_none() && !skip_external() {
        panic!("pydicom's test files are needed (python3 with pydicom); set DPS_SKIP_EXTERNAL=1 to skip");
    }
    Some(dir?.join(name))
}

fn pixels(path: &Path) -> Vec<f32> {
    let file = read_image(path, ReadLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(file.frames.len(), 1);
    file.frames.into_iter().next().unwrap().pixels
}

#[test]
fn every_transfer_syntax_of_mr_small_decodes_to_the_same_pixels() {
    let Some(reference) = test_file("MR_small.dcm") else {
        return;
    };
    let expected = pixels(&reference);
    assert_eq!(expected.len(), 64 * 64);
    for name in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_expb.dcm",
        "MR_small_padded.dcm",
    ] {
        let path = reference.with_file_name(name);
        assert_eq!(pixels(&path), expected, "{name}");
    }
}

#[test]
fn rescaled_values_match_pydicom() {
    let Some(dir) = test_file("") else { return };
    let script = r#"
import sys, json, pydicom
from pydicom.pixels import apply_modality_lut
out = {}
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    out[path] = [float(v) for v in apply_modality_lut(ds.pixel_array, ds).ravel()]
print(json.dumps(out))
"#;
    let names = [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "image_dfl.dcm",
    ];
    let paths: Vec<String> = names
        .iter()
        .map(|n| dir.join(n).to_string_lossy().into_owned())
        .collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let Some(out) = python(script, &args) else {
        return;
    };
    let reference: serde_json::Value = serde_json::from_str(&out).unwrap();
    for path in &paths {
        let ours = pixels(Path::new(path));
        let theirs: Vec<f32> = reference[path]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours, theirs, "{path}");
    }
    let ct = pixels(&dir.join("CT_small.dcm"));
    let min = ct.iter().copied().fold(f32::INFINITY, f32::min);
    assert!(min < -500.0, "CT_small should be in HU, min {min}");
}

/// pydicom's test file `name` rewritten by `script` (run as `python3 -c script
/// SOURCE DEST`) to `dest` inside a new temporary folder: the folder and the
/// written path; `None` without pydicom's test files.
fn rewritten(name: &str, dest: &str, script: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let source = test_file(name)?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(dest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    python(script, &[source.to_str().unwrap(), path.to_str().unwrap()]).unwrap();
    Some((dir, path))
}

/// `dps-recon simulate --modality MODALITY --source dicom:SERIES -o OUT`: whether
/// it succeeded, and its stderr.
fn simulate_from(series: &Path, modality: &str, out: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["simulate", "--modality", modality, "--source"])
        .arg(format!("dicom:{}", series.display()))
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a dcmtk tool; `false` when it is missing and DPS_SKIP_EXTERNAL=1.
fn dcmtk(tool: &str, args: &[&Path]) -> bool {
    match std::process::Command::new(tool).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(_) if skip_external() => false,
        Err(e) => panic!("{tool} (dcmtk) is needed ({e}); set DPS_SKIP_EXTERNAL=1 to skip"),
    }
}

#[test]
fn lossless_jpeg_jpeg_ls_and_rle_from_dcmtk_decode_exactly() {
    let Some(reference) = test_file("CT_small.dcm") else {
        return;
    };
    let expected = pixels(&reference);
    let dir = tempfile::tempdir().unwrap();
    for (tool, option, ts) in [
        ("dcmcjpeg", "+e1", "1.2.840.10008.1.2.4.70"),
        ("dcmcjpeg", "+el", "1.2.840.10008.1.2.4.57"),
        ("dcmcjpls", "+el", "1.2.840.10008.1.2.4.80"),
        ("dcmcrle", "+ff", "1.2.840.10008.1.2.5"),
    ] {
        let out = dir.path().join(format!("{tool}{option}.dcm"));
        if !dcmtk(tool, &[Path::new(option), &reference, &out]) {
            return;
        }
        let file = read_image(&out, ReadLimits::default()).unwrap();
        assert_eq!(file.transfer_syntax_uid, ts, "{tool} {option}");
        assert_eq!(file.frames[0].pixels, expected, "{tool} {option}");
    }
}

#[test]
fn jpeg_baseline_decodes_like_dcmtk() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("mono8.dcm");
    let script = r#"
import sys, numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
ds.SOPInstanceUID = generate_uid()
ds.Modality = "OT"
ds.Rows, ds.Columns = 48, 64
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
y, x = np.mgrid[0:48, 0:64]
ds.PixelData = ((x * 3 + y * 2 + 40 * ((x // 8 + y // 8) % 2)) % 256).astype(np.uint8).tobytes()
ds.save_as(sys.argv[1], enforce_file_format=True)
"#;
    if python(script, &[native.to_str().unwrap()]).is_none() {
        return;
    }
    let baseline = dir.path().join("baseline.dcm");
    let decoded = dir.path().join("decoded.dcm");
    if !dcmtk("dcmcjpeg", &[Path::new("+eb"), &native, &baseline])
        || !dcmtk("dcmdjpeg", &[&baseline, &decoded])
    {
        return;
    }
    let ours = read_image(&baseline, ReadLimits::default()).unwrap();
    assert_eq!(ours.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");
    let theirs = pixels(&decoded);
    let original = pixels(&native);
    let ours = &ours.frames[0].pixels;
    let max_vs_dcmtk = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        max_vs_dcmtk <= 2.0,
        "baseline decode differs from dcmtk by {max_vs_dcmtk}"
    );
    assert_ne!(
        ours, &original,
        "baseline JPEG is lossy: the test image must change"
    );
}

#[test]
fn twelve_bit_jpeg_extended_is_rejected_clearly() {
    let Some(path) = test_file("JPGExtended.dcm") else {
        return;
    };
    let err = read_image(&path, ReadLimits::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot decode pixel data:") && text.contains("SamplePrecision(12)"),
        "{text}"
    );
}

const ENHANCED_MR: &str = r#"
import sys, numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

def item(**kw):
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d

ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
ds.SOPInstanceUID = generate_uid()
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.Modality = "MR"
ds.StudyInstanceUID = generate_uid()
ds.SeriesInstanceUID = generate_uid()
ds.FrameOfReferenceUID = generate_uid()
ds.InstanceNumber = 1
ds.NumberOfFrames = 3
ds.Rows, ds.Columns = 4, 5
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
ds.SharedFunctionalGroupsSequence = Sequence([item(
    PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
    PixelMeasuresSequence=Sequence([item(PixelSpacing=[0.5, 0.25], SliceThickness=2.0)]),
    PixelValueTransformationSequence=Sequence([item(RescaleIntercept=-5, RescaleSlope=2, RescaleType="US")]),
)])
ds.PerFrameFunctionalGroupsSequence = Sequence([
    item(PlanePositionSequence=Sequence([item(ImagePositionPatient=[-1, -2, z])]))
    for z in (10, 0, 5)
])
frames = np.array([[[100 * f + 5 * r + c for c in range(5)] for r in range(4)] for f in range(3)], dtype=np.uint16)
if sys.argv[2] == "rle":
    ds.compress(RLELossless, frames, encoding_plugin="pydicom")
else:
    ds.PixelData = frames.tobytes()
ds.save_as(sys.argv[1], enforce_file_format=True)
print(ds.file_meta.TransferSyntaxUID)
"#;

/// A decoder that panics on corrupt data (dicom-rs's RLE decoder indexes past a
/// segment that decodes short) is an error of the file, not a crash, and no
/// panic message reaches stderr: here MR_small_RLE.dcm with the last 40 bytes of
/// its RLE frame cut off, read by `dps-recon simulate --source dicom:…`.
#[test]
fn a_decoder_panic_is_an_error_naming_the_transfer_syntax() {
    let script = r#"
import sys, pydicom
from pydicom.encaps import encapsulate, generate_frames
ds = pydicom.dcmread(sys.argv[1])
frame = next(generate_frames(ds.PixelData, number_of_frames=1))
ds.PixelData = encapsulate([frame[:-40]])
ds.save_as(sys.argv[2])
"#;
    let Some((dir, corrupt)) = rewritten("MR_small_RLE.dcm", "short_rle.dcm", script) else {
        return;
    };
    let err = read_image(&corrupt, ReadLimits::default())
        .expect_err("a truncated RLE segment is refused")
        .to_string();
    assert!(
        err.contains("pixel data") && err.contains("1.2.840.10008.1.2.5"),
        "{err}"
    );
    let (ok, stderr) = simulate_from(dir.path(), "mr", &dir.path().join("out"));
    assert!(!ok);
    assert!(
        stderr.contains("short_rle.dcm") && stderr.contains("transfer syntax 1.2.840.10008.1.2.5"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn enhanced_multi_frame_uses_functional_groups_and_sorts_frames() {
    let dir = tempfile::tempdir().unwrap();
    for (codec, ts) in [
        ("native", "1.2.840.10008.1.2.1"),
        ("rle", "1.2.840.10008.1.2.5"),
    ] {
        let path = dir.path().join(format!("emr_{codec}.dcm"));
        let Some(out) = python(ENHANCED_MR, &[path.to_str().unwrap(), codec]) else {
            return;
        };
        assert_eq!(out.trim(), ts);
        let file = read_image(&path, ReadLimits::default()).unwrap();
        assert_eq!(file.transfer_syntax_uid, ts);
        assert_eq!(file.frames.len(), 3);
        let f1 = &file.frames[1];
        assert_eq!((f1.rows, f1.cols), (4, 5));
        assert_eq!(f1.pixels[0], 2.0 * 100.0 - 5.0);
        assert_eq!(f1.pixels[7], 2.0 * (100.0 + 5.0 + 2.0) - 5.0);
        assert_eq!(f1.plane.unwrap().position_mm, [-1.0, -2.0, 0.0]);
        assert_eq!(f1.pixel_spacing_mm, Some([0.5, 0.25]));
        assert_eq!(f1.slice_thickness_mm, Some(2.0));
        let series = read_series(&[path], ReadLimits::default()).unwrap();
        assert!(series.sorted_by_position);
        let z: Vec<f64> = series
            .frames
            .iter()
            .map(|f| f.plane.unwrap().position_mm[2])
            .collect();
        assert_eq!(z, [0.0, 5.0, 10.0]);
        let order: Vec<u32> = series.frames.iter().map(|f| f.frame_index).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}

fn slices(n: usize, rows: usize, cols: usize, modality: ImageModality) -> Vec<OutputSlice> {
    (0..n)
        .map(|k| {
            // Written in descending z: reading must sort them back.
            let z = 10.0 - 2.5 * k as f64;
            let pixels = floats(rows * cols, k as u64 + 10)
                .into_iter()
                .map(|x| match modality {
                    ImageModality::Ct => (x * 1500.0).round(),
                    ImageModality::Mr => 0.5 + 0.5 * x,
                })
                .collect();
            OutputSlice {
                rows,
                cols,
                pixels,
                pixel_spacing_mm: [0.8, 0.8],
                plane: axial_plane(z, rows, cols, 0.8),
                slice_location_mm: Some(z),
                slice_thickness_mm: Some(2.5),
                source_raw: vec![InstanceRef::raw(&new_uid())],
                source_images: Vec::new(),
            }
        })
        .collect()
}

fn spec(modality: ImageModality, role: ImageRole) -> SeriesSpec {
    let ctx = context(match modality {
        ImageModality::Ct => "CT",
        ImageModality::Mr => "MR",
    });
    SeriesSpec {
        modality,
        role,
        context: ctx,
        series_number: 901,
        series_description: "DPS reconstruction ../../evil\\name".into(),
        derivation_description: "DPS (Chung et al. 2023), 1000 steps, zeta 1.0, seed 7".into(),
        window: match modality {
            ImageModality::Ct => Some(Window {
                center: 40.0,
                width: 400.0,
            }),
            ImageModality::Mr => None,
        },
    }
}

#[test]
fn written_series_pass_dciodvfy_and_read_back_in_pydicom() {
    for (modality, role) in [
        (ImageModality::Ct, ImageRole::Reconstruction),
        (ImageModality::Mr, ImageRole::Reconstruction),
        (ImageModality::Mr, ImageRole::DerivedMap),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(modality, role);
        let input = slices(3, 12, 10, modality);
        let written = write_series(dir.path(), &spec, &input).unwrap();
        assert_eq!(written.files.len(), 3);
        for path in &written.files {
            let Some(report) = dciodvfy(path) else { return };
            let errors = dciodvfy_errors(&report);
            assert!(
                errors.is_empty(),
                "{modality:?} {role:?}: {}:\n{report}",
                path.display()
            );
            // The MR IOD has no Modality LUT: a rescale there "may cause
            // windowing problems" (viewers window the stored values).
            assert!(
                !report.contains("Modality LUT") && !report.contains("Rescale"),
                "{modality:?} {role:?}: {}:\n{report}",
                path.display()
            );
        }
        let script = r#"
import sys, json, pydicom
from pydicom.pixels import apply_modality_lut
def ds_lengths(ds):
    for e in ds.iterall():
        if e.VR == "DS" and e.VM > 0:
            for v in (e.value if e.VM > 1 else [e.value]):
                yield len(getattr(v, "original_string", str(v)))
rows = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    v = apply_modality_lut(ds.pixel_array, ds)
    rwvm = ds.get("RealWorldValueMappingSequence")
    if rwvm is not None and "RescaleSlope" not in ds:
        m = rwvm[0]
        v = v * m.RealWorldValueSlope + m.RealWorldValueIntercept
    rows.append({
        "has_rescale": "RescaleSlope" in ds or "RescaleIntercept" in ds,
        "rwvm": None if rwvm is None else [
            rwvm[0].RealWorldValueFirstValueMapped, rwvm[0].RealWorldValueLastValueMapped,
            rwvm[0].MeasurementUnitsCodeSequence[0].CodeValue,
            rwvm[0].MeasurementUnitsCodeSequence[0].CodingSchemeDesignator],
        "window": [float(ds.WindowCenter), float(ds.WindowWidth)],
        "values": [float(x) for x in v.ravel()],
        "image_type": list(ds.ImageType),
        "charset": ds.SpecificCharacterSet,
        "patient": str(ds.PatientName),
        "study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
        "for": ds.FrameOfReferenceUID, "sop": ds.SOPInstanceUID,
        "number": int(ds.InstanceNumber), "series_number": int(ds.SeriesNumber),
        "description": ds.SeriesDescription, "derivation": ds.DerivationDescription,
        "raw": ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID,
        "raw_purpose": ds.SourceInstanceSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue,
        "ds_max": max(ds_lengths(ds)),
        "rescale_type": ds.get("RescaleType", ""),
        "z": float(ds.ImagePositionPatient[2]),
    })
print(json.dumps(rows))
"#;
        let paths: Vec<String> = written
            .files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = paths.iter().map(String::as_str).collect();
        let Some(out) = python(script, &args) else {
            return;
        };
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        for (k, row) in rows.as_array().unwrap().iter().enumerate() {
            let values: Vec<f64> = row["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let tolerance = written.rescale_slope / 2.0 + 1e-9;
            for (a, b) in values.iter().zip(&input[k].pixels) {
                assert!((a - f64::from(*b)).abs() <= tolerance, "{a} vs {b}");
            }
            let [center, width] = [0, 1].map(|i| row["window"][i].as_f64().unwrap());
            match modality {
                ImageModality::Ct => {
                    assert_eq!(written.rescale_slope, 1.0, "integral HU keep slope 1");
                    assert_eq!(row["rescale_type"], "HU");
                    assert_eq!(row["has_rescale"], true);
                    assert_eq!(row["rwvm"], serde_json::Value::Null);
                    assert_eq!([center, width], [40.0, 400.0], "the window in HU");
                }
                ImageModality::Mr => {
                    // The intensities map through the Real World Value Mapping;
                    // the window is in stored values, as viewers apply it, and
                    // maps to the 1st–99th percentile of the intensities.
                    assert_eq!(row["has_rescale"], false);
                    assert_eq!(row["rwvm"], serde_json::json!([0, 65535, "1", "UCUM"]));
                    let (lo, hi) = (
                        written.rescale_intercept + written.rescale_slope * (center - width / 2.0),
                        written.rescale_intercept + written.rescale_slope * (center + width / 2.0),
                    );
                    assert!(width > 1000.0, "window width {width} in stored values");
                    assert!(
                        (0.0..0.1).contains(&lo) && (0.9..1.0).contains(&hi),
                        "{lo}…{hi}"
                    );
                }
            }
            let (first, second) = match role {
                ImageRole::Reconstruction => ("ORIGINAL", "PRIMARY"),
                ImageRole::DerivedMap => ("DERIVED", "SECONDARY"),
            };
            let third = if modality == ImageModality::Ct {
                "AXIAL"
            } else {
                "OTHER"
            };
            let expected_type = serde_json::json!([first, second, third]);
            assert_eq!(row["image_type"], expected_type);
            assert_eq!(row["charset"], "ISO_IR 192");
            assert_eq!(row["patient"], "Müller^Jürgen");
            assert_eq!(row["study"], spec.context.study_instance_uid.as_str());
            assert_eq!(row["for"], spec.context.frame_of_reference_uid.as_str());
            assert_ne!(row["series"], spec.context.series_instance_uid.as_str());
            assert_eq!(row["series"], written.series_instance_uid.as_str());
            assert_eq!(row["sop"], written.sop_instance_uids[k].as_str());
            assert!(row["sop"].as_str().unwrap().starts_with("2.25."));
            assert_eq!(row["number"], k as i64 + 1);
            assert_eq!(row["series_number"], 901);
            assert_eq!(row["description"], "DPS reconstruction ../../evil/name");
            assert_eq!(row["derivation"], spec.derivation_description.as_str());
            assert_eq!(row["raw"], input[k].source_raw[0].sop_instance_uid.as_str());
            assert_eq!(row["raw_purpose"], "128226");
            assert!(row["ds_max"].as_u64().unwrap() <= 16);
            assert_eq!(row["z"], 10.0 - 2.5 * k as f64);
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(
            names,
            ["slice_0001.dcm", "slice_0002.dcm", "slice_0003.dcm"]
        );
    }
}

#[test]
fn written_series_read_back_sorted_along_the_normal() {
    let dir = tempfile::tempdir().unwrap();
    let input = slices(4, 6, 5, ImageModality::Mr);
    let written = write_series(
        dir.path(),
        &spec(ImageModality::Mr, ImageRole::Reconstruction),
        &input,
    )
    .unwrap();
    let series = read_series(&written.files, ReadLimits::default()).unwrap();
    assert!(series.sorted_by_position);
    let z: Vec<f64> = series
        .frames
        .iter()
        .map(|f| f.plane.unwrap().position_mm[2])
        .collect();
    assert_eq!(z, [2.5, 5.0, 7.5, 10.0]);
    let numbers: Vec<Option<i32>> = series.frames.iter().map(|f| f.instance_number).collect();
    assert_eq!(numbers, [Some(4), Some(3), Some(2), Some(1)]);
    for frame in &series.frames {
        let k = (frame.instance_number.unwrap() - 1) as usize;
        for (a, b) in frame.pixels.iter().zip(&input[k].pixels) {
            assert!(f64::from((a - b).abs()) <= written.rescale_slope / 2.0 + 1e-6);
        }
        assert_eq!(frame.pixel_spacing_mm, Some([0.8, 0.8]));
    }
    assert_eq!(series.context.patient_name, "Müller^Jürgen");
}

/// The values read from the first frame of `path`.
fn frame_values(path: &Path) -> Result<Vec<f32>, DicomError> {
    Ok(read_image(path, ReadLimits::default())?
        .frames
        .remove(0)
        .pixels)
}

/// A 6 × 5 MR image written in `dir`: its path and its stored values.
fn mr_image_file(dir: &Path) -> (PathBuf, Vec<f64>) {
    let input = slices(1, 6, 5, ImageModality::Mr);
    let spec = spec(ImageModality::Mr, ImageRole::Reconstruction);
    let written = write_series(dir, &spec, &input).unwrap();
    let path = written.files[0].clone();
    let stored = frame_values(&path)
        .unwrap()
        .iter()
        .map(|&m| ((f64::from(m) - written.rescale_intercept) / written.rescale_slope).round())
        .collect();
    (path, stored)
}

#[test]
fn a_modality_lut_takes_precedence_over_the_real_world_value_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stored) = mr_image_file(dir.path());
    // The same file with a Modality LUT added: its map, not the mapping's.
    let mut obj = dicom_object::open_file(&path).unwrap();
    for (tag, value) in [
        (dicom_dictionary_std::tags::RESCALE_SLOPE, "2"),
        (dicom_dictionary_std::tags::RESCALE_INTERCEPT, "-3"),
    ] {
        obj.put(dicom_core::DataElement::new(
            tag,
            dicom_core::VR::DS,
            dicom_core::PrimitiveValue::from(value),
        ));
    }
    let rescaled = dir.path().join("rescaled.dcm");
    obj.write_to_file(&rescaled).unwrap();
    let values = frame_values(&rescaled).unwrap();
    for (s, v) in stored.iter().zip(&values) {
        assert!((f64::from(*v) - (2.0 * s - 3.0)).abs() < 1e-3, "{s} -> {v}");
    }
}

/// `path`'s MR file with its Real World Value Mapping Sequence replaced by
/// `items`, written to `to`.
fn with_mapping_items(path: &Path, items: Vec<dicom_object::InMemDicomObject>, to: &Path) {
    let mut obj = dicom_object::open_file(path).unwrap();
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
        dicom_core::VR::SQ,
        dicom_core::value::DataSetSequence::from(items),
    ));
    obj.write_to_file(to).unwrap();
}

/// A linear mapping item for stored values `first..=last`.
fn mapping_item(
    first: u16,
    last: u16,
    slope: f64,
    intercept: f64,
) -> dicom_object::InMemDicomObject {
    use dicom_dictionary_std::tags;
    let mut item = dicom_object::InMemDicomObject::new_empty();
    let us = |v: u16| dicom_core::PrimitiveValue::from(v);
    let fd = |v: f64| dicom_core::PrimitiveValue::from(v);
    for (tag, vr, value) in [
        (
            tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
            dicom_core::VR::US,
            us(first),
        ),
        (
            tags::REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
            dicom_core::VR::US,
            us(last),
        ),
        (tags::REAL_WORLD_VALUE_SLOPE, dicom_core::VR::FD, fd(slope)),
        (
            tags::REAL_WORLD_VALUE_INTERCEPT,
            dicom_core::VR::FD,
            fd(intercept),
        ),
    ] {
        item.put(dicom_core::DataElement::new(tag, vr, value));
    }
    item
}

/// Each stored value maps by the first linear item whose range of stored
/// values holds all of the frame's; values outside every range are an error,
/// not numbers in an unknown unit.
#[test]
fn the_real_world_value_mapping_applies_to_the_stored_values_in_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stored) = mr_image_file(dir.path());
    let bottom = stored.iter().copied().fold(f64::INFINITY, f64::min) as u16;
    let top = stored.iter().copied().fold(0.0, f64::max) as u16;
    assert!(bottom + 1000 < top, "{bottom}..{top}");

    // An item for all but the top value first, then one for all: the second
    // maps.
    let twice = dir.path().join("two-items.dcm");
    let items = vec![
        mapping_item(0, top - 1, 7.0, 1.0),
        mapping_item(0, u16::MAX, 2.0, -3.0),
    ];
    with_mapping_items(&path, items, &twice);
    let values = frame_values(&twice).unwrap();
    for (s, v) in stored.iter().zip(&values) {
        assert!((f64::from(*v) - (2.0 * s - 3.0)).abs() < 1e-3, "{s} -> {v}");
    }

    // No item covers the largest stored value.
    let short = dir.path().join("short-range.dcm");
    with_mapping_items(&path, vec![mapping_item(0, top - 1, 2.0, -3.0)], &short);
    let err = frame_values(&short).unwrap_err().to_string();
    assert!(
        err.contains(&format!("stored values {bottom}..{top}"))
            && err.contains(&format!("(0..{})", top - 1))
            && err.contains("Real World Value Mapping"),
        "{err}"
    );
}

#[test]
fn series_of_mixed_uids_or_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_series(
        &dir.path().join("a"),
        &spec(ImageModality::Ct, ImageRole::Reconstruction),
        &slices(1, 4, 4, ImageModality::Ct),
    )
    .unwrap();
    let b = write_series(
        &dir.path().join("b"),
        &spec(ImageModality::Ct, ImageRole::Reconstruction),
        &slices(1, 4, 4, ImageModality::Ct),
    )
    .unwrap();
    let err = read_series(
        &[a.files[0].clone(), b.files[0].clone()],
        ReadLimits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("belongs to series"), "{err}");
    let bad = OutputSlice {
        pixels: vec![f32::NAN; 16],
        ..slices(1, 4, 4, ImageModality::Ct).remove(0)
    };
    let err = write_series(
        &dir.path().join("c"),
        &spec(ImageModality::Ct, ImageRole::Reconstruction),
        &[bad],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot write DICOM: slice 0: NaN or infinite pixel value"
    );
    assert!(!dir.path().join("c").exists());
}

/// `simulate` copies an image series' patient attributes into raw files, which
/// cannot hold a date outside the default character repertoire: it refuses such a
/// series before writing anything, naming the source and the attribute.
#[test]
fn simulate_refuses_a_series_whose_birth_date_raw_data_cannot_hold() {
    // A Latin-1 'Ä' in PatientBirthDate (8 bytes, as the value it replaces).
    let script = r#"
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.SpecificCharacterSet = "ISO_IR 100"
ds.PatientBirthDate = "19700101"
ds.save_as(sys.argv[2])
data = open(sys.argv[2], "rb").read()
assert data.count(b"19700101") == 1
open(sys.argv[2], "wb").write(data.replace(b"19700101", "1970Ä01 ".encode("latin-1")))
"#;
    let Some((dir, _)) = rewritten("CT_small.dcm", "series/ct.dcm", script) else {
        return;
    };
    let out_dir = dir.path().join("out");
    let (ok, stderr) = simulate_from(&dir.path().join("series"), "ct", &out_dir);
    assert!(!ok);
    assert!(
        stderr.contains("series: the source's patient attributes cannot be copied")
            && stderr.contains("PatientBirthDate: \"1970Ä01\""),
        "{stderr}"
    );
    assert!(!out_dir.join("raw").exists(), "nothing written");
}
