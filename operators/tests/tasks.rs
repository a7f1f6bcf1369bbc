//! The DPS paper's image-restoration tasks: adjoints (dot test), kernels, masks,
//! super-resolution, blur orientation, and phase retrieval against a direct DFT
//! and finite differences.

use dps_operators::blur::Blur;
use dps_operators::inpainting::{box_mask, random_pixel_mask, BoxPlacement, Inpainting};
use dps_operators::kernels::{gaussian_kernel, motion_blur_kernel};
use dps_operators::op::{adjoint_mismatch, LinearOperator, Operator};
use dps_operators::phase_retrieval::PhaseRetrieval;
use dps_operators::super_resolution::SuperResolution;
use num_complex::Complex64;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

const DOT_TOLERANCE: f64 = 1e-5;

/// Seeded standard normal tensor (f32, or complex64 when `complex`) on the CPU.
fn randn(shape: &[i64], complex: bool, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product::<i64>() as usize * if complex { 2 } else { 1 };
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let t = Tensor::from_slice(&v);
    if complex {
        let mut s = shape.to_vec();
        s.push(2);
        t.reshape(s).view_as_complex()
    } else {
        t.reshape(shape)
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// Dot test of `op` for images `x_shape` and measurements `y_shape`, real and complex.
fn assert_adjoint(op: &dyn LinearOperator, x_shape: &[i64], y_shape: &[i64], name: &str) {
    for (k, complex) in [false, true].into_iter().enumerate() {
        let x = randn(x_shape, complex, 10 + k as u64);
        let y = randn(y_shape, complex, 20 + k as u64);
        assert_eq!(op.forward(&x).size(), y_shape, "{name}: forward shape");
        assert_eq!(op.adjoint(&y).size(), x_shape, "{name}: adjoint shape");
        let m = adjoint_mismatch(op, &x, &y);
        assert!(
            m < DOT_TOLERANCE,
            "{name} {x_shape:?} complex={complex}: adjoint mismatch {m:e}"
        );
    }
}

const SHAPES: [[i64; 4]; 5] = [
    [1, 1, 16, 16],
    [2, 1, 16, 16],
    [1, 1, 17, 13],
    [2, 1, 15, 21],
    [2, 3, 9, 11],
];

#[test]
fn blur_adjoint_dot_test() {
    let mut asymmetric = randn(&[3, 7], false, 5).abs();
    asymmetric = &asymmetric / asymmetric.sum(Kind::Float);
    let kernels = [
        ("gaussian 5", gaussian_kernel(5, 1.2)),
        ("motion 9", motion_blur_kernel(9, 0.5, 3)),
        ("random 3x7", asymmetric),
        (
            "motion 61 (larger than the image)",
            motion_blur_kernel(61, 0.5, 0),
        ),
    ];
    for (name, kernel) in &kernels {
        let op = Blur::new(kernel);
        for s in SHAPES {
            assert_adjoint(&op, &s, &s, name);
        }
    }
}

#[test]
fn inpainting_adjoint_dot_test() {
    for s in SHAPES {
        let (h, w) = (s[2], s[3]);
        let per_image = Tensor::cat(
            &[
                random_pixel_mask(h, w, 0.5, 1),
                random_pixel_mask(h, w, 0.5, 2),
            ],
            0,
        )
        .narrow(0, 0, s[0]);
        let masks = [
            box_mask(h, w, h.min(w) / 2, BoxPlacement::Centred),
            random_pixel_mask(h, w, 0.92, 7),
            per_image,
        ];
        for mask in &masks {
            assert_adjoint(&Inpainting::new(mask), &s, &s, "inpainting");
        }
    }
}

#[test]
fn super_resolution_adjoint_dot_test() {
    let cases: [([i64; 4], i64); 6] = [
        ([1, 1, 16, 16], 2),
        ([2, 1, 16, 16], 4),
        ([1, 1, 15, 21], 3),
        ([2, 3, 9, 15], 3),
        ([2, 1, 13, 13], 1),
        ([1, 1, 35, 25], 5),
    ];
    for (s, k) in cases {
        let op = SuperResolution::new(k, s[2], s[3]);
        let y_shape = [s[0], s[1], s[2] / k, s[3] / k];
        assert_adjoint(&op, &s, &y_shape, &format!("super-resolution ×{k}"));
    }
}

#[test]
fn kernels_sum_to_one_and_are_seeded() {
    let kernels = [
        gaussian_kernel(5, 1.0),
        gaussian_kernel(61, 3.0),
        motion_blur_kernel(61, 0.5, 0),
        motion_blur_kernel(61, 0.5, 1),
        motion_blur_kernel(9, 0.0, 2),
        motion_blur_kernel(31, 0.9, 3),
    ];
    for k in &kernels {
        assert_eq!(k.kind(), Kind::Float);
        let sum = k.sum(Kind::Double).double_value(&[]);
        assert!((sum - 1.0).abs() < 1e-5, "kernel sum {sum}");
        assert!(k.min().double_value(&[]) >= 0.0);
    }
    let again = motion_blur_kernel(61, 0.5, 0);
    assert!(again.equal(&kernels[2]), "same seed, same kernel");
    let diff = (&kernels[2] - &kernels[3])
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    assert!(
        diff > 0.1,
        "different seeds give different kernels (L1 distance {diff})"
    );
    // A motion kernel is a blurred path, not a blob: its mass is spread out but it is
    // much sparser than the full 61×61 square.
    let support = kernels[2].gt(1e-4).sum(Kind::Int64).int64_value(&[]);
    assert!(
        (20..61 * 61 / 2).contains(&support),
        "motion kernel support {support} pixels"
    );
}

#[test]
fn gaussian_kernel_values() {
    let k = gaussian_kernel(7, 1.5);
    let v = values(&k);
    let g = |d: f64| (-d * d / (2.0 * 1.5 * 1.5)).exp();
    let total: f64 = (-3..=3)
        .flat_map(|a| (-3..=3).map(move |b| g(a as f64) * g(b as f64)))
        .sum();
    for (i, vi) in v.iter().enumerate() {
        let (r, c) = ((i / 7) as f64 - 3.0, (i % 7) as f64 - 3.0);
        assert!((vi - g(r) * g(c) / total).abs() < 1e-7, "entry {i}");
    }
    assert_eq!(k.argmax(None, false).int64_value(&[]), 24);
}

#[test]
fn blur_is_a_convolution_with_zero_boundary() {
    // A point at (4, 6) is spread into the (unflipped) kernel centred on it.
    let kernel = Tensor::arange_start(1, 10, (Kind::Float, Device::Cpu)).reshape([3, 3]) / 45.0;
    let op = Blur::new(&kernel);
    let x = Tensor::zeros([1, 1, 9, 11], (Kind::Float, Device::Cpu));
    let _ = x.get(0).get(0).get(4).get(6).fill_(1.0);
    let y = op.forward(&x);
    let patch = y.get(0).get(0).narrow(0, 3, 3).narrow(1, 5, 3);
    assert!(patch.allclose(&kernel, 1e-6, 1e-7, false));
    // The adjoint spreads it into the flipped kernel.
    let patch = op.adjoint(&x).get(0).get(0).narrow(0, 3, 3).narrow(1, 5, 3);
    assert!(patch.allclose(&kernel.flip([0, 1]), 1e-6, 1e-7, false));
    // Constant image: unchanged away from the border, attenuated at the border.
    let op = Blur::new(&gaussian_kernel(5, 1.0));
    let y = op.forward(&Tensor::ones([1, 1, 12, 12], (Kind::Float, Device::Cpu)));
    let interior = y.narrow(2, 2, 8).narrow(3, 2, 8);
    assert!((interior - 1.0).abs().max().double_value(&[]) < 1e-6);
    assert!(y.double_value(&[0, 0, 0, 0]) < 0.5);
}

#[test]
#[should_panic(expected = "odd")]
fn blur_rejects_even_kernels() {
    Blur::new(&Tensor::ones([4, 4], (Kind::Float, Device::Cpu)));
}

#[test]
fn masks() {
    let m = box_mask(256, 256, 128, BoxPlacement::Centred);
    assert_eq!(m.size(), [1, 1, 256, 256]);
    assert_eq!(m.eq(0.0).sum(Kind::Int64).int64_value(&[]), 128 * 128);
    assert_eq!(m.double_value(&[0, 0, 64, 64]), 0.0);
    assert_eq!(m.double_value(&[0, 0, 191, 191]), 0.0);
    assert_eq!(m.double_value(&[0, 0, 63, 100]), 1.0);
    assert_eq!(m.double_value(&[0, 0, 192, 100]), 1.0);

    let at = box_mask(10, 12, 3, BoxPlacement::At { top: 7, left: 0 });
    assert_eq!(at.double_value(&[0, 0, 9, 2]), 0.0);
    assert_eq!(at.double_value(&[0, 0, 6, 2]), 1.0);

    let r1 = box_mask(64, 48, 20, BoxPlacement::Random { seed: 4 });
    let r2 = box_mask(64, 48, 20, BoxPlacement::Random { seed: 4 });
    assert!(r1.equal(&r2));
    assert_eq!(r1.eq(0.0).sum(Kind::Int64).int64_value(&[]), 400);
    let distinct = (0..8u64)
        .map(|seed| {
            let m = box_mask(64, 48, 20, BoxPlacement::Random { seed });
            m.argmin(None, false).int64_value(&[])
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert!(distinct.len() > 4, "random boxes move: {distinct:?}");

    let p = random_pixel_mask(256, 256, 0.92, 11);
    let missing = p.eq(0.0).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(missing, (0.92f64 * 65536.0).round() as i64);
    assert!(p.equal(&random_pixel_mask(256, 256, 0.92, 11)));
    assert!(!p.equal(&random_pixel_mask(256, 256, 0.92, 12)));
    // Missing pixels are spread evenly: each quadrant has about 92 % missing.
    let q = p.narrow(2, 0, 128).narrow(3, 128, 128);
    let frac = 1.0 - q.mean(Kind::Double).double_value(&[]);
    assert!(
        (frac - 0.92).abs() < 0.01,
        "quadrant missing fraction {frac}"
    );
}

#[test]
fn inpainting_masks_the_image() {
    let x = randn(&[2, 1, 8, 8], false, 3);
    let op = Inpainting::new(&box_mask(8, 8, 4, BoxPlacement::Centred));
    let y = op.forward(&x);
    assert_eq!(y.double_value(&[1, 0, 3, 3]), 0.0);
    assert_eq!(y.double_value(&[1, 0, 0, 0]), x.double_value(&[1, 0, 0, 0]));
    assert!(op.normal(&y).equal(&y), "A is a projection");
}

#[test]
fn super_resolution_values() {
    let op = SuperResolution::new(4, 32, 24);
    assert_eq!(op.measurement_size(), (8, 6));
    let c = Tensor::full([2, 3, 32, 24], 0.37, (Kind::Float, Device::Cpu));
    let y = op.forward(&c);
    assert_eq!(y.size(), [2, 3, 8, 6]);
    assert!((y - 0.37).abs().max().double_value(&[]) < 1e-7);

    let op = SuperResolution::new(2, 4, 4);
    let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 4]);
    let y = op.forward(&x);
    assert_eq!(values(&y), vec![2.5, 4.5, 10.5, 12.5]);
    let up = op.adjoint(&y);
    assert_eq!(up.double_value(&[0, 0, 1, 1]), 2.5 / 4.0);
    assert_eq!(up.double_value(&[0, 0, 3, 2]), 12.5 / 4.0);
    // ‖A‖ = 1/k: A A* = I / k².
    let y = randn(&[1, 1, 2, 2], false, 1);
    assert!(op
        .forward(&op.adjoint(&y))
        .allclose(&(&y / 4.0), 1e-6, 1e-7, false));
}

#[test]
#[should_panic(expected = "not a multiple of the factor 4")]
fn super_resolution_rejects_indivisible_sizes() {
    SuperResolution::new(4, 30, 32);
}

#[test]
#[should_panic(expected = "expected an image [B, C, 16, 16]")]
fn super_resolution_rejects_other_image_sizes() {
    let _ = SuperResolution::new(2, 16, 16).forward(&randn(&[1, 1, 16, 18], false, 0));
}

/// `|F(pad(x))|` by the DFT sum, orthonormal, DC moved to index `n / 2`.
fn direct_phase_retrieval(x: &[f64], h: usize, w: usize, s: usize) -> Vec<f64> {
    let (m, n) = (s * h, s * w);
    let (top, left) = ((m - h) / 2, (n - w) / 2);
    let mut out = vec![0.0; m * n];
    for u in 0..m {
        for v in 0..n {
            let mut acc = Complex64::new(0.0, 0.0);
            for r in 0..h {
                for c in 0..w {
                    let phase = -2.0
                        * PI
                        * ((u * (r + top)) as f64 / m as f64 + (v * (c + left)) as f64 / n as f64);
                    acc += Complex64::from_polar(x[r * w + c], phase);
                }
            }
            let (su, sv) = ((u + m / 2) % m, (v + n / 2) % n);
            out[su * n + sv] = acc.norm() / ((m * n) as f64).sqrt();
        }
    }
    out
}

#[test]
fn phase_retrieval_matches_direct_dft() {
    for (b, h, w, s) in [(2usize, 5usize, 7usize, 2usize), (1, 8, 6, 2), (1, 4, 5, 3)] {
        let x = randn(&[b as i64, 1, h as i64, w as i64], false, 9);
        let y = PhaseRetrieval {
            oversampling: s as i64,
        }
        .forward(&x);
        assert_eq!(y.size(), [b as i64, 1, (s * h) as i64, (s * w) as i64]);
        assert_eq!(y.kind(), Kind::Float);
        for i in 0..b {
            let expected = direct_phase_retrieval(&values(&x.get(i as i64)), h, w, s);
            let got = values(&y.get(i as i64));
            let err = expected
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "{h}×{w} ×{s}: max error {err}");
        }
    }
    // Parseval: the orthonormal transform keeps the norm.
    let x = randn(&[1, 2, 12, 10], false, 4);
    let y = PhaseRetrieval::new(2).forward(&x);
    let (nx, ny) = (dps_operators::op::norm(&x), dps_operators::op::norm(&y));
    assert!((nx - ny).abs() < 1e-5 * nx);
}

#[test]
fn phase_retrieval_gradient_matches_finite_differences() {
    let op = PhaseRetrieval::new(2);
    let x = randn(&[2, 1, 6, 7], false, 1).to_kind(Kind::Double);
    let target = randn(&[2, 1, 12, 14], false, 2).to_kind(Kind::Double).abs();
    let direction = randn(&[2, 1, 6, 7], false, 3).to_kind(Kind::Double);
    let loss = |x: &Tensor| (op.forward(x) - &target).square().sum(Kind::Double) * 0.5;

    let xg = x.set_requires_grad(true);
    let grad = &Tensor::run_backward(&[loss(&xg)], &[&xg], false, false)[0];
    let analytic = (grad * &direction).sum(Kind::Double).double_value(&[]);
    let h = 1e-6;
    let numeric = (loss(&(&x + &direction * h)).double_value(&[])
        - loss(&(&x - &direction * h)).double_value(&[]))
        / (2.0 * h);
    assert!(
        (analytic - numeric).abs() < 1e-6 * numeric.abs().max(1.0),
        "directional derivative: autograd {analytic}, finite differences {numeric}"
    );
}

#[test]
fn phase_retrieval_gradient_is_finite_at_zero() {
    let op = PhaseRetrieval::new(2);
    let target = randn(&[1, 1, 16, 16], false, 2).abs();
    let x = Tensor::zeros([1, 1, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let loss = (op.forward(&x) - &target).square().sum(Kind::Float);
    let grad = &Tensor::run_backward(&[loss], &[&x], false, false)[0];
    assert!(bool::try_from(grad.isfinite().all()).unwrap());
    assert_eq!(
        grad.abs().max().double_value(&[]),
        0.0,
        "subgradient sgn(0) = 0"
    );
}
