//! `dps-recon validate`: simulate a case (or take one made by `simulate`),
//! reconstruct it with DPS and the baselines, with settings given one by one or
//! by a preset's recipe (`--pipeline`), and write OUT/report.json, OUT/report.md
//! and OUT/montage.png.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use dps_recon::pipeline::panics::catch_internal;
use dps_recon::pipeline::preset::{resolve_preset_path, LikelihoodChoice, MriScale, Preset};
use dps_recon::pipeline::reconstruct::{DpsSettings, Guidance, Refine};
use dps_recon::pipeline::simulate::{modality_str, simulate, write_simulation, SimulationConfig};
use dps_recon::pipeline::validate::{
    case_data_kind, case_files, check_prior, check_zetas, default_baselines, fmt_number, load_case,
    parse_baseline, validate_zetas, write_report, CaseSlice, DataKind, ReportInfo,
    ValidationSettings, DPS,
};
use dps_recon::prior::{Precision, Prior};
use dps_recon::sampler::ClampGradient;
use indicatif::{ProgressBar, ProgressStyle};

use super::simulate::{command_line, SimulationArgs};
use super::write_stdout;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub simulation: SimulationArgs,

    /// Validate an existing case (a folder with raw/ and truth/, as `simulate`
    /// writes) instead of simulating one.
    #[arg(long, conflicts_with = "SimulationArgs")]
    pub case: Option<PathBuf>,

    /// Validate this preset's recipe (a name from pipelines/ or a TOML file):
    /// its prior, sampler settings, baselines, likelihood and MR scale, and when
    /// simulating its [acquisition] for the simulation options not given. The
    /// options below override it.
    #[arg(long, short = 'p')]
    pub pipeline: Option<String>,

    /// The prior's model card (JSON), e.g. models/brain-t1-128/brain-t1-128.json
    /// (required without --pipeline) [default: the preset's].
    #[arg(long)]
    pub prior: Option<PathBuf>,

    /// DPS steps (≤ the prior's T; fewer respaces the schedule) [default: the
    /// preset's, else 100].
    #[arg(long, value_parser = super::count::<usize>)]
    pub steps: Option<usize>,

    /// DPS guidance step size ζ, or several comma-separated to sweep them: DPS
    /// runs with each (the same seed), the report lists them all and is otherwise
    /// for the one with the highest mean DPS PSNR [default: the preset's, else as
    /// tuned for the shipped presets: MR 10 at ≥ 500 steps, else 16; CT line
    /// integrals with ramp guidance 12 / 24, with plain guidance 0.3 / 2; CT counts
    /// with ramp:C guidance (C > 0) 0.175 / 0.25, with bare ramp guidance 0.25 /
    /// 0.5, with plain guidance none (give --zeta)].
    #[arg(long, value_parser = super::positive, value_delimiter = ',')]
    pub zeta: Vec<f64>,

    /// What the guidance measures: plain (Algorithm 1's ‖y − A x̂₀‖) or ramp (CT:
    /// the ramp-filtered residual, a preconditioned gradient), or ramp:C (CT: with a
    /// floor C under the ramp, in cycles per sample; docs/priors.md) [default:
    /// ramp:0.02 for CT counts, ramp for CT line integrals, plain for MR].
    #[arg(long)]
    pub guidance: Option<Guidance>,

    /// The guidance's derivative through the clamp of x̂₀ to the prior's range:
    /// exact (Algorithm 1: zero where x̂₀ is out of range), straight-through, or
    /// straight-through:T (straight-through at timesteps above T, exact below;
    /// docs/priors.md) [default: as the shipped presets: straight-through:700 below
    /// 500 steps, else exact].
    #[arg(long)]
    pub clamp_gradient: Option<ClampGradient>,

    /// What is done to each DPS sample after sampling: none (Algorithm 1), or lowpass
    /// (CT: the sample's smooth component fitted to the data, PWLS for counts, by CG;
    /// lowpass:SIGMA_PX:ITERATIONS, default 4 px, 20; docs/priors.md) [default: as
    /// the shipped presets: lowpass for CT counts, none otherwise].
    #[arg(long)]
    pub refine: Option<Refine>,

    /// DDIM with this η in [0, 1] (default: the ancestral DDPM step).
    #[arg(long, value_parser = super::unit_interval)]
    pub eta: Option<f64>,

    /// Posterior samples per slice (mean and standard deviation over them)
    /// [default: the preset's, else 4].
    #[arg(long, value_parser = super::count::<i64>)]
    pub samples: Option<i64>,

    /// Most samples per slice drawn together (memory grows with them); more are
    /// drawn in further batches, seeded apart [default: all at once].
    #[arg(long, value_parser = super::count::<i64>)]
    pub sample_batch: Option<i64>,

    /// MR: image magnitude per unit of prior intensity, or auto (estimated per slice
    /// from CG-SENSE, as `data.mri_scale = "auto"` of a preset) [default: the
    /// preset's, else auto].
    #[arg(long)]
    pub mri_scale: Option<MriScale>,

    /// Seed of the DPS sampler [default: the preset's, else 0].
    #[arg(long)]
    pub dps_seed: Option<u64>,

    /// Number format of the prior network: f32, or bf16 (faster on CPUs with
    /// AVX512-BF16 or AMX and on recent GPUs, slower elsewhere; the sampler stays
    /// in f32; docs/priors.md, 'Precision').
    #[arg(long, default_value = "f32")]
    pub precision: Precision,

    /// Baselines, comma-separated: zero-filled, cg-sense[:ITER] (MR, 10), fbp[:ramp|shepp-logan|hann]
    /// (CT, hann), tv[:LAMBDA[:ITER]] (λ 0.001 MR, 0.02 CT; 1000) [default: the preset's, else
    /// zero-filled,cg-sense,tv for MR; fbp,tv for CT].
    #[arg(long, value_delimiter = ',')]
    pub baselines: Vec<String>,

    /// Output folder: report.json, report.md, montage.png (and raw/, truth/,
    /// simulation.json when simulating).
    #[arg(short, long)]
    pub out: PathBuf,
}

