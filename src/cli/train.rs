//! `dps-recon train`: trains the built-in UNet prior and writes its weights and
//! model card; rerunning the same command resumes from the last checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;
use dps_recon::dicom::{read_series, scan_folder, ReadLimits};
use dps_recon::phantom::{PhantomFamily, PhantomStyle};
use dps_recon::prior::train::{
    train, validation_split, TrainConfig, TrainingData, MAX_VALIDATION_IMAGES,
};
use dps_recon::prior::{intensity, BetaSchedule, IntensityMap, Precision, UNetConfig};
use dps_recon::volume::{square_resample, Volume};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Tensor;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training data: `nifti:PATH` (axial slices of a volume), `dicom:DIR` (every
    /// frame of the CT or MR image series under DIR; CT in HU, MR scaled per series
    /// so that its 99.9th percentile is 0.8), `phantoms:ct` or `phantoms:mr` (fresh
    /// random-ellipse phantoms for every image) or `phantoms:ct-bare-skull` (the CT
    /// phantoms with half of the heads scalp-free, so that bone borders air).
    #[arg(long)]
    data: String,
    /// With nifti data: axial slice indices z never used for training, `A-B`
    /// inclusive (repeatable), e.g. the held-out test slices.
    #[arg(long = "exclude-z", value_parser = parse_range)]
    exclude_z: Vec<(i64, i64)>,
    /// With nifti data: skip slices where less than this fraction of pixels exceeds
    /// 5 % of the volume's maximum (empty slices above the head).
    #[arg(long, default_value_t = 0.05, value_parser = super::unit_interval)]
    min_foreground: f64,
    /// With nifti data: the value that maps to physical 1.0 (e.g. 255 for uint8).
    #[arg(long, default_value_t = 255.0, value_parser = super::positive)]
    nifti_scale: f64,
    /// Output folder (checkpoints, loss log, weights and model card).
    #[arg(long, short)]
    out: PathBuf,
    /// Prior name: the files are <out>/<name>.safetensors and <out>/<name>.json.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Training image size (pixels, square), 8…4096.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i64).range(8..=4096))]
    size: i64,
    #[arg(long, value_enum, default_value_t = Arch::Small)]
    arch: Arch,
    /// Total optimisation steps (a resumed run continues up to this number).
    #[arg(long, default_value_t = 20_000, value_parser = super::count::<u64>)]
    steps: u64,
    #[arg(long, default_value_t = 8, value_parser = super::count::<i64>)]
    batch_size: i64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-4, value_parser = super::positive)]
    lr: f64,
    /// Decay of the EMA weights per step, in [0, 1).
    #[arg(long, default_value_t = 0.999, value_parser = ema_decay)]
    ema: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 500, value_parser = super::count::<u64>)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = 50, value_parser = super::count::<u64>)]
    log_every: u64,
    /// Physical value range mapped to the model's [−1, 1], `MIN,MAX`
    /// (default: 0,1 for MR data, −1000,1500 HU for CT phantoms).
    #[arg(long, value_parser = parse_pair)]
    intensity_range: Option<(f64, f64)>,
    /// Format of the network's forward and backward pass: `f32`, or `bf16` (mixed
    /// precision: bf16 on a copy of the weights, master weights, Adam and EMA in
    /// f32; faster on CPUs with AVX512-BF16 or AMX and on recent GPUs; a resumed
    /// run may switch; docs/priors.md, 'Mixed precision').
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Images held out of training to score the EMA weights at every checkpoint
    /// (`val_loss.csv`, the card's `training.validation`): image data lose that
    /// many images, spread evenly over the loaded order (for nifti, all along the
    /// volume); phantom data score that many fixed phantoms. 0…256; 0: none.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=MAX_VALIDATION_IMAGES as i64))]
    val_images: u16,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Arch {
    /// 8 base channels, two levels: for tests.
    Tiny,
    /// 16 base channels, four levels, attention at 16²: the shipped priors.
    Small,
}

/// `arg` as one POSIX shell word: unchanged when it only has safe characters,
/// else single-quoted.
fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:=,+-@%".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `--ema`: a number in [0, 1).
fn ema_decay(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a number in [0, 1), got {text}")),
    }
}

fn parse_range(s: &str) -> Result<(i64, i64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}': expected A-B"))?;
    let (a, b) = (
        a.trim().parse().map_err(|e| format!("'{s}': {e}"))?,
        b.trim().parse().map_err(|e| format!("'{s}': {e}"))?,
    );
    if a > b {
        return Err(format!("'{s}': start after end"));
    }
    Ok((a, b))
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}': expected MIN,MAX"))?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|e| format!("'{s}': {e}"))?,
        b.trim().parse().map_err(|e| format!("'{s}': {e}"))?,
    );
    if !(a.is_finite() && b.is_finite() && b > a) {
        return Err(format!("'{s}': MAX must exceed MIN (both finite)"));
    }
    Ok((a, b))
}

pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let device = ctx.device()?;
    let (data, unit, default_range, data_description) = load_data(&args)?;
    let (lo, hi) = args.intensity_range.unwrap_or(default_range);
    let architecture = match args.arch {
        Arch::Tiny => UNetConfig::tiny(1),
        Arch::Small => UNetConfig::small(1),
    };
    let cfg = TrainConfig {
        name: args.name.clone(),
        description: args.description.clone(),
        data_description,
        command: std::iter::once("dps-recon".to_string())
            .chain(std::env::args().skip(1).map(|a| shell_quote(&a)))
            .collect::<Vec<_>>()
            .join(" "),
        out_dir: args.out.clone(),
        image_size: args.size,
        architecture,
        schedule: BetaSchedule::default(),
        intensity: IntensityMap {
            unit: unit.into(),
            physical_min: lo,
            physical_max: hi,
            reference_p999: None, // measured by train()
        },
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        ema_decay: args.ema,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every.max(1),
        log_every: args.log_every.max(1),
        device,
        precision: args.precision,
        validation_images: usize::from(args.val_images),
    };
    let bar = ProgressBar::new(args.steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} loss {msg} (eta {eta})",
        )
        .expect("valid template"),
    );
    if bar.is_hidden() {
        tracing::info!("training {} for {} steps", args.name, args.steps);
    }
    let summary = train(&cfg, &data, &mut |p| {
        bar.set_position(p.step);
        bar.set_message(match p.validation {
            Some((at, v)) => format!("{:.4}, validation {v:.4} at step {at}", p.loss),
            None => format!("{:.4}", p.loss),
        });
        if bar.is_hidden() {
            match p.validation {
                Some((at, v)) if at == p.step => {
                    tracing::info!(step = p.step, loss = p.loss, val_loss = v, "training")
                }
                _ => tracing::info!(step = p.step, loss = p.loss, "training"),
            }
        }
    })?;
    bar.finish();
    eprintln!(
        "trained {} to step {} (loss {:.4}{}, {:.0} s); model card: {}",
        args.name,
        summary.step,
        summary.final_loss,
        summary
            .validation_loss
            .map(|v| format!(", validation {v:.4}"))
            .unwrap_or_default(),
        summary.seconds,
        summary.card_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Share of heads without a scalp in `phantoms:ct-bare-skull`.
const BARE_SKULL_FRACTION: f64 = 0.5;

/// The training images, their unit, the default physical range and a description
/// for the model card.
fn load_data(args: &Args) -> anyhow::Result<(TrainingData, &'static str, (f64, f64), String)> {
    if let Some(path) = args.data.strip_prefix("nifti:") {
        let vol = Volume::read(path.as_ref())?;
        let max = vol.axial(0).max().double_value(&[]);
        let max = (0..vol.dims[2]).fold(max, |m, z| m.max(vol.axial(z).max().double_value(&[])));
        let mut used = Vec::new();
        let mut images = Vec::new();
        for z in 0..vol.dims[2] {
            if args.exclude_z.iter().any(|&(a, b)| (a..=b).contains(&z)) {
                continue;
            }
            let slice = vol.axial(z);
            let fg = slice
                .gt(0.05 * max)
                .to_kind(tch::Kind::Float)
                .mean(tch::Kind::Float);
            if fg.double_value(&[]) < args.min_foreground {
                continue;
            }
            used.push(z);
            images.push(vol.axial_resampled(z, args.size) / args.nifti_scale);
        }
        anyhow::ensure!(!images.is_empty(), "{path}: no slices left for training");
        let validation = match args.val_images {
            0 => String::new(),
            n => {
                let held = validation_split(used.len(), n.into())
                    .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                let z: Vec<String> = held.iter().map(|&i| used[i].to_string()).collect();
                format!(
                    "; validation slices z = {}, held out of training",
                    z.join(", ")
                )
            }
        };
        let excluded: Vec<String> = args
            .exclude_z
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let description = format!(
            "{path}: {} axial slices (z = {}…{}, excluded z {}), zero-padded to square, \
             resampled to {}², values / {}{validation}",
            used.len(),
            used.first().copied().unwrap_or(0),
            used.last().copied().unwrap_or(0),
            if excluded.is_empty() {
                "none".into()
            } else {
                excluded.join(", ")
            },
            args.size,
            args.nifti_scale
        );
        return Ok((TrainingData::Images(images), "MR", (0.0, 1.0), description));
    }
    if let Some(dir) = args.data.strip_prefix("dicom:") {
        return load_dicom(dir, args.size, args.val_images.into());
    }
    match args.data.as_str() {
        "phantoms:ct" | "phantoms:ct-bare-skull" => {
            let bare_skull = if args.data.ends_with("bare-skull") {
                BARE_SKULL_FRACTION
            } else {
                0.0
            };
            let variant = if bare_skull > 0.0 {
                format!(
                    ", bare_skull {bare_skull}: that share of heads has no scalp, so bone \
                     borders air"
                )
            } else {
                String::new()
            };
            Ok((
                TrainingData::Phantoms(PhantomFamily {
                    style: PhantomStyle::Ct,
                    bare_skull,
                }),
                "HU",
                (-1000.0, 1500.0),
                format!(
                    "random-ellipse CT phantoms in HU (dps_recon::phantom::PhantomFamily, style \
                     Ct{variant}), a fresh seeded phantom per image; Shepp–Logan is never a \
                     training image"
                ),
            ))
        }
        "phantoms:mr" => Ok((
            TrainingData::Phantoms(PhantomStyle::Mr.into()),
            "MR",
            (0.0, 1.0),
            "random-ellipse MR phantoms (style Mr), a fresh seeded phantom per image".into(),
        )),
        other => Err(anyhow::anyhow!(
            "--data '{other}': expected nifti:PATH, dicom:DIR, phantoms:ct, phantoms:ct-bare-skull or \
             phantoms:mr"
        ))
        .context("bad training data"),
    }
}

/// Every frame of the CT or MR image series under `dir`, square-resampled to
/// `size`; series that are not images (e.g. raw data) are skipped with a warning.
fn load_dicom(
    dir: &str,
    size: i64,
    val_images: usize,
) -> anyhow::Result<(TrainingData, &'static str, (f64, f64), String)> {
    let limits = ReadLimits::default();
    let report = scan_folder(dir.as_ref(), limits);
    for e in &report.errors {
        tracing::warn!("{}: skipped: {}", e.path.display(), e.error);
    }
    let (mut images, mut modality, mut used) = (Vec::new(), None::<String>, 0usize);
    // Each image's SOPInstanceUID, with `#frame` (1-based) in multi-frame files.
    let mut labels = Vec::new();
    let grouping = report.series();
    for d in &grouping.duplicates {
        tracing::warn!(
            "{}: skipped: duplicate of {} (same SOPInstanceUID)",
            d.path.display(),
            d.first.display()
        );
    }
    for group in grouping.series {
        let series = match read_series(&group.paths(), limits) {
            Ok(series) => series,
            Err(e) => {
                tracing::warn!("series {}: skipped: {e}", group.series_instance_uid);
                continue;
            }
        };
        let m = group.modality.to_ascii_uppercase();
        anyhow::ensure!(
            m == "CT" || m == "MR",
            "{dir}: series {} has modality '{m}'; only CT and MR train a prior",
            group.series_instance_uid
        );
        if let Some(first) = &modality {
            anyhow::ensure!(
                *first == m,
                "{dir}: mixes {first} and {m} series; train one modality at a time"
            );
        }
        modality = Some(m.clone());
        let frames: Vec<Tensor> = series
            .frames
            .iter()
            .map(|f| {
                let img = Tensor::from_slice(&f.pixels).view([f.rows as i64, f.cols as i64]);
                square_resample(&img, size)
            })
            .collect();
        let scale = if m == "MR" {
            let all = Tensor::stack(&frames, 0).flatten(0, -1).unsqueeze(0);
            let q = intensity::p999_each(&all)[0];
            anyhow::ensure!(
                q > 0.0,
                "{dir}: series {} is empty",
                group.series_instance_uid
            );
            0.8 / q
        } else {
            1.0
        };
        images.extend(frames.into_iter().map(|f| f * scale));
        let mut per_file = std::collections::HashMap::<&str, usize>::new();
        for f in &series.frames {
            *per_file.entry(f.sop_instance_uid.as_str()).or_default() += 1;
        }
        labels.extend(series.frames.iter().map(|f| {
            if per_file[f.sop_instance_uid.as_str()] > 1 {
                format!("{}#{}", f.sop_instance_uid, f.frame_index + 1)
            } else {
                f.sop_instance_uid.clone()
            }
        }));
        used += 1;
    }
    let Some(modality) = modality else {
        anyhow::bail!("{dir}: no CT or MR image series found");
    };
    let validation = match val_images {
        0 => String::new(),
        n => {
            let held =
                validation_split(labels.len(), n).map_err(|e| anyhow::anyhow!("{dir}: {e}"))?;
            let held: Vec<&str> = held.iter().map(|&i| labels[i].as_str()).collect();
            format!(
                "; validation images (SOPInstanceUID[#frame]) held out of training: {}",
                held.join(", ")
            )
        }
    };
    let description = format!(
        "{dir}: {} frames of {used} {modality} image series, zero-padded to square, resampled to {size}²{}{validation}",
        images.len(),
        if modality == "MR" { ", each series scaled so its 99.9th percentile is 0.8" } else { ", in HU" }
    );
    let (unit, range) = if modality == "CT" {
        ("HU", (-1000.0, 1500.0))
    } else {
        ("MR", (0.0, 1.0))
    };
    Ok((TrainingData::Images(images), unit, range, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("--steps"), "--steps");
        assert_eq!(shell_quote("nifti:/a/b.nii.gz"), "nifti:/a/b.nii.gz");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
