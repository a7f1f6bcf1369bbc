//! TV-regularised least squares by PDHG: the gradient operator, the norm estimate,
//! and denoising / deblurring / inpainting of piecewise-constant images.

use dps_operators::blur::Blur;
use dps_operators::inpainting::{random_pixel_mask, Inpainting};
use dps_operators::kernels::gaussian_kernel;
use dps_operators::noise::add_gaussian;
use dps_operators::op::{adjoint_mismatch, Operator};
use dps_operators::solvers::tv::{
    operator_norm_estimate, total_variation, tv_pdhg, Gradient, TvOptions,
};
use dps_operators::super_resolution::SuperResolution;
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Piecewise-constant `[1, 1, n, n]` test image in [0, 1]: zero background with
/// three overlapping rectangles.
fn blocks(n: i64) -> Tensor {
    let x = Tensor::zeros([1, 1, n, n], CPU);
    let paint = |top: i64, left: i64, h: i64, w: i64, v: f64| {
        let _ = x.narrow(2, top, h).narrow(3, left, w).fill_(v);
    };
    paint(n / 8, n / 8, n / 2, n / 2, 0.6);
    paint(n / 3, n / 2, n / 2, n / 3, 1.0);
    paint(5 * n / 8, n / 6, n / 4, n / 4, 0.3);
    x
}

/// PSNR in dB for images in [0, 1].
fn psnr(x: &Tensor, reference: &Tensor) -> f64 {
    let mse = (x - reference)
        .abs()
        .square()
        .mean(Kind::Double)
        .double_value(&[]);
    -10.0 * mse.log10()
}

/// Seeded uniform [0, 1) tensor of `shape` (CPU, f32).
fn uniform(shape: &[i64], seed: u64) -> Tensor {
    let normal = add_gaussian(&Tensor::zeros(shape, CPU), 1.0, seed);
    (normal * std::f64::consts::FRAC_1_SQRT_2).erf() * 0.5 + 0.5
}

fn identity() -> Inpainting {
    Inpainting::new(&Tensor::ones([1, 1], CPU))
}

#[test]
fn gradient_adjoint_and_values() {
    for s in [[1i64, 1, 16, 16], [2, 3, 9, 14], [1, 1, 1, 7]] {
        let mut y_shape = s.to_vec();
        y_shape.push(2);
        for kind in [Kind::Float, Kind::ComplexFloat] {
            let x = add_gaussian(&Tensor::zeros(s, (kind, Device::Cpu)), 1.0, 1);
            let y = add_gaussian(
                &Tensor::zeros(y_shape.as_slice(), (kind, Device::Cpu)),
                1.0,
                2,
            );
            let m = adjoint_mismatch(&Gradient, &x, &y);
            assert!(m < 1e-5, "{s:?} {kind:?}: adjoint mismatch {m:e}");
        }
    }
    // A vertical edge of height 1 across 8 rows: TV = 8; the last column and row
    // have zero differences (Neumann boundary).
    let step = Tensor::zeros([1, 1, 8, 10], CPU);
    let _ = step.narrow(3, 5, 5).fill_(1.0);
    assert!((total_variation(&step) - 8.0).abs() < 1e-6);
    let g = Gradient.forward(&step);
    assert_eq!(g.size(), [1, 1, 8, 10, 2]);
    assert_eq!(g.double_value(&[0, 0, 3, 4, 1]), 1.0);
    assert_eq!(
        g.abs().select(-1, 0).sum(Kind::Double).double_value(&[]),
        0.0
    );
    // TV of a complex image is that of its modulus when the phase is constant.
    let phase = Tensor::complex(
        &Tensor::from_slice(&[0.6f32]),
        &Tensor::from_slice(&[0.8f32]),
    );
    assert!((total_variation(&(&step * phase)) - 8.0).abs() < 1e-5);
}

#[test]
fn norm_estimates() {
    let sr = SuperResolution::new(2, 16, 16);
    let est = operator_norm_estimate(&sr, &[1, 1, 16, 16], CPU, 10);
    assert!((est - 0.5).abs() < 1e-5, "‖SR×2‖ = 1/2, got {est}");
    // A diagonal operator: ‖A‖ is its largest entry.
    let diag = uniform(&[1, 1, 12, 12], 3);
    let _ = diag.get(0).get(0).get(3).get(7).fill_(2.0);
    let est = operator_norm_estimate(&Inpainting::new(&diag), &[2, 1, 12, 12], CPU, 40);
    assert!((est - 2.0).abs() < 1e-4, "diagonal: got {est}");
    let est = operator_norm_estimate(
        &Gradient,
        &[1, 1, 32, 32],
        (Kind::ComplexFloat, Device::Cpu),
        200,
    );
    assert!(est > 2.7 && est < 8f64.sqrt(), "‖∇‖ ≲ √8, got {est}");
}

#[test]
fn tv_denoising_improves_psnr() {
    let truth = blocks(64);
    let noisy = add_gaussian(&truth, 0.1, 1);
    let options = TvOptions {
        lambda: 0.08,
        iterations: 200,
        ..TvOptions::default()
    };
    let x = tv_pdhg(&identity(), &noisy, None, None, &options);
    let (before, after) = (psnr(&noisy, &truth), psnr(&x, &truth));
    println!("denoising: noisy {before:.2} dB, TV {after:.2} dB");
    assert!(
        after > before + 10.0,
        "noisy {before:.2} dB, TV {after:.2} dB"
    );
    assert!(total_variation(&x) < 0.5 * total_variation(&noisy));
}

