//! Validation against a known ground truth: the raw slices of a case (as
//! [`super::simulate`] writes them: `raw/` and `truth/`) are reconstructed with
//! DPS and the classical baselines, scored with PSNR, SSIM and NMSE, timed, and
//! summarised in a report (JSON and Markdown) and a PNG montage.
//!
//! Scoring conventions:
//! - every reconstruction is compared in output units (MR magnitude on the scale
//!   of the truth, CT in HU) with the truth slice at the same position;
//! - `data_range` of PSNR and SSIM is the truth's max − min over all slices of
//!   the case (1.0 for the Shepp–Logan MR phantom, 2000 HU for Shepp–Logan in HU);
//! - SSIM as scikit-image's Gaussian-window SSIM ([`crate::metrics::ssim`]); NMSE
//!   is `‖x − truth‖² / ‖truth‖²`;
//! - `residual` is [`normalized_residual`]: ≈ 1 for a fit at the noise level;
//! - with 2 or more posterior samples, DPS's standard deviation is checked
//!   against its error ([`crate::metrics::calibration`]);
//! - seconds are wall-clock per slice; DPS includes the MR intensity scaling;
//! - a ζ sweep ([`validate_zetas`]) reports the ζ with the highest mean DPS PSNR.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _};
use dps_operators::ct::FbpFilter;
use serde::Serialize;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use super::preset::{LikelihoodChoice, MriScale, Preset};
use super::problem::{Modality, Problem};
use super::reconstruct::{
    baseline, ensure_dps_memory, normalized_residual, reconstruct_dps, resolve_mri_scale, Baseline,
    DpsSettings, DEFAULT_CG_ITERATIONS, DEFAULT_TV_ITERATIONS,
};
use super::score::ImageScores;
use super::simulate::modality_str;
use crate::dicom::{
    read_raw, read_series, CtDataType, ImageModality, Measurement, Plane, RawMeasurement,
    ReadLimits,
};
use crate::metrics::{calibration, Calibration, CALIBRATION_RULE};
use crate::prior::Prior;
use crate::render::Window;

/// The report's key for the DPS posterior mean.
pub const DPS: &str = "dps";

/// TV weight λ when `tv` is given without one, in units of `½‖A x − y‖²`: for MR
/// with x in the truth's units and the orthonormal k-space, for CT with x = μ in
/// 1/mm and line integrals y (scaled by the mean count for counts, see
/// [`super::reconstruct::tv_weight`]). Tuned with 1000 iterations: MR 0.001 on
/// sample_data/mri-brain-4x (30.42 dB; 0.0005 / 0.002 / 0.004 give 30.21 / 30.11 /
/// 29.32); CT 0.02, between the best on sample_data/ct-shepp-logan-sparse
/// (σ = 0.01: 0.01 / 0.02 / 0.04 / 0.08 give 37.99 / 38.73 / 38.91 / 37.48 dB) and
/// on Shepp–Logan with σ = 0.005 (30 views: 0.01 / 0.02 give 43.06 / 42.83 dB;
/// 18 views: 0.005 / 0.01 / 0.02 give 39.86 / 39.69 / 38.83 dB).
pub fn default_tv_lambda(modality: ImageModality) -> f64 {
    match modality {
        ImageModality::Mr => 0.001,
        ImageModality::Ct => 0.02,
    }
}

/// Parses a baseline for `modality`: `zero-filled`, `cg-sense[:ITER]` (MR),
/// `fbp[:ramp|shepp-logan|hann]` (CT, Hann by default), `tv[:LAMBDA[:ITER]]`.
pub fn parse_baseline(s: &str, modality: ImageModality) -> anyhow::Result<Baseline> {
    let mut parts = s.trim().split(':');
    let name = parts.next().unwrap_or_default();
    let args: Vec<&str> = parts.collect();
    let count = |a: &str| -> anyhow::Result<usize> {
        a.parse()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("baseline '{s}': '{a}' is not an iteration count ≥ 1"))
    };
    let baseline = match (name, args.as_slice()) {
        ("zero-filled", []) => Baseline::ZeroFilled,
        ("cg-sense", []) => Baseline::CgSense {
            iterations: DEFAULT_CG_ITERATIONS,
        },
        ("cg-sense", [n]) => Baseline::CgSense {
            iterations: count(n)?,
        },
        ("fbp", []) => Baseline::Fbp(FbpFilter::Hann),
        ("fbp", [f]) => Baseline::Fbp(match *f {
            "ramp" => FbpFilter::Ramp,
            "shepp-logan" => FbpFilter::SheppLogan,
            "hann" => FbpFilter::Hann,
            other => bail!("baseline '{s}': filter '{other}' is not ramp, shepp-logan or hann"),
        }),
        ("tv", rest) if rest.len() <= 2 => {
            let lambda = match rest.first() {
                Some(l) => l
                    .parse::<f64>()
                    .ok()
                    .filter(|l| l.is_finite() && *l >= 0.0)
                    .with_context(|| format!("baseline '{s}': λ '{l}' is not a number ≥ 0"))?,
                None => default_tv_lambda(modality),
            };
            let iterations = match rest.get(1) {
                Some(n) => count(n)?,
                None => DEFAULT_TV_ITERATIONS,
            };
            Baseline::Tv { lambda, iterations }
        }
        _ => bail!(
            "baseline '{s}': expected zero-filled, cg-sense[:ITER], fbp[:ramp|shepp-logan|hann] \
             or tv[:LAMBDA[:ITER]]"
        ),
    };
    let fits = match baseline {
        Baseline::ZeroFilled | Baseline::CgSense { .. } => modality == ImageModality::Mr,
        Baseline::Fbp(_) => modality == ImageModality::Ct,
        Baseline::Tv { .. } => true,
    };
    ensure!(
        fits,
        "baseline '{s}' does not apply to {} data",
        modality_str(modality)
    );
    Ok(baseline)
}

