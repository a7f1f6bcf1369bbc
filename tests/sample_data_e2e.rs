//! The bundled sample data through the CLI with the shipped priors and the fast
//! presets, as `make demo` runs them: `dps-recon run` must exit 0, write series
//! that dciodvfy accepts and a manifest that says done, and the DPS series must
//! score a higher PSNR against the ground truth than the classical baselines named
//! below. PSNR is recomputed here from the written DICOM files.

mod dicom_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dps_recon::dicom::{read_series, ReadLimits};
use dps_recon::metrics::psnr;
use serde_json::Value;
use tch::Tensor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    files
}

/// The frames of the series in `dir` by z position (mm, as an integer key in µm).
fn frames_by_z(dir: &Path) -> BTreeMap<i64, Tensor> {
    read_series(&dcm_files(dir), ReadLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .frames
        .into_iter()
        .map(|f| {
            let z = f.plane.expect("image plane").position_mm[2];
            let t = Tensor::from_slice(&f.pixels).view([f.rows as i64, f.cols as i64]);
            ((z * 1000.0).round() as i64, t)
        })
        .collect()
}

/// Mean PSNR over the slices of the series in `dir` against `truth`, with the data
/// range max − min of the truth over all slices.
fn mean_psnr(dir: &Path, truth: &BTreeMap<i64, Tensor>) -> f64 {
    let lo = truth
        .values()
        .map(|t| t.min().double_value(&[]))
        .fold(f64::INFINITY, f64::min);
    let hi = truth
        .values()
        .map(|t| t.max().double_value(&[]))
        .fold(f64::NEG_INFINITY, f64::max);
    let images = frames_by_z(dir);
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "{}: slice positions differ from the truth's",
        dir.display()
    );
    images
        .iter()
        .map(|(z, x)| psnr(x, &truth[z], hi - lo))
        .sum::<f64>()
        / images.len() as f64
}

/// Runs the fast preset on sample_data/`case`, checks the output and returns the
/// mean PSNR of every written series kind (dps and the baselines).
fn run_case(case: &str, preset: &str) -> BTreeMap<String, f64> {
    let card = root().join(
        std::fs::read_to_string(root().join("pipelines").join(format!("{preset}.toml")))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("card = \"../"))
            .and_then(|l| l.split('"').next())
            .expect("the preset names its prior card"),
    );
    assert!(
        card.exists(),
        "{} is missing: the shipped priors are part of the repository (models/)",
        card.display()
    );
    let out = tempfile::tempdir().unwrap();
    let input = root().join("sample_data").join(case).join("raw");
    let status = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args([
            "--device",
            "cpu",
            "-q",
            "run",
            "--pipeline",
            preset,
            "--json",
        ])
        .arg(&input)
        .arg("-o")
        .arg(out.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{summary:#}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // One study with one series: OUT/<study>/<series>/.
    let series: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|study| std::fs::read_dir(study).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    let dir = &series[0];
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "done", "{manifest:#}");
    // The fast presets' sampler, as the manifest records it.
    let parameters = &manifest["parameters"];
    assert_eq!(parameters["steps"], 100, "{parameters:#}");
    assert_eq!(
        parameters["clamp_gradient"], "straight-through:700",
        "{parameters:#}"
    );
    let truth = frames_by_z(&root().join("sample_data").join(case).join("truth"));
    let mut scores = BTreeMap::new();
    for output in manifest["outputs"].as_array().unwrap() {
        let kind = output["kind"].as_str().unwrap();
        let files = output["files"].as_array().unwrap();
        assert_eq!(files.len(), truth.len(), "{kind}");
        for file in files {
            let path = dir.join(file.as_str().unwrap());
            if let Some(report) = dicom_support::dciodvfy(&path) {
                let errors = dicom_support::dciodvfy_errors(&report);
                assert!(errors.is_empty(), "{}:\n{report}", path.display());
            }
        }
        if kind != "uncertainty" {
            scores.insert(kind.to_string(), mean_psnr(&dir.join(kind), &truth));
        }
    }
    for slice in manifest["slices"].as_array().unwrap() {
        let r = slice["residual"]["dps"].as_f64().unwrap();
        assert!(r.is_finite() && r > 0.0, "{slice:#}");
    }
    // `dps-recon score` pairs and scores the same series as this test does.
    let scored = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["score", "--json", "--truth"])
        .arg(root().join("sample_data").join(case).join("truth"))
        .args(scores.keys().map(|kind| dir.join(kind)))
        .output()
        .unwrap();
    assert!(
        scored.status.success(),
        "{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    let scored: Value = serde_json::from_slice(&scored.stdout).unwrap();
    for (kind, series) in scores.keys().zip(scored["series"].as_array().unwrap()) {
        let reported = series["mean"]["psnr"].as_f64().unwrap();
        assert!(
            (reported - scores[kind]).abs() < 1e-9,
            "{kind}: score says {reported} dB, this test {}",
            scores[kind]
        );
        assert_eq!(series["truth_slices_missing"], 0);
    }
    eprintln!("{case} with {preset}: mean PSNR {scores:?}");
    scores
}

/// Each method's mean PSNR is at least its value measured on 2026-12-07 (this
/// machine, `cargo test --release`) less `margin` dB: 1 dB for DPS, whose chain
/// amplifies float rounding that differs with the thread count, 0.3 dB for the
/// deterministic baselines. So a regression shows even where the methods keep
/// their order.
fn assert_floors(psnr: &BTreeMap<String, f64>, measured: &[(&str, f64, f64)]) {
    assert_eq!(
        psnr.keys().collect::<Vec<_>>(),
        {
            let mut kinds: Vec<&str> = measured.iter().map(|m| m.0).collect();
            kinds.sort();
            kinds
        },
        "the methods scored"
    );
    for &(kind, db, margin) in measured {
        assert!(
            psnr[kind] >= db - margin,
            "{kind}: {:.2} dB, measured {db:.2} dB when this test was written",
            psnr[kind]
        );
    }
}

#[test]
fn mri_sample_case_dps_beats_zero_filled_and_cg_sense() {
    let psnr = run_case("mri-brain-4x", "mri-cartesian-4x-fast");
    for baseline in ["zero-filled", "cg-sense"] {
        assert!(
            psnr["dps"] > psnr[baseline] + 1.0,
            "DPS {:.2} dB is not 1 dB above {baseline} {:.2} dB",
            psnr["dps"],
            psnr[baseline]
        );
    }
    assert_floors(
        &psnr,
        &[
            ("dps", 32.73, 1.0),
            ("cg-sense", 27.27, 0.3),
            ("zero-filled", 22.66, 0.3),
        ],
    );
}

#[test]
fn ct_sample_case_dps_beats_fbp() {
    let psnr = run_case("ct-shepp-logan-sparse", "ct-sparse-view-fast");
    assert!(
        psnr["dps"] > psnr["fbp"] + 1.0,
        "DPS {:.2} dB is not 1 dB above FBP {:.2} dB",
        psnr["dps"],
        psnr["fbp"]
    );
    assert_floors(
        &psnr,
        &[("dps", 36.94, 1.0), ("fbp", 23.32, 0.3), ("tv", 38.91, 0.3)],
    );
}
