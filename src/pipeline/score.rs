//! Scoring image series against a ground-truth series, whatever made them
//! (`run`'s DPS and baseline series, another program's reconstruction): each
//! series' slices are paired with the truth's by position (the same
//! orientation, ImagePositionPatient within 0.01 mm, as `validate` pairs raw and
//! truth slices), and every pair is scored in the series' real-world values (HU
//! for CT; for MR the values of their Modality LUT or Real World Value Mapping)
//! with PSNR, SSIM and NMSE ([`crate::metrics`]). One data range serves every
//! series: by default the truth's max − min over all its slices, as in
//! `validate`. A posterior standard deviation series (`run`'s uncertainty
//! output) is checked against the error of the series it was computed from, as
//! `validate` checks its own ([`crate::metrics::calibration`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use serde::Serialize;
use tch::Tensor;

use super::batch::{Manifest, MANIFEST};
use super::validate::{dcm_files, same_place};
use crate::dicom::{read_series, ImageFrame, ImageSeries, Plane, ReadLimits};
use crate::metrics::{calibration, nmse, psnr, ssim, Calibration, SSIM_WINDOW};

/// The scores of one slice, or their means over a series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ImageScores {
    /// dB, with the data range of the scoring.
    pub psnr: f64,
    pub ssim: f64,
    /// `‖x − truth‖² / ‖truth‖²`.
    pub nmse: f64,
}

impl ImageScores {
    /// Scores `x` against `truth` (same shape) with `data_range`.
    pub fn of(x: &Tensor, truth: &Tensor, data_range: f64) -> Self {
        Self {
            psnr: psnr(x, truth, data_range),
            ssim: ssim(x, truth, data_range),
            nmse: nmse(x, truth),
        }
    }
}

/// One scored slice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SliceScore {
    /// ImagePositionPatient, mm.
    pub position_mm: [f64; 3],
    pub sop_instance_uid: String,
    #[serde(flatten)]
    pub scores: ImageScores,
    /// The uncertainty series' check at this slice; `None` without one, or
    /// when its standard deviation or the error is constant.
    pub calibration: Option<Calibration>,
}

/// One series scored against the truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesScore {
    /// The folder the series was read from.
    pub dir: PathBuf,
    pub series_instance_uid: String,
    pub series_description: String,
    /// Its slices, in its order along the slice normal.
    pub slices: Vec<SliceScore>,
    /// Means over `slices`.
    pub mean: ImageScores,
    /// Truth slices the series has no slice for.
    pub truth_slices_missing: usize,
    /// The check of its uncertainty series, when one was given.
    pub uncertainty: Option<UncertaintyCheck>,
}

/// A posterior standard deviation series, to check with the series of
/// posterior means it was computed from.
#[derive(Clone, Debug)]
pub struct Uncertainty<'a> {
    /// Per-pixel population standard deviations (÷ N), in the values of the
    /// series it belongs to.
    pub series: &'a ImageSeries,
    /// The folder it was read from.
    pub dir: &'a Path,
    /// N, the posterior samples the standard deviation is over (≥ 2).
    pub samples: i64,
    /// Where N came from: `--samples` or the path of a run's manifest.
    pub samples_from: String,
}

/// What the check of an uncertainty series found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UncertaintyCheck {
    pub dir: PathBuf,
    pub series_instance_uid: String,
    pub samples: i64,
    pub samples_from: String,
    /// Means over the slices of [`SliceScore::calibration`]; `None` when a
    /// slice has none.
    pub mean: Option<Calibration>,
}

/// Reads the `.dcm` files directly in `dir` as one image series.
pub fn read_series_dir(dir: &Path) -> anyhow::Result<ImageSeries> {
    let series = read_series(&dcm_files(dir)?, ReadLimits::default())
        .with_context(|| format!("{}: reading the image series", dir.display()))?;
    ensure!(
        series.sorted_by_position,
        "{}: its slices have no ImagePositionPatient/ImageOrientationPatient, so they \
         cannot be paired with the truth's",
        dir.display()
    );
    Ok(series)
}

/// The truth's max − min over all its slices.
pub fn data_range_of(truth: &ImageSeries) -> f64 {
    let (lo, hi) = truth
        .frames
        .iter()
        .flat_map(|f| &f.pixels)
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    f64::from(hi) - f64::from(lo)
}