/// The baselines run when none are given: zero-filled, CG-SENSE and TV for MR;
/// FBP (Hann) and TV for CT; with the default parameters.
pub fn default_baselines(modality: ImageModality) -> Vec<Baseline> {
    let tv = Baseline::Tv {
        lambda: default_tv_lambda(modality),
        iterations: DEFAULT_TV_ITERATIONS,
    };
    match modality {
        ImageModality::Mr => vec![
            Baseline::ZeroFilled,
            Baseline::CgSense {
                iterations: DEFAULT_CG_ITERATIONS,
            },
            tv,
        ],
        ImageModality::Ct => vec![Baseline::Fbp(FbpFilter::Hann), tv],
    }
}

/// A baseline with its parameters, in words.
pub fn describe(b: &Baseline) -> String {
    match b {
        Baseline::ZeroFilled => "zero-filled (coil-combined A*y)".into(),
        Baseline::CgSense { iterations } => format!("CG-SENSE, {iterations} iterations"),
        Baseline::Fbp(filter) => format!("FBP, {filter:?} filter"),
        Baseline::Tv { lambda, iterations } => {
            format!("TV (PWLS for counts), λ = {lambda}, {iterations} PDHG iterations")
        }
    }
}

/// One slice of a case: its raw measurement and its ground truth.
pub struct CaseSlice {
    pub raw: RawMeasurement,
    /// `[rows, cols]` f32 on the CPU, in output units (MR magnitude or HU).
    pub truth: Tensor,
    /// The raw file.
    pub file: PathBuf,
}

/// The `.dcm` files directly in `dir`, sorted by name.
pub(crate) fn dcm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "{}: no .dcm files", dir.display());
    Ok(files)
}

/// The raw and truth files of a case folder: `DIR/raw/*.dcm` and `DIR/truth/*.dcm`.
pub fn case_files(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    Ok((dcm_files(&dir.join("raw"))?, dcm_files(&dir.join("truth"))?))
}

