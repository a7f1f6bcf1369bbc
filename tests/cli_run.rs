//! `dps-recon run` end to end through the binary, with tiny priors trained in the
//! test and small raw series (MRI 32² with 2 coils, CT 32² with 24 views): DICOM
//! output checked by dciodvfy, manifests checked against the files, resumption,
//! kills, locks, mixed input folders and exit codes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dps_operators::coils::{birdcage, DEFAULT_RING_RADIUS};
use dps_operators::ct::{uniform_angles, CtGeometry as RadonGeometry, Radon};
use dps_operators::masks::equispaced_lines;
use dps_operators::mri::MultiCoilMri;
use dps_operators::noise::add_gaussian;
use dps_operators::Operator;
use dps_recon::dicom::uid::new_uid;
use dps_recon::dicom::{
    read_image, write_raw, write_series, CtDataType, CtGeometry, CtSinogram, ImageModality,
    ImageRole, InstanceContext, Measurement, MriKspace, OutputSlice, Plane, RawMeasurement,
    ReadLimits, SeriesSpec,
};
use dps_recon::phantom::{hu_to_mu, random_ellipses, PhantomStyle};
use dps_recon::pipeline::batch::OutputLock;
use dps_recon::pipeline::problem::Problem;
use dps_recon::pipeline::reconstruct::{mri_intensity_scale, mri_slice_p999, normalized_residual};
use dps_recon::prior::train::{train, TrainConfig, TrainingData};
use dps_recon::prior::{BetaSchedule, IntensityMap, Precision, Prior, UNetConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

const N: usize = 32;
const SIGMA: f64 = 0.01;

// ---- Inputs -------------------------------------------------------------------

/// A tiny prior (8-channel UNet, 16² crops, 3 training steps): quality is not
/// the point here. Returns the model card.
fn tiny_prior(dir: &Path, style: PhantomStyle) -> PathBuf {
    let (name, unit, lo, hi) = match style {
        PhantomStyle::Mr => ("tiny-mr", "MR", 0.0, 1.0),
        PhantomStyle::Ct => ("tiny-ct", "HU", -1000.0, 1500.0),
    };
    let cfg = TrainConfig {
        name: name.into(),
        description: "test prior".into(),
        data_description: "random phantoms".into(),
        command: "cli_run test".into(),
        out_dir: dir.join(name),
        image_size: 16,
        architecture: UNetConfig::tiny(1),
        schedule: BetaSchedule::default(),
        intensity: IntensityMap {
            unit: unit.into(),
            physical_min: lo,
            physical_max: hi,
            reference_p999: None,
        },
        steps: 3,
        batch_size: 2,
        learning_rate: 1e-3,
        ema_decay: 0.9,
        seed: 0,
        checkpoint_every: 100,
        log_every: 1,
        device: Device::Cpu,
        precision: Default::default(),
        validation_images: 0,
    };
    train(&cfg, &TrainingData::Phantoms(style.into()), &mut |_| {})
        .unwrap()
        .card_path
}

/// A preset for `card` with 10 DDIM steps and 2 samples; `extra` is appended.
fn preset(
    dir: &Path,
    name: &str,
    modality: &str,
    card: &Path,
    steps: usize,
    extra: &str,
) -> PathBuf {
    let baselines = match modality {
        "mr" => "list = [\"zero-filled\", \"cg-sense\"]\n[baselines.cg-sense]\niterations = 5",
        _ => "list = [\"fbp\", \"tv\"]\n[baselines.tv]\nlambda = 0.01\niterations = 10",
    };
    let text = format!(
        "description = \"test\"\n[data]\nmodality = \"{modality}\"\n[prior]\ncard = \"{}\"\n\
         [sampler]\nsteps = {steps}\nzeta = 1.0\neta = 1.0\nsamples = 2\nseed = 3\n\
         [baselines]\n{baselines}\n[outputs]\nuncertainty = true\nbaselines = true\n{extra}",
        card.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// UIDs of one input series.
#[derive(Clone)]
struct Ids {
    study: String,
    series: String,
    frame: String,
}

impl Ids {
    fn new() -> Self {
        Self {
            study: new_uid(),
            series: new_uid(),
            frame: new_uid(),
        }
    }

    /// The context of a slice; CT inputs name the body part, MR inputs leave
    /// it out (both are valid raw data).
    fn context(&self, modality: &str) -> InstanceContext {
        InstanceContext {
            body_part_examined: if modality == "CT" {
                "HEAD".into()
            } else {
                String::new()
            },
            patient_name: "Test^Run".into(),
            patient_id: "../../etc/passwd".into(),
            study_instance_uid: self.study.clone(),
            series_instance_uid: self.series.clone(),
            series_number: Some(3),
            series_description: "../x".into(),
            modality: modality.into(),
            frame_of_reference_uid: self.frame.clone(),
            manufacturer: "cli_run test".into(),
            ..Default::default()
        }
    }
}

fn axial(z: f64) -> Plane {
    let c = -(N as f64 - 1.0) / 2.0;
    Plane {
        position_mm: [c, c, z],
        orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    }
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1)).unwrap()
}

/// One 2-coil 32² k-space slice at height `z` (2× equispaced lines, 8 central
/// lines, birdcage sensitivities stored, Gaussian noise σ = 0.01).
fn mr_slice(ids: &Ids, z: f64, instance: i32, seed: u64) -> RawMeasurement {
    let n = N as i64;
    let x = random_ellipses(N, seed, PhantomStyle::Mr).view([1, 1, n, n]);
    let mask = equispaced_lines(N, N, 2.0, 0.25, 0).unwrap();
    let sens = birdcage(2, N, N, DEFAULT_RING_RADIUS);
    let op = MultiCoilMri::new(&mask, &sens, Device::Cpu).unwrap();
    let k = add_gaussian(&op.forward(&x), SIGMA, seed) * &mask;
    RawMeasurement {
        data: Measurement::MriKspace(MriKspace {
            coils: 2,
            ky: N,
            kx: N,
            data: floats(&k.view_as_real()),
            mask: floats(&mask).iter().map(|&m| m as u8).collect(),
            sensitivities: Some(floats(&sens.view_as_real())),
        }),
        noise_sigma: Some(SIGMA),
        recon_size: [N as u32, N as u32],
        recon_pixel_spacing_mm: [1.0, 1.0],
        context: ids.context("MR"),
        plane: axial(z),
        slice_location_mm: Some(z),
        slice_thickness_mm: Some(2.0),
        instance_number: Some(instance),
        sop_instance_uid: new_uid(),
    }
}

/// One parallel-beam sinogram (24 views over 180°, 32 detectors of 1 mm) of a
/// 32² CT phantom, line integrals with Gaussian noise σ = 0.01.
fn ct_slice(ids: &Ids, z: f64, instance: i32, seed: u64) -> RawMeasurement {
    let n = N as i64;
    let angles = uniform_angles(24, 180.0);
    let radon = Radon::new(&RadonGeometry::parallel(N, angles.clone()), Device::Cpu);
    let mu = hu_to_mu(
        &random_ellipses(N, seed, PhantomStyle::Ct).view([1, 1, n, n]),
        0.0192,
    );
    let p = add_gaussian(&radon.forward(&mu), SIGMA, seed);
    RawMeasurement {
        data: Measurement::CtSinogram(CtSinogram {
            views: 24,
            detectors: N,
            data: floats(&p),
            geometry: CtGeometry::Parallel,
            view_angles_deg: angles,
            detector_spacing: 1.0,
            source_to_isocenter_mm: None,
            source_to_detector_mm: None,
            detector_offset: 0.0,
            data_type: CtDataType::LineIntegral,
            water_attenuation_per_mm: 0.0192,
        }),
        noise_sigma: Some(SIGMA),
        recon_size: [N as u32, N as u32],
        recon_pixel_spacing_mm: [1.0, 1.0],
        context: ids.context("CT"),
        plane: axial(z),
        slice_location_mm: Some(z),
        slice_thickness_mm: Some(2.0),
        instance_number: Some(instance),
        sop_instance_uid: new_uid(),
    }
}

/// Writes `slices` raw slices of a new series into `dir` (created); slice k lies
/// at z = 10 − 5k with InstanceNumber k + 1, so position order is the reverse of
/// InstanceNumber order. Returns the series' UIDs and the raw objects.
fn write_raw_series(
    dir: &Path,
    slices: usize,
    make: fn(&Ids, f64, i32, u64) -> RawMeasurement,
    seed: u64,
) -> (Ids, Vec<RawMeasurement>) {
    std::fs::create_dir_all(dir).unwrap();
    let ids = Ids::new();
    let raws: Vec<RawMeasurement> = (0..slices)
        .map(|k| make(&ids, 10.0 - 5.0 * k as f64, k as i32 + 1, seed + k as u64))
        .collect();
    for (k, raw) in raws.iter().enumerate() {
        write_raw(&dir.join(format!("raw_{k:02}.dcm")), raw).unwrap();
    }
    (ids, raws)
}

// ---- Running and checking -------------------------------------------------------

fn dps_recon() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dps-recon"));
    cmd.args(["--device", "cpu", "--threads", "1"])
        .env_remove("RUST_LOG");
    cmd
}