#[test]
fn tv_complex_denoising_improves_psnr() {
    let phase = Tensor::complex(
        &Tensor::from_slice(&[0.8f32]),
        &Tensor::from_slice(&[-0.6f32]),
    );
    let truth = blocks(48) * phase;
    let noisy = add_gaussian(&truth, 0.07, 2);
    let options = TvOptions {
        lambda: 0.08,
        iterations: 200,
        ..TvOptions::default()
    };
    let x = tv_pdhg(&identity(), &noisy, None, None, &options);
    assert_eq!(x.kind(), Kind::ComplexFloat);
    let (before, after) = (psnr(&noisy, &truth), psnr(&x, &truth));
    println!("complex denoising: noisy {before:.2} dB, TV {after:.2} dB");
    assert!(
        after > before + 8.0,
        "noisy {before:.2} dB, TV {after:.2} dB"
    );
}

#[test]
fn tv_deblurring_improves_psnr_and_respects_nonnegativity() {
    let truth = blocks(64);
    let op = Blur::new(&gaussian_kernel(9, 2.0));
    let y = add_gaussian(&op.forward(&truth), 0.01, 3);
    let mut options = TvOptions {
        lambda: 0.002,
        iterations: 300,
        ..TvOptions::default()
    };
    let free = tv_pdhg(&op, &y, None, None, &options);
    options.nonnegative = true;
    let x = tv_pdhg(&op, &y, None, None, &options);
    let (before, after) = (psnr(&y, &truth), psnr(&x, &truth));
    println!(
        "deblurring: blurred {before:.2} dB, TV {after:.2} dB, TV without x ≥ 0 {:.2} dB",
        psnr(&free, &truth)
    );
    assert!(
        after > before + 5.0,
        "blurred {before:.2} dB, TV {after:.2} dB"
    );
    assert!(x.min().double_value(&[]) >= 0.0);
    assert!(
        free.min().double_value(&[]) < -1e-3,
        "the constraint is active on this problem"
    );
}

#[test]
fn tv_inpainting_and_weights() {
    let truth = blocks(48);
    let mask = random_pixel_mask(48, 48, 0.6, 4);
    let op = Inpainting::new(&mask);
    let y = add_gaussian(&op.forward(&truth), 0.02, 5) * &mask;
    let options = TvOptions {
        lambda: 0.02,
        iterations: 300,
        nonnegative: true,
        ..TvOptions::default()
    };
    let x = tv_pdhg(&op, &y, None, None, &options);
    let (before, after) = (psnr(&y, &truth), psnr(&x, &truth));
    println!("inpainting 60 %: masked {before:.2} dB, TV {after:.2} dB");
    assert!(
        after > before + 15.0,
        "masked {before:.2} dB, TV {after:.2} dB"
    );

    // PWLS with the mask as weights on the identity is the same problem (the solver
    // rescales the weights to mean 1, so the iterates differ): same objective value.
    let weighted = tv_pdhg(&identity(), &y, Some(&mask), None, &options);
    let objective = |x: &Tensor| {
        0.5 * (op.forward(&(x - &y)))
            .square()
            .sum(Kind::Double)
            .double_value(&[])
            + options.lambda * total_variation(x)
    };
    let (f_op, f_w) = (objective(&x), objective(&weighted));
    println!("objective: inpainting operator {f_op:.4}, mask as weights {f_w:.4}");
    assert!(
        (f_op - f_w).abs() < 0.01 * f_op,
        "objectives {f_op} vs {f_w}"
    );
}

#[test]
fn pwls_minimises_the_weighted_objective() {
    // Heteroscedastic noise, σ_i = 0.2 / sqrt(v_i) with v_i in [1, 21], and the PWLS
    // weights w_i = 1 / σ_i²: the weighted objective at the PWLS solution is lower
    // than at the unweighted solution.
    let truth = blocks(48);
    let v = uniform(&[1, 1, 48, 48], 7) * 20.0 + 1.0;
    let noise = add_gaussian(&truth.zeros_like(), 0.2, 6) / v.sqrt();
    let y = &truth + noise;
    let w = v * 25.0;
    let options = TvOptions {
        lambda: 10.0,
        iterations: 300,
        ..TvOptions::default()
    };
    let objective = |x: &Tensor| {
        0.5 * ((x - &y).square() * &w).sum(Kind::Double).double_value(&[])
            + options.lambda * total_variation(x)
    };
    let pwls = tv_pdhg(&identity(), &y, Some(&w), None, &options);
    let plain = tv_pdhg(&identity(), &y, None, None, &options);
    let (f_pwls, f_plain, f_y) = (objective(&pwls), objective(&plain), objective(&y));
    println!("weighted objective: PWLS {f_pwls:.3}, unweighted {f_plain:.3}, y {f_y:.3}");
    assert!(f_pwls < 0.9 * f_plain && f_pwls < 0.9 * f_y);
    // Against the unweighted problem with λ divided by the mean weight (the same
    // balance on average), the statistical weights pay off in PSNR.
    let mean_w = w.mean(Kind::Double).double_value(&[]);
    let balanced = TvOptions {
        lambda: options.lambda / mean_w,
        ..options
    };
    let plain = tv_pdhg(&identity(), &y, None, None, &balanced);
    let (p_pwls, p_plain) = (psnr(&pwls, &truth), psnr(&plain, &truth));
    println!("PSNR: PWLS {p_pwls:.2} dB, unweighted (λ / mean w) {p_plain:.2} dB");
    assert!(p_pwls > p_plain + 2.0);
}