/// Which of `scored` (read from `dirs`) the uncertainty series `std`, read from
/// `std_dir`, was computed from: the one holding every image its slices' Source
/// Image Sequences name, or, when they name none, the only series scored.
pub fn source_series(
    std: &ImageSeries,
    std_dir: &Path,
    scored: &[ImageSeries],
    dirs: &[PathBuf],
) -> anyhow::Result<usize> {
    let named = source_images(std);
    if named.is_empty() {
        ensure!(
            scored.len() == 1,
            "{}: its slices name no source images (SourceImageSequence), so which of the {} \
             series scored it belongs to is unknown; score that series alone with it",
            std_dir.display(),
            scored.len()
        );
        return Ok(0);
    }
    scored
        .iter()
        .position(|s| holds(s, &named))
        .with_context(|| {
            format!(
                "{}: the images its slices were computed from (SourceImageSequence, e.g. {}) \
                 are not all in one of the series scored ({}); give the folder of that series \
                 too",
                std_dir.display(),
                named[0],
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The uncertainty series `stds` (read from `std_dirs`) of each of `series`
/// (read from `dirs`): each goes with its [`source_series`], and is over
/// `samples` posterior samples, or the number its run's manifest gives
/// ([`samples_in_manifest`]). Fails when a series gets two, when the series of
/// one is not in `series`, or when its samples are not known.
pub fn uncertainties<'a>(
    series: &[ImageSeries],
    dirs: &[PathBuf],
    stds: &'a [ImageSeries],
    std_dirs: &'a [PathBuf],
    samples: Option<i64>,
) -> anyhow::Result<Vec<Option<Uncertainty<'a>>>> {
    let mut checks: Vec<Option<Uncertainty>> = vec![None; series.len()];
    for (dir, std) in std_dirs.iter().zip(stds) {
        let k = source_series(std, dir, series, dirs)?;
        if let Some(other) = &checks[k] {
            bail!(
                "{} and {}: two uncertainty series for {}",
                other.dir.display(),
                dir.display(),
                dirs[k].display()
            );
        }
        let (samples, samples_from) = match samples {
            Some(n) => (n, "--samples".to_owned()),
            None => samples_in_manifest(dir, &std.context.series_instance_uid)?
                .map(|(n, path)| (n, path.display().to_string()))
                .with_context(|| {
                    format!(
                        "{}: the number of posterior samples its standard deviation is over \
                         is unknown: no {MANIFEST} of a run beside it lists the series; give \
                         --samples N",
                        dir.display()
                    )
                })?,
        };
        checks[k] = Some(Uncertainty {
            series: std,
            dir,
            samples,
            samples_from,
        });
    }
    Ok(checks)
}

/// For each of `series` whose slices were computed from the images of another
/// of them (e.g. an uncertainty series given with its DPS series): its index and
/// that other's.
pub fn derived_among(series: &[ImageSeries]) -> Vec<(usize, usize)> {
    series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let named = source_images(s);
            let from = series
                .iter()
                .enumerate()
                .position(|(j, other)| j != i && !named.is_empty() && holds(other, &named))?;
            Some((i, from))
        })
        .collect()
}

/// The SOPInstanceUIDs the SourceImageSequences of `series`' slices name,
/// each once.
fn source_images(series: &ImageSeries) -> Vec<&String> {
    let named: BTreeSet<&String> = series
        .frames
        .iter()
        .flat_map(|f| f.source_images.iter())
        .collect();
    named.into_iter().collect()
}

/// Whether `series` holds every image of `uids`.
fn holds(series: &ImageSeries, uids: &[&String]) -> bool {
    uids.iter()
        .all(|uid| series.frames.iter().any(|f| &f.sop_instance_uid == *uid))
}

/// The posterior samples of the series `series_instance_uid` in `std_dir`, from
/// the manifest of the `run` that wrote it (`std_dir/../manifest.json`, which
/// lists its output series), with that manifest's path; `None` when there is no
/// such manifest or it does not list the series.
pub fn samples_in_manifest(
    std_dir: &Path,
    series_instance_uid: &str,
) -> anyhow::Result<Option<(i64, PathBuf)>> {
    // `.` or `..` has no parent to take: the folder's own path has.
    let own;
    let std_dir = match std_dir.file_name() {
        Some(_) => std_dir,
        None => {
            own = std_dir
                .canonicalize()
                .with_context(|| format!("{}: resolving the folder", std_dir.display()))?;
            &own
        }
    };
    let Some(path) = std_dir
        .parent()
        .map(|p| p.join(MANIFEST))
        .filter(|p| p.is_file())
    else {
        return Ok(None);
    };
    let manifest = Manifest::read(&path)?;
    let lists = manifest
        .outputs
        .iter()
        .any(|o| o.series_instance_uid == series_instance_uid);
    Ok(lists.then_some((manifest.parameters.samples, path)))
}