/// Reads the raw slices and the truth series and pairs them by position (the
/// truth frame whose ImagePositionPatient is within 0.01 mm of the raw slice's),
/// in slice order along the normal.
pub fn load_case(raw_files: &[PathBuf], truth_files: &[PathBuf]) -> anyhow::Result<Vec<CaseSlice>> {
    let limits = ReadLimits::default();
    let mut raws = raw_files
        .iter()
        .map(|f| {
            read_raw(f, limits)
                .with_context(|| format!("reading {}", f.display()))
                .map(|r| (r, f.clone()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!raws.is_empty(), "no raw slices");
    let normal = raws[0].0.plane.normal();
    raws.sort_by(|(a, _), (b, _)| {
        a.plane
            .distance_along(normal)
            .total_cmp(&b.plane.distance_along(normal))
            .then(a.instance_number.cmp(&b.instance_number))
    });
    let kind = DataKind::of(&raws[0].0.data);
    let odd = raws
        .iter()
        .map(|(r, f)| (DataKind::of(&r.data), f))
        .find(|&(k, _)| k != kind);
    if let Some((odd_kind, f)) = odd {
        bail!(
            "{}: {odd_kind}, but {} has {kind} (one case holds one kind of data)",
            f.display(),
            raws[0].1.display(),
        );
    }
    if let Some(pair) = raws
        .windows(2)
        .find(|p| same_place(&p[0].0.plane, &p[1].0.plane))
    {
        bail!(
            "{} and {} hold the same slice (same position and orientation)",
            pair[0].1.display(),
            pair[1].1.display()
        );
    }
    let series = read_series(truth_files, limits).context("reading the ground-truth series")?;
    ensure!(
        series.context.modality == raws[0].0.context.modality,
        "the ground-truth series is {}, the raw data {} ({})",
        series.context.modality,
        raws[0].0.context.modality,
        raws[0].1.display()
    );
    raws.into_iter()
        .map(|(raw, file)| {
            let frame = series
                .frames
                .iter()
                .find(|f| f.plane.is_some_and(|p| same_place(&p, &raw.plane)))
                .with_context(|| {
                    format!(
                        "{}: the truth series has no slice at {:?} mm",
                        file.display(),
                        raw.plane.position_mm
                    )
                })?;
            let [rows, cols] = raw.recon_size;
            ensure!(
                (frame.rows, frame.cols) == (rows as usize, cols as usize),
                "{}: the truth is {}×{}, the reconstruction {rows}×{cols}",
                file.display(),
                frame.rows,
                frame.cols
            );
            let truth = Tensor::from_slice(&frame.pixels).view([rows as i64, cols as i64]);
            Ok(CaseSlice { raw, truth, file })
        })
        .collect()
}

/// What a raw slice holds: it sets the image modality, the baselines and the ζ
/// default (CT counts weigh residuals by √(N/2), so they take a far smaller ζ than
/// line integrals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    MrKspace,
    CtLineIntegrals,
    CtCounts,
}

impl DataKind {
    pub fn of(data: &Measurement) -> Self {
        match data {
            Measurement::MriKspace(_) => Self::MrKspace,
            Measurement::CtSinogram(s) => match s.data_type {
                CtDataType::LineIntegral => Self::CtLineIntegrals,
                CtDataType::Counts { .. } => Self::CtCounts,
            },
        }
    }

    pub fn modality(self) -> ImageModality {
        match self {
            Self::MrKspace => ImageModality::Mr,
            Self::CtLineIntegrals | Self::CtCounts => ImageModality::Ct,
        }
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MrKspace => "MR k-space",
            Self::CtLineIntegrals => "CT line integrals",
            Self::CtCounts => "CT transmission counts",
        })
    }
}

/// The data kind of a case: that of its first slice ([`load_case`] checks that
/// all agree). An error for an empty case.
pub fn case_data_kind(case: &[CaseSlice]) -> anyhow::Result<DataKind> {
    let first = case.first().context("the case has no slices")?;
    Ok(DataKind::of(&first.raw.data))
}

/// Whether two planes have the same orientation (to 1e-4) and position (to 0.01 mm).
pub(crate) fn same_place(a: &Plane, b: &Plane) -> bool {
    a.orientation
        .iter()
        .zip(&b.orientation)
        .all(|(x, y)| (x - y).abs() < 1e-4)
        && a.position_mm
            .iter()
            .zip(&b.position_mm)
            .all(|(x, y)| (x - y).abs() < 0.01)
}

/// Settings of a validation run.
#[derive(Clone, Debug)]
pub struct ValidationSettings {
    /// Baselines, in report order (each name at most once).
    pub baselines: Vec<Baseline>,
    pub dps: DpsSettings,
    /// MR: the prior-to-data intensity scale of DPS (`Auto`: estimated per slice).
    pub mri_scale: MriScale,
    /// A preset's `data.likelihood` ([`Problem::choose_likelihood`]); `Auto`:
    /// as the data imply.
    pub likelihood: LikelihoodChoice,
}

/// The scores of one method on one slice (or their means).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Scores {
    /// dB, with the case's data range.
    pub psnr: f64,
    pub ssim: f64,
    pub nmse: f64,
    /// `‖y − A x‖ / (σ √m)` (PWLS residual for counts); `None` without σ.
    pub residual: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The results on one slice.
pub struct SliceResult {
    /// SliceLocation of the raw slice, else its position along the slice normal, mm.
    pub location_mm: f64,
    /// The raw file.
    pub file: PathBuf,
    /// MR: the prior-to-data intensity scale of DPS.
    pub mri_scale: Option<f64>,
    /// Scores by method (baseline names and [`DPS`]).
    pub scores: BTreeMap<String, Scores>,
    /// Ground truth `[H, W]` (CPU).
    pub truth: Tensor,
    /// Reconstructions `[H, W]` (CPU) by method.
    pub images: BTreeMap<String, Tensor>,
    /// DPS posterior standard deviation `[H, W]` (CPU).
    pub posterior_std: Tensor,
    /// How well `posterior_std` predicts the DPS mean's error; `None` for one
    /// sample.
    pub calibration: Option<Calibration>,
}

/// A validated case.
pub struct Validation {
    pub modality: ImageModality,
    /// PSNR/SSIM data range: the truth's max − min over all slices.
    pub data_range: f64,
    pub baselines: Vec<Baseline>,
    pub slices: Vec<SliceResult>,
}

