//! Reconstruction of a [`Problem`]: DPS with a prior (posterior mean and per-pixel
//! standard deviation over N samples) and the classical baselines.

use anyhow::Context as _;
use dps_operators::ct::{FbpFilter, SqrtRamp};
use dps_operators::noise::pwls_weights;
use dps_operators::solvers::cg::{solve_normal, CgOptions};
use dps_operators::solvers::lowpass::{low_frequency_correction, LowpassOptions};
use dps_operators::solvers::tv::{tv_pdhg, TvOptions};
use tch::{Kind, Tensor};

use super::preset::MriScale;
use super::problem::{ForwardModel, Modality, Problem};
use crate::memory::SamplingBatch;
use crate::prior::{intensity, Prior};
use crate::sampler::{posterior_stats, ClampGradient, DataTerm, DpsConfig, DpsSampler, Update};

/// What the DPS guidance measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Guidance {
    /// Algorithm 1: the gradient of `‖y − A(x̂_0)‖_Λ`.
    Plain,
    /// CT: the gradient of `‖H Λ^{1/2} (y − A(x̂_0))‖`, `H` the square root of the
    /// ramp filter ([`SqrtRamp`]): a filtered instead of a plain backprojection of
    /// the residual, which restores edges that plain guidance leaves blurred
    /// (the Radon transform's normal operator falls as 1/|frequency|). `floor`
    /// (cycles per sample, 0 … 1; `ramp:C`) is added under the ramp, `H² = R + C`,
    /// so that the residual's lowest frequencies keep a weight
    /// ([`SqrtRamp::with_floor`]). The ramp R is at most 0.5, so a floor above 1
    /// would outweigh it everywhere: `plain` guidance scaled by √C.
    Ramp { floor: f64 },
}

impl Guidance {
    /// The ramp without a floor.
    pub const RAMP: Self = Self::Ramp { floor: 0.0 };

    /// The ramp with the floor the low-dose presets use (`ramp:0.02`): on
    /// transmission counts at I0 = 1e4 the bare ramp left Shepp–Logan's large dark
    /// ellipses to the prior (SSIM 0.49–0.61), the floor kept them (docs/priors.md,
    /// 'Low-dose CT: what the ramp leaves to the prior').
    pub const RAMP_LOW_DOSE: Self = Self::Ramp { floor: 0.02 };

    /// The default: [`Self::RAMP_LOW_DOSE`] for CT transmission counts, `ramp` for
    /// other CT data, `plain` for MR.
    pub fn default_for(ct: bool, counts: bool) -> Self {
        match (ct, counts) {
            (true, true) => Self::RAMP_LOW_DOSE,
            (true, false) => Self::RAMP,
            (false, _) => Self::Plain,
        }
    }
}

/// `plain`, `ramp` or `ramp:C`, as parsed.
impl std::fmt::Display for Guidance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain => f.write_str("plain"),
            Self::Ramp { floor } if *floor == 0.0 => f.write_str("ramp"),
            Self::Ramp { floor } => write!(f, "ramp:{floor}"),
        }
    }
}

impl std::str::FromStr for Guidance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown guidance {s:?}: expected plain, ramp or ramp:C (C in 0 … 1, cycles \
                 per sample; above 1 the floor outweighs the ramp, whose largest value is \
                 0.5: use plain with a larger ζ)"
            )
        };
        match s.split_once(':') {
            None if s == "plain" => Ok(Self::Plain),
            None if s == "ramp" => Ok(Self::RAMP),
            Some(("ramp", c)) => match c.parse::<f64>() {
                Ok(floor) if (0.0..=1.0).contains(&floor) => Ok(Self::Ramp { floor }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// What is done to each DPS sample before the posterior mean and standard
/// deviation are taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refine {
    /// The samples as the sampler ends them (Algorithm 1).
    None,
    /// CT: the samples' smooth component fitted to the data (PWLS for counts),
    /// [`low_frequency_correction`]: DPS leaves low-frequency errors under the
    /// white noise of the residual (docs/priors.md, 'Low-frequency data
    /// consistency').
    Lowpass(LowpassOptions),
}

impl Refine {
    /// `lowpass` without parameters: σ = 4 px, 20 CG iterations (on the low-dose
    /// cases 10 / 20 / 40 / 100 iterations gave SSIM 0.972 / 0.975 / 0.971 / 0.954).
    pub const LOWPASS: Self = Self::Lowpass(LOWPASS_DEFAULT);
}

/// The parameters of a bare `lowpass` ([`Refine::LOWPASS`]).
const LOWPASS_DEFAULT: LowpassOptions = LowpassOptions {
    sigma_px: 4.0,
    iterations: 20,
};

/// `none` or `lowpass:SIGMA_PX:ITERATIONS`, as parsed.
impl std::fmt::Display for Refine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Lowpass(o) => write!(f, "lowpass:{}:{}", o.sigma_px, o.iterations),
        }
    }
}

