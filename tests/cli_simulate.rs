//! `dps-recon simulate` run as a process: the files it writes (valid for
//! dciodvfy), what simulation.json records, and the option errors (exit code 2).

mod dicom_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dicom_support::{dciodvfy, dciodvfy_errors};
use dps_operators::masks::acceleration;
use dps_recon::dicom::{read_raw, read_series, Measurement, ReadLimits};
use serde_json::Value;
use tch::Tensor;

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("run dps-recon")
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Exit code 2 with `message` in stderr.
fn usage_error(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(message), "{message:?} not in {stderr}");
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

#[test]
fn ct_case_is_written_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("case");
    let stdout = ok(&simulate(&[
        "--source",
        "shepp-logan-hu",
        "--size",
        "32",
        "--views",
        "8",
        "--noise-sigma",
        "0.01",
        "--seed",
        "3",
        "-o",
        arg(&out),
    ]));
    assert!(stdout.contains(arg(&out.join("raw"))), "{stdout}");
    assert!(
        stdout.contains(arg(&out.join("simulation.json"))),
        "{stdout}"
    );
    let raw_files = files(&out.join("raw"));
    assert_eq!(raw_files, vec![out.join("raw/slice_0001.dcm")]);
    let raw = read_raw(&raw_files[0], ReadLimits::default()).unwrap();
    let Measurement::CtSinogram(s) = &raw.data else {
        panic!("not a sinogram")
    };
    // 256 mm over 32 pixels: 8 mm; the detector covers the 362 mm diagonal.
    assert_eq!((s.views, s.detectors), (8, 47));
    assert_eq!(raw.recon_pixel_spacing_mm, [8.0, 8.0]);
    let truth = read_series(&files(&out.join("truth")), ReadLimits::default()).unwrap();
    assert_eq!(truth.frames.len(), 1);
    assert_eq!(truth.context.body_part_examined, "HEAD");
    assert_eq!(raw.context.body_part_examined, "HEAD");
    for f in [raw_files[0].clone(), out.join("truth/slice_0001.dcm")] {
        if let Some(report) = dciodvfy(&f) {
            assert!(
                dciodvfy_errors(&report).is_empty(),
                "{}: {report}",
                f.display()
            );
        }
    }
    let pixels = Tensor::from_slice(&truth.frames[0].pixels);
    // Air −1000 HU; at 8 mm pixels no pixel lies wholly in the 1000 HU skull, whose
    // partial-volume pixels take values between the brain's 20 HU and 1000.
    assert_eq!(pixels.min().double_value(&[]), -1000.0);
    let max = pixels.max().double_value(&[]);
    assert!((500.0..=1000.0).contains(&max), "max {max}");

    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulation.json")).unwrap())
            .unwrap();
    assert_eq!(p["source"], "shepp-logan-hu");
    assert_eq!(p["modality"], "CT");
    assert_eq!(p["seed"], 3);
    assert_eq!(p["pixel_spacing_mm"][0], 8.0);
    assert_eq!(p["acquisition"]["geometry"], "parallel");
    assert_eq!(p["acquisition"]["views"], 8);
    assert_eq!(p["acquisition"]["arc_deg"], 180.0);
    assert_eq!(p["acquisition"]["detectors"], 47);
    assert_eq!(p["acquisition"]["noise_sigma"], 0.01);
    assert_eq!(p["acquisition"]["data_type"], "LINE_INTEGRAL");
    assert_eq!(p["slices"][0]["noise_seed"], 4);
    assert_eq!(
        p["study_instance_uid"].as_str().unwrap(),
        raw.context.study_instance_uid
    );
    assert_eq!(
        p["frame_of_reference_uid"].as_str().unwrap(),
        truth.context.frame_of_reference_uid
    );
    assert_eq!(
        p["truth_series_instance_uid"].as_str().unwrap(),
        truth.context.series_instance_uid
    );
    assert!(p["command"]
        .as_str()
        .unwrap()
        .starts_with("dps-recon simulate --source shepp-logan-hu"));
}

#[test]
fn mr_case_with_poisson_mask_and_stored_sensitivities() {
    let dir = tempfile::tempdir().unwrap();
    ok(&simulate(&[
        "--source",
        "ellipses-mr:2,9",
        "--size",
        "48",
        "--coils",
        "3",
        "--mask",
        "poisson",
        "--acceleration",
        "3",
        "--acs",
        "0.1",
        "--with-sensitivities",
        "--body-part",
        "ABDOMEN",
        "-o",
        arg(dir.path()),
    ]));
    let raw_files = files(&dir.path().join("raw"));
    assert_eq!(raw_files.len(), 2);
    for f in &raw_files {
        let raw = read_raw(f, ReadLimits::default()).unwrap();
        let Measurement::MriKspace(k) = &raw.data else {
            panic!("not k-space")
        };
        assert_eq!((k.coils, k.ky, k.kx), (3, 48, 48));
        assert!(k.sensitivities.is_some());
        assert_eq!(raw.context.body_part_examined, "ABDOMEN");
        let mask = Tensor::from_slice(&k.mask).view([48, 48]);
        let r = acceleration(&mask);
        assert!((r / 3.0 - 1.0).abs() < 0.1, "acceleration {r}");
        // A 2-D pattern: some line is neither empty nor full.
        assert!((0..48).any(|y| {
            let n = k.mask[y * 48..(y + 1) * 48]
                .iter()
                .filter(|&&m| m == 1)
                .count();
            n > 0 && n < 48
        }));
    }
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("simulation.json")).unwrap())
            .unwrap();
    assert_eq!(p["acquisition"]["mask"]["kind"], "poisson");
    assert_eq!(p["acquisition"]["coils"], 3);
    assert_eq!(p["slices"].as_array().unwrap().len(), 2);
}