/// Fails unless the prior is for `modality` (intensity unit `MR` or `HU`) and
/// one-channel, as DPS here needs.
pub fn check_prior(prior: &Prior, modality: ImageModality) -> anyhow::Result<()> {
    prior.card.ensure_one_channel()?;
    let unit = match modality {
        ImageModality::Mr => "MR",
        ImageModality::Ct => "HU",
    };
    ensure!(
        prior.card.intensity.unit == unit,
        "prior {} is for {} images, the case is {}",
        prior.card.name,
        prior.card.intensity.unit,
        modality_str(modality)
    );
    Ok(())
}

/// Reconstructs every slice of `case` with the baselines and DPS on `device`.
/// `progress` sees (slice index, DPS steps done, steps in all).
pub fn validate(
    case: &[CaseSlice],
    prior: &Prior,
    settings: &ValidationSettings,
    device: Device,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> anyhow::Result<Validation> {
    let modality = case_data_kind(case)?.modality();
    check_prior(prior, modality)?;
    for (i, b) in settings.baselines.iter().enumerate() {
        ensure!(
            !settings.baselines[..i].iter().any(|o| o.name() == b.name()),
            "baseline {} given twice",
            b.name()
        );
    }
    let (lo, hi) = case
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (
                lo.min(s.truth.min().double_value(&[])),
                hi.max(s.truth.max().double_value(&[])),
            )
        });
    let data_range = hi - lo;
    ensure!(
        data_range.is_finite() && data_range > 0.0,
        "the ground truth is constant ({lo}); PSNR and SSIM need a data range"
    );
    let normal = case[0].raw.plane.normal();
    let mut slices = Vec::with_capacity(case.len());
    for (i, slice) in case.iter().enumerate() {
        let mut problem = Problem::from_raw(&slice.raw, device)
            .with_context(|| format!("{}", slice.file.display()))?;
        problem
            .choose_likelihood(settings.likelihood)
            .map_err(|_| {
                anyhow::anyhow!(
                    "{}: the transmission likelihood needs CT counts, but the file holds line \
                     integrals",
                    slice.file.display()
                )
            })?;
        if problem.image_size != [prior.card.image_size; 2] {
            tracing::warn!(
                "prior {} was trained on {}² images; slice {} is {:?}",
                prior.card.name,
                prior.card.image_size,
                i + 1,
                problem.image_size
            );
        }
        // Before the baselines, which may take a while, rather than after them.
        ensure_dps_memory(&problem, prior, &settings.dps)
            .with_context(|| format!("{}: DPS", slice.file.display()))?;
        let truth = slice.truth.to_kind(Kind::Float);
        let score = |x: &Tensor, seconds: f64| -> Scores {
            let x2 = x
                .to_device(Device::Cpu)
                .view([truth.size()[0], truth.size()[1]]);
            let image = ImageScores::of(&x2, &truth, data_range);
            Scores {
                psnr: image.psnr,
                ssim: image.ssim,
                nmse: image.nmse,
                residual: normalized_residual(&problem, x)[0],
                seconds,
            }
        };
        let mut scores = BTreeMap::new();
        let mut images = BTreeMap::new();
        for b in &settings.baselines {
            let start = Instant::now();
            let x = baseline(&problem, *b)
                .with_context(|| format!("{}: {}", slice.file.display(), b.name()))?;
            // Timed until the image is on the host, so that on a GPU the seconds
            // include the queued work, not only its launch.
            let image = to_cpu_2d(&x);
            let seconds = start.elapsed().as_secs_f64();
            scores.insert(b.name().to_string(), score(&x, seconds));
            images.insert(b.name().to_string(), image);
        }
        let start = Instant::now();
        let mri_scale = match problem.modality {
            Modality::Mri => Some(resolve_mri_scale(
                settings.mri_scale,
                std::slice::from_ref(&problem),
                prior,
            )?),
            Modality::Ct { .. } => None,
        };
        let rec = reconstruct_dps(
            &problem,
            prior,
            &settings.dps,
            mri_scale.unwrap_or(1.0),
            &mut |done, total| progress(i, done, total),
        )
        .with_context(|| format!("{}: DPS", slice.file.display()))?;
        let image = to_cpu_2d(&rec.mean);
        let seconds = start.elapsed().as_secs_f64();
        scores.insert(DPS.to_string(), score(&rec.mean, seconds));
        let posterior_std = to_cpu_2d(&rec.std);
        let calibration = calibration(&image, &posterior_std, &truth, settings.dps.samples);
        images.insert(DPS.to_string(), image);
        slices.push(SliceResult {
            location_mm: slice
                .raw
                .slice_location_mm
                .unwrap_or_else(|| slice.raw.plane.distance_along(normal)),
            file: slice.file.clone(),
            mri_scale,
            scores,
            truth,
            images,
            posterior_std,
            calibration,
        });
    }
    Ok(Validation {
        modality,
        data_range,
        baselines: settings.baselines.clone(),
        slices,
    })
}