impl std::str::FromStr for Refine {
    type Err = String;

    /// `none`, `lowpass` ([`Refine::LOWPASS`]), `lowpass:SIGMA_PX` or
    /// `lowpass:SIGMA_PX:ITERATIONS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown refinement {s:?}: expected none, lowpass, lowpass:SIGMA_PX or \
                 lowpass:SIGMA_PX:ITERATIONS (SIGMA_PX in 0.01…1000, ITERATIONS ≥ 1)"
            )
        };
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("none"), None, None, None) => Ok(Self::None),
            (Some("lowpass"), sigma, iterations, None) => {
                let sigma_px = match sigma {
                    Some(x) => x.parse::<f64>().map_err(|_| bad())?,
                    None => LOWPASS_DEFAULT.sigma_px,
                };
                let iterations = match iterations {
                    Some(n) => n.parse::<usize>().map_err(|_| bad())?,
                    None => LOWPASS_DEFAULT.iterations,
                };
                // σ sizes a Gaussian kernel of 6σ + 1 taps, and its square divides.
                if !(0.01..=1000.0).contains(&sigma_px) || iterations == 0 {
                    return Err(bad());
                }
                Ok(Self::Lowpass(LowpassOptions {
                    sigma_px,
                    iterations,
                }))
            }
            _ => Err(bad()),
        }
    }
}

/// DPS settings of a preset.
#[derive(Clone, Debug, PartialEq)]
pub struct DpsSettings {
    /// Sampler steps (≤ the prior's T; fewer respaces the schedule).
    pub steps: usize,
    /// Guidance step size ζ.
    pub zeta: f64,
    /// `None`: the ancestral DDPM step of Algorithm 1; `Some(η)`: DDIM with η.
    pub eta: Option<f64>,
    /// Posterior samples per slice (mean and standard deviation over them).
    pub samples: i64,
    /// Most samples per slice drawn together through the network (`None`: all).
    /// More samples are drawn in further batches, batch g seeded with
    /// [`sample_batch_seed`]; this bounds the memory, and changes the samples
    /// when it splits them.
    pub sample_batch: Option<i64>,
    pub seed: u64,
    /// What the guidance measures (`Ramp` needs CT data).
    pub guidance: Guidance,
    /// The guidance's derivative through the clamp of x̂_0.
    pub clamp_gradient: ClampGradient,
    /// What is done to each sample after sampling (`Lowpass` needs CT data).
    pub refine: Refine,
}

impl DpsSettings {
    /// Fails unless the settings can run on a prior of `timesteps` steps: 1 to
    /// `timesteps` steps, ζ finite and > 0, η in [0, 1], at least one sample.
    pub fn check(&self, timesteps: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=timesteps).contains(&self.steps),
            "steps must be 1…{timesteps} (the prior's schedule), got {}",
            self.steps
        );
        anyhow::ensure!(
            self.zeta.is_finite() && self.zeta > 0.0,
            "ζ must be a finite number > 0, got {}",
            self.zeta
        );
        if let Some(eta) = self.eta {
            anyhow::ensure!((0.0..=1.0).contains(&eta), "η must be in [0, 1], got {eta}");
        }
        anyhow::ensure!(
            self.samples >= 1,
            "samples must be at least 1, got {}",
            self.samples
        );
        if let Some(k) = self.sample_batch {
            anyhow::ensure!(k >= 1, "the sample batch must be at least 1, got {k}");
        }
        Ok(())
    }
}