#[test]
fn options_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = arg(dir.path());
    usage_error(
        &simulate(&["--source", "shepp-logan-hu", "--coils", "4", "-o", o]),
        "--coils applies to MR only",
    );
    usage_error(
        &simulate(&[
            "--source",
            "shepp-logan",
            "--views",
            "4",
            "--arc",
            "90",
            "-o",
            o,
        ]),
        "--views, --arc apply to CT only",
    );
    usage_error(
        &simulate(&["--source", "nifti:/v.nii:3", "-o", o]),
        "--modality mr|ct is required",
    );
    usage_error(&simulate(&["-o", o]), "--source is required");
    // Before, 'a\b' was written as 'a/b' and longer values were cut to 16.
    usage_error(
        &simulate(&["--source", "shepp-logan", "--body-part", "head", "-o", o]),
        "\"head\" is not a DICOM code string",
    );
    usage_error(
        &simulate(&[
            "--source",
            "shepp-logan",
            "--body-part",
            "ABDOMENPELVISCHEST",
            "-o",
            o,
        ]),
        "at most 16 of A–Z, 0–9, space and _",
    );
    // Before, 100 000 threads failed to spawn and panicked.
    usage_error(
        &simulate(&["--source", "shepp-logan", "--threads", "100000", "-o", o]),
        "must be an integer in 0 … 1024, got 100000",
    );
    // Before, 3 M views were simulated and the write then failed with "Item too
    // long (24000000 bytes) for a 16-bit length".
    usage_error(
        &simulate(&["--source", "shepp-logan-hu", "--views", "8192", "-o", o]),
        "8192 views: a raw file holds at most 8191",
    );
    // Before, 1e300 photons panicked in the Poisson draw (an infinite f32 rate).
    usage_error(
        &simulate(&["--source", "shepp-logan-hu", "--counts", "1e300", "-o", o]),
        "blank-scan counts 1e300 must be > 0 and ≤ 1e12",
    );
    usage_error(
        &simulate(&["--source", "ellipses-ct:x", "-o", o]),
        "seeds must be integers",
    );
    usage_error(
        &simulate(&[
            "--source",
            "shepp-logan-hu",
            "--counts",
            "1e4",
            "--noise-sigma",
            "0.1",
            "-o",
            o,
        ]),
        "cannot be used with",
    );
    usage_error(
        &simulate(&[
            "--source",
            "shepp-logan-hu",
            "--source-to-isocenter",
            "500",
            "-o",
            o,
        ]),
        "fan beams only",
    );
    assert!(!dir.path().join("raw").exists());
}

/// A reader that has gone away (`dps-recon simulate … | head -0`) is no error: the
/// case is written, the exit code is 0 and nothing panics.
#[test]
fn closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("case");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["simulate", "--source", "shepp-logan-hu", "--size", "16"])
        .args(["--views", "4", "-o", arg(&out)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dps-recon");
    drop(child.stdout.take());
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{:?}: {stderr}", result.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("simulation.json").is_file());
}

/// `--pipeline` simulates data as a preset expects: its modality for a source
/// that implies none, its [acquisition] for the options not given; options
/// given win, and a source of the other modality is refused.
#[test]
fn a_preset_gives_the_acquisition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mr");
    ok(&simulate(&[
        "--source",
        "ellipses-mr:5",
        "--size",
        "32",
        "--coils",
        "2",
        "-p",
        "mri-cartesian-8x-fast",
        "-o",
        arg(&out),
    ]));
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulation.json")).unwrap())
            .unwrap();
    let mask = &p["acquisition"]["mask"];
    assert_eq!(mask["kind"], "equispaced", "{mask}");
    assert_eq!(mask["acceleration"], 8.0, "{mask}");
    assert_eq!(mask["center_fraction"], 0.04, "{mask}");

    let out = dir.path().join("ct");
    ok(&simulate(&[
        "--source",
        "shepp-logan-hu",
        "--size",
        "32",
        "--views",
        "18",
        "-p",
        "ct-low-dose-poisson",
        "-o",
        arg(&out),
    ]));
    let raw = read_raw(&files(&out.join("raw"))[0], ReadLimits::default()).unwrap();
    let Measurement::CtSinogram(sino) = &raw.data else {
        panic!("not a sinogram")
    };
    assert_eq!(sino.views, 18);
    assert!(matches!(
        sino.data_type,
        dps_recon::dicom::CtDataType::Counts { .. }
    ));

    usage_error(
        &simulate(&[
            "--source",
            "shepp-logan",
            "-p",
            "ct-sparse-view",
            "-o",
            arg(&dir.path().join("other")),
        ]),
        "is for CT data, but the simulation is MR",
    );
}