/// One ζ of a sweep ([`validate_zetas`]): DPS's scores and calibration
/// averaged over the slices.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ZetaTrial {
    pub zeta: f64,
    pub dps: Scores,
    pub calibration: Option<Calibration>,
}

/// Fails unless `zetas` holds at least one ζ and none twice.
pub fn check_zetas(zetas: &[f64]) -> anyhow::Result<()> {
    ensure!(!zetas.is_empty(), "no ζ to validate");
    for (i, z) in zetas.iter().enumerate() {
        ensure!(!zetas[..i].contains(z), "ζ = {z} given twice");
    }
    Ok(())
}

/// [`validate`] with each ζ of `zetas` in turn (at least one, each once), the
/// baselines run once. Every ζ draws its chains from the same seed, so they
/// differ only by ζ. Returns the validation of the ζ with the highest mean DPS
/// PSNR (with the baselines), the trials in the order of `zetas`, and the index
/// of that ζ. `progress` sees (ζ index, slice index, steps done, steps in all).
pub fn validate_zetas(
    case: &[CaseSlice],
    prior: &Prior,
    settings: &ValidationSettings,
    zetas: &[f64],
    device: Device,
    progress: &mut dyn FnMut(usize, usize, usize, usize),
) -> anyhow::Result<(Validation, Vec<ZetaTrial>, usize)> {
    check_zetas(zetas)?;
    let mut best: Option<(Validation, usize)> = None;
    let mut trials = Vec::with_capacity(zetas.len());
    for (k, &zeta) in zetas.iter().enumerate() {
        let mut run = settings.clone();
        run.dps.zeta = zeta;
        if best.is_some() {
            run.baselines.clear();
        }
        let v = validate(case, prior, &run, device, &mut |i, done, total| {
            progress(k, i, done, total)
        })?;
        let dps = v.mean()[DPS];
        trials.push(ZetaTrial {
            zeta,
            dps,
            calibration: v.mean_calibration(),
        });
        best = Some(match best {
            None => (v, k),
            Some((mut b, j)) if dps.psnr > trials[j].dps.psnr => {
                b.take_dps(v);
                (b, k)
            }
            Some(kept) => kept,
        });
    }
    let (validation, index) = best.expect("at least one ζ");
    Ok((validation, trials, index))
}

/// `[1, 1, H, W]` on any device → `[H, W]` f32 on the CPU.
fn to_cpu_2d(x: &Tensor) -> Tensor {
    let s = x.size();
    x.to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .view([s[s.len() - 2], s[s.len() - 1]])
}

impl Validation {
    /// Methods in report order: the baselines as given, then [`DPS`].
    pub fn methods(&self) -> Vec<String> {
        self.baselines
            .iter()
            .map(|b| b.name().to_string())
            .chain(std::iter::once(DPS.to_string()))
            .collect()
    }

    /// Scores averaged over the slices, by method (the residual is `None` unless
    /// every slice has one).
    pub fn mean(&self) -> BTreeMap<String, Scores> {
        let n = self.slices.len() as f64;
        self.methods()
            .into_iter()
            .map(|m| {
                let all: Vec<Scores> = self.slices.iter().map(|s| s.scores[&m]).collect();
                let avg = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
                let residual = all
                    .iter()
                    .map(|s| s.residual)
                    .collect::<Option<Vec<f64>>>()
                    .map(|r| r.iter().sum::<f64>() / n);
                let mean = Scores {
                    psnr: avg(|s| s.psnr),
                    ssim: avg(|s| s.ssim),
                    nmse: avg(|s| s.nmse),
                    residual,
                    seconds: avg(|s| s.seconds),
                };
                (m, mean)
            })
            .collect()
    }

    /// Replaces the DPS results of every slice by those of `other`, a validation
    /// of the same case.
    fn take_dps(&mut self, other: Validation) {
        for (mine, mut theirs) in self.slices.iter_mut().zip(other.slices) {
            mine.scores.insert(DPS.into(), theirs.scores[DPS]);
            mine.images
                .insert(DPS.into(), theirs.images.remove(DPS).expect("DPS image"));
            mine.posterior_std = theirs.posterior_std;
            mine.calibration = theirs.calibration;
            mine.mri_scale = theirs.mri_scale;
        }
    }

    /// [`SliceResult::calibration`] averaged over the slices; `None` unless
    /// every slice has one.
    pub fn mean_calibration(&self) -> Option<Calibration> {
        Calibration::mean_of(self.slices.iter().map(|s| s.calibration))
    }

    /// The baseline with the highest mean PSNR; `None` without baselines.
    pub fn best_baseline(&self) -> Option<String> {
        let mean = self.mean();
        self.baselines
            .iter()
            .map(|b| b.name().to_string())
            .max_by(|a, b| mean[a].psnr.total_cmp(&mean[b].psnr))
    }