/// Runs `dps-recon` (killed and failed after 300 s); returns the exit code,
/// stdout as JSON (`null` when it is not JSON) and stderr.
fn run(args: &[&str]) -> (i32, Value, String) {
    let (code, stdout, stderr) = run_text(args);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, json, stderr)
}

/// Runs `dps-recon` (killed and failed after 300 s); returns the exit code,
/// stdout and stderr.
fn run_text(args: &[&str]) -> (i32, String, String) {
    let mut child = dps_recon()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            child.wait().unwrap();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("dps-recon {args:?} did not finish in 300 s:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap()).into_owned();
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// `run --json -p PRESET -o OUT INPUT`: the arguments the run tests start from.
fn run_args<'a>(preset: &'a Path, out: &'a Path, input: &'a Path) -> Vec<&'a str> {
    vec!["run", "--json", "-p", s(preset), "-o", s(out), s(input)]
}

/// The entry of series `uid` in a run's JSON summary or plan.
fn series_entry<'a>(doc: &'a Value, uid: &str) -> &'a Value {
    doc["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series_instance_uid"] == uid)
        .unwrap_or_else(|| panic!("no series {uid} in {doc:#}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Runs dciodvfy on `path` and fails on any `Error` line; skipped with
/// DPS_SKIP_EXTERNAL=1 when dciodvfy is missing.
fn assert_dciodvfy_clean(path: &Path) {
    match Command::new("dciodvfy").arg(path).output() {
        Ok(out) => {
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
            assert!(errors.is_empty(), "{}:\n{report}", path.display());
        }
        Err(e) if std::env::var("DPS_SKIP_EXTERNAL").is_ok_and(|v| v == "1") => {
            eprintln!("skipping dciodvfy ({e}) because DPS_SKIP_EXTERNAL=1");
        }
        Err(e) => panic!(
            "dciodvfy (dicom3tools) is needed by this test ({e}); install it \
             (make system-deps) or set DPS_SKIP_EXTERNAL=1"
        ),
    }
}

/// Every entry of `dir`, recursively (files and folders), relative to `dir`.
fn tree(dir: &Path) -> Vec<String> {
    let mut all: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    all.sort();
    all
}

/// Checks a done series folder against its manifest and the raw inputs (in
/// slice order): output folders and files exactly as listed, SOP Instance UIDs
/// and source references as read back, DPS residuals recomputed from the
/// written pixels, dciodvfy-clean files. Returns the manifest.
fn check_done_series(dir: &Path, raws: &[RawMeasurement], kinds: &[&str], card: &Path) -> Value {
    let m = manifest(dir);
    assert_eq!(m["status"], "done", "{m:#}");
    assert_eq!(m["error"], Value::Null);
    assert_eq!(m["manifest_version"], 1);
    assert_eq!(m["software"]["version"], env!("CARGO_PKG_VERSION"));
    let n = raws.len();

    // Inputs in slice order: along +z, i.e. from the last raw slice to the first.
    let expected: Vec<&str> = raws
        .iter()
        .rev()
        .map(|r| r.sop_instance_uid.as_str())
        .collect();
    let inputs: Vec<&str> = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sop_instance_uid"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, expected);
    for input in m["inputs"].as_array().unwrap() {
        assert!(Path::new(input["path"].as_str().unwrap()).is_absolute());
    }

    // Prior and its hash.
    assert_eq!(m["prior"]["card"], s(card));
    let weights = Path::new(m["prior"]["weights"].as_str().unwrap());
    assert_eq!(weights.parent(), card.parent());
    assert_eq!(m["prior"]["weights_sha256"], sha256(weights));

    // Output folders: exactly the expected kinds and the manifest.
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut want: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    want.push("manifest.json".into());
    want.sort();
    assert_eq!(entries, want);

    let outputs = m["outputs"].as_array().unwrap();
    let got_kinds: Vec<&str> = outputs
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(got_kinds, kinds);
    let mut dps_uids = Vec::new();
    for (k, output) in outputs.iter().enumerate() {
        let kind = output["kind"].as_str().unwrap();
        assert_eq!(output["series_number"], 300 + 1 + k as i64, "{kind}");
        let files = output["files"].as_array().unwrap();
        assert_eq!(files.len(), n, "{kind}");
        assert_eq!(
            std::fs::read_dir(dir.join(kind)).unwrap().count(),
            n,
            "{kind}"
        );
        let series_uid = output["series_instance_uid"].as_str().unwrap();
        for (i, file) in files.iter().enumerate() {
            let path = dir.join(file.as_str().unwrap());
            assert_eq!(path, dir.join(kind).join(format!("slice_{:04}.dcm", i + 1)));
            let image = read_image(&path, ReadLimits::default()).unwrap();
            let frame = &image.frames[0];
            assert_eq!(frame.sop_instance_uid, output["sop_instance_uids"][i]);
            assert_eq!(image.context.series_instance_uid, series_uid);
            assert_eq!(
                image.context.study_instance_uid,
                raws[0].context.study_instance_uid
            );
            // Slice order along +z.
            let z = frame.plane.unwrap().position_mm[2];
            assert_eq!(z, raws[n - 1 - i].plane.position_mm[2]);
            if kind == "dps" {
                dps_uids.push(frame.sop_instance_uid.clone());
            }
            let problem = Problem::from_raw(&raws[n - 1 - i], Device::Cpu).unwrap();
            if kind == "uncertainty" {
                // Two samples differ somewhere: a standard deviation in the
                // output's units, finite, non-negative and not all zero.
                assert!(frame.pixels.iter().all(|v| v.is_finite() && *v >= 0.0));
                assert!(frame.pixels.iter().any(|v| *v > 0.0), "slice {i}: zero std");
            } else if kind == "dps" || !problem.y.is_complex() {
                // The manifest's residual is that of the written image (for MR,
                // whose baselines are complex and written as magnitude, of DPS).
                let x = Tensor::from_slice(&frame.pixels).view([1, 1, N as i64, N as i64]);
                let r = normalized_residual(&problem, &x)[0].unwrap();
                let logged = m["slices"][i]["residual"][kind].as_f64().unwrap();
                assert!(
                    (r - logged).abs() <= 1e-3 * logged.abs().max(1.0),
                    "{kind}, slice {i}: residual {r} vs manifest {logged}"
                );
            }
            assert_dciodvfy_clean(&path);
        }
    }
    let slices = m["slices"].as_array().unwrap();
    assert_eq!(slices.len(), n);
    for (i, slice) in slices.iter().enumerate() {
        assert_eq!(slice["index"], i);
        assert_eq!(slice["input_sop_instance_uid"], expected[i]);
        for kind in kinds.iter().filter(|k| **k != "uncertainty") {
            let r = slice["residual"][kind].as_f64().unwrap();
            assert!(r.is_finite() && r > 0.0, "{kind}: {r}");
        }
    }
    assert_eq!(dps_uids.len(), n);
    for stage in ["read", "prepare", "dps", "residuals", "write", "total"] {
        let t = m["timings_s"][stage].as_f64().unwrap();
        assert!(t >= 0.0, "{stage}");
    }
    m
}

// ---- Tests ------------------------------------------------------------------------

#[test]
fn mri_series_end_to_end_resume_force_and_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let card = tiny_prior(tmp.path(), PhantomStyle::Mr);
    let input = tmp.path().join("in");
    let (ids, raws) = write_raw_series(&input, 3, mr_slice, 1);
    let acquisition =
        "[acquisition]\nmask = \"equispaced-lines\"\nacceleration = 4\ncenter_fraction = 0.08\n";
    let preset_path = preset(tmp.path(), "mr-test", "mr", &card, 10, acquisition);
    let out = tmp.path().join("out");
    let args = run_args(&preset_path, &out, &input);

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(summary["counts"]["done"], 1, "{summary:#}");
    assert_eq!(summary["exit_code"], 0);
    let dir = out.join(&ids.study).join(&ids.series);
    assert_eq!(summary["series"][0]["dir"], s(&dir));
    let kinds = ["dps", "uncertainty", "zero-filled", "cg-sense"];
    let m = check_done_series(&dir, &raws, &kinds, &card);
    assert_eq!(m["preset"]["sha256"], sha256(&preset_path));
    assert_eq!(m["preset"]["name"], "mr-test");
    assert_eq!(m["modality"], "MR");
    let p = &m["parameters"];
    assert_eq!(p["guidance"], "plain");
    assert_eq!(
        (
            &p["steps"],
            &p["zeta"],
            &p["eta"],
            &p["samples"],
            &p["seed"]
        ),
        (
            &Value::from(10),
            &Value::from(1.0),
            &Value::from(1.0),
            &Value::from(2),
            &Value::from(3)
        )
    );
    assert_eq!(p["likelihood_used"], "gaussian");
    assert_eq!(p["precision"], "f32");
    assert!(p["sample_batch"].is_null());
    // One scale for the series: the median of its slices' CG-SENSE 99.9th
    // percentiles over the card's reference (the CG here runs slice by slice, the
    // run's on the batch of three).
    let prior = Prior::load(&card, Device::Cpu, Precision::F32).unwrap();
    let p999: Vec<f64> = raws
        .iter()
        .map(|r| mri_slice_p999(&Problem::from_raw(r, Device::Cpu).unwrap()).unwrap()[0])
        .collect();
    let expected = mri_intensity_scale(&p999, &prior).unwrap();
    let largest = mri_intensity_scale(&[p999.iter().copied().fold(0.0, f64::max)], &prior).unwrap();
    let got = p["mri_scale"].as_f64().unwrap();
    assert!(
        (got / expected - 1.0).abs() < 1e-4 && (largest / expected - 1.0).abs() > 0.01,
        "series scale {got}, median of the slices {expected}, largest {largest}"
    );
    assert_eq!(
        p["baselines"],
        serde_json::json!([{"name": "zero-filled"}, {"name": "cg-sense", "iterations": 5}])
    );
    // Stored sensitivities and one mask: the three slices form one batch.
    assert_eq!(p["batches"], serde_json::json!([[0, 3]]));
    // The data are 2× undersampled, the preset says 4×.
    let warnings = m["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("tuned for 4×"),
        "{warnings:?}"
    );
    // No tag text in any path; nothing but the lock file and the study folder.
    assert_eq!(
        tree(&out)
            .iter()
            .filter(|p| !p.contains(std::path::MAIN_SEPARATOR))
            .collect::<Vec<_>>(),
        vec![".dps-recon.lock", ids.study.as_str()]
    );
    assert!(tree(&out)
        .iter()
        .all(|p| !p.contains("etc") && !p.contains("..")));

    // Rerun on the whole temporary folder (inputs, prior, preset and OUT): the
    // series is skipped, nothing is rewritten, and OUT is not scanned.
    let before = std::fs::read(dir.join("manifest.json")).unwrap();
    let files_before = tree(&out);
    let all = run_args(&preset_path, &out, tmp.path());
    let (code, summary, stderr) = run(&all);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["counts"]["already_done"], 1, "{summary:#}");
    assert_eq!(summary["series"][0]["status"], "skipped");
    let skipped: Vec<&str> = summary["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(skipped.contains(&s(&preset_path)), "{skipped:?}");
    assert!(
        skipped.iter().all(|p| !Path::new(p).starts_with(&out)),
        "{skipped:?}"
    );
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), before);
    assert_eq!(tree(&out), files_before);

    // Another seed without --force: refused, the outputs stay.
    let mut seeded = args.to_vec();
    seeded.extend(["--seed", "9"]);
    let (code, summary, stderr) = run(&seeded);
    assert_eq!(code, 1, "{stderr}");
    let reason = summary["series"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("another recipe") && reason.contains("--force"),
        "{reason}"
    );
    assert!(stderr.contains(&ids.series), "{stderr}");
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), before);

    // The network in bf16, or the two samples drawn one at a time, is another
    // recipe too; a sample batch that holds both samples is the same recipe.
    for extra in [["--precision", "bf16"], ["--sample-batch", "1"]] {
        let (code, summary, stderr) = run(&[&args[..], &extra[..]].concat());
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        let reason = summary["series"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("another recipe"), "{reason}");
    }
    let (code, summary, stderr) = run(&[&args[..], &["--sample-batch", "2"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["counts"]["already_done"], 1, "{summary:#}");
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), before);

    // With --force: redone with the new seed in bf16, new instances, same layout.
    seeded.extend(["--precision", "bf16", "--force"]);
    let (code, summary, stderr) = run(&seeded);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["counts"]["done"], 1);
    let m2 = check_done_series(&dir, &raws, &kinds, &card);
    assert_eq!(m2["parameters"]["seed"], 9);
    assert_eq!(m2["parameters"]["precision"], "bf16");
    assert_ne!(
        m2["outputs"][0]["sop_instance_uids"],
        m["outputs"][0]["sop_instance_uids"]
    );
    assert_eq!(tree(&out).len(), files_before.len());
}

