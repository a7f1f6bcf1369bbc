//! DPS time per step against a bare UNet forward + input-gradient backward at the
//! same size and batch (run by `make bench`). Prints one JSON object per case.
//!
//! The DPS step here includes everything Algorithm 1 does per iteration: ε̂,
//! Tweedie, the ancestral update, the data term through a single-coil MRI operator
//! (4× random lines) and its gradient through the network.

use std::time::Instant;

use dps_operators::masks::random_lines;
use dps_operators::mri::SingleCoilMri;
use dps_operators::Operator;
use dps_recon::prior::{BetaSchedule, EpsModel, Schedule, UNetConfig, UNetPrior};
use dps_recon::sampler::{ClampGradient, DataTerm, DpsConfig, DpsSampler, Likelihood, Update};
use tch::{Device, Kind, Tensor};

/// Medians (ms) of `a` and `b` timed alternately, so that load changes on a shared
/// machine hit both alike.
fn paired_median_ms(runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    a();
    b();
    let time = |f: &mut dyn FnMut()| {
        let s = Instant::now();
        f();
        s.elapsed().as_secs_f64() * 1e3
    };
    let (mut ta, mut tb): (Vec<f64>, Vec<f64>) =
        (0..runs).map(|_| (time(&mut a), time(&mut b))).unzip();
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    (ta[runs / 2], tb[runs / 2])
}

fn main() {
    let dev = Device::Cpu;
    let size = 128i64;
    let mut prior = UNetPrior::new(&UNetConfig::small(1), dev);
    prior.vs.freeze();
    let schedule = Schedule::new(&BetaSchedule::default());
    let mask = random_lines(size as usize, size as usize, 4.0, 0.08, 0).expect("mask");
    for batch in [1i64, 4] {
        let shape = [batch, 1, size, size];
        let x = Tensor::randn(shape, (Kind::Float, dev));
        let t = Tensor::full([batch], 500, (Kind::Int64, dev));
        let bare = || {
            let xi = x.detach().set_requires_grad(true);
            let eps = prior.eps(&xi, &t);
            let _ = Tensor::run_backward(&[eps.sum(Kind::Float)], &[&xi], false, false);
        };

        let op = SingleCoilMri::new(&mask, dev).expect("operator");
        let y = op.forward(&Tensor::rand(shape, (Kind::Float, dev)));
        let term = DataTerm::new(&op, &y, Likelihood::Gaussian);
        let distance = |x0: &Tensor| term.distance(&((x0 + 1.0) * 0.5));
        let config = DpsConfig {
            steps: 1000,
            zeta: 1.0,
            update: Update::Ddpm,
            clamp_gradient: ClampGradient::Exact,
            seed: 0,
        };
        let sampler = DpsSampler::new(&prior, &schedule, config);
        let z = Tensor::randn(shape, (Kind::Float, dev));
        let (bare, step) = paired_median_ms(9, bare, || {
            let _ = sampler.step(500, &x, &z, &distance);
        });
        println!(
            r#"{{"size": {size}, "batch": {batch}, "unet_fwd_bwd_ms": {bare:.2}, "dps_step_ms": {step:.2}, "overhead_pct": {:.1}}}"#,
            (step / bare - 1.0) * 100.0
        );
    }
}
