//! MRI: centred FFT against rustfft, masks, coil sensitivities, the SENSE operators'
//! adjoints and conjugate gradient.

use dps_operators::coils::{birdcage, estimate_from_acs, root_sum_of_squares, DEFAULT_RING_RADIUS};
use dps_operators::fft::{center, fft2c, ifft2c};
use dps_operators::masks::{
    acceleration, calibration_region, center_block, equispaced_lines, poisson_disc, random_lines,
    MaskError, MaskSpec,
};
use dps_operators::mri::{MultiCoilMri, SingleCoilMri};
use dps_operators::op::{adjoint_mismatch, norm};
use dps_operators::solvers::cg::{conjugate_gradient, solve_normal, CgOptions};
use dps_operators::{LinearOperator, Operator};
use num_complex::Complex;
use rustfft::FftPlanner;
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;
const SIZES: [(i64, i64); 3] = [(16, 16), (17, 23), (64, 48)];

fn crandn(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::ComplexFloat, CPU))
}

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    norm(&(a - b)) / norm(b)
}

/// Centred orthonormal 2-D DFT of one row-major `h × w` plane with rustfft:
/// ifftshift, FFT of rows then columns, fftshift, scale `1/√(hw)`.
fn reference_fft2c(plane: &[Complex<f64>], h: usize, w: usize, inverse: bool) -> Vec<Complex<f64>> {
    let mut planner = FftPlanner::<f64>::new();
    let (row_fft, col_fft) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    // ifftshift: out[i] = in[(i + n/2) % n]; fftshift: out[i] = in[(i + n - n/2) % n].
    let mut a: Vec<Complex<f64>> = (0..h * w)
        .map(|i| plane[((i / w + h / 2) % h) * w + (i % w + w / 2) % w])
        .collect();
    for row in a.chunks_mut(w) {
        row_fft.process(row);
    }
    for c in 0..w {
        let mut col: Vec<Complex<f64>> = (0..h).map(|r| a[r * w + c]).collect();
        col_fft.process(&mut col);
        for (r, v) in col.into_iter().enumerate() {
            a[r * w + c] = v;
        }
    }
    let scale = 1.0 / ((h * w) as f64).sqrt();
    (0..h * w)
        .map(|i| a[((i / w + h - h / 2) % h) * w + (i % w + w - w / 2) % w] * scale)
        .collect()
}

fn to_complex_vec(t: &Tensor) -> Vec<Complex<f64>> {
    let flat = t.view_as_real().to_kind(Kind::Double).flatten(0, -1);
    let v = Vec::<f64>::try_from(&flat).unwrap();
    v.chunks(2).map(|c| Complex::new(c[0], c[1])).collect()
}

#[test]
fn fft2c_matches_rustfft_reference() {
    for (h, w) in SIZES.into_iter().chain([(5, 1), (1, 7)]) {
        let x = crandn(&[2, 3, h, w], 1);
        for inverse in [false, true] {
            let got = to_complex_vec(&if inverse { ifft2c(&x) } else { fft2c(&x) });
            let input = to_complex_vec(&x);
            let plane = (h * w) as usize;
            let (mut err, mut total) = (0.0, 0.0);
            for p in 0..6 {
                let span = p * plane..(p + 1) * plane;
                let want = reference_fft2c(&input[span.clone()], h as usize, w as usize, inverse);
                for (g, r) in got[span].iter().zip(&want) {
                    err += (g - r).norm_sqr();
                    total += r.norm_sqr();
                }
            }
            let rel = (err / total).sqrt();
            assert!(
                rel < 1e-5,
                "{h}x{w} inverse={inverse}: relative error {rel}"
            );
        }
    }
}