#[test]
fn mixed_folder_reconstructs_the_good_series_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let card = tiny_prior(tmp.path(), PhantomStyle::Ct);
    let input = tmp.path().join("in");
    let (a, raws_a) = write_raw_series(&input.join("a"), 2, ct_slice, 10);
    let (b, raws_b) = write_raw_series(&input.join("b/deeper"), 1, ct_slice, 20);
    let (mr, _) = write_raw_series(&input.join("mr"), 1, mr_slice, 30);

    // An image series, text, an empty file, and two corrupt DICOM files.
    let image_ids = Ids::new();
    let image: Vec<OutputSlice> = (0..2)
        .map(|k| OutputSlice {
            rows: 8,
            cols: 8,
            pixels: vec![k as f32; 64],
            pixel_spacing_mm: [1.0, 1.0],
            plane: axial(k as f64),
            slice_location_mm: None,
            slice_thickness_mm: None,
            source_raw: Vec::new(),
            source_images: Vec::new(),
        })
        .collect();
    let spec = SeriesSpec {
        modality: ImageModality::Ct,
        role: ImageRole::Reconstruction,
        context: image_ids.context("CT"),
        series_number: 1,
        series_description: "images".into(),
        derivation_description: "test".into(),
        window: None,
    };
    write_series(&input.join("images"), &spec, &image).unwrap();
    std::fs::write(input.join("notes.txt"), "not DICOM").unwrap();
    std::fs::write(input.join("empty.dcm"), "").unwrap();
    let good = std::fs::read(input.join("a/raw_00.dcm")).unwrap();
    std::fs::write(input.join("truncated.dcm"), &good[..good.len() / 2]).unwrap();
    let mut garbage = vec![0u8; 128];
    garbage.extend_from_slice(b"DICM");
    garbage.extend(std::iter::repeat_n(0xAB, 200));
    std::fs::write(input.join("garbage.dcm"), garbage).unwrap();

    let preset_path = preset(tmp.path(), "ct-test", "ct", &card, 10, "");
    let out = tmp.path().join("out");
    let args = run_args(&preset_path, &out, &input);

    // Dry run: the plan, nothing written.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, plan, stderr) = run(&dry);
    assert_eq!(code, 1, "bad files make the plan fail: {stderr}");
    assert!(!out.exists(), "a dry run writes nothing");
    assert_eq!(plan["dry_run"], true);
    let planned: HashSet<&str> = plan["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["plan"]["action"], "reconstruct");
            s["series_instance_uid"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        planned,
        HashSet::from([a.series.as_str(), b.series.as_str(), mr.series.as_str()])
    );
    // The preflight reads each series whole: the MR series would fail, the CT
    // series' batches are those the run forms, their memory fits.
    let preflight = |uid: &str| series_entry(&plan, uid)["preflight"].clone();
    let mr_error = preflight(&mr.series)["error"].as_str().unwrap().to_owned();
    assert!(
        mr_error.contains("holds MR data") && mr_error.contains("ct-test"),
        "{mr_error}"
    );
    let ct_check = preflight(&a.series);
    assert_eq!(ct_check["error"], Value::Null, "{ct_check:#}");
    // 2 slices × 2 samples × one 32² CT image each.
    let per_image = UNetConfig::tiny(1).pass_bytes(N as i64, N as i64, Kind::Float);
    assert_eq!(ct_check["sampling_bytes"], 4 * per_image, "{ct_check:#}");
    assert!(ct_check["available_bytes"].as_u64().unwrap() > 4 * per_image);
    let text_args: Vec<&str> = dry.iter().copied().filter(|&a| a != "--json").collect();
    let (_, text, _) = run_text(&text_args);
    assert!(
        text.contains(&format!("  would fail: {mr_error}\n")),
        "{text}"
    );
    assert!(text.contains("  1 slice batch (largest 2 slices), sampling needs at least "));

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}\n{summary:#}");
    assert_eq!(summary["exit_code"], 1);
    let counts = &summary["counts"];
    assert_eq!(
        (
            &counts["done"],
            &counts["failed"],
            &counts["files_failed"],
            &counts["files_skipped"]
        ),
        (
            &Value::from(2),
            &Value::from(1),
            &Value::from(2),
            &Value::from(4)
        ),
        "{summary:#}"
    );
    assert_eq!(series_entry(&summary, &a.series)["status"], "done");
    assert_eq!(series_entry(&summary, &b.series)["status"], "done");
    let failed = series_entry(&summary, &mr.series);
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("holds MR data") && reason.contains("ct-test"),
        "{reason}"
    );

    let reasons = |key: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = summary[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let path = Path::new(f["path"].as_str().unwrap());
                (
                    path.strip_prefix(&input)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    f["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let bad = reasons("failed_files");
    assert_eq!(
        bad.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["garbage.dcm", "truncated.dcm"]
    );
    assert!(bad.iter().all(|(_, r)| !r.is_empty()));
    let skipped = reasons("skipped_files");
    assert_eq!(
        skipped.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        [
            "empty.dcm",
            "images/slice_0001.dcm",
            "images/slice_0002.dcm",
            "notes.txt"
        ]
    );
    assert!(skipped[0].1.contains("not a DICOM file"), "{skipped:?}");
    assert!(skipped[1].1.contains("not raw data"), "{skipped:?}");
    for path in ["garbage.dcm", "truncated.dcm", &a.series, &mr.series] {
        assert!(
            stderr.contains(path),
            "stderr should report {path}:\n{stderr}"
        );
    }

    let kinds = ["dps", "uncertainty", "fbp", "tv"];
    let m = check_done_series(&out.join(&a.study).join(&a.series), &raws_a, &kinds, &card);
    assert_eq!(m["parameters"]["likelihood_used"], "gaussian");
    assert_eq!(m["parameters"]["guidance"], "ramp");
    assert_eq!(m["parameters"]["clamp_gradient"], "exact");
    assert_eq!(m["parameters"]["batches"], serde_json::json!([[0, 2]]));
    assert_eq!(m["parameters"]["batches"], ct_check["batches"]);
    assert_eq!(m["warnings"], serde_json::json!([]));
    assert_eq!(m["warnings"], ct_check["warnings"]);
    check_done_series(&out.join(&b.study).join(&b.series), &raws_b, &kinds, &card);
    // The failed series has a manifest and nothing else.
    let failed_dir = out.join(&mr.study).join(&mr.series);
    assert_eq!(tree(&failed_dir), ["manifest.json"]);
    let fm = manifest(&failed_dir);
    assert_eq!(fm["status"], "failed");
    assert!(fm["error"].as_str().unwrap().contains("holds MR data"));
    assert_eq!(fm["outputs"], serde_json::json!([]));

    // Rerun: the good series are skipped, the failed one is tried again.
    let (code, summary, _) = run(&args);
    assert_eq!(code, 1);
    assert_eq!(summary["counts"]["already_done"], 2, "{summary:#}");
    assert_eq!(summary["counts"]["failed"], 1);
}

/// One run with an MR and a CT preset reconstructs each series of a mixed folder
/// with the preset for its modality; two presets for one modality, or `--prior`
/// with two presets, are configuration errors.
#[test]
fn a_preset_per_modality_reconstructs_a_mixed_folder_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mr_card = tiny_prior(tmp.path(), PhantomStyle::Mr);
    let ct_card = tiny_prior(tmp.path(), PhantomStyle::Ct);
    let input = tmp.path().join("in");
    let (mr, mr_raws) = write_raw_series(&input.join("mr"), 1, mr_slice, 40);
    let (ct, ct_raws) = write_raw_series(&input.join("ct"), 2, ct_slice, 50);
    let acquisition =
        "[acquisition]\nmask = \"equispaced-lines\"\nacceleration = 4\ncenter_fraction = 0.08\n";
    let mr_preset = preset(tmp.path(), "mr-test", "mr", &mr_card, 4, acquisition);
    let ct_preset = preset(tmp.path(), "ct-test", "ct", &ct_card, 4, "");
    let out = tmp.path().join("out");
    let mut args = run_args(&ct_preset, &out, &input);
    args.extend(["-p", s(&mr_preset)]);

    let mut dry = args.clone();
    dry.push("--dry-run");
    let (code, plan, stderr) = run(&dry);
    assert_eq!(code, 0, "{stderr}\n{plan:#}");
    let presets: Vec<(&str, &str, &str)> = plan["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["modality"].as_str().unwrap(),
                p["prior"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        presets,
        [("ct-test", "CT", "tiny-ct"), ("mr-test", "MR", "tiny-mr")]
    );
    assert_eq!(series_entry(&plan, &mr.series)["preset"], "mr-test");
    assert_eq!(series_entry(&plan, &ct.series)["preset"], "ct-test");
    for uid in [&mr.series, &ct.series] {
        let check = &series_entry(&plan, uid)["preflight"];
        assert_eq!(check["error"], Value::Null, "{check:#}");
    }
    let text_args: Vec<&str> = dry.iter().copied().filter(|&a| a != "--json").collect();
    let (_, text, _) = run_text(&text_args);
    assert!(text.contains("preset mr-test ("), "{text}");
    assert!(text.contains(") for MR data, prior "), "{text}");
    assert!(
        text.contains("reconstruct: 1 MR slice with mr-test -> "),
        "{text}"
    );
    assert!(
        text.contains("reconstruct: 2 CT slices with ct-test -> "),
        "{text}"
    );
    assert!(!out.exists(), "a dry run writes nothing");

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(summary["counts"]["done"], 2, "{summary:#}");
    for progress in [
        ": reconstructing 1 MR slice with mr-test\n",
        ": reconstructing 2 CT slices with ct-test\n",
    ] {
        assert!(stderr.contains(progress), "{stderr}");
    }
    let reported: HashSet<(&str, &str)> = summary["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["series_instance_uid"].as_str().unwrap(),
                s["preset"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        HashSet::from([
            (mr.series.as_str(), "mr-test"),
            (ct.series.as_str(), "ct-test")
        ])
    );
    let kinds = ["dps", "uncertainty", "zero-filled", "cg-sense"];
    let m = check_done_series(
        &out.join(&mr.study).join(&mr.series),
        &mr_raws,
        &kinds,
        &mr_card,
    );
    assert_eq!(m["preset"]["sha256"], sha256(&mr_preset));
    let kinds = ["dps", "uncertainty", "fbp", "tv"];
    let m = check_done_series(
        &out.join(&ct.study).join(&ct.series),
        &ct_raws,
        &kinds,
        &ct_card,
    );
    assert_eq!(m["preset"]["sha256"], sha256(&ct_preset));

    // The presets in the other order make the same recipes: nothing to redo.
    let mut swapped = run_args(&mr_preset, &out, &input);
    swapped.extend(["-p", s(&ct_preset)]);
    let (code, summary, stderr) = run(&swapped);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["counts"]["already_done"], 2, "{summary:#}");

    let elsewhere = tmp.path().join("elsewhere");
    let second_ct = preset(tmp.path(), "ct-other", "ct", &ct_card, 4, "");
    let mut two_ct = run_args(&ct_preset, &elsewhere, &input);
    two_ct.extend(["-p", s(&second_ct)]);
    let (code, _, stderr) = run(&two_ct);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("presets ct-test (")
            && stderr.contains("and ct-other (")
            && stderr.contains("are both for CT data"),
        "{stderr}"
    );
    let mut with_prior = run_args(&ct_preset, &elsewhere, &input);
    with_prior.extend(["-p", s(&mr_preset), "--prior", s(&ct_card)]);
    let (code, _, stderr) = run(&with_prior);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--prior") && stderr.contains("2 presets are given"),
        "{stderr}"
    );
    assert!(!elsewhere.exists(), "configuration errors write nothing");
}

