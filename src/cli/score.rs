//! `dps-recon score`: PSNR, SSIM and NMSE of image series against a
//! ground-truth series, slice by slice (paired by position), e.g. of `run`'s
//! DPS and baseline series, or of another program's reconstruction of the same
//! raw data; and the check of a posterior standard deviation series against
//! the error of the series it belongs to.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::ensure;
use dps_recon::metrics::CALIBRATION_RULE;
use dps_recon::pipeline::score::{
    data_range_of, derived_among, read_series_dir, score_series, uncertainties, SeriesScore,
};
use dps_recon::pipeline::validate::fmt_number;
use serde_json::json;

use super::write_stdout;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ground-truth series: a folder of its .dcm files (e.g. the truth/ of a
    /// case made by `simulate`).
    #[arg(long)]
    pub truth: PathBuf,

    /// PSNR and SSIM data range, in the series' values (HU for CT) [default: the
    /// truth's max − min over all its slices].
    #[arg(long, value_parser = super::positive)]
    pub data_range: Option<f64>,

    /// A posterior standard deviation series (e.g. OUT/<study>/<series>/uncertainty
    /// of a run), checked against the error of the series it was computed from,
    /// which must be scored too; repeatable.
    #[arg(long)]
    pub uncertainty: Vec<PathBuf>,

    /// Posterior samples the --uncertainty series are over [default: from the
    /// manifest.json of the run beside each].
    #[arg(long, value_parser = clap::value_parser!(i64).range(2..))]
    pub samples: Option<i64>,

    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// The series to score: one folder of .dcm files per series (e.g.
    /// OUT/<study>/<series>/dps of a run).
    #[arg(required = true)]
    pub series: Vec<PathBuf>,
}

pub fn run(_ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    ensure!(
        args.samples.is_none() || !args.uncertainty.is_empty(),
        "--samples is for --uncertainty series, and none was given"
    );
    let truth = read_series_dir(&args.truth)?;
    let data_range = args.data_range.unwrap_or_else(|| data_range_of(&truth));
    let series = args
        .series
        .iter()
        .map(|dir| read_series_dir(dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, from) in derived_among(&series) {
        tracing::warn!(
            "{}: its images were computed from those of {} (SourceImageSequence), as a \
             posterior std series is; it is scored as an image here, --uncertainty checks it \
             as a standard deviation",
            args.series[i].display(),
            args.series[from].display()
        );
    }
    let stds = args
        .uncertainty
        .iter()
        .map(|dir| read_series_dir(dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let checks = uncertainties(
        &series,
        &args.series,
        &stds,
        &args.uncertainty,
        args.samples,
    )?;
    let scores = args
        .series
        .iter()
        .zip(&series)
        .zip(&checks)
        .map(|((dir, s), u)| score_series(&truth, s, dir, data_range, u.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = if args.json {
        let doc = json!({
            "truth": args.truth,
            "truth_series_instance_uid": truth.context.series_instance_uid,
            "modality": truth.context.modality,
            "data_range": data_range,
            "data_range_rule": match args.data_range {
                Some(_) => "given (--data-range)",
                None => "max − min of the truth over all its slices",
            },
            "calibration_rule": format!(
                "each --uncertainty series against the error of the series it was computed \
                 from, per slice, then averaged over the slices: {CALIBRATION_RULE}"
            ),
            "series": scores,
        });
        format!("{doc:#}\n")
    } else {
        text(&scores, data_range, truth.frames.len())
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn text(scores: &[SeriesScore], data_range: f64, truth_slices: usize) -> String {
    let mut text = format!(
        "data range {}; means over the slices paired with the truth's {truth_slices}\n",
        fmt_number(data_range)
    );
    for s in scores {
        text += &format!(
            "{}: {} slice(s), PSNR {:.2} dB, SSIM {:.4}, NMSE {:.5}{}\n",
            s.dir.display(),
            s.slices.len(),
            s.mean.psnr,
            s.mean.ssim,
            s.mean.nmse,
            match s.truth_slices_missing {
                0 => String::new(),
                n => format!(" ({n} truth slice(s) not in the series)"),
            }
        );
        if let Some(u) = &s.uncertainty {
            text += &format!(
                "  uncertainty {} ({} samples, from {}): {}\n",
                u.dir.display(),
                u.samples,
                u.samples_from,
                match u.mean {
                    Some(c) => format!(
                        "error ratio {:.2} (1 = calibrated, above 1 the std understates the \
                         error), correlation of |error| and std {:.2}",
                        c.error_ratio, c.correlation
                    ),
                    None => "not defined (a constant standard deviation or error)".to_owned(),
                }
            );
        }
    }
    text
}