/// A reconstructed batch of slices in output units (HU or MR magnitude).
pub struct Reconstruction {
    /// Posterior mean `[B, 1, H, W]`.
    pub mean: Tensor,
    /// Per-pixel posterior standard deviation `[B, 1, H, W]` (zero for one sample).
    pub std: Tensor,
}

/// Classical baselines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Baseline {
    /// MRI: the adjoint `A* y` (coil-combined zero-filled image).
    ZeroFilled,
    /// MRI: CG on the normal equations (CG-SENSE), with a fixed iteration count.
    CgSense { iterations: usize },
    /// CT: filtered backprojection.
    Fbp(FbpFilter),
    /// TV-regularised least squares (PWLS for CT counts), by PDHG. `lambda` weighs
    /// TV against `½‖A x − y‖²` with unit data weights; for CT counts it is
    /// multiplied by the mean PWLS weight ([`tv_weight`]), so one λ means the same
    /// for line integrals and for counts at any dose.
    Tv { lambda: f64, iterations: usize },
}

/// CG-SENSE iterations when none are given (`validate`'s `cg-sense`, a preset's
/// `[baselines.cg-sense]` without `iterations`): unregularised CG semi-converges,
/// and 10 iterations score best on sample_data/mri-brain-4x (27.3 dB against
/// 24.3 dB after 30).
pub const DEFAULT_CG_ITERATIONS: usize = 10;

/// PDHG iterations of a TV baseline when none are given. PDHG (no stopping rule)
/// converges slowly on these problems: on Shepp–Logan with 30 views (σ = 0.005,
/// λ = 0.01) 200 / 1000 / 3000 iterations give 40.02 / 43.06 / 43.06 dB, and on
/// sample_data/mri-brain-4x (λ = 0.001) 1000 / 3000 give 30.42 / 30.44 dB.
pub const DEFAULT_TV_ITERATIONS: usize = 1000;

impl Baseline {
    /// A short name for file and series names: `zero-filled`, `cg-sense`, `fbp`, `tv`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ZeroFilled => "zero-filled",
            Self::CgSense { .. } => "cg-sense",
            Self::Fbp(_) => "fbp",
            Self::Tv { .. } => "tv",
        }
    }
}

/// Runs a baseline; returns `[B, 1, H, W]` in output units.
pub fn baseline(problem: &Problem, which: Baseline) -> anyhow::Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let y = problem.linearised_data();
    let image = match (which, problem.modality) {
        (Baseline::ZeroFilled, Modality::Mri) => problem.op().adjoint(&y),
        (Baseline::CgSense { iterations }, Modality::Mri) => {
            let options = CgOptions {
                max_iter: iterations,
                tol: 0.0,
                lambda: 0.0,
            };
            solve_normal(problem.op(), &y, None, &options).x
        }
        (Baseline::Fbp(filter), _) => match &problem.model {
            ForwardModel::Ct(radon) => radon.fbp(&y, filter),
            ForwardModel::Mri(_) => anyhow::bail!("FBP does not apply to MRI data"),
        },
        (Baseline::Tv { lambda, iterations }, modality) => {
            let weights = problem.blank_scan_counts.map(|_| pwls_weights(&problem.y));
            let options = TvOptions {
                lambda: tv_weight(lambda, weights.as_ref()),
                iterations,
                nonnegative: matches!(modality, Modality::Ct { .. }),
                ..Default::default()
            };
            tv_pdhg(problem.op(), &y, weights.as_ref(), None, &options)
        }
        (b, m) => anyhow::bail!("baseline {} does not apply to {m:?} data", b.name()),
    };
    Ok(problem.to_output_units(&image))
}

/// The TV weight actually used for a [`Baseline::Tv`] λ with the PWLS `weights` of
/// CT counts ([`pwls_weights`], `None` for unweighted data): λ times the mean
/// weight (the mean count), since the weighted data term `½‖A x − y‖²_W` grows
/// with the dose; λ itself without weights.
pub fn tv_weight(lambda: f64, weights: Option<&Tensor>) -> f64 {
    weights.map_or(lambda, |w| lambda * w.mean(Kind::Double).double_value(&[]))
}

