//! `dps-recon validate` end to end on tiny cases with tiny priors trained here:
//! the report's keys and numbers, the montage's size, and a baseline PSNR
//! recomputed from the files the run wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use dps_operators::ct::FbpFilter;
use dps_recon::dicom::{read_raw, read_series, ReadLimits};
use dps_recon::metrics::{nmse, psnr, ssim};
use dps_recon::phantom::PhantomStyle;
use dps_recon::pipeline::problem::Problem;
use dps_recon::pipeline::reconstruct::DEFAULT_CG_ITERATIONS;
use dps_recon::pipeline::reconstruct::{
    baseline, reconstruct_dps, sample_batch_seed, Baseline, DpsSettings, Guidance, Refine,
};
use dps_recon::prior::train::{train, TrainConfig, TrainingData};
use dps_recon::prior::{BetaSchedule, IntensityMap, Precision, Prior, UNetConfig};
use dps_recon::sampler::ClampGradient;
use serde_json::Value;
use tch::{Device, Tensor};

/// `train` seeds libtorch's global generator: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Trains a tiny 32² prior for two steps in `dir`; returns its model card.
fn tiny_prior(dir: &Path, style: PhantomStyle) -> PathBuf {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (unit, lo, hi) = match style {
        PhantomStyle::Ct => ("HU", -1000.0, 1500.0),
        PhantomStyle::Mr => ("MR", 0.0, 1.0),
    };
    let cfg = TrainConfig {
        name: "tiny".into(),
        description: "test".into(),
        data_description: "phantoms".into(),
        command: "test".into(),
        out_dir: dir.to_path_buf(),
        image_size: 32,
        architecture: UNetConfig::tiny(1),
        schedule: BetaSchedule::default(),
        intensity: IntensityMap {
            unit: unit.into(),
            physical_min: lo,
            physical_max: hi,
            reference_p999: None,
        },
        steps: 2,
        batch_size: 2,
        learning_rate: 1e-3,
        ema_decay: 0.9,
        seed: 1,
        checkpoint_every: 2,
        log_every: 1,
        device: Device::Cpu,
        precision: Default::default(),
        validation_images: 0,
    };
    train(&cfg, &TrainingData::Phantoms(style.into()), &mut |_| {})
        .unwrap()
        .card_path
}

fn dps_recon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["--device", "cpu", "--threads", "1", "validate"])
        .args(args)
        .output()
        .expect("run dps-recon")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The stderr of a run that was refused (exit status 2).