/// A series of 2 CT slices (noise seed `seed`) in `dir`/in, a tiny prior and
/// a 10-step preset for it: (preset, input folder, output folder).
fn two_ct_slices(dir: &Path, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let card = tiny_prior(dir, PhantomStyle::Ct);
    let input = dir.join("in");
    write_raw_series(&input, 2, ct_slice, seed);
    let preset_path = preset(dir, "ct-test", "ct", &card, 10, "");
    (preset_path, input, dir.join("out"))
}

/// A done series that gains a slice is refused as made from other inputs; with
/// `--redo-changed` it is redone from all its slices while an unchanged series
/// is skipped, and a series done with another recipe is still refused.
#[test]
fn redo_changed_redoes_only_the_series_whose_inputs_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let card = tiny_prior(tmp.path(), PhantomStyle::Ct);
    let input = tmp.path().join("in");
    let (grown, _) = write_raw_series(&input.join("grown"), 2, ct_slice, 70);
    let (same, _) = write_raw_series(&input.join("same"), 1, ct_slice, 80);
    let preset_path = preset(tmp.path(), "ct-test", "ct", &card, 4, "");
    let out = tmp.path().join("out");
    let args = run_args(&preset_path, &out, &input);
    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    let grown_dir = out.join(&grown.study).join(&grown.series);
    let same_manifest = std::fs::read(
        out.join(&same.study)
            .join(&same.series)
            .join("manifest.json"),
    )
    .unwrap();

    // A late slice of the first series.
    let late = ct_slice(&grown, 0.0, 3, 72);
    write_raw(&input.join("grown/raw_02.dcm"), &late).unwrap();
    let (code, summary, _) = run(&args);
    assert_eq!(code, 1, "{summary:#}");
    let reason = series_entry(&summary, &grown.series)["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("other inputs") && reason.contains("--redo-changed"),
        "{reason}"
    );

    let mut redo = args.clone();
    redo.push("--redo-changed");
    let mut dry = redo.clone();
    dry.push("--dry-run");
    let (code, plan, _) = run(&dry);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(series_entry(&plan, &grown.series)["plan"]["action"], "redo");
    assert_eq!(series_entry(&plan, &same.series)["plan"]["action"], "skip");
    let (code, summary, stderr) = run(&redo);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(series_entry(&summary, &grown.series)["status"], "done");
    assert_eq!(series_entry(&summary, &same.series)["status"], "skipped");
    let m = manifest(&grown_dir);
    assert_eq!(m["inputs"].as_array().unwrap().len(), 3, "{m:#}");
    assert!(m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["sop_instance_uid"] == late.sop_instance_uid.as_str()));
    assert_eq!(
        std::fs::read(
            out.join(&same.study)
                .join(&same.series)
                .join("manifest.json")
        )
        .unwrap(),
        same_manifest,
        "the unchanged series is left as it was"
    );

    // Another recipe is not a change of inputs.
    let other = preset(tmp.path(), "ct-test", "ct", &card, 5, "");
    assert_eq!(other, preset_path);
    let (code, summary, _) = run(&redo);
    assert_eq!(code, 1, "{summary:#}");
    let reason = series_entry(&summary, &same.series)["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("another recipe"), "{reason}");
}