    /// The column headings of [`Validation::montage`].
    pub fn montage_columns(&self) -> Vec<String> {
        let mut columns = vec!["truth".to_string()];
        columns.extend(self.best_baseline());
        columns.extend([
            "dps posterior mean".into(),
            "|dps − truth|".into(),
            "dps posterior std".into(),
        ]);
        columns
    }

    /// Display windows: images (MR: the truth's range; CT: soft tissue, W 400 /
    /// L 40 HU) and maps (|error| and posterior std: 0 to 10 % of the data range).
    fn windows(&self) -> (Window, Window) {
        let image = match self.modality {
            ImageModality::Ct => Window::SOFT_TISSUE,
            ImageModality::Mr => {
                let lo = self
                    .slices
                    .iter()
                    .map(|s| s.truth.min().double_value(&[]))
                    .fold(f64::INFINITY, f64::min);
                Window::span(lo, lo + self.data_range)
            }
        };
        (image, Window::span(0.0, 0.1 * self.data_range))
    }

    /// The montage as 8-bit gray `[rows, cols]`: one row of panels per slice
    /// (truth | best baseline | DPS mean | |DPS − truth| | posterior std), panels
    /// and rows separated by 4 black pixels. Images are shown through the truth's
    /// range (MR) or the soft-tissue window W 400 / L 40 HU (CT); |error| and std
    /// from 0 to 10 % of the data range.
    pub fn montage(&self) -> Tensor {
        let (image, map) = self.windows();
        let best = self.best_baseline();
        let gap = 4;
        let rows: Vec<Tensor> = self
            .slices
            .iter()
            .map(|s| {
                let dps = &s.images[DPS];
                let mut panels = vec![(s.truth.shallow_clone(), image)];
                if let Some(b) = &best {
                    panels.push((s.images[b].shallow_clone(), image));
                }
                panels.push((dps.shallow_clone(), image));
                panels.push(((dps - &s.truth).abs(), map));
                panels.push((s.posterior_std.shallow_clone(), map));
                let h = s.truth.size()[0];
                let mut parts = Vec::new();
                for (k, (img, window)) in panels.iter().enumerate() {
                    if k > 0 {
                        parts.push(Tensor::zeros([h, gap], (Kind::Uint8, Device::Cpu)));
                    }
                    parts.push(window.apply(img));
                }
                Tensor::cat(&parts, 1)
            })
            .collect();
        let w = rows[0].size()[1];
        let mut parts = Vec::new();
        for (k, row) in rows.into_iter().enumerate() {
            if k > 0 {
                parts.push(Tensor::zeros([gap, w], (Kind::Uint8, Device::Cpu)));
            }
            parts.push(row);
        }
        Tensor::cat(&parts, 0)
    }

