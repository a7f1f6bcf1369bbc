//! Where a CT reconstruction's error lies: DPS (ramp guidance) and TV on a case made by
//! `dps-recon simulate`, with each method's squared error split between the edge band
//! (pixels within 2 px of bone, > 300 HU, or of the body outline, > −900 HU), the
//! interior of the body and the air around it. The split shows whether DPS loses to
//! TV on flat regions or at high-contrast edges (docs/priors.md, "What limits DPS on
//! sparse-view CT").
//!
//! `cargo run --release --example ct_error_regions -- CASE STEPS ZETA SAMPLES TV_LAMBDA [ETA]`
//! (STEPS < 1000 takes the DDIM step with ETA, default 1; 1000 the DDPM step). The
//! prior is the shipped CT prior, or the model card named by the environment variable
//! `CARD`.

use std::path::Path;

use anyhow::{ensure, Context as _};
use dps_recon::pipeline::preset::{LikelihoodChoice, MriScale};
use dps_recon::pipeline::reconstruct::{Baseline, DpsSettings, Guidance, Refine};
use dps_recon::pipeline::validate::{case_files, load_case, validate, ValidationSettings, DPS};
use dps_recon::prior::{Precision, Prior};
use dps_recon::sampler::ClampGradient;
use tch::{Device, Kind, Tensor};

/// Pixels within `r` px (Chebyshev) of a nonzero pixel of `mask` `[1, 1, H, W]` (0/1 f32).
fn dilate(mask: &Tensor, r: i64) -> Tensor {
    let k = 2 * r + 1;
    mask.max_pool2d([k, k], [1, 1], [r, r], [1, 1], false)
}

/// (name, 0/1 mask) of the three regions of a CT truth `[1, 1, H, W]` in HU.
fn regions(truth: &Tensor) -> [(&'static str, Tensor); 3] {
    let bone = truth.gt(300.0).to_kind(Kind::Float);
    let body = truth.gt(-900.0).to_kind(Kind::Float);
    let outside = body.neg() + 1.0;
    let outline = dilate(&body, 2) * dilate(&outside, 2);
    let edges = dilate(&bone, 2).maximum(&outline);
    let interior = body * (edges.neg() + 1.0);
    let air = outside * (edges.neg() + 1.0);
    [("edge band", edges), ("interior", interior), ("air", air)]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ensure!(
        (5..=6).contains(&args.len()),
        "usage: ct_error_regions CASE STEPS ZETA SAMPLES TV_LAMBDA [ETA]"
    );
    let steps: usize = args[1].parse().context("STEPS")?;
    let eta: f64 = args.get(5).map_or(Ok(1.0), |e| e.parse()).context("ETA")?;
    let settings = ValidationSettings {
        baselines: vec![Baseline::Tv {
            lambda: args[4].parse().context("TV_LAMBDA")?,
            iterations: 1000,
        }],
        dps: DpsSettings {
            steps,
            zeta: args[2].parse().context("ZETA")?,
            eta: (steps < 1000).then_some(eta),
            samples: args[3].parse().context("SAMPLES")?,
            sample_batch: None,
            seed: 0,
            guidance: Guidance::RAMP,
            clamp_gradient: ClampGradient::Exact,
            refine: Refine::None,
        },
        mri_scale: MriScale::Auto,
        likelihood: LikelihoodChoice::Auto,
    };
    let (raw, truth) = case_files(Path::new(&args[0]))?;
    let case = load_case(&raw, &truth)?;
    let card = std::env::var("CARD")
        .unwrap_or_else(|_| "models/ct-phantom-128/ct-phantom-128.json".into());
    let prior = Prior::load(Path::new(&card), Device::Cpu, Precision::F32)?;
    let v = validate(&case, &prior, &settings, Device::Cpu, &mut |_, _, _| {})?;
    let tv = settings.baselines[0].name();

    println!("| slice | method | PSNR (dB) | RMSE (HU) | edge band: share / RMSE | interior: share / RMSE | air: share / RMSE |");
    println!("|---|---|---|---|---|---|---|");
    let mut sizes = Vec::new();
    for (i, s) in v.slices.iter().enumerate() {
        let [h, w] = [s.truth.size()[0], s.truth.size()[1]];
        let truth = s.truth.view([1, 1, h, w]);
        let regions = regions(&truth);
        let pixels: Vec<f64> = regions
            .iter()
            .map(|(_, m)| m.sum(Kind::Double).double_value(&[]))
            .collect();
        sizes.push(format!(
            "slice {}: {}",
            i + 1,
            regions
                .iter()
                .zip(&pixels)
                .map(|((name, _), n)| format!("{name} {n} px"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for method in [tv, DPS] {
            let sq = (s.images[method].view([1, 1, h, w]) - &truth).square();
            let total = sq.sum(Kind::Double).double_value(&[]);
            let mut row = format!(
                "| {} | {method} | {:.2} | {:.1} |",
                i + 1,
                s.scores[method].psnr,
                (total / (h * w) as f64).sqrt()
            );
            for ((_, mask), n) in regions.iter().zip(&pixels) {
                let part = (&sq * mask).sum(Kind::Double).double_value(&[]);
                row += &format!(
                    " {:.0} % / {:.1} HU |",
                    100.0 * part / total,
                    (part / n).sqrt()
                );
            }
            println!("{row}");
        }
    }
    println!("\n{}", sizes.join("\n"));
    Ok(())
}
