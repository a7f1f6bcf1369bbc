//! Shared helpers of the tests/dicom_*.rs tests: sample measurements, the
//! external tools (dciodvfy, python3 with pydicom) and the pydicom test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_recon::dicom::uid::new_uid;
use dps_recon::dicom::{
    CtDataType, CtGeometry, CtSinogram, InstanceContext, Measurement, MriKspace, Plane,
    RawMeasurement,
};

/// A context with every attribute set, including non-ASCII text and hostile
/// path-like strings.
pub fn context(modality: &str) -> InstanceContext {
    InstanceContext {
        patient_name: "Müller^Jürgen".into(),
        patient_id: "../../etc/passwd".into(),
        patient_birth_date: "19700101".into(),
        patient_sex: "M".into(),
        study_instance_uid: new_uid(),
        study_date: "20240229".into(),
        study_time: "101500".into(),
        study_id: "S1".into(),
        accession_number: "A123".into(),
        referring_physician_name: "Doe^Jane".into(),
        study_description: "Phantom study".into(),
        series_instance_uid: new_uid(),
        series_number: Some(7),
        series_description: "raw/../../x".into(),
        modality: modality.into(),
        body_part_examined: "HEAD".into(),
        patient_position: "HFS".into(),
        frame_of_reference_uid: new_uid(),
        position_reference_indicator: String::new(),
        manufacturer: "dps-recon test".into(),
        institution_name: "Test Hospital".into(),
        station_name: "SIM".into(),
        manufacturer_model_name: "Simulator".into(),
        device_serial_number: "0001".into(),
        software_versions: "1.0".into(),
    }
}

/// An axial plane at height `z` mm: rows along +x (patient left), columns
/// along +y (posterior).
pub fn axial_plane(z: f64, rows: usize, cols: usize, spacing: f64) -> Plane {
    Plane {
        position_mm: [
            -(cols as f64 - 1.0) / 2.0 * spacing,
            -(rows as f64 - 1.0) / 2.0 * spacing,
            z,
        ],
        orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    }
}

/// Deterministic pseudo-random floats in (−1, 1) (xorshift; bit patterns vary
/// in every mantissa bit).
pub fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Multi-coil MRI k-space: `coils` coils on a `ky × kx` grid, every 3rd line
/// plus the 8 central lines acquired, data zero elsewhere, with sensitivities.
pub fn mri(coils: usize, ky: usize, kx: usize) -> RawMeasurement {
    let mask: Vec<u8> = (0..ky * kx)
        .map(|i| {
            let y = i / kx;
            u8::from(y.is_multiple_of(3) || y.abs_diff(ky / 2) < 4)
        })
        .collect();
    let mut data = floats(2 * coils * ky * kx, 1);
    for (i, pair) in data.chunks_exact_mut(2).enumerate() {
        if mask[i % (ky * kx)] == 0 {
            pair.fill(0.0);
        }
    }
    RawMeasurement {
        data: Measurement::MriKspace(MriKspace {
            coils,
            ky,
            kx,
            data,
            mask,
            sensitivities: Some(floats(2 * coils * ky * kx, 2)),
        }),
        noise_sigma: Some(0.0125),
        recon_size: [ky as u32, kx as u32],
        recon_pixel_spacing_mm: [0.9375, 0.9375],
        context: context("MR"),
        plane: axial_plane(12.5, ky, kx, 0.9375),
        slice_location_mm: Some(12.5),
        slice_thickness_mm: Some(3.0),
        instance_number: Some(4),
        sop_instance_uid: new_uid(),
    }
}

/// An equiangular fan-beam CT sinogram in counts.
pub fn ct_fan_counts(views: usize, detectors: usize) -> RawMeasurement {
    let data: Vec<f32> = floats(views * detectors, 3)
        .into_iter()
        .map(|x| 1.0e5 * (0.5 + 0.5 * x.abs()))
        .collect();
    RawMeasurement {
        data: Measurement::CtSinogram(CtSinogram {
            views,
            detectors,
            data,
            geometry: CtGeometry::FanEquiangular,
            view_angles_deg: (0..views)
                .map(|v| v as f64 * 360.0 / views as f64)
                .collect(),
            detector_spacing: 0.0625,
            source_to_isocenter_mm: Some(595.0),
            source_to_detector_mm: Some(1085.6),
            detector_offset: 0.25,
            data_type: CtDataType::Counts {
                blank_scan_counts: 1.0e5,
            },
            water_attenuation_per_mm: 0.0192,
        }),
        noise_sigma: None,
        recon_size: [256, 256],
        recon_pixel_spacing_mm: [0.75, 0.75],
        context: context("CT"),
        plane: axial_plane(-40.0, 256, 256, 0.75),
        slice_location_mm: Some(-40.0),
        slice_thickness_mm: Some(1.25),
        instance_number: Some(1),
        sop_instance_uid: new_uid(),
    }
}

/// Whether the tests that need dciodvfy and pydicom may skip them
/// (`DPS_SKIP_EXTERNAL=1`).
pub fn skip_external() -> bool {
    std::env::var("DPS_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Runs `dciodvfy` on `path`; returns its output (it reports on stderr).
/// `None` when it is not installed and DPS_SKIP_EXTERNAL=1.
pub fn dciodvfy(path: &Path) -> Option<String> {
    match Command::new("dciodvfy").arg(path).output() {
        Ok(out) => Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) if skip_external() => {
            eprintln!("skipping dciodvfy ({e}) because DPS_SKIP_EXTERNAL=1");
            None
        }
        Err(e) => panic!(
            "dciodvfy (dicom3tools) is needed by this test ({e}); install it \
             (make system-deps) or set DPS_SKIP_EXTERNAL=1"
        ),
    }
}

/// The `Error` lines of a dciodvfy report.
pub fn dciodvfy_errors(report: &str) -> Vec<&str> {
    report.lines().filter(|l| l.starts_with("Error")).collect()
}

/// Runs `python3 -c script args...`; returns stdout. `None` when python3 or a
/// module the script imports (pydicom, numpy) is missing and DPS_SKIP_EXTERNAL=1;
/// any other failure of the script (a rejected file, an assertion) panics.
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output();
    let missing_module = |stderr: &[u8]| {
        String::from_utf8_lossy(stderr)
            .lines()
            .any(|l| l.starts_with("ModuleNotFoundError"))
    };
    match out {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) if skip_external() && missing_module(&out.stderr) => {
            eprintln!(
                "skipping python check because DPS_SKIP_EXTERNAL=1: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Ok(out) => panic!(
            "python3 failed (needs pydicom and numpy from the project .venv):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if skip_external() => {
            eprintln!("skipping python check ({e}) because DPS_SKIP_EXTERNAL=1");
            None
        }
        Err(e) => panic!("python3 is needed by this test ({e}); set DPS_SKIP_EXTERNAL=1 to skip"),
    }
}

/// pydicom's data/test_files folder, found through `python3`; `None` when
/// python3 or pydicom is missing.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_dir()).then_some(path)
}
