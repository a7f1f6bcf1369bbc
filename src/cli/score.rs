//! `dps-recon score`: PSNR, SSIM and NMSE of image series against a
//! ground-truth series, slice by slice (paired by position), e.g. of `run`'s
//! DPS and baseline series, or of another program's reconstruction of the same
//! raw data.

use std::path::PathBuf;
use std::process::ExitCode;

use dps_recon::pipeline::score::{data_range_of, read_series_dir, score_series, SeriesScore};
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

    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// The series to score: one folder of .dcm files per series (e.g.
    /// OUT/<study>/<series>/dps of a run).
    #[arg(required = true)]
    pub series: Vec<PathBuf>,
}

pub fn run(_ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let truth = read_series_dir(&args.truth)?;
    let data_range = args.data_range.unwrap_or_else(|| data_range_of(&truth));
    let scores = args
        .series
        .iter()
        .map(|dir| score_series(&truth, &read_series_dir(dir)?, dir, data_range))
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
    }
    text
}