/// Scores `series`, read from `dir`, against `truth` with `data_range`, and
/// checks its `uncertainty` series when given. Fails when the modalities
/// differ, when a slice of the series has no truth slice (or uncertainty slice)
/// at its position, when paired slices differ in size or are smaller than
/// SSIM's window ([`SSIM_WINDOW`]); every error names the folder. Different
/// frames of reference are only warned about: the positions may still be
/// those of the same grid.
pub fn score_series(
    truth: &ImageSeries,
    series: &ImageSeries,
    dir: &Path,
    data_range: f64,
    uncertainty: Option<&Uncertainty>,
) -> anyhow::Result<SeriesScore> {
    ensure!(
        data_range.is_finite() && data_range > 0.0,
        "the data range must be positive, got {data_range} (a constant truth needs --data-range)"
    );
    let (t, s) = (&truth.context, &series.context);
    ensure!(
        t.modality == s.modality,
        "{}: the series is {}, the truth {}",
        dir.display(),
        s.modality,
        t.modality
    );
    if t.frame_of_reference_uid != s.frame_of_reference_uid {
        tracing::warn!(
            "{}: FrameOfReferenceUID {} differs from the truth's {}; slices are paired by \
             position all the same",
            dir.display(),
            s.frame_of_reference_uid,
            t.frame_of_reference_uid
        );
    }
    let mut slices = Vec::with_capacity(series.frames.len());
    let mut paired = vec![false; truth.frames.len()];
    for frame in &series.frames {
        let plane = frame.plane.expect("sorted by position");
        let Some(k) = truth
            .frames
            .iter()
            .position(|f| f.plane.is_some_and(|p| same_place(&p, &plane)))
        else {
            bail!(
                "{}: the truth has no slice at {:?} mm (SOPInstanceUID {})",
                dir.display(),
                plane.position_mm,
                frame.sop_instance_uid
            );
        };
        ensure!(
            !std::mem::replace(&mut paired[k], true),
            "{}: two slices at {:?} mm",
            dir.display(),
            plane.position_mm
        );
        let reference = &truth.frames[k];
        ensure!(
            frame.rows.min(frame.cols) >= SSIM_WINDOW,
            "{}: the slice at {:?} mm is {}×{}, smaller than SSIM's {SSIM_WINDOW} × \
             {SSIM_WINDOW} window",
            dir.display(),
            plane.position_mm,
            frame.rows,
            frame.cols
        );
        ensure!(
            (frame.rows, frame.cols) == (reference.rows, reference.cols),
            "{}: the slice at {:?} mm is {}×{}, the truth's {}×{}",
            dir.display(),
            plane.position_mm,
            frame.rows,
            frame.cols,
            reference.rows,
            reference.cols
        );
        let (x, truth_x) = (pixels(frame), pixels(reference));
        let calibration = match uncertainty {
            Some(u) => {
                let std = u.frame_at(&plane, frame, dir)?;
                calibration(&x, &pixels(std), &truth_x, u.samples)
            }
            None => None,
        };
        slices.push(SliceScore {
            position_mm: plane.position_mm,
            sop_instance_uid: frame.sop_instance_uid.clone(),
            scores: ImageScores::of(&x, &truth_x, data_range),
            calibration,
        });
    }
    let n = slices.len() as f64;
    let avg = |f: fn(&ImageScores) -> f64| slices.iter().map(|s| f(&s.scores)).sum::<f64>() / n;
    let mean = ImageScores {
        psnr: avg(|s| s.psnr),
        ssim: avg(|s| s.ssim),
        nmse: avg(|s| s.nmse),
    };
    Ok(SeriesScore {
        dir: dir.to_path_buf(),
        series_instance_uid: s.series_instance_uid.clone(),
        series_description: s.series_description.clone(),
        truth_slices_missing: paired.iter().filter(|&&p| !p).count(),
        uncertainty: uncertainty.map(|u| UncertaintyCheck {
            dir: u.dir.to_path_buf(),
            series_instance_uid: u.series.context.series_instance_uid.clone(),
            samples: u.samples,
            samples_from: u.samples_from.clone(),
            mean: Calibration::mean_of(slices.iter().map(|s| s.calibration)),
        }),
        slices,
        mean,
    })
}

impl Uncertainty<'_> {
    /// Its slice at `plane`, where `frame` of the series read from `dir` lies,
    /// of `frame`'s size.
    fn frame_at(
        &self,
        plane: &Plane,
        frame: &ImageFrame,
        dir: &Path,
    ) -> anyhow::Result<&ImageFrame> {
        let std = self
            .series
            .frames
            .iter()
            .find(|f| f.plane.is_some_and(|p| same_place(&p, plane)))
            .with_context(|| {
                format!(
                    "{}: no slice at {:?} mm, where {} has one",
                    self.dir.display(),
                    plane.position_mm,
                    dir.display()
                )
            })?;
        ensure!(
            (std.rows, std.cols) == (frame.rows, frame.cols),
            "{}: the slice at {:?} mm is {}×{}, that of {} {}×{}",
            self.dir.display(),
            plane.position_mm,
            std.rows,
            std.cols,
            dir.display(),
            frame.rows,
            frame.cols
        );
        Ok(std)
    }
}

/// A frame's values as `[rows, cols]`.
fn pixels(frame: &ImageFrame) -> Tensor {
    Tensor::from_slice(&frame.pixels).view([frame.rows as i64, frame.cols as i64])
}
