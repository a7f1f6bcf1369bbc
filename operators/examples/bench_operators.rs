//! Forward + adjoint timings of the operators (run by `make bench`). Prints one JSON
//! object per case on stdout: {"case", "first_forward_ms", "forward_ms",
//! "adjoint_ms"} (the first call, which builds what the operator caches, and the
//! medians of the runs after it).
//!
//! The CT projector multiplies by its sparse matrix when no gradient is tracked;
//! the `_sampled` cases time the ray sampling it runs (and differentiates) when one
//! is, i.e. what every call cost before the matrix.

use std::time::Instant;

use dps_operators::coils::{birdcage, DEFAULT_RING_RADIUS};
use dps_operators::ct::{uniform_angles, CtGeometry, Radon};
use dps_operators::masks::equispaced_lines;
use dps_operators::mri::MultiCoilMri;
use dps_operators::{LinearOperator, Operator};
use tch::{Device, Kind, Tensor};

/// The projector's ray-sampling path: inputs that require grad.
struct Sampled(Radon);

impl Operator for Sampled {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.0.forward(&x.copy().set_requires_grad(true)).detach()
    }
}

impl LinearOperator for Sampled {
    fn adjoint(&self, y: &Tensor) -> Tensor {
        self.0.adjoint(&y.copy().set_requires_grad(true)).detach()
    }
}

/// Medians (ms) of forward and adjoint timed alternately (after a warm-up), so
/// that load changes on a shared machine hit both alike.
fn report(case: &str, op: &dyn LinearOperator, x: &Tensor, runs: usize) {
    let time = |f: &dyn Fn()| {
        let s = Instant::now();
        f();
        s.elapsed().as_secs_f64() * 1e3
    };
    let first = time(&|| drop(op.forward(x)));
    let y = op.forward(x);
    let _ = op.adjoint(&y);
    let (mut f, mut a): (Vec<f64>, Vec<f64>) = (0..runs)
        .map(|_| {
            (
                time(&|| drop(op.forward(x))),
                time(&|| drop(op.adjoint(&y))),
            )
        })
        .unzip();
    f.sort_by(f64::total_cmp);
    a.sort_by(f64::total_cmp);
    let (fwd, adj) = (f[runs / 2], a[runs / 2]);
    println!(
        r#"{{"case": "{case}", "first_forward_ms": {first:.3}, "forward_ms": {fwd:.3}, "adjoint_ms": {adj:.3}}}"#
    );
}

fn main() {
    let _guard = tch::no_grad_guard();
    let dev = Device::Cpu;

    let (n, coils) = (256, 8);
    let mask = equispaced_lines(n, n, 4.0, 0.08, 0).expect("valid mask");
    let sens = birdcage(coils, n, n, DEFAULT_RING_RADIUS);
    let mri = MultiCoilMri::new(&mask, &sens, dev).expect("valid operator");
    let x = Tensor::randn([1, 1, n as i64, n as i64], (Kind::ComplexFloat, dev));
    report("mri_8coil_256", &mri, &x, 21);

    // The sampled path of the 512² case (seconds per adjoint) is left out.
    for (size, views, sampled) in [
        (128usize, 30usize, true),
        (256, 180, true),
        (512, 180, false),
    ] {
        let radon = Radon::new(
            &CtGeometry::parallel(size, uniform_angles(views, 180.0)),
            dev,
        );
        let x = Tensor::rand([1, 1, size as i64, size as i64], (Kind::Float, dev));
        let case = format!("ct_parallel_{size}_{views}views");
        report(&case, &radon, &x, 11);
        if sampled {
            report(&format!("{case}_sampled"), &Sampled(radon), &x, 11);
        }
    }
}