/// The case to validate: a folder made earlier, or a simulation to run first.
enum Input {
    Existing(PathBuf, Vec<CaseSlice>),
    Simulated(SimulationConfig),
}

pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let command = command_line();
    if !args.zeta.is_empty() {
        check_zetas(&args.zeta)?;
    }
    let preset = match &args.pipeline {
        Some(name) => Some(Preset::load(&resolve_preset_path(name)?)?),
        None => None,
    };
    let prior_card = match (&args.prior, &preset) {
        (Some(card), _) => card.clone(),
        (None, Some(p)) => p.prior_card.clone(),
        (None, None) => anyhow::bail!("--prior CARD or --pipeline PRESET is required"),
    };
    let input = match &args.case {
        Some(dir) => {
            let (raw_files, truth_files) = case_files(dir)?;
            Input::Existing(dir.clone(), load_case(&raw_files, &truth_files)?)
        }
        None => {
            let mut simulation = args.simulation;
            if let Some(p) = &preset {
                simulation.default_to(p)?;
            }
            Input::Simulated(simulation.config()?)
        }
    };
    let modality = match &input {
        Input::Existing(_, case) => case_data_kind(case)?.modality(),
        Input::Simulated(config) => config.acquisition.modality(),
    };
    if let Some(p) = &preset {
        anyhow::ensure!(
            p.modality.dicom() == modality_str(modality),
            "preset {} ({}) is for {} data, but the case holds {} data",
            p.name,
            p.path.display(),
            p.modality.dicom(),
            modality_str(modality)
        );
    }
    let baselines = match (&preset, args.baselines.is_empty()) {
        (_, false) => args
            .baselines
            .iter()
            .map(|b| parse_baseline(b, modality))
            .collect::<anyhow::Result<Vec<_>>>()?,
        (Some(p), true) if !p.baselines.is_empty() => p.baselines.clone(),
        _ => default_baselines(modality),
    };
    let device = ctx.device()?;
    let prior = Prior::load(&prior_card, device, args.precision)?;
    check_prior(&prior, modality)?;
    let recipe = preset.as_ref().map(|p| p.dps_settings(None, None));
    let steps = args
        .steps
        .or(recipe.as_ref().map(|r| r.steps))
        .unwrap_or(100);
    anyhow::ensure!(
        steps <= prior.schedule.len(),
        "{} exceeds the {} steps of prior {}",
        match (args.steps, &preset) {
            (None, Some(p)) => format!("sampler.steps = {steps} of preset {}", p.name),
            _ => format!("--steps {steps}"),
        },
        prior.schedule.len(),
        prior_card.display()
    );

    let (case, case_dir, case_name) = match input {
        Input::Existing(dir, case) => (case, dir.clone(), dir.display().to_string()),
        Input::Simulated(config) => {
            let sim = simulate(&config)?;
            let written = write_simulation(&sim, &args.out, Some(&command))?;
            let case = load_case(&written.raw_files, &written.truth.files)?;
            (case, args.out.clone(), sim.source)
        }
    };
    let simulation = match std::fs::read_to_string(case_dir.join("simulation.json")) {
        Ok(text) => Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: invalid JSON",
                case_dir.join("simulation.json").display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("cannot read simulation.json"),
    };
    let data = case_data_kind(&case)?;
    let guidance = args
        .guidance
        .or(recipe.as_ref().map(|r| r.guidance))
        .unwrap_or(default_guidance(data));
    let zetas = match (args.zeta.is_empty(), &recipe) {
        (false, _) => args.zeta.clone(),
        (true, Some(r)) => vec![r.zeta],
        (true, None) => vec![default_zeta(data, guidance, steps)?],
    };
    let mut settings = ValidationSettings {
        baselines,
        dps: DpsSettings {
            steps,
            zeta: zetas[0],
            eta: match &recipe {
                Some(r) if args.eta.is_none() => r.eta,
                _ => args.eta,
            },
            samples: args
                .samples
                .or(recipe.as_ref().map(|r| r.samples))
                .unwrap_or(4),
            sample_batch: args.sample_batch,
            seed: args
                .dps_seed
                .or(recipe.as_ref().map(|r| r.seed))
                .unwrap_or(0),
            guidance,
            clamp_gradient: args
                .clamp_gradient
                .or(recipe.as_ref().map(|r| r.clamp_gradient))
                .unwrap_or(default_clamp_gradient(steps)),
            refine: args
                .refine
                .or(recipe.as_ref().map(|r| r.refine))
                .unwrap_or(default_refine(data)),
        },
        mri_scale: args
            .mri_scale
            .or(preset.as_ref().map(|p| p.mri_scale))
            .unwrap_or(MriScale::Auto),
        likelihood: preset
            .as_ref()
            .map_or(LikelihoodChoice::Auto, |p| p.likelihood),
    };
    let warnings = preset
        .as_ref()
        .map(|p| p.acquisition_warnings(case.iter().map(|s| &s.raw)))
        .unwrap_or_default();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let (slices, runs) = (case.len(), zetas.len());
    let bar = ProgressBar::new((runs * slices * steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] slice {msg} (eta {eta})")
            .expect("valid template"),
    );
    let (validation, trials, best) = catch_internal(|| {
        validate_zetas(
            &case,
            &prior,
            &settings,
            &zetas,
            device,
            &mut |k, i, done, total| {
                bar.set_message(match runs {
                    1 => format!("{}/{slices}", i + 1),
                    _ => format!("{}/{slices}, ζ {}/{runs}", i + 1, k + 1),
                });
                bar.set_length((runs * slices * total) as u64);
                bar.set_position(((k * slices + i) * total + done) as u64);
            },
        )
    })?;
    bar.finish_and_clear();
    settings.dps.zeta = zetas[best];
    let sweep = if runs > 1 { &trials[..] } else { &[] };
    let info = ReportInfo {
        case: case_name,
        prior_card: &prior_card,
        prior: &prior,
        dps: &settings.dps,
        simulation,
        preset: preset.as_ref(),
        warnings: &warnings,
        zeta_sweep: sweep,
        command,
    };
    let files = write_report(&args.out, &validation, &info)?;
    let mean = validation.mean();
    let scores: Vec<String> = validation
        .methods()
        .iter()
        .map(|m| format!("{m} {:.2} dB", mean[m].psnr))
        .collect();
    let mut text = String::new();
    if runs > 1 {
        let each: Vec<String> = trials
            .iter()
            .map(|t| format!("{} {:.2} dB", t.zeta, t.dps.psnr))
            .collect();
        text += &format!(
            "ζ sweep, mean DPS PSNR: {}; chosen ζ = {}\n",
            each.join(", "),
            settings.dps.zeta
        );
    }
    text += &format!(
        "mean PSNR over {} slice(s) (data range {}): {}\n",
        validation.slices.len(),
        fmt_number(validation.data_range),
        scores.join(", ")
    );
    if let Some(best) = validation.best_baseline() {
        text += &format!(
            "DPS vs best baseline ({best}): {:+.2} dB\n",
            mean[DPS].psnr - mean[&best].psnr
        );
    }
    text += &format!(
        "report: {} and {}; montage: {}\n",
        files.markdown.display(),
        files.json.display(),
        files.montage.display()
    );
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// From this many steps on, `validate`'s defaults are those of the full
/// (1000-step) presets, below it those of the fast (100-step) ones.
const FULL_PRESET_STEPS: usize = 500;