#[test]
fn fft2c_centre_convention() {
    for (h, w) in SIZES {
        // A constant image puts all its energy at the DC index (H/2, W/2).
        let k = fft2c(&Tensor::ones([1, 1, h, w], (Kind::Float, CPU)));
        let (ch, cw) = (center(h as usize) as i64, center(w as usize) as i64);
        let dc = k.get(0).get(0).get(ch).get(cw);
        let dc_value = dc.real().double_value(&[]);
        assert!(
            (dc_value - ((h * w) as f64).sqrt()).abs() < 1e-4,
            "{h}x{w}: DC {dc_value}"
        );
        assert!((norm(&k) - dc_value).abs() < 1e-4 * dc_value);
        // A point at the image origin (H/2, W/2) has a constant, real spectrum.
        let delta = Tensor::zeros([1, 1, h, w], (Kind::Float, CPU));
        let _ = delta.get(0).get(0).get(ch).get(cw).fill_(1.0);
        let spectrum = fft2c(&delta);
        let expected = Tensor::ones_like(&spectrum) / ((h * w) as f64).sqrt();
        assert!(rel_diff(&spectrum, &expected) < 1e-6);
    }
}

#[test]
fn fft2c_is_unitary_and_ifft2c_inverts_it() {
    for (h, w) in SIZES {
        let x = crandn(&[3, 2, h, w], 2);
        let k = fft2c(&x);
        assert_eq!(k.kind(), Kind::ComplexFloat);
        assert!((norm(&k) / norm(&x) - 1.0).abs() < 1e-6);
        assert!(rel_diff(&ifft2c(&k), &x) < 1e-6);
        assert!(rel_diff(&fft2c(&ifft2c(&x)), &x) < 1e-6);
        // Adjoint: <F x, y> = <x, F⁻¹ y>.
        let y = crandn(&[3, 2, h, w], 3);
        let lhs = dps_operators::op::inner(&k, &y);
        let rhs = dps_operators::op::inner(&x, &ifft2c(&y));
        assert!((lhs - rhs).abs() < 1e-5 * norm(&x) * norm(&y));
    }
}

#[test]
fn fft2c_promotes_real_input() {
    tch::manual_seed(4);
    let x = Tensor::randn([1, 1, 17, 23], (Kind::Float, CPU));
    let k = fft2c(&x);
    assert_eq!(k.kind(), Kind::ComplexFloat);
    let xc = Tensor::complex(&x, &x.zeros_like());
    assert!(rel_diff(&k, &fft2c(&xc)) < 1e-7);
    assert_eq!(fft2c(&x.to_kind(Kind::Double)).kind(), Kind::ComplexDouble);
}

fn mask_rows(mask: &Tensor) -> Vec<bool> {
    let rows = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let w = mask.size()[1] as f64;
    Vec::<f32>::try_from(&rows)
        .unwrap()
        .into_iter()
        .map(|s| {
            assert!(s == 0.0 || s as f64 == w, "a 1-D mask acquires whole rows");
            s > 0.0
        })
        .collect()
}