/// `‖y − A(x)‖ / (σ √m)` per slice for an output-unit image `x` `[B, 1, H, W]`:
/// the data-consistency residual against the noise level (≈ 1 for a fit at the
/// noise level), over the m acquired real components. For CT counts, the PWLS
/// residual `sqrt(Σ N (p̂ − A x)² / m)`, which needs no σ. `None` without σ.
pub fn normalized_residual(problem: &Problem, x: &Tensor) -> Vec<Option<f64>> {
    let _guard = tch::no_grad_guard();
    let ax = problem.op().forward(&problem.to_operator_units(x));
    let y = problem.linearised_data();
    let acquired = |t: &Tensor| {
        let a = t.abs().gt(0.0).to_kind(Kind::Double);
        let dims: Vec<i64> = (1..a.dim() as i64).collect();
        let per = a.sum_dim_intlist(&dims[..], false, Kind::Double);
        if t.is_complex() {
            per * 2.0
        } else {
            per
        }
    };
    let m = acquired(&problem.y);
    let r = match problem.blank_scan_counts {
        Some(_) => (&y - &ax).square() * pwls_weights(&problem.y),
        None => {
            let d = &y - ax * problem.y.abs().gt(0.0);
            if d.is_complex() {
                d.abs().square()
            } else {
                d.square()
            }
        }
    };
    let dims: Vec<i64> = (1..r.dim() as i64).collect();
    let ss = r.sum_dim_intlist(&dims[..], false, Kind::Double);
    let b = ss.size()[0];
    (0..b)
        .map(|i| {
            let chi2 = ss.double_value(&[i]) / m.double_value(&[i]).max(1.0);
            match (problem.blank_scan_counts, problem.noise_sigma) {
                (Some(_), _) => Some(chi2.sqrt()),
                (None, Some(sigma)) if sigma > 0.0 => Some(chi2.sqrt() / sigma),
                _ => None,
            }
        })
        .collect()
}

/// Each slice's 99.9th percentile of its CG-SENSE magnitude (20 iterations), in
/// the data's units: `B` values, 0 for a slice with empty k-space.
pub fn mri_slice_p999(problem: &Problem) -> anyhow::Result<Vec<f64>> {
    let cg = baseline(problem, Baseline::CgSense { iterations: 20 })?;
    Ok(intensity::p999_each(&cg))
}

/// The scale between the prior's MR intensity and the image magnitude of a set
/// of slices (a series, or one slice), from their [`mri_slice_p999`]: the median
/// over the non-empty slices, mapped to the card's `reference_p999` (the median
/// of the training images' own 99.9th percentiles; 0.69 for the Colin27 training
/// slices), else to 0.8 of the prior's physical maximum. Median against median,
/// so a series is shown to the prior with its typical slice as bright as a
/// typical training image. The rule before (the pooled percentile to 0.8, the
/// pooled value of the training slices) showed held-out mid-brain slices, whose
/// own percentile is 0.58–0.64, about 1.3× too bright.
pub fn mri_intensity_scale(p999: &[f64], prior: &Prior) -> anyhow::Result<f64> {
    let median = intensity::median_positive(p999)
        .context("the k-space is empty: cannot scale it to the prior")?;
    let map = &prior.card.intensity;
    Ok(median / map.reference_p999.unwrap_or(0.8 * map.physical_max))
}

/// The MR intensity scale that `scale` gives for `problems` (the slices of one
/// series, or one slice): a fixed value as it stands; `Auto` by
/// [`mri_intensity_scale`] over all their slices, so a series has one scale.
pub fn resolve_mri_scale(
    scale: MriScale,
    problems: &[Problem],
    prior: &Prior,
) -> anyhow::Result<f64> {
    match scale {
        MriScale::Fixed(v) => Ok(v),
        MriScale::Auto => {
            let mut p999 = Vec::new();
            for p in problems {
                p999.extend(mri_slice_p999(p)?);
            }
            mri_intensity_scale(&p999, prior)
        }
    }
    .context("estimating the MR intensity scale")
}

