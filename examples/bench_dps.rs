//! DPS time per step against a bare UNet forward + input-gradient backward at the
//! same size and batch (run by `make bench`), with the network in f32 and in bf16
//! (`--precision`). Prints one JSON object per case.
//!
//! The DPS step here includes everything Algorithm 1 does per iteration: ε̂,
//! Tweedie, the ancestral update, the data term through the case's operator and
//! its gradient through the network. Cases, as the presets run them at 128²:
//! - `mri-4x`: single-coil MRI, 4× random lines, Gaussian likelihood;
//! - `ct-30`: parallel-beam Radon transform, 30 views over 180°, 183 detectors of
//!   2 mm (the sparse-view presets' geometry), Gaussian likelihood, ramp guidance;
//! - `ct-180-counts`: the same with 180 views and transmission counts (I0 = 1e4,
//!   the low-dose presets), guidance `ramp:0.02`.

use std::time::Instant;

use dps_operators::ct::{uniform_angles, CtGeometry, Radon, SqrtRamp};
use dps_operators::masks::random_lines;
use dps_operators::mri::SingleCoilMri;
use dps_operators::Operator;
use dps_recon::prior::{BetaSchedule, EpsModel, Precision, Schedule, UNetConfig, UNetPrior};
use dps_recon::sampler::{ClampGradient, DataTerm, DpsConfig, DpsSampler, Likelihood, Update};
use tch::{Device, Kind, Tensor};

const SIZE: i64 = 128;

/// Medians (ms) of the closures `fs` timed in turn, round after round, so that
/// load changes on a shared machine hit all alike.
fn alternating_medians_ms(runs: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    fs.iter_mut().for_each(|f| f());
    let mut times = vec![Vec::with_capacity(runs); fs.len()];
    for _ in 0..runs {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let s = Instant::now();
            f();
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[runs / 2]
        })
        .collect()
}

/// Times one DPS step (timestep 500 of 1000, data term `term` on x̂0 mapped from
/// [−1, 1] to [0, `scale`]) against the bare UNet pass, with each of the
/// `networks` (the same weights in each precision), all in turn; prints a row
/// per precision.
fn bench_case(
    case: &str,
    (networks, schedule): (&[(UNetPrior, Precision)], &Schedule),
    batch: i64,
    term: &DataTerm,
    scale: f64,
) {
    let dev = Device::Cpu;
    let shape = [batch, 1, SIZE, SIZE];
    let x = Tensor::randn(shape, (Kind::Float, dev));
    let z = Tensor::randn(shape, (Kind::Float, dev));
    let t = Tensor::full([batch], 500, (Kind::Int64, dev));
    let distance = |x0: &Tensor| term.distance(&((x0 + 1.0) * (0.5 * scale)));
    let config = DpsConfig {
        steps: 1000,
        zeta: 1.0,
        update: Update::Ddpm,
        clamp_gradient: ClampGradient::Exact,
        seed: 0,
    };
    let samplers: Vec<DpsSampler> = networks
        .iter()
        .map(|(net, _)| DpsSampler::new(net, schedule, config.clone()))
        .collect();
    let (x, t) = (&x, &t);
    let mut bares: Vec<_> = networks
        .iter()
        .map(|(net, _)| {
            move || {
                let xi = x.detach().set_requires_grad(true);
                let eps = net.eps(&xi, t);
                let _ = Tensor::run_backward(&[eps.sum(Kind::Float)], &[&xi], false, false);
            }
        })
        .collect();
    let mut steps: Vec<_> = samplers
        .iter()
        .map(|sampler| {
            || {
                let _ = sampler.step(500, x, &z, &distance);
            }
        })
        .collect();
    let mut all: Vec<&mut dyn FnMut()> = Vec::new();
    for (bare, step) in bares.iter_mut().zip(&mut steps) {
        all.push(bare);
        all.push(step);
    }
    let ms = alternating_medians_ms(9, &mut all);
    for ((_, precision), pair) in networks.iter().zip(ms.chunks(2)) {
        let (bare, step) = (pair[0], pair[1]);
        println!(
            r#"{{"case": "{case}", "precision": "{precision}", "size": {SIZE}, "batch": {batch}, "unet_fwd_bwd_ms": {bare:.2}, "dps_step_ms": {step:.2}, "overhead_pct": {:.1}}}"#,
            (step / bare - 1.0) * 100.0
        );
    }
}

/// The CT presets' parallel-beam geometry at 128² (2 mm pixels, 183 detectors).
fn ct_geometry(views: usize) -> CtGeometry {
    CtGeometry::parallel(SIZE as usize, uniform_angles(views, 180.0))
        .with_pixel_spacing(2.0)
        .with_detectors(183, 2.0)
}

fn main() {
    let dev = Device::Cpu;
    let mut prior = UNetPrior::new(&UNetConfig::small(1), dev);
    prior.vs.freeze();
    let mut bf16 = UNetPrior::new(&UNetConfig::small(1), dev);
    bf16.vs.freeze();
    bf16.vs.copy(&prior.vs).expect("same network");
    let networks = [
        (prior, Precision::F32),
        (bf16.with_precision(Precision::Bf16), Precision::Bf16),
    ];
    let schedule = Schedule::new(&BetaSchedule::default());
    let model = (&networks[..], &schedule);
    let images = |batch: i64| Tensor::rand([batch, 1, SIZE, SIZE], (Kind::Float, dev));

    let mask = random_lines(SIZE as usize, SIZE as usize, 4.0, 0.08, 0).expect("mask");
    let mri = SingleCoilMri::new(&mask, dev).expect("operator");
    // μ of water (1/mm) at most: line integrals of a head-sized object.
    let mu = 0.02;
    let sparse = ct_geometry(30);
    let (radon_30, ramp) = (Radon::new(&sparse, dev), SqrtRamp::new(&sparse, dev));
    let filter_30 = |r: &Tensor| ramp.apply(r);
    let low_dose = ct_geometry(180);
    let radon_180 = Radon::new(&low_dose, dev);
    let ramp_floor = SqrtRamp::with_floor(&low_dose, 0.02, dev);
    let filter_180 = |r: &Tensor| ramp_floor.apply(r);
    let i0 = 1e4;
    let transmission = Likelihood::Transmission {
        blank_scan_counts: i0,
        floor: 0.5,
    };
    for batch in [1i64, 4] {
        let y = mri.forward(&images(batch));
        let term = DataTerm::new(&mri, &y, Likelihood::Gaussian);
        bench_case("mri-4x", model, batch, &term, 1.0);

        let y = radon_30.forward(&(images(batch) * mu));
        let term = DataTerm::new(&radon_30, &y, Likelihood::Gaussian).with_filter(&filter_30);
        bench_case("ct-30", model, batch, &term, mu);

        let counts = (radon_180.forward(&(images(batch) * mu)).neg().exp() * i0).round();
        let term = DataTerm::new(&radon_180, &counts, transmission).with_filter(&filter_180);
        bench_case("ct-180-counts", model, batch, &term, mu);
    }
}