#[test]
fn one_d_masks_follow_their_definition() {
    type Gen = fn(usize, usize, f64, f64, u64) -> Result<Tensor, MaskError>;
    let generators: [(&str, Gen, f64); 2] = [
        ("random", random_lines, 0.0),
        ("equispaced", equispaced_lines, 0.05),
    ];
    for (name, generate, tolerance) in generators {
        for (h, w, r, f) in [
            (128, 96, 4.0, 0.08),
            (97, 40, 2.0, 0.1),
            (320, 8, 8.0, 0.04),
        ] {
            let mask = generate(h, w, r, f, 7).unwrap();
            assert_eq!(mask.size(), [h as i64, w as i64]);
            assert_eq!(mask.kind(), Kind::Float);
            let rows = mask_rows(&mask);
            let acquired = rows.iter().filter(|&&r| r).count();
            let budget = (h as f64 / r).round();
            assert!(
                (acquired as f64 - budget).abs() <= tolerance * budget,
                "{name} {h}x{w} R={r}: {acquired} lines, budget {budget}"
            );
            let measured = acceleration(&mask);
            assert!(
                (measured / r - 1.0).abs() < 0.02 + tolerance,
                "{name}: R {measured}"
            );
            let acs = center_block(h, (f * h as f64).round() as usize);
            assert!(acs.contains(&(h / 2)));
            assert!(
                acs.clone().all(|i| rows[i]),
                "{name}: ACS lines must be acquired"
            );
            let (cal_rows, cal_cols) = calibration_region(&mask).unwrap();
            assert!(cal_rows.start <= acs.start && cal_rows.end >= acs.end);
            assert_eq!(cal_cols, 0..w);
            assert!(cal_rows.clone().all(|i| rows[i]));

            let again = generate(h, w, r, f, 7).unwrap();
            assert!(mask.equal(&again), "{name}: same seed, same mask");
            // Equispaced masks differ only by their offset, so some seeds coincide.
            let distinct = (0..6)
                .map(|seed| generate(h, w, r, f, seed).unwrap())
                .filter(|other| !mask.equal(other))
                .count();
            assert!(
                distinct >= 3,
                "{name}: different seeds give different masks"
            );
        }
    }
}

#[test]
fn equispaced_lines_are_evenly_spaced_outside_the_centre() {
    let mask = equispaced_lines(256, 4, 4.0, 0.04, 3).unwrap();
    let rows = mask_rows(&mask);
    let acs = center_block(256, 10);
    let outside: Vec<usize> = (0..256).filter(|i| rows[*i] && !acs.contains(i)).collect();
    // Spacing s = R (H − n) / (H − R n) = 4·246/216 ≈ 4.56: gaps of 4 or 5.
    for gap in outside.windows(2).map(|p| p[1] - p[0]) {
        assert!(gap == 4 || gap == 5 || gap > 10, "gap {gap}");
    }
}

#[test]
fn mask_recipes_are_validated() {
    assert!(matches!(
        random_lines(64, 64, 4.0, 0.5, 0),
        Err(MaskError::CalibrationTooLarge {
            acs: 32,
            budget: 16,
            ..
        })
    ));
    assert!(matches!(
        equispaced_lines(64, 64, 0.5, 0.1, 0),
        Err(MaskError::Acceleration(_))
    ));
    assert!(matches!(
        random_lines(64, 64, 2.0, 1.5, 0),
        Err(MaskError::CenterFraction(_))
    ));
    assert!(matches!(
        poisson_disc(0, 64, 2.0, 0.1, 0),
        Err(MaskError::EmptyShape(0, 64))
    ));
    assert!(matches!(
        poisson_disc(64, 64, 1.2, 0.1, 0),
        Err(MaskError::Unreachable { .. })
    ));
    // R = 1 with a full centre is the fully sampled mask.
    assert_eq!(
        acceleration(&random_lines(33, 5, 1.0, 1.0, 0).unwrap()),
        1.0
    );
}

#[test]
fn poisson_disc_mask() {
    for (h, w, r) in [(64, 64, 4.0), (80, 48, 3.0), (33, 47, 6.0)] {
        let spec = MaskSpec::PoissonDisc {
            acceleration: r,
            center_fraction: 0.1,
        };
        let mask = spec.generate(h, w, 11).unwrap();
        assert_eq!(mask.size(), [h as i64, w as i64]);
        let measured = acceleration(&mask);
        assert!(
            (measured / r - 1.0).abs() < 0.1,
            "{h}x{w}: R {measured} vs {r}"
        );
        let (rows, cols) = (
            center_block(h, (0.1 * h as f64).round() as usize),
            center_block(w, (0.1 * w as f64).round() as usize),
        );
        let block = mask.narrow(0, rows.start as i64, rows.len() as i64).narrow(
            1,
            cols.start as i64,
            cols.len() as i64,
        );
        assert_eq!(block.min().double_value(&[]), 1.0, "calibration block");
        let (cal_rows, cal_cols) = calibration_region(&mask).unwrap();
        assert!(cal_rows.start <= rows.start && cal_rows.end >= rows.end);
        assert!(cal_cols.start <= cols.start && cal_cols.end >= cols.end);
        // Variable density: the central quarter is sampled more densely than average.
        let (qh, qw) = (h as i64 / 4, w as i64 / 4);
        let inner = mask.narrow(0, qh, 2 * qh).narrow(1, qw, 2 * qw);
        let inner_density = inner.mean(Kind::Float).double_value(&[]);
        assert!(
            inner_density > 1.3 / measured,
            "central density {inner_density}"
        );
        // 2-D: not made of whole rows or columns.
        let rows_sum = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!(rows_sum.lt(w as f64).any().int64_value(&[]) == 1);
        assert!(mask.equal(&spec.generate(h, w, 11).unwrap()));
        assert!(!mask.equal(&spec.generate(h, w, 12).unwrap()));
    }
}

