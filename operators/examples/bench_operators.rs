//! Forward + adjoint timings of the operators (run by `make bench`). Prints one JSON
//! object per case on stdout: {"case", "forward_ms", "adjoint_ms"} (median of runs).

use std::time::Instant;

use dps_operators::coils::{birdcage, DEFAULT_RING_RADIUS};
use dps_operators::ct::{uniform_angles, CtGeometry, Radon};
use dps_operators::masks::equispaced_lines;
use dps_operators::mri::MultiCoilMri;
use dps_operators::LinearOperator;
use tch::{Device, Kind, Tensor};

/// Medians (ms) of forward and adjoint timed alternately (after a warm-up), so
/// that load changes on a shared machine hit both alike.
fn report(case: &str, op: &dyn LinearOperator, x: &Tensor, runs: usize) {
    let y = op.forward(x);
    let _ = op.adjoint(&y);
    let time = |f: &dyn Fn()| {
        let s = Instant::now();
        f();
        s.elapsed().as_secs_f64() * 1e3
    };
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
    println!(r#"{{"case": "{case}", "forward_ms": {fwd:.3}, "adjoint_ms": {adj:.3}}}"#);
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

    for (size, views) in [(128usize, 30usize), (256, 180)] {
        let radon = Radon::new(
            &CtGeometry::parallel(size, uniform_angles(views, 180.0)),
            dev,
        );
        let x = Tensor::rand([1, 1, size as i64, size as i64], (Kind::Float, dev));
        report(&format!("ct_parallel_{size}_{views}views"), &radon, &x, 11);
    }
}