fn refused(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Copies the files of folder `from` (and its sub-folders) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// The truth frames by ImagePositionPatient and the raw slices in slice order.
fn truths(case: &Path) -> Vec<([f64; 3], Tensor)> {
    read_series(&dcm_files(&case.join("truth")), ReadLimits::default())
        .unwrap()
        .frames
        .into_iter()
        .map(|f| {
            let t = Tensor::from_slice(&f.pixels).view([f.rows as i64, f.cols as i64]);
            (f.plane.unwrap().position_mm, t)
        })
        .collect()
}

/// PSNR, SSIM and NMSE of the baseline `which` on each raw slice of `case`,
/// recomputed from the files, with the data range max − min of the truth; per
/// slice in z order.
fn recomputed_scores(case: &Path, which: Baseline) -> Vec<[f64; 3]> {
    let truths = truths(case);
    let lo = truths
        .iter()
        .map(|(_, t)| t.min().double_value(&[]))
        .fold(f64::INFINITY, f64::min);
    let hi = truths
        .iter()
        .map(|(_, t)| t.max().double_value(&[]))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut out: Vec<(f64, [f64; 3])> = dcm_files(&case.join("raw"))
        .iter()
        .map(|f| {
            let raw = read_raw(f, ReadLimits::default()).unwrap();
            let (_, truth) = truths
                .iter()
                .find(|(p, _)| *p == raw.plane.position_mm)
                .unwrap();
            let problem = Problem::from_raw(&raw, Device::Cpu).unwrap();
            let x = baseline(&problem, which).unwrap();
            let n = truth.size();
            let x = x.view([n[0], n[1]]);
            (
                raw.plane.position_mm[2],
                [
                    psnr(&x, truth, hi - lo),
                    ssim(&x, truth, hi - lo),
                    nmse(&x, truth),
                ],
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.into_iter().map(|(_, p)| p).collect()
}

fn finite(v: &Value) -> f64 {
    let x = v.as_f64().unwrap_or(f64::NAN);
    assert!(x.is_finite(), "{v}");
    x
}

fn png_size(path: &Path) -> (u32, u32) {
    image::open(path).unwrap().into_luma8().dimensions()
}

/// `validate` options simulating a small CT case: one 32² ellipse phantom, 12 views.
const SMALL_CT_CASE: [&str; 8] = [
    "--source",
    "ellipses-ct:4",
    "--size",
    "32",
    "--views",
    "12",
    "--noise-sigma",
    "0.01",
];

#[test]
fn ct_validation_reports_scores_that_can_be_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Ct);
    let out = dir.path().join("val");
    let sampler = ["--prior", arg(&card), "--steps", "3", "--samples", "2"];
    let source = SMALL_CT_CASE;
    let rest = ["--baselines", "fbp,tv:0.05:30", "-o", arg(&out)];
    let stdout = ok(&dps_recon(&[&source[..], &sampler, &rest].concat()));
    assert!(stdout.contains(arg(&out.join("montage.png"))), "{stdout}");
    for f in ["report.md", "simulation.json", "raw/slice_0001.dcm"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r = report(&out);
    assert_eq!(r["modality"], "CT");
    assert_eq!(r["unit"], "HU");
    assert_eq!(r["slices_count"], 1);
    assert_eq!(r["dps"]["steps"], 3);
    assert_eq!(r["dps"]["guidance"], "ramp");
    // Below 500 steps, the fast presets' clamp gradient.
    assert_eq!(r["dps"]["clamp_gradient"], "straight-through:700");
    assert_eq!(r["dps"]["samples"], 2);
    assert_eq!(r["prior"]["name"], "tiny");
    assert_eq!(r["simulation"]["source"], "ellipses-ct:4");
    assert_eq!(
        r["montage_columns"].as_array().unwrap().len(),
        5,
        "{}",
        r["montage_columns"]
    );
    let truth = &truths(&out)[0].1;
    let range = truth.max().double_value(&[]) - truth.min().double_value(&[]);
    assert!((finite(&r["data_range"]) - range).abs() < 1e-9 * range);
    for m in ["fbp", "tv", "dps"] {
        let s = &r["mean"][m];
        for key in ["psnr", "ssim", "nmse", "residual", "seconds"] {
            finite(&s[key]);
        }
        assert!(finite(&s["seconds"]) >= 0.0);
        assert!(finite(&s["nmse"]) >= 0.0);
        assert_eq!(r["slices"][0]["methods"][m]["psnr"], s["psnr"]);
    }
    let (fbp, tv) = (
        finite(&r["mean"]["fbp"]["psnr"]),
        finite(&r["mean"]["tv"]["psnr"]),
    );
    assert_eq!(r["best_baseline"], if tv > fbp { "tv" } else { "fbp" });
    assert!(r["slices"][0]["mri_scale"].is_null());

    let again = recomputed_scores(&out, Baseline::Fbp(FbpFilter::Hann))[0];
    let fbp_scores = &r["slices"][0]["methods"]["fbp"];
    for (k, key) in ["psnr", "ssim", "nmse"].into_iter().enumerate() {
        let reported = finite(&fbp_scores[key]);
        assert!(
            (again[k] - reported).abs() <= 1e-4 * reported.abs().max(1.0),
            "FBP {key} {reported}, recomputed {}",
            again[k]
        );
    }
    // 5 panels of 32² with 4-pixel gaps.
    assert_eq!(png_size(&out.join("montage.png")), (5 * 32 + 4 * 4, 32));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains(&format!("| fbp | {fbp:.2} |")), "{md}");
    assert_eq!(r["prior"]["precision"], "f32");
    // Two samples: their std is checked against the DPS error.
    let calibration = &r["calibration"]["mean"];
    assert_eq!(&r["slices"][0]["calibration"], calibration);
    let ratio = finite(&calibration["error_ratio"]);
    assert!(ratio > 0.0, "{calibration}");
    assert!(
        finite(&calibration["correlation"]).abs() <= 1.0,
        "{calibration}"
    );
    assert!(
        md.contains(&format!(
            "DPS posterior std (2 samples): the RMS error of the mean is {ratio:.2}× what"
        )),
        "{md}"
    );

    // The same case with the network in bf16: recorded as such, the same FBP, and
    // DPS close to the f32 chain's but not equal to it.
    let bf16 = dir.path().join("bf16");
    let rest = [
        "--baselines",
        "fbp",
        "--precision",
        "bf16",
        "-o",
        arg(&bf16),
    ];
    ok(&dps_recon(
        &[&["--case", arg(&out)][..], &sampler, &rest].concat(),
    ));
    let b = report(&bf16);
    assert_eq!(b["prior"]["precision"], "bf16");
    assert_eq!(b["mean"]["fbp"]["psnr"], r["mean"]["fbp"]["psnr"]);
    let (dps, dps_bf16) = (
        finite(&r["mean"]["dps"]["psnr"]),
        finite(&b["mean"]["dps"]["psnr"]),
    );
    assert!(
        dps != dps_bf16 && (dps - dps_bf16).abs() < 0.5,
        "DPS {dps} dB in f32, {dps_bf16} dB in bf16"
    );
    let md = std::fs::read_to_string(bf16.join("report.md")).unwrap();
    assert!(md.contains("run in bf16"), "{md}");
}

#[test]
fn mr_validation_of_a_simulated_case_and_of_the_same_case_again() {
    let dir = tempfile::tempdir().unwrap();
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Mr);
    let first = dir.path().join("first");
    let common = [
        "--prior",
        arg(&card),
        "--steps",
        "3",
        "--samples",
        "2",
        "--dps-seed",
        "5",
    ];
    ok(&dps_recon(
        &[
            &[
                "--source",
                "ellipses-mr:1,2",
                "--size",
                "32",
                "--coils",
                "4",
                "--acs",
                "0.2",
                "--noise-sigma",
                "0.01",
                "-o",
                arg(&first),
            ][..],
            &common[..],
        ]
        .concat(),
    ));
    let r = report(&first);
    assert_eq!(r["dps"]["guidance"], "plain");
    assert_eq!(r["dps"]["clamp_gradient"], "straight-through:700");
    assert_eq!(r["modality"], "MR");
    assert_eq!(r["slices_count"], 2);
    assert_eq!(finite(&r["data_range"]), 1.0);
    let methods: Vec<&str> = r["mean"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(methods, ["cg-sense", "dps", "tv", "zero-filled"]);
    // The calibration of two slices is the mean of theirs.
    for key in ["error_ratio", "correlation"] {
        let each: Vec<f64> = r["slices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| finite(&s["calibration"][key]))
            .collect();
        let mean = finite(&r["calibration"]["mean"][key]);
        assert!(
            (mean - (each[0] + each[1]) / 2.0).abs() < 1e-12,
            "{key}: {each:?}, {mean}"
        );
    }
    let cg = recomputed_scores(
        &first,
        Baseline::CgSense {
            iterations: DEFAULT_CG_ITERATIONS,
        },
    );
    for (i, s) in r["slices"].as_array().unwrap().iter().enumerate() {
        assert!(finite(&s["mri_scale"]) > 0.0);
        for (k, key) in ["psnr", "ssim", "nmse"].into_iter().enumerate() {
            let reported = finite(&s["methods"]["cg-sense"][key]);
            assert!(
                (reported - cg[i][k]).abs() <= 1e-4 * reported.abs().max(1.0),
                "slice {i}: CG-SENSE {key} {reported}, recomputed {}",
                cg[i][k]
            );
        }
        finite(&s["methods"]["dps"]["ssim"]);
    }
    // Two rows of 32 pixels with a 4-pixel gap.
    assert_eq!(
        png_size(&first.join("montage.png")),
        (5 * 32 + 4 * 4, 2 * 32 + 4)
    );

    // The written case again: the same scores (the sampler is seeded).
    let second = dir.path().join("second");
    ok(&dps_recon(
        &[
            &[
                "--case",
                arg(&first),
                "--baselines",
                "cg-sense",
                "-o",
                arg(&second),
            ][..],
            &common[..],
        ]
        .concat(),
    ));
    let r2 = report(&second);
    assert!(second.join("montage.png").is_file());
    assert!(!second.join("raw").exists());
    assert_eq!(r2["simulation"], r["simulation"]);
    for m in ["cg-sense", "dps"] {
        let (a, b) = (
            finite(&r["mean"][m]["psnr"]),
            finite(&r2["mean"][m]["psnr"]),
        );
        assert!((a - b).abs() < 1e-6, "{m}: {a} dB, then {b} dB");
    }
    assert!(r2["mean"].get("zero-filled").is_none());

    // Samples drawn in batches of one: recorded in the report; below, the same
    // posterior statistics as two one-sample runs seeded as the batches are.
    let third = dir.path().join("third");
    let split = [
        &["--case", arg(&first), "--baselines", "cg-sense"][..],
        &common[..],
    ];
    let split = [
        &split.concat()[..],
        &["--sample-batch", "1", "-o", arg(&third)],
    ]
    .concat();
    ok(&dps_recon(&split));
    assert_eq!(report(&third)["dps"]["sample_batch"], 1);
    let md = std::fs::read_to_string(third.join("report.md")).unwrap();
    assert!(
        md.contains("2 sample(s) per slice (1 at a time), seed 5"),
        "{md}"
    );
    sample_batches_are_independent_chains(&first.join("raw/slice_0001.dcm"), &card);
}

/// Library level, on an MR slice (two real images per sample): samples in
/// batches of one give the mean and standard deviation of one-sample runs
/// seeded with `sample_batch_seed`, and a batch that holds every sample changes
/// nothing.
fn sample_batches_are_independent_chains(raw: &Path, card: &Path) {
    let problem =
        Problem::from_raw(&read_raw(raw, ReadLimits::default()).unwrap(), Device::Cpu).unwrap();
    let prior = Prior::load(card, Device::Cpu, Precision::F32).unwrap();
    let settings = DpsSettings {
        steps: 3,
        zeta: 1.0,
        eta: Some(1.0),
        samples: 2,
        sample_batch: None,
        seed: 5,
        guidance: Guidance::Plain,
        clamp_gradient: ClampGradient::Exact,
        refine: Refine::None,
    };
    let rec = |samples, sample_batch, seed| {
        let s = DpsSettings {
            samples,
            sample_batch,
            seed,
            ..settings.clone()
        };
        reconstruct_dps(&problem, &prior, &s, 1.0, &mut |_, _| {}).unwrap()
    };
    let all = rec(2, None, 5);
    let same = rec(2, Some(2), 5);
    assert!(all.mean.equal(&same.mean) && all.std.equal(&same.std));
    let split = rec(2, Some(1), 5);
    let (a, c) = (
        rec(1, None, 5).mean,
        rec(1, None, sample_batch_seed(5, 1)).mean,
    );
    let max = |t: Tensor| t.abs().max().double_value(&[]);
    let scale = max(a.shallow_clone());
    assert!(max(&split.mean - (&a + &c) / 2.0) < 1e-5 * scale);
    assert!(max(&split.std - (&a - &c).abs() / 2.0) < 1e-5 * scale);
    assert!(
        max(&split.mean - &all.mean) > 1e-3 * scale,
        "other noise, other samples"
    );
}

#[test]
fn validate_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let o = arg(dir.path());
    let stderr = refused(&dps_recon(&[
        "--case",
        o,
        "--source",
        "shepp-logan",
        "--prior",
        "p.json",
        "-o",
        o,
    ]));
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    // Shepp–Logan in MR (32²) with a prior, extra arguments and an output folder.
    let mr_case = |prior: &Path, extra: &[&str], out: &str| {
        let source = ["--source", "shepp-logan", "--size", "32"];
        let out = dir.path().join(out);
        refused(&dps_recon(
            &[
                &source[..],
                extra,
                &["--prior", arg(prior), "-o", arg(&out)],
            ]
            .concat(),
        ))
    };
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Ct);
    let stderr = mr_case(&card, &["--baselines", "fbp"], "a");
    assert!(stderr.contains("'fbp' does not apply to MR"), "{stderr}");

    let stderr = mr_case(&card, &["--precision", "fp16"], "a2");
    assert!(
        stderr.contains("unknown precision 'fp16': expected f32 or bf16"),
        "{stderr}"
    );

    // A CT prior for an MR case.
    let stderr = mr_case(&card, &[], "b");
    assert!(
        stderr.contains("is for HU images, the case is MR"),
        "{stderr}"
    );

    // The lowpass refinement is for CT, refused on MR data before any sampling.
    let mr_card = tiny_prior(&dir.path().join("mr-prior"), PhantomStyle::Mr);
    let refine = ["--baselines", "zero-filled", "--refine", "lowpass"];
    let stderr = mr_case(&mr_card, &refine, "b2");
    assert!(
        stderr.contains("lowpass refinement is for CT data"),
        "{stderr}"
    );

    // k-space whose squares overflow float32: named as such (before: "the k-space
    // is empty", as the NaN percentile counted as no signal).
    let huge = ["--baselines", "zero-filled", "--noise-sigma", "1e30"];
    let stderr = mr_case(&mr_card, &huge, "b3");
    assert!(
        stderr.contains("too large for float32 arithmetic"),
        "{stderr}"
    );

    // One case holding line integrals and counts: the ζ default and the baselines
    // follow the kind of data, so the case is refused, naming the odd file.
    let simulate = |extra: &[&str], out: &Path| {
        ok(&Command::new(env!("CARGO_BIN_EXE_dps-recon"))
            .args(["--threads", "1", "simulate", "--source", "ellipses-ct:4"])
            .args(["--size", "32", "--views", "12"])
            .args(extra)
            .args(["-o", arg(out)])
            .output()
            .expect("run dps-recon"));
    };
    let (mixed, counts) = (dir.path().join("mixed"), dir.path().join("counts"));
    simulate(&[], &mixed);
    simulate(&["--counts", "1e4"], &counts);
    let odd = mixed.join("raw/slice_0002.dcm");
    std::fs::copy(counts.join("raw/slice_0001.dcm"), &odd).unwrap();
    // The stderr of validating `case` with the CT card into `out`, refused.
    let refused_case = |case: &Path, out: &str| {
        let out = dir.path().join(out);
        refused(&dps_recon(&[
            "--case",
            arg(case),
            "--prior",
            arg(&card),
            "-o",
            arg(&out),
        ]))
    };
    let stderr = refused_case(&mixed, "c");
    assert!(
        stderr.contains(&format!(
            "{}: CT transmission counts, but {} has CT line integrals",
            odd.display(),
            mixed.join("raw/slice_0001.dcm").display()
        )),
        "{stderr}"
    );

    // Counts alone are fine, with the low-dose presets' ζ, clamp gradient,
    // guidance (the ramp with a floor) and refinement; the bare ramp keeps its own
    // tuned ζ, and a negative floor is refused.
    let run = |extra: &[&str], out: &Path| {
        let case = [
            "--case",
            arg(&counts),
            "--prior",
            arg(&card),
            "--steps",
            "2",
            "--samples",
            "1",
            "--baselines",
            "fbp",
        ];
        dps_recon(&[&case[..], extra, &["-o", arg(out)]].concat())
    };
    let out = dir.path().join("d");
    ok(&run(&[], &out));
    let r = report(&out);
    assert_eq!(r["dps"]["zeta"], 0.25);
    assert_eq!(r["dps"]["clamp_gradient"], "straight-through:700");
    assert_eq!(r["dps"]["guidance"], "ramp:0.02");
    assert_eq!(r["dps"]["refine"], "lowpass:4:20");

    let bare = dir.path().join("e");
    ok(&run(&["--guidance", "ramp"], &bare));
    let r = report(&bare);
    assert_eq!(r["dps"]["guidance"], "ramp");
    assert_eq!(r["dps"]["zeta"], 0.5);
    for floor in ["ramp:-0.02", "ramp:1.5"] {
        let stderr = refused(&run(&["--guidance", floor], &dir.path().join("f")));
        assert!(stderr.contains("ramp:C (C in 0 … 1"), "{stderr}");
    }

    // The lowpass refinement starts from the same sample (same seed) as a run
    // without it and fits its smooth part to the counts, so the PWLS residual falls.
    let unrefined = dir.path().join("g");
    ok(&run(&["--refine", "none"], &unrefined));
    let (before, after) = (report(&unrefined), report(&out));
    assert_eq!(before["dps"]["refine"], "none");
    let residual = |r: &Value| finite(&r["mean"]["dps"]["residual"]);
    assert!(
        residual(&after) < 0.9 * residual(&before),
        "residual {} → {}",
        residual(&before),
        residual(&after)
    );
    let stderr = refused(&run(&["--refine", "lowpass:0"], &dir.path().join("h")));
    assert!(stderr.contains("SIGMA_PX in 0.01…1000"), "{stderr}");
    // Before, σ = 1e19 px panicked building the kernel, 1e5 px aborted allocating it.
    let stderr = refused(&run(&["--refine", "lowpass:1e19"], &dir.path().join("h2")));
    assert!(stderr.contains("SIGMA_PX in 0.01…1000"), "{stderr}");

    // Sampler settings out of range are refused before anything is written
    // (before, --zeta nan and --eta 2 ran, and --steps 2000 ran 1000 steps).
    for (extra, message) in [
        (
            ["--zeta", "nan"],
            "'nan' for '--zeta <ZETA>': must be a finite number > 0",
        ),
        (
            ["--zeta", "0"],
            "'0' for '--zeta <ZETA>': must be a finite number > 0",
        ),
        (
            ["--eta", "2"],
            "'2' for '--eta <ETA>': must be a number in [0, 1]",
        ),
        (
            ["--samples", "0"],
            "'0' for '--samples <SAMPLES>': must be an integer ≥ 1",
        ),
        (
            ["--steps", "0"],
            "'0' for '--steps <STEPS>': must be an integer ≥ 1",
        ),
        (
            ["--steps", "2000"],
            "--steps 2000 exceeds the 1000 steps of prior",
        ),
    ] {
        let out = dir.path().join("i");
        let case = ["--case", arg(&counts), "--prior", arg(&card)];
        let stderr = refused(&dps_recon(
            &[&case[..], &extra, &["-o", arg(&out)]].concat(),
        ));
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?}");
    }
    // A case whose truth is of another modality than its raw data, or with one
    // slice twice, is refused (before, it was scored: −57 dB, or a slice counted
    // twice in the mean).
    let mr = dir.path().join("mr");
    ok(&Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["--threads", "1", "simulate", "--source", "ellipses-mr:4"])
        .args(["--size", "32", "--coils", "2", "-o", arg(&mr)])
        .output()
        .expect("run dps-recon"));
    let crossed = dir.path().join("crossed");
    std::fs::create_dir_all(crossed.join("raw")).unwrap();
    std::fs::copy(
        counts.join("raw/slice_0001.dcm"),
        crossed.join("raw/slice_0001.dcm"),
    )
    .unwrap();
    copy_dir(&mr.join("truth"), &crossed.join("truth"));
    let stderr = refused_case(&crossed, "k");
    assert!(
        stderr.contains("the ground-truth series is MR, the raw data CT"),
        "{stderr}"
    );
    let twice = dir.path().join("twice");
    copy_dir(&counts, &twice);
    std::fs::copy(
        twice.join("raw/slice_0001.dcm"),
        twice.join("raw/slice_0002.dcm"),
    )
    .unwrap();
    let stderr = refused_case(&twice, "l");
    assert!(stderr.contains("hold the same slice"), "{stderr}");

    // A ζ that makes the chain diverge is named as the cause (before, the report
    // gave NaN dB for DPS, and `run` failed writing a NaN pixel).
    let stderr = refused(&run(&["--zeta", "1e30"], &dir.path().join("j")));
    assert!(
        stderr.contains("DPS: the chain diverged (non-finite values): ζ = 1e30 is too large"),
        "{stderr}"
    );

    // Samples whose network activations cannot fit in memory are refused with
    // the sample batch that fits, before the baselines and before anything is
    // written (before, the kernel killed the process).
    let out = dir.path().join("m");
    let stderr = refused(&dps_recon(&[
        "--case",
        arg(&counts),
        "--prior",
        arg(&card),
        "--samples",
        "1000000000",
        "-o",
        arg(&out),
    ]));
    assert!(
        stderr.contains(
            "slice_0001.dcm: DPS: sampling 1 slice(s) × 1000000000 sample(s) = 1000000000 \
             images together needs at least"
        ) && stderr.contains("draw at most "),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// `--mri-scale auto` maps each slice's CG-SENSE 99.9th percentile to the card's
/// `reference_p999` (else to 0.8 of `physical_max`); a number is used as given.
#[test]
fn mr_intensity_scale_follows_the_cards_reference_percentile() {
    let dir = tempfile::tempdir().unwrap();
    let card_path = tiny_prior(&dir.path().join("prior"), PhantomStyle::Mr);
    let text = std::fs::read_to_string(&card_path).unwrap();
    let mut card: Value = serde_json::from_str(&text).unwrap();
    let reference = finite(&card["intensity"]["reference_p999"]);
    assert!(reference > 0.0 && reference <= 1.0, "{reference}");
    let case = dir.path().join("case");
    let scale_with = |card: &Value, scale: &str, out: &str| -> f64 {
        std::fs::write(&card_path, serde_json::to_string(card).unwrap()).unwrap();
        let out = dir.path().join(out);
        let source: &[&str] = if case.join("raw").is_dir() {
            &["--case", arg(&case)]
        } else {
            &["--source", "ellipses-mr:3", "--size", "32", "--coils", "2"]
        };
        ok(&dps_recon(
            &[
                source,
                &[
                    "--prior",
                    arg(&card_path),
                    "--steps",
                    "1",
                    "--samples",
                    "1",
                    "--baselines",
                    "zero-filled",
                    "--mri-scale",
                    scale,
                    "-o",
                    arg(&out),
                ][..],
            ]
            .concat(),
        ));
        if !case.join("raw").is_dir() {
            std::fs::rename(&out, &case).unwrap();
            return finite(&report(&case)["slices"][0]["mri_scale"]);
        }
        finite(&report(&out)["slices"][0]["mri_scale"])
    };
    let auto = scale_with(&card, "auto", "a");
    // One sample has no standard deviation to check.
    let one = report(&case);
    assert!(one["calibration"]["mean"].is_null(), "{one:#}");
    assert!(one["slices"][0]["calibration"].is_null(), "{one:#}");
    let md = std::fs::read_to_string(case.join("report.md")).unwrap();
    assert!(!md.contains("posterior std ("), "{md}");
    card["intensity"]["reference_p999"] = Value::from(reference / 2.0);
    let half = scale_with(&card, "auto", "b");
    assert!((half / auto - 2.0).abs() < 1e-9, "{auto} then {half}");
    card["intensity"]
        .as_object_mut()
        .unwrap()
        .remove("reference_p999");
    let legacy = scale_with(&card, "auto", "c");
    assert!(
        (legacy / auto - reference / 0.8).abs() < 1e-9,
        "{auto} then {legacy} without the reference"
    );
    assert_eq!(scale_with(&card, "0.5", "d"), 0.5);

    // A reference outside the card's physical range is refused, naming the card.
    card["intensity"]["reference_p999"] = Value::from(2.0);
    std::fs::write(&card_path, serde_json::to_string(&card).unwrap()).unwrap();
    let err = refused(&dps_recon(&[
        "--case",
        arg(&case),
        "--prior",
        arg(&card_path),
        "-o",
        arg(&dir.path().join("e")),
    ]));
    assert!(
        err.contains("reference_p999") && err.contains("tiny.json"),
        "{err}"
    );
}

/// `validate --pipeline` scores a preset's recipe: its prior, sampler settings,
/// baselines and likelihood, and when simulating its acquisition; options given
/// override it, data that differ from its acquisition are warned about, and data
/// it cannot take are refused.
#[test]
fn validate_scores_a_presets_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Ct);
    let preset = dir.path().join("ct-counts-test.toml");
    std::fs::write(
        &preset,
        format!(
            "description = \"test\"\n\
             [data]\nmodality = \"ct\"\nlikelihood = \"transmission\"\n\
             [prior]\ncard = \"{}\"\n\
             [sampler]\nsteps = 3\nzeta = 0.2\neta = 0.5\nguidance = \"ramp\"\nsamples = 2\nseed = 7\n\
             [baselines]\nlist = [\"fbp\"]\n[baselines.fbp]\nfilter = \"ramp\"\n\
             [outputs]\nuncertainty = true\nbaselines = true\n\
             [acquisition]\ngeometry = \"parallel\"\nviews = 12\narc_deg = 180\n\
             blank_scan_counts = 10000\n",
            card.display()
        ),
    )
    .unwrap();
    let source = ["--source", "ellipses-ct:4", "--size", "32"];
    let run = |extra: &[&str], out: &Path| {
        dps_recon(&[&source[..], &["-p", arg(&preset), "-o", arg(out)], extra].concat())
    };

    let out = dir.path().join("recipe");
    ok(&run(&[], &out));
    let r = report(&out);
    assert_eq!(r["preset"]["name"], "ct-counts-test");
    assert_eq!(r["preset"]["path"], arg(&preset));
    assert_eq!(r["warnings"], serde_json::json!([]));
    assert_eq!(r["prior"]["card"], arg(&card));
    let dps = &r["dps"];
    assert_eq!(
        [
            &dps["steps"],
            &dps["zeta"],
            &dps["eta"],
            &dps["samples"],
            &dps["seed"]
        ],
        [
            &Value::from(3),
            &Value::from(0.2),
            &Value::from(0.5),
            &Value::from(2),
            &Value::from(7)
        ]
    );
    assert_eq!(dps["guidance"], "ramp");
    let baselines: Vec<&String> = r["baselines"].as_object().unwrap().keys().collect();
    assert_eq!(baselines, ["fbp"]);
    assert_eq!(r["baselines"]["fbp"], "FBP, Ramp filter");
    // The simulation took the preset's acquisition: 12 views of counts.
    let sim = &r["simulation"]["acquisition"];
    assert!(sim.to_string().contains("10000"), "{sim}");
    let raw = read_raw(&out.join("raw/slice_0001.dcm"), ReadLimits::default()).unwrap();
    let dps_recon::dicom::Measurement::CtSinogram(sino) = &raw.data else {
        panic!("not a sinogram")
    };
    assert_eq!(sino.views, 12);
    assert!(matches!(
        sino.data_type,
        dps_recon::dicom::CtDataType::Counts { .. }
    ));

    // Options override the preset; other views are warned about.
    let out = dir.path().join("overridden");
    ok(&run(
        &["--zeta", "0.1", "--samples", "3", "--views", "10"],
        &out,
    ));
    let r = report(&out);
    assert_eq!(r["dps"]["zeta"], 0.1);
    assert_eq!(r["dps"]["samples"], 3);
    assert_eq!(r["dps"]["seed"], 7);
    assert_eq!(
        r["warnings"],
        serde_json::json!(["the data have 10 views; preset ct-counts-test is tuned for 12"])
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("- Preset: ct-counts-test ("), "{md}");
    assert!(md.contains("- Warning: the data have 10 views"), "{md}");

    // Line integrals cannot take the transmission likelihood; MR data not a CT preset.
    let out = dir.path().join("line-integrals");
    let out_put = run(&["--noise-sigma", "0.01"], &out);
    assert!(!out_put.status.success());
    let stderr = String::from_utf8_lossy(&out_put.stderr);
    assert!(
        stderr.contains(
            "the transmission likelihood needs CT counts, but the file holds line integrals"
        ),
        "{stderr}"
    );
    let mr = dps_recon(&[
        "--source",
        "shepp-logan",
        "--size",
        "32",
        "-p",
        arg(&preset),
        "-o",
        arg(&dir.path().join("mr")),
    ]);
    let stderr = refused(&mr);
    assert!(
        stderr.contains("preset ct-counts-test (")
            && stderr.contains("is for CT data, but the simulation is MR"),
        "{stderr}"
    );
    let ct_case = dir.path().join("recipe");
    let mr_preset = dps_recon(&[
        "--case",
        arg(&ct_case),
        "-p",
        "mri-cartesian-4x-fast",
        "-o",
        arg(&dir.path().join("mr-preset")),
    ]);
    let stderr = refused(&mr_preset);
    assert!(
        stderr.contains("preset mri-cartesian-4x-fast (")
            && stderr.contains("is for MR data, but the case holds CT data"),
        "{stderr}"
    );
    let stderr = refused(&dps_recon(&[&source[..], &["-o", arg(&out)]].concat()));
    assert!(
        stderr.contains("--pipeline") && stderr.contains("--prior"),
        "{stderr}"
    );
}