#[test]
fn single_coil_adjoint_and_sampling() {
    for (h, w) in SIZES {
        let mask = random_lines(h as usize, w as usize, 3.0, 0.1, 1).unwrap();
        let op = SingleCoilMri::new(&mask, CPU).unwrap();
        assert!(op.mask().equal(&mask));
        for b in [1, 3] {
            let x = crandn(&[b, 1, h, w], 10 + b);
            let y = crandn(&[b, 1, h, w], 20 + b);
            let mismatch = adjoint_mismatch(&op, &x, &y);
            assert!(mismatch < 1e-5, "{h}x{w} B={b}: {mismatch}");
            let k = op.forward(&x);
            assert_eq!(k.size(), [b, 1, h, w]);
            assert_eq!(k.kind(), Kind::ComplexFloat);
            assert_eq!(
                norm(&(k.abs() * (1.0 - &mask))),
                0.0,
                "zeros outside the mask"
            );
            assert!(rel_diff(&k, &(fft2c(&x) * &mask)) < 1e-7);
        }
    }
    // Real images are promoted.
    let mask = random_lines(16, 16, 2.0, 0.2, 0).unwrap();
    let op = SingleCoilMri::new(&mask, CPU).unwrap();
    assert_eq!(
        op.forward(&Tensor::ones([1, 1, 16, 16], (Kind::Float, CPU)))
            .kind(),
        Kind::ComplexFloat
    );
}

#[test]
fn multi_coil_adjoint_and_model() {
    for (h, w) in SIZES {
        let mask = poisson_disc(h as usize, w as usize, 2.5, 0.15, 2).unwrap();
        for coils in [1, 4] {
            let sens = crandn(&[coils, h, w], 30 + coils);
            let cropped = sens.narrow(2, 0, w - 1);
            assert!(
                MultiCoilMri::new(&mask, &cropped, CPU).is_err(),
                "shape mismatch"
            );
            let op = MultiCoilMri::new(&mask, &sens, CPU).unwrap();
            assert_eq!(op.num_coils(), coils);
            for b in [1, 3] {
                let x = crandn(&[b, 1, h, w], 40 + b);
                let y = crandn(&[b, coils, h, w], 50 + b);
                let mismatch = adjoint_mismatch(&op, &x, &y);
                assert!(mismatch < 1e-5, "{h}x{w} C={coils} B={b}: {mismatch}");
                let k = op.forward(&x);
                assert_eq!(k.size(), [b, coils, h, w]);
                let want = fft2c(&(&x * sens.unsqueeze(0))) * &mask;
                assert!(rel_diff(&k, &want) < 1e-6);
            }
        }
    }
}

