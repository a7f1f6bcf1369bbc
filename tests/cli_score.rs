//! `dps-recon score` on the bundled sample cases' ground-truth series: pairing
//! by position, slices missing on either side, and what it refuses. (Scores of
//! real reconstructions are checked against the test's own in
//! sample_data_e2e; the check of a run's uncertainty series against
//! `validate`'s in cli_validate.)

mod dicom_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn sample(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(case)
        .join("truth")
}

fn score(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .arg("score")
        .args(args)
        .output()
        .unwrap()
}

/// The stderr of a refused run (exit status 2).
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn series_are_paired_with_the_truth_by_position() {
    let tmp = tempfile::tempdir().unwrap();
    let truth = sample("mri-brain-4x");
    // One of the three truth slices, alone in its folder.
    let one = tmp.path().join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::copy(truth.join("slice_0002.dcm"), one.join("x.dcm")).unwrap();

    let out = score(&[Path::new("--json"), Path::new("--truth"), &truth, &one]);
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["modality"], "MR");
    let range = doc["data_range"].as_f64().unwrap();
    assert!(range > 0.5 && range < 1.0, "{doc:#}");
    let series = &doc["series"][0];
    assert_eq!(series["slices"].as_array().unwrap().len(), 1, "{doc:#}");
    assert_eq!(series["truth_slices_missing"], 2);
    // The slice is the truth's own: SSIM 1, NMSE 0 (PSNR infinite: null in JSON).
    assert_eq!(series["mean"]["ssim"], 1.0);
    assert_eq!(series["mean"]["nmse"], 0.0);
    assert!(series["mean"]["psnr"].is_null());
    assert_eq!(series["slices"][0]["position_mm"][2], 95.0);

    // A given data range is used and recorded.
    let out = score(&[
        Path::new("--json"),
        Path::new("--data-range"),
        Path::new("2"),
        Path::new("--truth"),
        &truth,
        &one,
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["data_range"], 2.0);
    assert_eq!(doc["data_range_rule"], "given (--data-range)");

    // The other way round, two slices of the series have no truth slice.
    let stderr = refused(&score(&[Path::new("--truth"), &one, &truth]));
    assert!(
        stderr.contains(&format!("{}: the truth has no slice at", truth.display())),
        "{stderr}"
    );

    // Two files at one position.
    std::fs::copy(truth.join("slice_0002.dcm"), one.join("y.dcm")).unwrap();
    let stderr = refused(&score(&[Path::new("--truth"), &truth, &one]));
    assert!(
        stderr.contains(&format!("{}: two slices at", one.display())),
        "{stderr}"
    );
}

#[test]
fn other_modalities_and_empty_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mr, ct) = (sample("mri-brain-4x"), sample("ct-shepp-logan-sparse"));
    let stderr = refused(&score(&[Path::new("--truth"), &mr, &ct]));
    assert!(
        stderr.contains(&format!("{}: the series is CT, the truth MR", ct.display())),
        "{stderr}"
    );
    let stderr = refused(&score(&[Path::new("--truth"), &mr, tmp.path()]));
    assert!(
        stderr.contains(&format!("{}: no .dcm files", tmp.path().display())),
        "{stderr}"
    );
    // A file that is not DICOM is named.
    std::fs::write(tmp.path().join("bad.dcm"), b"not dicom").unwrap();
    let stderr = refused(&score(&[Path::new("--truth"), &mr, tmp.path()]));
    assert!(stderr.contains("bad.dcm"), "{stderr}");
}

/// An image smaller than SSIM's 11 × 11 window is refused with its size, not
/// a panic: pydicom's MR_small cropped to 8 × 8.
#[test]
fn images_smaller_than_the_ssim_window_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let script = "import os, sys, pydicom\n\
                  ds = pydicom.dcmread(os.path.join(os.path.dirname(pydicom.__file__), \
                  'data', 'test_files', 'MR_small.dcm'))\n\
                  ds.PixelData = ds.pixel_array[:8, :8].copy().tobytes()\n\
                  ds.Rows = ds.Columns = 8\n\
                  ds.save_as(sys.argv[1])\n";
    let file = small.join("slice.dcm");
    if dicom_support::python(script, &[file.to_str().unwrap()]).is_none() {
        return;
    }
    let stderr = refused(&score(&[Path::new("--truth"), &small, &small]));
    assert!(
        stderr.contains(&format!(
            "{}: the slice at [-83.9063, -91.2, 6.6406] mm is 8×8, smaller than SSIM's 11 × 11 window",
            small.display()
        )),
        "{stderr}"
    );
}