/// `--zeta A,B,…` runs DPS with each ζ from the same seed and reports the one
/// with the highest mean PSNR, beside the baselines run once.
#[test]
fn a_zeta_sweep_reports_every_zeta_and_keeps_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Ct);
    let case = dir.path().join("case");
    let sampler = ["--prior", arg(&card), "--steps", "3", "--samples", "2"];
    let source = SMALL_CT_CASE;
    let rest = ["--zeta", "0.2", "--baselines", "fbp", "-o", arg(&case)];
    ok(&dps_recon(&[&source[..], &sampler, &rest].concat()));

    // Almost no guidance first, so that the best ζ is not the first one tried.
    let zetas = [1e-6, 0.2, 0.05];
    let sweep = dir.path().join("sweep");
    let listed = "0.000001,0.2,0.05";
    let rest = [
        "--case",
        arg(&case),
        "--zeta",
        listed,
        "--baselines",
        "fbp,tv",
    ];
    let stdout = ok(&dps_recon(
        &[&rest[..], &sampler, &["-o", arg(&sweep)]].concat(),
    ));
    let r = report(&sweep);
    let trials = r["zeta_sweep"]["trials"].as_array().unwrap();
    let tried: Vec<f64> = trials.iter().map(|t| finite(&t["zeta"])).collect();
    assert_eq!(tried, zetas);
    let psnr: Vec<f64> = trials.iter().map(|t| finite(&t["dps"]["psnr"])).collect();
    let best = (0..3).max_by(|&a, &b| psnr[a].total_cmp(&psnr[b])).unwrap();
    assert_ne!(best, 0, "no guidance scored best: {psnr:?}");
    assert_eq!(finite(&r["dps"]["zeta"]), zetas[best]);
    assert_eq!(r["mean"]["dps"], trials[best]["dps"]);
    assert_eq!(r["calibration"]["mean"], trials[best]["calibration"]);
    assert_eq!(r["zeta_sweep"]["selected_by"], "the highest mean DPS PSNR");
    for m in ["fbp", "tv"] {
        finite(&r["mean"][m]["psnr"]);
    }
    assert!(
        stdout.contains(&format!("chosen ζ = {}", r["dps"]["zeta"])),
        "{stdout}"
    );
    let md = std::fs::read_to_string(sweep.join("report.md")).unwrap();
    assert!(md.contains("## ζ sweep"), "{md}");
    assert!(md.contains("| 0.000001 | "), "{md}");
    assert!(
        stdout.contains("ζ sweep, mean DPS PSNR: 0.000001 "),
        "{stdout}"
    );
    assert!(
        md.contains(&format!("| {} (chosen) | {:.2} |", zetas[best], psnr[best])),
        "{md}"
    );

    // Each trial is what a run with that ζ alone scores: the same seed.
    for (k, zeta) in ["0.000001", "0.2"].into_iter().enumerate() {
        let one = dir.path().join(format!("one-{k}"));
        let rest = ["--case", arg(&case), "--zeta", zeta, "--baselines", "fbp"];
        ok(&dps_recon(
            &[&rest[..], &sampler, &["-o", arg(&one)]].concat(),
        ));
        let single = report(&one);
        assert_eq!(single["mean"]["dps"]["psnr"], trials[k]["dps"]["psnr"]);
        assert!(single["zeta_sweep"].is_null());
    }

    // Refused before anything is simulated or written.
    let out = dir.path().join("twice");
    let rest = ["--zeta", "0.2,0.1,0.2", "-o", arg(&out)];
    let stderr = refused(&dps_recon(&[&source[..], &sampler, &rest].concat()));
    assert!(stderr.contains("ζ = 0.2 given twice"), "{stderr}");
    assert!(!out.exists());
}