#[test]
fn multi_coil_with_normalised_maps_combines_full_data_exactly() {
    let (h, w) = (40, 36);
    let sens = birdcage(8, h, w, DEFAULT_RING_RADIUS);
    assert_eq!(sens.size(), [8, h as i64, w as i64]);
    assert_eq!(sens.kind(), Kind::ComplexFloat);
    let power = sens
        .abs()
        .square()
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
    assert!(
        (power - 1.0).abs().max().double_value(&[]) < 1e-5,
        "Σ|S|² = 1"
    );
    // Coils differ: the first coil is much stronger on its own side (coil 0 at +u).
    let s0 = sens.get(0).abs();
    assert!(s0.double_value(&[20, 35]) > 3.0 * s0.double_value(&[20, 0]));

    let full = Tensor::ones([h as i64, w as i64], (Kind::Float, CPU));
    let op = MultiCoilMri::new(&full, &sens, CPU).unwrap();
    let x = crandn(&[2, 1, h as i64, w as i64], 5);
    assert!(rel_diff(&op.normal(&x), &x) < 1e-5, "A*A = I for Σ|S|² = 1");
    // RSS of the coil images of a non-negative image is the image.
    let images = ifft2c(&op.forward(&x.abs()));
    assert!(rel_diff(&root_sum_of_squares(&images, 1).unsqueeze(1), &x.abs()) < 1e-5);
}

/// A smooth object: a disc of radius 0.7 (in half-FOV units) with a gentle gradient.
fn smooth_disc(h: usize, w: usize) -> Tensor {
    let v = (Tensor::arange(h as i64, (Kind::Float, CPU)) - center(h) as f64) / (h as f64 / 2.0);
    let u = (Tensor::arange(w as i64, (Kind::Float, CPU)) - center(w) as f64) / (w as f64 / 2.0);
    let (v, u) = (v.view([-1, 1]), u.view([1, -1]));
    let r2 = &v * &v + &u * &u;
    r2.le(0.49).to_kind(Kind::Float) * (0.6 + 0.3 * u)
}

#[test]
fn acs_sensitivity_estimate_matches_the_truth_inside_the_object() {
    let (h, w) = (96, 80);
    let sens = birdcage(8, h, w, DEFAULT_RING_RADIUS);
    let object = smooth_disc(h, w);
    for mask in [
        equispaced_lines(h, w, 3.0, 0.16, 1).unwrap(),
        poisson_disc(h, w, 4.0, 0.2, 1).unwrap(),
    ] {
        let op = MultiCoilMri::new(&mask, &sens, CPU).unwrap();
        let kspace = op
            .forward(&object.view([1, 1, h as i64, w as i64]))
            .squeeze_dim(0);
        let estimate = estimate_from_acs(&kspace, &mask, 0.05).unwrap();
        assert_eq!(estimate.size(), sens.size());
        // Inside the object, away from its edge (radius 0.6 of 0.7).
        let v =
            (Tensor::arange(h as i64, (Kind::Float, CPU)) - center(h) as f64) / (h as f64 / 2.0);
        let u =
            (Tensor::arange(w as i64, (Kind::Float, CPU)) - center(w) as f64) / (w as f64 / 2.0);
        let inside = (v.view([-1, 1]).square() + u.view([1, -1]).square()).le(0.36);
        let err = norm(&((&estimate - &sens) * &inside)) / norm(&(&sens * &inside));
        assert!(err < 0.03, "relative error inside the object {err}");
        // Far outside (corners) the estimate is thresholded to zero.
        assert_eq!(norm(&estimate.narrow(1, 0, 4).narrow(2, 0, 4)), 0.0);
    }
    let no_centre = Tensor::zeros([h as i64, w as i64], (Kind::Float, CPU));
    let kspace = Tensor::zeros([8, h as i64, w as i64], (Kind::ComplexFloat, CPU));
    assert!(estimate_from_acs(&kspace, &no_centre, 0.05).is_err());
    // An empty slice (all-zero k-space) has no sensitivities to estimate; before,
    // the maps came out NaN (0 · 1/0) and sampling failed far from the cause.
    let mask = equispaced_lines(h, w, 3.0, 0.16, 1).unwrap();
    let err = estimate_from_acs(&kspace, &mask, 0.05).unwrap_err();
    assert!(
        matches!(err, dps_operators::coils::CoilError::NoSignal),
        "{err}"
    );
}