    /// Writes [`Validation::montage`] as a grayscale PNG.
    pub fn write_montage(&self, path: &Path) -> anyhow::Result<()> {
        let gray = self.montage();
        let (h, w) = gray.size2()?;
        let pixels = Vec::<u8>::try_from(gray.contiguous().view([-1]))?;
        image::GrayImage::from_raw(w as u32, h as u32, pixels)
            .context("montage buffer does not match its size")?
            .save_with_format(path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// What the report says about the run besides the scores.
pub struct ReportInfo<'a> {
    /// The case: the simulated source or the case folder.
    pub case: String,
    /// The prior's model card file.
    pub prior_card: &'a Path,
    pub prior: &'a Prior,
    pub dps: &'a DpsSettings,
    /// The case's `simulation.json`, when there is one.
    pub simulation: Option<Value>,
    /// The preset whose recipe was validated (`validate --pipeline`).
    pub preset: Option<&'a Preset>,
    /// Where the case differs from what the preset is tuned for
    /// ([`Preset::acquisition_warnings`]).
    pub warnings: &'a [String],
    /// The ζ tried when more than one was ([`validate_zetas`]); the report's
    /// DPS results are those of `dps.zeta`, the best of them.
    pub zeta_sweep: &'a [ZetaTrial],
    /// The command line.
    pub command: String,
}

/// How [`validate_zetas`] picks its ζ, as the report says it.
pub const ZETA_SELECTION: &str = "the highest mean DPS PSNR";

/// Montage file name in the output folder.
pub const MONTAGE_FILE: &str = "montage.png";

/// The report as JSON (see the module docs for the conventions).
pub fn report_json(v: &Validation, info: &ReportInfo<'_>) -> Value {
    let size = v.slices[0].truth.size();
    let slices: Vec<Value> = v
        .slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "index": i + 1,
                "file": s.file,
                "location_mm": s.location_mm,
                "mri_scale": s.mri_scale,
                "methods": s.scores,
                "calibration": s.calibration,
            })
        })
        .collect();
    json!({
        "dps_recon_version": env!("CARGO_PKG_VERSION"),
        "command": info.command,
        "case": info.case,
        "modality": modality_str(v.modality),
        "unit": match v.modality { ImageModality::Mr => "MR", ImageModality::Ct => "HU" },
        "slices_count": v.slices.len(),
        "image_size": [size[0], size[1]],
        "data_range": v.data_range,
        "data_range_rule": "max − min of the ground truth over all slices",
        "metrics": "PSNR (dB) and SSIM (Gaussian window σ = 1.5 px, as scikit-image) with data_range; \
                    NMSE = ‖x − truth‖² / ‖truth‖²; residual = ‖y − A x‖ / (σ √m), PWLS for counts; \
                    seconds = wall clock per slice",
        "prior": {
            "name": info.prior.card.name,
            "card": info.prior_card,
            "image_size": info.prior.card.image_size,
            "unit": info.prior.card.intensity.unit,
            "precision": info.prior.precision.to_string(),
        },
        "preset": info.preset.map(|p| json!({ "name": p.name, "path": p.path, "sha256": p.sha256 })),
        "warnings": info.warnings,
        "dps": {
            "steps": info.dps.steps,
            "zeta": info.dps.zeta,
            "update": if info.dps.eta.is_some() { "ddim" } else { "ddpm" },
            "eta": info.dps.eta,
            "guidance": info.dps.guidance.to_string(),
            "clamp_gradient": info.dps.clamp_gradient.to_string(),
            "refine": info.dps.refine.to_string(),
            "samples": info.dps.samples,
            "sample_batch": info.dps.sample_batch,
            "seed": info.dps.seed,
        },
        "baselines": v.baselines.iter().map(|b| (b.name().to_string(), json!(describe(b)))).collect::<serde_json::Map<_, _>>(),
        "best_baseline": v.best_baseline(),
        "mean": v.mean(),
        "calibration": {
            "mean": v.mean_calibration(),
            "rule": format!(
                "DPS posterior std against the error of the DPS mean (2 or more samples): \
                 {CALIBRATION_RULE}"
            ),
        },
        "zeta_sweep": (!info.zeta_sweep.is_empty()).then(|| json!({
            "selected_by": ZETA_SELECTION,
            "trials": info.zeta_sweep,
        })),
        "slices": slices,
        "montage": MONTAGE_FILE,
        "montage_columns": v.montage_columns(),
        "simulation": info.simulation,
    })
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The report as Markdown: the settings, the mean scores, the per-slice scores and
/// the montage.
pub fn report_markdown(v: &Validation, info: &ReportInfo<'_>) -> String {
    let mean = v.mean();
    let methods = v.methods();
    let best = v.best_baseline();
    let size = v.slices[0].truth.size();
    let mut md = String::new();
    md += "# dps-recon validation report\n\n";
    md += &format!(
        "- Case: `{}` ({}, {} slice(s), {}×{})\n",
        info.case,
        modality_str(v.modality),
        v.slices.len(),
        size[0],
        size[1]
    );
    md += &format!(
        "- Prior: {} (`{}`, trained at {}², run in {})\n",
        info.prior.card.name,
        info.prior_card.display(),
        info.prior.card.image_size,
        info.prior.precision
    );
    if let Some(p) = info.preset {
        md += &format!(
            "- Preset: {} (`{}`, sha256 {})\n",
            p.name,
            p.path.display(),
            p.sha256
        );
    }
    for w in info.warnings {
        md += &format!("- Warning: {w}\n");
    }
    md += &format!(
        "- DPS: {} steps, ζ = {} ({} guidance, {} clamp gradient, refinement {}), {}, {} sample(s) per slice{}, seed {}\n",
        info.dps.steps,
        info.dps.zeta,
        info.dps.guidance,
        info.dps.clamp_gradient,
        info.dps.refine,
        match info.dps.eta {
            Some(eta) => format!("DDIM η = {eta}"),
            None => "DDPM".into(),
        },
        info.dps.samples,
        match info.dps.sample_batch {
            Some(k) if k < info.dps.samples => format!(" ({k} at a time)"),
            _ => String::new(),
        },
        info.dps.seed
    );
    for b in &v.baselines {
        md += &format!("- Baseline `{}`: {}\n", b.name(), describe(b));
    }
    md += &format!(
        "- Data range for PSNR/SSIM: {} {}; max − min of the ground truth over all slices\n",
        fmt_number(v.data_range),
        match v.modality {
            ImageModality::Mr => "truth units",
            ImageModality::Ct => "HU",
        }
    );
    md += &format!("- Command: `{}`\n\n", info.command);
    if !info.zeta_sweep.is_empty() {
        md += "## ζ sweep\n\n";
        md += "| ζ | PSNR (dB) | SSIM | NMSE | Residual | Seconds / slice | Std: error / predicted |\n";
        md += "|---:|---:|---:|---:|---:|---:|---:|\n";
        for t in info.zeta_sweep {
            md += &format!(
                "| {}{} | {:.2} | {:.4} | {:.5} | {} | {:.2} | {} |\n",
                t.zeta,
                if t.zeta == info.dps.zeta {
                    " (chosen)"
                } else {
                    ""
                },
                t.dps.psnr,
                t.dps.ssim,
                t.dps.nmse,
                opt(t.dps.residual, 2),
                t.dps.seconds,
                opt(t.calibration.map(|c| c.error_ratio), 2)
            );
        }
        md += &format!(
            "\nDPS means over slices, the same seed for every ζ. The rest of this report is for \
             ζ = {}, {ZETA_SELECTION}; chosen on this case, its score here is optimistic: \
             check it on another case.\n\n",
            info.dps.zeta
        );
    }
    md += "## Mean over slices\n\n";
    md += "| Method | PSNR (dB) | SSIM | NMSE | Residual | Seconds / slice |\n";
    md += "|---|---:|---:|---:|---:|---:|\n";
    for m in &methods {
        let s = &mean[m];
        md += &format!(
            "| {m} | {:.2} | {:.4} | {:.5} | {} | {:.2} |\n",
            s.psnr,
            s.ssim,
            s.nmse,
            opt(s.residual, 2),
            s.seconds
        );
    }
    if let Some(b) = &best {
        md += &format!(
            "\nDPS − best baseline ({b}): {:+.2} dB PSNR, {:+.4} SSIM.\n",
            mean[DPS].psnr - mean[b].psnr,
            mean[DPS].ssim - mean[b].ssim
        );
    }
    if let Some(c) = v.mean_calibration() {
        md += &format!(
            "\nDPS posterior std ({} samples): the RMS error of the mean is {:.2}× what the std \
             predicts (1 = calibrated; above 1 the std understates the error), and |error| \
             correlates with the std at {:.2} (means over slices).\n",
            info.dps.samples, c.error_ratio, c.correlation
        );
    }
    md += "\n## Per slice\n\n";
    md += "| Slice | Location (mm) | Method | PSNR (dB) | SSIM | NMSE | Residual | Seconds |\n";
    md += "|---:|---:|---|---:|---:|---:|---:|---:|\n";
    for (i, s) in v.slices.iter().enumerate() {
        for m in &methods {
            let sc = &s.scores[m];
            md += &format!(
                "| {} | {:.2} | {m} | {:.2} | {:.4} | {:.5} | {} | {:.2} |\n",
                i + 1,
                s.location_mm,
                sc.psnr,
                sc.ssim,
                sc.nmse,
                opt(sc.residual, 2),
                sc.seconds
            );
        }
    }
    if v.slices.iter().any(|s| s.calibration.is_some()) {
        md += "\n| Slice | DPS error / error predicted by std | Correlation of error size and std |\n";
        md += "|---:|---:|---:|\n";
        for (i, s) in v.slices.iter().enumerate() {
            md += &format!(
                "| {} | {} | {} |\n",
                i + 1,
                opt(s.calibration.map(|c| c.error_ratio), 2),
                opt(s.calibration.map(|c| c.correlation), 2)
            );
        }
    }
    md += &format!(
        "\n## Montage\n\n![montage]({MONTAGE_FILE})\n\nRows: slices in order. Columns: {}. \
         Images through {}; |error| and posterior std from 0 to {} (10 % of the data range).\n",
        v.montage_columns().join(" | "),
        match v.modality {
            ImageModality::Ct => "the soft-tissue window (W 400 / L 40 HU)".to_string(),
            ImageModality::Mr => "the truth's range".to_string(),
        },
        fmt_number(0.1 * v.data_range)
    );
    md
}

/// `x` with at most 4 decimals, without trailing zeros.
pub fn fmt_number(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The files [`write_report`] wrote.
pub struct ReportFiles {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub montage: PathBuf,
}

/// Writes `report.json`, `report.md` and `montage.png` into `out` (created when
/// missing).
pub fn write_report(
    out: &Path,
    v: &Validation,
    info: &ReportInfo<'_>,
) -> anyhow::Result<ReportFiles> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let files = ReportFiles {
        json: out.join("report.json"),
        markdown: out.join("report.md"),
        montage: out.join(MONTAGE_FILE),
    };
    std::fs::write(
        &files.json,
        serde_json::to_string_pretty(&report_json(v, info))? + "\n",
    )
    .with_context(|| format!("cannot write {}", files.json.display()))?;
    std::fs::write(&files.markdown, report_markdown(v, info))
        .with_context(|| format!("cannot write {}", files.markdown.display()))?;
    v.write_montage(&files.montage)?;
    Ok(files)
}