/// The guidance of the shipped presets for this kind of data (`ramp:0.02` for CT
/// counts, `ramp` for CT line integrals, plain for MR).
fn default_guidance(data: DataKind) -> Guidance {
    Guidance::default_for(
        !matches!(data, DataKind::MrKspace),
        matches!(data, DataKind::CtCounts),
    )
}

/// The refinement of the shipped presets for this kind of data: `lowpass` for CT
/// counts (the low-dose presets), none for the rest.
fn default_refine(data: DataKind) -> Refine {
    match data {
        DataKind::CtCounts => Refine::LOWPASS,
        DataKind::CtLineIntegrals | DataKind::MrKspace => Refine::None,
    }
}

/// ζ of the shipped presets (pipelines/*.toml) for this kind of data and guidance
/// at `steps`: the 1000-step value from [`FULL_PRESET_STEPS`] on, else the
/// 100-step one. The transmission distance weighs residuals by √(N/2), so counts
/// take a far smaller ζ than line integrals.
fn default_zeta(data: DataKind, guidance: Guidance, steps: usize) -> anyhow::Result<f64> {
    let (long, short) = match (data, guidance) {
        (DataKind::MrKspace, _) => (10.0, 16.0),
        (DataKind::CtLineIntegrals, Guidance::Ramp { .. }) => (12.0, 24.0),
        (DataKind::CtLineIntegrals, Guidance::Plain) => (0.3, 2.0),
        (DataKind::CtCounts, Guidance::Ramp { floor }) if floor > 0.0 => (0.175, 0.25),
        (DataKind::CtCounts, Guidance::Ramp { .. }) => (0.25, 0.5),
        (DataKind::CtCounts, Guidance::Plain) => anyhow::bail!(
            "no tuned ζ for CT counts with plain guidance: give --zeta, or use --guidance ramp"
        ),
    };
    Ok(if steps >= FULL_PRESET_STEPS {
        long
    } else {
        short
    })
}