#[test]
fn cg_solves_the_sense_normal_equations() {
    let (h, w) = (48, 40);
    let sens = birdcage(8, h, w, DEFAULT_RING_RADIUS);
    let mask = equispaced_lines(h, w, 2.0, 0.1, 0).unwrap();
    let op = MultiCoilMri::new(&mask, &sens, CPU).unwrap();
    let truth = crandn(&[2, 1, h as i64, w as i64], 6);
    // The second element has no data: its solution is 0 and it converges at once.
    let y = op.forward(&truth) * Tensor::from_slice(&[1f32, 0.0]).view([2, 1, 1, 1]);
    let options = CgOptions {
        max_iter: 100,
        tol: 1e-6,
        lambda: 0.0,
    };
    let result = solve_normal(&op, &y, None, &options);
    assert!(
        result.iterations < 100,
        "converged in {} iterations",
        result.iterations
    );
    assert!(result.max_relative_residual() < 1e-6);
    assert_eq!(result.relative_residuals[1], 0.0);
    assert!(rel_diff(&result.x.get(0), &truth.get(0)) < 1e-3);
    assert_eq!(norm(&result.x.get(1)), 0.0);
    let zero_filled = op.adjoint(&y);
    assert!(rel_diff(&zero_filled.get(0), &truth.get(0)) > 0.3);

    // Tikhonov: the result satisfies (A*A + λI) x = A* y.
    let lambda = 0.5;
    let regularised = solve_normal(
        &op,
        &y,
        Some(&zero_filled),
        &CgOptions { lambda, ..options },
    );
    let lhs = op.normal(&regularised.x) + &regularised.x * lambda;
    assert!(rel_diff(&lhs.get(0), &zero_filled.get(0)) < 1e-5);
    // Fewer iterations than the tolerance needs: stops at max_iter with a residual.
    let short = solve_normal(
        &op,
        &y,
        None,
        &CgOptions {
            max_iter: 2,
            ..options
        },
    );
    assert_eq!(short.iterations, 2);
    assert!(short.relative_residuals[0] > 1e-6);
}

#[test]
fn cg_on_a_plain_spd_system() {
    // Diagonal K = diag(1..=n): CG converges in n iterations in exact arithmetic.
    let diag = Tensor::arange_start(1.0, 9.0, (Kind::Double, CPU)).view([1, 8]);
    let apply = |x: &Tensor| x * &diag;
    let b = Tensor::ones([3, 8], (Kind::Double, CPU))
        * Tensor::from_slice(&[1.0, 2.0, -1.0]).view([3, 1]);
    let result = conjugate_gradient(&apply, &b, &b.zeros_like(), 50, 1e-12);
    assert!(result.iterations <= 9);
    assert!(rel_diff(&result.x, &(&b / &diag)) < 1e-10);
}

#[test]
fn forward_is_differentiable() {
    // For L = ‖A x − y‖², autograd's gradient with respect to complex x is 2 A*(A x − y).
    let (h, w) = (17, 23);
    let mask = random_lines(h, w, 2.0, 0.2, 3).unwrap();
    let sens = birdcage(4, h, w, DEFAULT_RING_RADIUS);
    let op = MultiCoilMri::new(&mask, &sens, CPU).unwrap();
    let x = crandn(&[2, 1, h as i64, w as i64], 60).set_requires_grad(true);
    let y = crandn(&[2, 4, h as i64, w as i64], 61) * &mask;
    let residual = op.forward(&x) - &y;
    residual.view_as_real().square().sum(Kind::Float).backward();
    let expected = op.adjoint(&residual.detach()) * 2.0;
    assert!(rel_diff(&x.grad(), &expected) < 1e-5);
}
