//! Scoring image series against a ground-truth series, whatever made them
//! (`run`'s DPS and baseline series, another program's reconstruction): each
//! series' slices are paired with the truth's by position (the same
//! orientation, ImagePositionPatient within 0.01 mm, as `validate` pairs raw and
//! truth slices), and every pair is scored in the series' real-world values (HU
//! for CT; for MR the values of their Modality LUT or Real World Value Mapping)
//! with PSNR, SSIM and NMSE ([`crate::metrics`]). One data range serves every
//! series: by default the truth's max − min over all its slices, as in
//! `validate`.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use serde::Serialize;
use tch::Tensor;

use super::validate::{dcm_files, same_place};
use crate::dicom::{read_series, ImageFrame, ImageSeries, ReadLimits};
use crate::metrics::{nmse, psnr, ssim, SSIM_WINDOW};

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

/// Scores `series`, read from `dir`, against `truth` with `data_range`. Fails
/// when the modalities differ, when a slice of the series has no truth slice
/// at its position, when paired slices differ in size or are smaller than
/// SSIM's window ([`SSIM_WINDOW`]); every error names `dir`. Different frames
/// of reference are only warned about: the positions may still be those of the
/// same grid.
pub fn score_series(
    truth: &ImageSeries,
    series: &ImageSeries,
    dir: &Path,
    data_range: f64,
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
        slices.push(SliceScore {
            position_mm: plane.position_mm,
            sop_instance_uid: frame.sop_instance_uid.clone(),
            scores: ImageScores::of(&pixels(frame), &pixels(reference), data_range),
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
        slices,
        mean,
    })
}

/// A frame's values as `[rows, cols]`.
fn pixels(frame: &ImageFrame) -> Tensor {
    Tensor::from_slice(&frame.pixels).view([frame.rows as i64, frame.cols as i64])
}