/// Sets the modification time of `path` to `seconds` ago.
fn age_file(path: &Path, seconds: u64) {
    let then = std::time::SystemTime::now() - Duration::from_secs(seconds);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(then)
        .unwrap();
}

/// With `--stable-age`, a series with a file changed too recently, which a PACS
/// may still be writing, is left for a later run (exit 0, nothing written), and
/// so is an unreadable recent file; once old enough, both are taken.
#[test]
fn a_series_still_arriving_is_left_for_a_later_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (preset_path, input, out) = two_ct_slices(tmp.path(), 60);
    let raws: Vec<PathBuf> = ["raw_00.dcm", "raw_01.dcm"]
        .iter()
        .map(|f| input.join(f))
        .collect();
    let good = std::fs::read(&raws[0]).unwrap();
    let partial = input.join("partial.dcm");
    std::fs::write(&partial, &good[..good.len() / 2]).unwrap();
    age_file(&raws[0], 7200);
    let mut args = run_args(&preset_path, &out, &input);
    args.extend(["--stable-age", "600"]);

    let mut dry = args.clone();
    dry.push("--dry-run");
    let (code, plan, stderr) = run(&dry);
    assert_eq!(code, 0, "{stderr}\n{plan:#}");
    assert_eq!(plan["series"][0]["plan"]["action"], "wait", "{plan:#}");
    assert_eq!(plan["series"][0]["preflight"], Value::Null);

    let counts = |summary: &Value| -> [u64; 4] {
        ["waiting", "done", "failed", "files_failed"]
            .map(|k| summary["counts"][k].as_u64().unwrap())
    };
    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(counts(&summary), [1, 0, 0, 0], "{summary:#}");
    let waiting = &summary["series"][0];
    assert_eq!(waiting["status"], "waiting");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("less than --stable-age 600 s"),
        "{waiting:#}"
    );
    let skipped = summary["skipped_files"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{summary:#}");
    assert_eq!(skipped[0]["path"], s(&partial));
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("it may still be arriving"),
        "{summary:#}"
    );
    assert!(stderr.contains("waiting: a file changed"), "{stderr}");
    let text_args: Vec<&str> = args.iter().copied().filter(|&a| a != "--json").collect();
    let (code, text, _) = run_text(&text_args);
    assert_eq!(code, 0);
    assert!(
        text.contains(": 2 CT slices: left for a later run: a file changed ")
            && text.contains("1 series: 0 done, 0 already done, 1 left for a later run, 0 failed"),
        "{text}"
    );
    assert!(
        series_dirs(&out).is_empty(),
        "nothing is written for a waiting series"
    );

    // The series is complete: reconstructed; the partial file is still recent.
    age_file(&raws[1], 7200);
    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(counts(&summary), [0, 1, 0, 0], "{summary:#}");
    // Without --stable-age, or once it is old, the partial file is bad.
    let (code, summary, _) = run(&run_args(&preset_path, &out, &input));
    assert_eq!(code, 1);
    assert_eq!(counts(&summary), [0, 0, 0, 1], "{summary:#}");
    age_file(&partial, 7200);
    let (code, summary, _) = run(&args);
    assert_eq!(code, 1);
    assert_eq!(counts(&summary), [0, 0, 0, 1], "{summary:#}");
    assert_eq!(summary["counts"]["already_done"], 1);
}