/// Fails when [`reconstruct_dps`] of `problem` with `settings` would need more
/// memory for the prior network's activations than the host has available: every
/// slice of `problem`, the samples of one sample batch, two real images per
/// sample for MRI. Without the check the kernel would kill the process mid-run.
/// Checked on the CPU only (a GPU that runs out fails with an error), and only for
/// priors that can estimate their memory (the built-in UNet).
/// `reconstruct_dps` checks it before sampling; callers with work to do first
/// may check it before that work.
pub fn ensure_dps_memory(
    problem: &Problem,
    prior: &Prior,
    settings: &DpsSettings,
) -> anyhow::Result<()> {
    let [h, w] = problem.image_size;
    let (Some(per_image), Some(available)) = (
        prior.model.guided_step_bytes(h, w),
        crate::memory::available_on(problem.y.device()),
    ) else {
        return Ok(());
    };
    let batch = sampling_batch(
        problem.y.size()[0],
        is_complex(problem),
        per_image,
        settings,
    );
    ensure_sampling_fits(&batch, available)
}

/// What one batch of `slices` slices sampled with `settings` gives the prior
/// network at once: every slice, the samples of one sample batch, and two real
/// images per sample for `complex` (MR) images; `per_image` is the network's
/// bytes per image ([`crate::prior::EpsModel::guided_step_bytes`]).
pub fn sampling_batch(
    slices: i64,
    complex: bool,
    per_image: u64,
    settings: &DpsSettings,
) -> SamplingBatch {
    SamplingBatch {
        slices,
        samples: samples_per_batch(settings),
        parts: image_parts(complex),
        per_image,
    }
}

/// Fails when `batch` needs more than `available` bytes, naming the
/// `--sample-batch` (or, for several slices, the `--batch-slices`) that fits.
pub fn ensure_sampling_fits(batch: &SamplingBatch, available: u64) -> anyhow::Result<()> {
    batch
        .ensure_fits(
            available,
            "--sample-batch",
            (batch.slices > 1).then_some("--batch-slices"),
        )
        .map_err(anyhow::Error::msg)
}

/// Samples of each slice drawn together: all, or at most the sample batch.
fn samples_per_batch(settings: &DpsSettings) -> i64 {
    let n = settings.samples;
    settings.sample_batch.map_or(n, |k| k.min(n))
}

/// Whether the images of `problem` are complex (MR), each sample then being two
/// real images for the prior.
fn is_complex(problem: &Problem) -> bool {
    problem.modality == Modality::Mri
}

/// Real images the prior sees per sample of a slice: 2 for a complex image
/// (real and imaginary parts), else 1.
fn image_parts(complex: bool) -> i64 {
    if complex {
        2
    } else {
        1
    }
}

/// The seed of sample batch `g` of a slice batch seeded with `seed`: `seed`
/// itself for the first, so that samples that fit in one batch are drawn as
/// before sample batches existed; far-apart seeds for the others (run seeds its
/// slice batches `seed + first slice`).
pub fn sample_batch_seed(seed: u64, g: u64) -> u64 {
    dps_operators::noise::stream_seed(seed, g)
}