/// The clamp gradient of the shipped presets at `steps`, for every kind of data:
/// the fast presets pass it straight through above timestep 700 (with the exact
/// one, respaced chains lost seeds: 2 of 5 on low-dose CT, 1 dB on 1 of 5 at MRI
/// 4×), the full ones keep Algorithm 1's.
fn default_clamp_gradient(steps: usize) -> ClampGradient {
    if steps < FULL_PRESET_STEPS {
        ClampGradient::StraightThrough { above: Some(700) }
    } else {
        ClampGradient::Exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_recon::pipeline::preset::Preset;
    use std::path::Path;

    /// `validate`'s ζ, guidance, clamp-gradient and refinement defaults are the shipped presets' values,
    /// so a retuned preset cannot leave `validate` scoring stale settings.
    #[test]
    fn defaults_follow_the_presets() {
        for (name, data) in [
            ("mri-cartesian-4x", DataKind::MrKspace),
            ("mri-cartesian-4x-fast", DataKind::MrKspace),
            ("mri-cartesian-8x", DataKind::MrKspace),
            ("mri-cartesian-8x-fast", DataKind::MrKspace),
            ("ct-sparse-view", DataKind::CtLineIntegrals),
            ("ct-sparse-view-fast", DataKind::CtLineIntegrals),
            ("ct-low-dose-poisson", DataKind::CtCounts),
            ("ct-low-dose-poisson-fast", DataKind::CtCounts),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(format!("{name}.toml"));
            let s = Preset::load(&path).unwrap().dps_settings(None, None);
            assert_eq!(
                default_zeta(data, s.guidance, s.steps).unwrap(),
                s.zeta,
                "{name}: {} steps, {:?} guidance",
                s.steps,
                s.guidance
            );
            assert_eq!(default_clamp_gradient(s.steps), s.clamp_gradient, "{name}");
            assert_eq!(default_guidance(data), s.guidance, "{name}");
            assert_eq!(default_refine(data), s.refine, "{name}");
        }
        assert!(default_zeta(DataKind::CtCounts, Guidance::Plain, 100)
            .unwrap_err()
            .to_string()
            .contains("give --zeta"));
    }
}