#[test]
fn a_dry_run_foresees_a_series_the_run_fails_before_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    let (preset_path, input, out) = two_ct_slices(tmp.path(), 50);
    // Line integrals, where the preset asks for counts: the problem of each
    // batch refuses them, after the files read well.
    let text = std::fs::read_to_string(&preset_path).unwrap().replace(
        "modality = \"ct\"\n",
        "modality = \"ct\"\nlikelihood = \"transmission\"\n",
    );
    std::fs::write(&preset_path, text).unwrap();
    let args = run_args(&preset_path, &out, &input);

    let (code, plan, stderr) = run(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(code, 1, "{stderr}\n{plan:#}");
    assert!(!out.exists(), "a dry run writes nothing");
    let check = &plan["series"][0]["preflight"];
    let foreseen = check["error"].as_str().unwrap();
    assert!(
        foreseen.contains("asks for the transmission likelihood")
            && foreseen.contains("holds line integrals, not counts"),
        "{foreseen}"
    );
    assert_eq!(check["batches"], serde_json::json!([]));

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["series"][0]["reason"].as_str(), Some(foreseen));
}

/// Every series folder under `out`: (study, series) paths.
fn series_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for study in std::fs::read_dir(out).unwrap() {
        let study = study.unwrap().path();
        if study.is_dir() {
            for series in std::fs::read_dir(&study).unwrap() {
                dirs.push(series.unwrap().path());
            }
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn a_killed_run_is_completed_by_the_next_without_partial_or_duplicate_files() {
    let tmp = tempfile::tempdir().unwrap();
    let card = tiny_prior(tmp.path(), PhantomStyle::Ct);
    let input = tmp.path().join("in");
    let series: Vec<(Ids, Vec<RawMeasurement>)> = (0..6)
        .map(|k| write_raw_series(&input.join(format!("s{k}")), 1, ct_slice, 100 + k))
        .collect();
    // Enough steps that a series takes a noticeable time.
    let preset_path = preset(tmp.path(), "ct-kill", "ct", &card, 150, "");
    let out = tmp.path().join("out");
    let args = run_args(&preset_path, &out, &input);

    let mut child = dps_recon()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let done_manifests = |out: &Path| {
        if !out.exists() {
            return 0;
        }
        series_dirs(out)
            .iter()
            .filter(|d| d.join("manifest.json").is_file())
            .count()
    };
    while done_manifests(&out) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no series finished in 300 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // After the kill: complete series only (hidden build folders aside).
    let finished = done_manifests(&out);
    assert!(
        finished < series.len(),
        "the kill came after the whole batch; make the series slower"
    );
    for dir in series_dirs(&out) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            assert_eq!(manifest(&dir)["status"], "done", "{}", dir.display());
        }
    }

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(summary["counts"]["already_done"], finished, "{summary:#}");
    assert_eq!(summary["counts"]["done"], series.len() - finished);

    let dirs = series_dirs(&out);
    assert_eq!(dirs.len(), series.len(), "{dirs:?}");
    let mut uids = HashSet::new();
    for (ids, raws) in &series {
        let dir = out.join(&ids.study).join(&ids.series);
        assert!(dirs.contains(&dir));
        let m = check_done_series(&dir, raws, &["dps", "uncertainty", "fbp", "tv"], &card);
        for output in m["outputs"].as_array().unwrap() {
            for uid in output["sop_instance_uids"].as_array().unwrap() {
                assert!(
                    uids.insert(uid.as_str().unwrap().to_owned()),
                    "duplicate {uid}"
                );
            }
        }
    }
    assert_eq!(uids.len(), series.len() * 4);
    assert!(
        tree(&out)
            .iter()
            .all(|p| !p.contains(".tmp-") && !p.contains(".old-")),
        "{:?}",
        tree(&out)
    );
}