/// DPS reconstruction of every slice of `problem` with `settings.samples`
/// posterior samples each. For MRI the real and imaginary parts of the complex
/// image are sampled as separate real images by the same prior, and `mri_scale`
/// (see [`mri_intensity_scale`]) maps the prior's intensity to the data's: the
/// data term compares `y / mri_scale` with `A x`, so ζ is independent of the
/// k-space scale, and the images are written at the data's scale.
/// `progress` sees (steps done, steps in all).
pub fn reconstruct_dps(
    problem: &Problem,
    prior: &Prior,
    settings: &DpsSettings,
    mri_scale: f64,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Reconstruction> {
    prior.card.ensure_one_channel()?;
    settings.check(prior.schedule.len())?;
    let b = problem.y.size()[0];
    let n = settings.samples;
    let [h, w] = problem.image_size;
    prior.model.check_size(h, w)?;
    let parts = image_parts(is_complex(problem));

    // MRI data are compared at the prior's intensity (y / scale against A x), so
    // that ζ does not depend on the scale of the k-space.
    let y = match problem.modality {
        Modality::Mri => &problem.y / mri_scale,
        Modality::Ct { .. } => problem.y.shallow_clone(),
    };
    let ramp = match (settings.guidance, &problem.model) {
        (Guidance::Plain, _) => None,
        (Guidance::Ramp { floor }, ForwardModel::Ct(radon)) => Some(SqrtRamp::with_floor(
            radon.geometry(),
            floor,
            problem.y.device(),
        )),
        (Guidance::Ramp { .. }, ForwardModel::Mri(_)) => {
            anyhow::bail!("ramp guidance is for CT data; use plain guidance for MRI")
        }
    };
    anyhow::ensure!(
        settings.refine == Refine::None || problem.modality != Modality::Mri,
        "the lowpass refinement is for CT data; MRI takes none"
    );
    let filter = ramp.as_ref().map(|h| move |r: &Tensor| h.apply(r));
    let scale = if problem.modality == Modality::Mri {
        mri_scale
    } else {
        1.0
    };
    // What the lowpass refinement fits, per slice: the linearised data and, for
    // transmission counts, their PWLS weights (made once for all sample batches).
    let refine_data = matches!(settings.refine, Refine::Lowpass(_)).then(|| {
        let weights = problem.blank_scan_counts.map(|_| pwls_weights(&problem.y));
        (problem.linearised_data(), weights)
    });
    // `count` samples of every slice, seeded with `seed`, in output units
    // `[B · count, 1, H, W]` (rows: slice, sample).
    let draw = |count: i64, seed: u64, progress: &mut dyn FnMut(usize, usize)| {
        let term = DataTerm::new(problem.op(), &y, problem.likelihood).repeat_samples(count);
        let term = match &filter {
            Some(h) => term.with_filter(h),
            None => term,
        };
        // x̂_0 in the prior's range → the operator's image (rows: slice, sample, part).
        let to_operator = |x0: &Tensor| -> Tensor {
            let physical = prior.to_physical(x0);
            match problem.modality {
                Modality::Mri => {
                    let pairs = physical.view([b * count, 2, h, w]);
                    Tensor::complex(&pairs.select(1, 0), &pairs.select(1, 1)).unsqueeze(1)
                }
                Modality::Ct { .. } => problem.to_operator_units(&physical),
            }
        };
        let distance = |x0: &Tensor| term.distance(&to_operator(x0));
        let config = DpsConfig {
            steps: settings.steps,
            zeta: settings.zeta,
            update: match settings.eta {
                None => Update::Ddpm,
                Some(eta) => Update::Ddim { eta },
            },
            clamp_gradient: settings.clamp_gradient,
            seed,
        };
        let sampler = DpsSampler::new(prior.model.as_ref(), &prior.schedule, config);
        let total = sampler.schedule().len();
        let x0 = sampler.sample(
            &[b * count * parts, 1, h, w],
            Kind::Float,
            problem.y.device(),
            &distance,
            &mut |i, _| progress(total - i, total),
        );
        let _guard = tch::no_grad_guard();
        anyhow::ensure!(
            x0.isfinite().all().int64_value(&[]) == 1,
            "the chain diverged (non-finite values): ζ = {:?} is too large for these data; \
             lower it (sampler.zeta, --zeta)",
            settings.zeta
        );
        let samples = to_operator(&x0);
        let samples = match settings.refine {
            Refine::None => samples,
            Refine::Lowpass(options) => {
                let (y, weights) = refine_data.as_ref().expect("made for Lowpass");
                let rep = |t: &Tensor| t.repeat_interleave_self_int(count, Some(0), None);
                let weights = weights.as_ref().map(rep);
                low_frequency_correction(
                    problem.op(),
                    &samples,
                    &rep(y),
                    weights.as_ref(),
                    &options,
                )
            }
        };
        Ok(problem.to_output_units(&(samples * scale)))
    };
    let per_batch = samples_per_batch(settings);
    ensure_dps_memory(problem, prior, settings)?;
    let batches = (n + per_batch - 1) / per_batch;
    let mut drawn = Vec::with_capacity(batches as usize);
    for g in 0..batches {
        let count = per_batch.min(n - g * per_batch);
        let samples = draw(
            count,
            sample_batch_seed(settings.seed, g as u64),
            &mut |done, total| progress(g as usize * total + done, batches as usize * total),
        )?;
        drawn.push(samples.view([b, count, 1, h, w]));
    }
    let samples = Tensor::cat(&drawn, 1).view([b * n, 1, h, w]);
    let (mean, std) = posterior_stats(&samples, n);
    Ok(Reconstruction { mean, std })
}
