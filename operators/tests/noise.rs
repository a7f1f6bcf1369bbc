//! Noise models: empirical moments, seeded reproducibility, post-log inversion.

use dps_operators::noise::{
    add_gaussian, add_poisson, expected_counts, poisson_counts, post_log, pwls_weights,
    transmission_counts, ZERO_COUNT_FLOOR,
};
use tch::{Device, Kind, Tensor};

const N: i64 = 200_000;

fn full(value: f64, kind: Kind) -> Tensor {
    Tensor::full([1, 1, 400, N / 400], value, (kind, Device::Cpu))
}

/// Sample mean and (unbiased) variance of a real tensor.
fn moments(t: &Tensor) -> (f64, f64) {
    let t = t.to_kind(Kind::Double);
    (
        t.mean(Kind::Double).double_value(&[]),
        t.var(true).double_value(&[]),
    )
}

/// Asserts `|got − want| ≤ tol`.
fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} ± {tol}"
    );
}

#[test]
fn gaussian_moments_real_and_complex() {
    let sigma = 0.3;
    let x = full(0.25, Kind::Float);
    let y = add_gaussian(&x, sigma, 1);
    assert_eq!((y.size(), y.kind()), (x.size(), Kind::Float));
    let (m, v) = moments(&y);
    // Standard errors: σ/√N = 6.7e-4 for the mean, σ²·√(2/N) = 2.8e-4 for the variance.
    close(m, 0.25, 3e-3, "Gaussian mean");
    close(v, sigma * sigma, 1.5e-3, "Gaussian variance");

    let z = Tensor::complex(&full(1.0, Kind::Float), &full(-2.0, Kind::Float));
    let yz = add_gaussian(&z, sigma, 2);
    assert_eq!(yz.kind(), Kind::ComplexFloat);
    let (mr, vr) = moments(&yz.real());
    let (mi, vi) = moments(&yz.imag());
    close(mr, 1.0, 3e-3, "complex real mean");
    close(mi, -2.0, 3e-3, "complex imaginary mean");
    close(
        vr,
        sigma * sigma,
        1.5e-3,
        "complex real variance (σ per component)",
    );
    close(
        vi,
        sigma * sigma,
        1.5e-3,
        "complex imaginary variance (σ per component)",
    );
    // Independent components.
    let cov = ((yz.real() - mr) * (yz.imag() - mi))
        .mean(Kind::Double)
        .double_value(&[]);
    close(cov, 0.0, 1.5e-3, "real/imaginary covariance");

    let yd = add_gaussian(&full(0.0, Kind::Double), sigma, 1);
    assert_eq!(yd.kind(), Kind::Double);
}

#[test]
fn gaussian_is_seeded() {
    let x = full(0.0, Kind::Float);
    let a = add_gaussian(&x, 1.0, 7);
    assert!(a.equal(&add_gaussian(&x, 1.0, 7)));
    assert!(!a.equal(&add_gaussian(&x, 1.0, 8)));
    // The noise does not depend on the signal, only on the seed and the shape.
    let b = add_gaussian(&full(3.0, Kind::Float), 1.0, 7) - 3.0;
    assert!(a.allclose(&b, 1e-5, 1e-5, false));
    assert!(add_gaussian(&x, 0.0, 7).equal(&x));
}

#[test]
fn poisson_moments() {
    for (value, level) in [(0.3, 100.0), (0.8, 5.0), (2.0, 1000.0)] {
        let x = full(value, Kind::Float);
        let y = add_poisson(&x, level, 3);
        let (m, v) = moments(&y);
        let var = value / level;
        close(m, value, 5.0 * (var / N as f64).sqrt(), "Poisson mean");
        close(v, var, 0.02 * var, "Poisson variance");
        // y·level are integer counts.
        let counts = &y * level;
        let off = (&counts - counts.round()).abs().max().double_value(&[]);
        assert!(off < 1e-3 * level.max(1.0), "counts are integers ({off})");
    }
    // Negative intensities give zero counts.
    let y = add_poisson(&full(-1.0, Kind::Float), 10.0, 0);
    assert_eq!(y.abs().max().double_value(&[]), 0.0);
}

#[test]
fn poisson_is_seeded() {
    let rate = full(4.0, Kind::Float);
    let a = poisson_counts(&rate, 5);
    assert!(a.equal(&poisson_counts(&rate, 5)));
    assert!(!a.equal(&poisson_counts(&rate, 6)));
    let (m, v) = moments(&a);
    close(m, 4.0, 0.03, "counts mean");
    close(v, 4.0, 0.08, "counts variance");
}

#[test]
fn transmission_counts_and_post_log() {
    let (p, i0) = (2.0, 1e4);
    let sino = full(p, Kind::Float);
    let counts = transmission_counts(&sino, i0, 11);
    assert!(counts.equal(&transmission_counts(&sino, i0, 11)));
    let mean = i0 * (-p).exp();
    let (m, v) = moments(&counts);
    close(m, mean, 5.0 * (mean / N as f64).sqrt(), "counts mean");
    close(v, mean, 0.02 * mean, "counts variance");

    // Post-log: unbiased to first order, variance ≈ 1 / counts = 1 / PWLS weight.
    let p_hat = post_log(&counts, i0);
    let (m, v) = moments(&p_hat);
    close(m, p, 2e-3, "post-log mean");
    let w = pwls_weights(&counts).mean(Kind::Double).double_value(&[]);
    close(v, 1.0 / w, 0.03 / w, "post-log variance vs 1 / weight");
}

#[test]
fn post_log_of_noiseless_counts_recovers_line_integrals() {
    let i0 = 1e5;
    let p = Tensor::linspace(0.0, 10.0, 1001, (Kind::Float, Device::Cpu)).reshape([1, 1, 7, 143]);
    let recovered = post_log(&expected_counts(&p, i0), i0);
    let err = (&recovered - &p).abs().max().double_value(&[]);
    assert!(err < 1e-5, "max error {err}");

    let zero = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    let floor = post_log(&zero, i0);
    close(
        floor.double_value(&[0]),
        (i0 / ZERO_COUNT_FLOOR).ln(),
        1e-5,
        "zero counts → ln(I0 / floor)",
    );
    assert!(bool::try_from(floor.isfinite().all()).unwrap());
    assert_eq!(pwls_weights(&zero).sum(Kind::Double).double_value(&[]), 0.0);
}