#[test]
fn a_locked_output_folder_is_refused_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let card = tiny_prior(tmp.path(), PhantomStyle::Ct);
    let input = tmp.path().join("in");
    let (ids, _) = write_raw_series(&input, 1, ct_slice, 5);
    // The preset's prior does not exist; --prior replaces it.
    let preset_path = preset(
        tmp.path(),
        "ct-lock",
        "ct",
        &tmp.path().join("none.json"),
        5,
        "",
    );
    let out = tmp.path().join("out");
    let args = [
        "run",
        "-p",
        s(&preset_path),
        "--prior",
        s(&card),
        "-o",
        s(&out),
        s(&input),
    ];

    let lock = OutputLock::acquire(&out).unwrap();
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another dps-recon run (pid {})",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(!out.join(&ids.study).exists());
    drop(lock);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let m = manifest(&out.join(&ids.study).join(&ids.series));
    assert_eq!(m["status"], "done");
    assert_eq!(m["prior"]["card"], s(&card));
    // Not a terminal: one plain line per series on stderr.
    assert!(
        stderr.contains(&format!("[1/1] {}/{}: done in", ids.study, ids.series)),
        "{stderr}"
    );

    // A done series whose files were deleted is redone.
    let dir = out.join(&ids.study).join(&ids.series);
    std::fs::remove_file(dir.join("tv/slice_0001.dcm")).unwrap();
    let mut json = args.to_vec();
    json.push("--json");
    let (code, summary, stderr) = run(&json);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["counts"]["done"], 1, "{summary:#}");
    assert!(
        stderr.contains("tv/slice_0001.dcm of its manifest is missing"),
        "{stderr}"
    );
    assert!(dir.join("tv/slice_0001.dcm").is_file());
    assert_ne!(
        manifest(&dir)["outputs"][0]["sop_instance_uids"],
        m["outputs"][0]["sop_instance_uids"]
    );
}