/// `score --uncertainty` checks the posterior std series of `run` as `validate`
/// checks its own: a run of a preset on the case `validate --pipeline` simulated
/// gives the same error ratio and correlation, up to the 16-bit storage of the
/// images; N comes from the run's manifest or `--samples`, the series the std
/// belongs to from its SourceImageSequence.
#[test]
fn score_checks_a_runs_uncertainty_series_as_validate_does() {
    let dir = tempfile::tempdir().unwrap();
    let card = tiny_prior(&dir.path().join("prior"), PhantomStyle::Ct);
    let preset = dir.path().join("ct-std-test.toml");
    std::fs::write(
        &preset,
        format!(
            "description = \"test\"\n[data]\nmodality = \"ct\"\n[prior]\ncard = \"{}\"\n\
             [sampler]\nsteps = 3\nzeta = 0.2\neta = 1.0\nsamples = 3\nseed = 7\n\
             [baselines]\nlist = [\"fbp\"]\n\
             [outputs]\nuncertainty = true\nbaselines = true\n\
             [acquisition]\ngeometry = \"parallel\"\nviews = 12\narc_deg = 180\n",
            card.display()
        ),
    )
    .unwrap();
    let case = dir.path().join("case");
    ok(&dps_recon(
        &[&SMALL_CT_CASE[..], &["-p", arg(&preset), "-o", arg(&case)]].concat(),
    ));
    let expected = &report(&case)["calibration"]["mean"];
    let out = dir.path().join("out");
    let verb = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dps-recon"))
            .args(["--device", "cpu", "--threads", "1"])
            .args(args)
            .output()
            .unwrap()
    };
    ok(&verb(&[
        "run",
        "-p",
        arg(&preset),
        arg(&case.join("raw")),
        "-o",
        arg(&out),
    ]));
    // OUT/<study>/<series>/{manifest.json, dps, uncertainty, fbp}
    let study = std::fs::read_dir(&out).unwrap().find_map(|e| {
        let p = e.unwrap().path();
        p.is_dir().then_some(p)
    });
    let series = std::fs::read_dir(study.unwrap())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (dps, std, fbp) = (
        series.join("dps"),
        series.join("uncertainty"),
        series.join("fbp"),
    );
    let truth = case.join("truth");
    let score = |extra: &[&str]| {
        let mut args = vec!["score", "--json", "--truth", arg(&truth)];
        args.extend(extra);
        verb(&args)
    };
    let doc: Value = serde_json::from_str(&ok(&score(&[
        arg(&dps),
        arg(&fbp),
        "--uncertainty",
        arg(&std),
    ])))
    .unwrap();
    let check = &doc["series"][0]["uncertainty"];
    assert_eq!(check["samples"], 3, "{doc:#}");
    assert_eq!(check["samples_from"], arg(&series.join("manifest.json")));
    assert_eq!(check["dir"], arg(&std));
    let measured = &check["mean"];
    for key in ["error_ratio", "correlation"] {
        let (m, e) = (finite(&measured[key]), finite(&expected[key]));
        assert!((m - e).abs() < 1e-3 * e.abs(), "{key}: {m} vs {e}");
    }
    assert_eq!(&doc["series"][0]["slices"][0]["calibration"], measured);
    assert!(doc["series"][1]["uncertainty"].is_null(), "{doc:#}");
    assert!(doc["calibration_rule"]
        .as_str()
        .unwrap()
        .contains("(N + 1)/(N − 1)"));

    // With N = 5 the predicted error shrinks by √((4/6) / (2/4)).
    let five: Value = serde_json::from_str(&ok(&score(&[
        arg(&dps),
        "--uncertainty",
        arg(&std),
        "--samples",
        "5",
    ])))
    .unwrap();
    let five = &five["series"][0]["uncertainty"];
    assert_eq!(five["samples_from"], "--samples");
    let ratio = finite(&five["mean"]["error_ratio"]) / finite(&measured["error_ratio"]);
    assert!((ratio - (4.0f64 / 3.0).sqrt()).abs() < 1e-9, "{ratio}");
    assert_eq!(five["mean"]["correlation"], measured["correlation"]);

    // The text names the check.
    let text = ok(&verb(&[
        "score",
        "--truth",
        arg(&truth),
        arg(&dps),
        "--uncertainty",
        arg(&std),
    ]));
    assert!(
        text.contains(&format!("  uncertainty {} (3 samples, from ", arg(&std)))
            && text.contains("error ratio"),
        "{text}"
    );

    // Scored as an image beside its DPS series (a glob over a run's folders),
    // it is warned about.
    let both = score(&[arg(&dps), arg(&std)]);
    ok(&both);
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: its images were computed from those of {} (SourceImageSequence)",
            arg(&std),
            arg(&dps)
        )),
        "{stderr}"
    );
    // Without the series it was computed from.
    let stderr = refused(&score(&[arg(&fbp), "--uncertainty", arg(&std)]));
    assert!(
        stderr.contains(&format!(
            "{}: the images its slices were computed from (SourceImageSequence",
            arg(&std)
        )),
        "{stderr}"
    );
    // Away from its run's manifest, N must be given.
    let moved = dir.path().join("moved");
    copy_dir(&std, &moved);
    let stderr = refused(&score(&[arg(&dps), "--uncertainty", arg(&moved)]));
    assert!(
        stderr.contains(&format!("{}: the number of posterior samples", arg(&moved)))
            && stderr.contains("give --samples N"),
        "{stderr}"
    );
    let given: Value = serde_json::from_str(&ok(&score(&[
        arg(&dps),
        "--uncertainty",
        arg(&moved),
        "--samples",
        "3",
    ])))
    .unwrap();
    assert_eq!(&given["series"][0]["uncertainty"]["mean"], measured);
    // A series that names no source images belongs to the only series scored,
    // and to none of two.
    ok(&score(&[
        arg(&dps),
        "--uncertainty",
        arg(&truth),
        "--samples",
        "3",
    ]));
    let stderr = refused(&score(&[
        arg(&dps),
        arg(&fbp),
        "--uncertainty",
        arg(&truth),
        "--samples",
        "3",
    ]));
    assert!(
        stderr.contains("name no source images (SourceImageSequence)"),
        "{stderr}"
    );
    let stderr = refused(&score(&[arg(&dps), "--samples", "3"]));
    assert!(
        stderr.contains("--samples is for --uncertainty"),
        "{stderr}"
    );
    let stderr = refused(&score(&[
        arg(&dps),
        "--uncertainty",
        arg(&std),
        "--uncertainty",
        arg(&moved),
        "--samples",
        "3",
    ]));
    assert!(
        stderr.contains(&format!("two uncertainty series for {}", arg(&dps))),
        "{stderr}"
    );
}