#[test]
fn configuration_errors_exit_with_2_and_name_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    write_raw_series(&input, 1, ct_slice, 5);
    let out = tmp.path().join("out");
    let missing_card = tmp.path().join("models/none/none.json");
    let preset_path = preset(tmp.path(), "no-prior", "ct", &missing_card, 5, "");

    let (code, _, stderr) = run(&["run", "-p", s(&preset_path), "-o", s(&out), s(&input)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("preset no-prior") && stderr.contains(s(&preset_path)),
        "{stderr}"
    );
    assert!(stderr.contains(s(&missing_card)), "{stderr}");
    assert!(!out.exists());

    let text = std::fs::read_to_string(&preset_path)
        .unwrap()
        .replace("zeta = 1.0", "zeta = 1.0\nzetta = 2.0");
    std::fs::write(&preset_path, text).unwrap();
    let (code, _, stderr) = run(&["run", "-p", s(&preset_path), "-o", s(&out), s(&input)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: key `sampler.zetta`: unknown field",
            s(&preset_path)
        )),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "-p", "no-such-preset", "-o", s(&out), s(&input)]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no preset named `no-such-preset`"),
        "{stderr}"
    );
    assert!(stderr.contains("mri-cartesian-4x"), "{stderr}");

    let nowhere = tmp.path().join("nowhere");
    let (code, _, stderr) = run(&["run", "-p", "ct-sparse-view", "-o", s(&out), s(&nowhere)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no such file or folder"), "{stderr}");

    let (code, _, stderr) = run(&[
        "run",
        "-p",
        s(&preset_path),
        "-o",
        s(&out),
        s(&input),
        "--samples",
        "0",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

/// A slice batch whose network activations exceed the host's available memory
/// fails its series before sampling, with what would fit, instead of being
/// killed by the kernel mid-run with every later series.
#[test]
fn a_sampling_batch_larger_than_memory_fails_its_series_before_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    let (preset_path, input, out) = two_ct_slices(tmp.path(), 40);
    // 2 · 10⁹ images of 32²: petabytes.
    let args = [
        run_args(&preset_path, &out, &input),
        vec!["--samples", "1000000000"],
    ]
    .concat();
    let needs = "sampling 2 slice(s) × 1000000000 sample(s) = 2000000000 images together \
                 needs at least";
    // The dry run foresees it, writing nothing.
    let (code, plan, stderr) = run(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert!(!out.exists());
    let check = &plan["series"][0]["preflight"];
    let error = check["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("DPS: {needs}")), "{error}");
    let per_image = UNetConfig::tiny(1).pass_bytes(N as i64, N as i64, Kind::Float);
    assert_eq!(
        check["sampling_bytes"],
        2_000_000_000 * per_image,
        "{check:#}"
    );
    assert_eq!(check["batches"], serde_json::json!([[0, 2]]));

    let (code, summary, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["series"][0]["status"], "failed", "{summary:#}");
    let reason = summary["series"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("DPS: {needs}")), "{reason}");
    // The largest sample batch that fits is suggested.
    let k: u64 = reason
        .rsplit_once("(--sample-batch ")
        .and_then(|(_, k)| k.strip_suffix(')'))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no sample batch suggested: {reason}"));
    assert!((1..1_000_000_000).contains(&k), "{reason}");
    let m = manifest(Path::new(summary["series"][0]["dir"].as_str().unwrap()));
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"].as_str(), Some(reason));
    // Refused before the baselines were computed.
    let timings = m["timings_s"].as_object().unwrap();
    assert!(timings.contains_key("prepare"), "{timings:?}");
    assert!(
        !timings.keys().any(|k| k.starts_with("baseline")),
        "{timings:?}"
    );
}
