//! CT projector: exact adjoints, agreement with scikit-image, the documented
//! orientation conventions, mm units, and filtered backprojection scaling.

use dps_operators::ct::{uniform_angles, BeamGeometry, CtGeometry, FbpFilter, Radon, SqrtRamp};
use dps_operators::op::{adjoint_mismatch, norm, LinearOperator, Operator};
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn fixture(name: &str) -> Tensor {
    let path = format!(
        "{}/../tests/fixtures/radon/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_npy(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rel_l2(x: &Tensor, reference: &Tensor) -> f64 {
    norm(&(x - reference)) / norm(reference)
}

/// The three beams on an `n × n` grid of 1 mm pixels, fan sources 3n mm away.
fn beams(n: usize, angles: &[f64]) -> Vec<CtGeometry> {
    let (dso, dsd) = (3.0 * n as f64, 5.0 * n as f64);
    vec![
        CtGeometry::parallel(n, angles.to_vec()),
        CtGeometry::fan_equiangular(n, angles.to_vec(), dso, dsd),
        CtGeometry::fan_flat(n, angles.to_vec(), dso, dsd),
    ]
}

#[test]
fn adjoint_passes_dot_product_test() {
    tch::manual_seed(7);
    let angle_sets: Vec<Vec<f64>> = vec![
        uniform_angles(12, 180.0),
        (0..9).map(|k| 15.0 * k as f64).collect(), // limited angle, 0..120°
        vec![-30.0, 3.5, 47.0, 90.0, 181.25, 300.0, 359.0],
    ];
    let mut cases = 0;
    for (n, rows, batch) in [(17, 17, 1), (32, 32, 2), (33, 33, 1), (24, 31, 2)] {
        for angles in &angle_sets {
            for g in beams(n, angles) {
                let g = g.with_image_shape(rows, n).with_detector_offset(0.25);
                let op = Radon::new(&g, Device::Cpu);
                let x = Tensor::randn([batch, 1, rows as i64, n as i64], CPU);
                let y = Tensor::randn([batch, 1, angles.len() as i64, g.n_detectors as i64], CPU);
                let mismatch = adjoint_mismatch(&op, &x, &y);
                assert!(mismatch < 1e-5, "{g:?}: mismatch {mismatch:e}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 36);
}

/// Without gradient tracking the projector multiplies by its sparse matrix; with it,
/// it samples the rays (and its adjoint is the sampling's autograd transpose). Both
/// are the same map up to float rounding, forward and adjoint, in both precisions.
#[test]
fn sparse_matrix_and_ray_sampling_agree() {
    tch::manual_seed(9);
    let angles = [-30.0, 3.5, 47.0, 90.0, 181.25, 300.0];
    let mut cases = 0;
    for (kind, tolerance) in [(Kind::Float, 1e-5), (Kind::Double, 1e-12)] {
        for (n, rows, batch) in [(17, 17, 1), (24, 31, 2)] {
            for g in beams(n, &angles) {
                let g = g.with_image_shape(rows, n).with_detector_offset(0.25);
                let op = Radon::new(&g, Device::Cpu);
                let x = Tensor::randn([batch, 1, rows as i64, n as i64], (kind, Device::Cpu));
                let y = Tensor::randn(
                    [batch, 1, angles.len() as i64, g.n_detectors as i64],
                    (kind, Device::Cpu),
                );
                let tracked = |t: &Tensor| t.copy().set_requires_grad(true);
                let sampled = op.forward(&tracked(&x)).detach();
                let err = rel_l2(&op.forward(&x), &sampled);
                assert!(err < tolerance, "{g:?} {kind:?} forward: {err:e}");
                let sampled = op.adjoint(&tracked(&y)).detach();
                let err = rel_l2(&op.adjoint(&y), &sampled);
                assert!(err < tolerance, "{g:?} {kind:?} adjoint: {err:e}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 12);
}

#[test]
fn adjoint_in_f64_and_with_pixel_spacing() {
    tch::manual_seed(8);
    let g = CtGeometry::fan_flat(21, uniform_angles(10, 360.0), 80.0, 120.0)
        .with_pixel_spacing(0.7)
        .with_detectors(19, 1.3);
    let op = Radon::new(&g, Device::Cpu);
    let x = Tensor::randn([2, 1, 21, 21], (Kind::Double, Device::Cpu));
    let y = Tensor::randn([2, 1, 10, 19], (Kind::Double, Device::Cpu));
    let mismatch = adjoint_mismatch(&op, &x, &y);
    assert!(mismatch < 1e-12, "mismatch {mismatch:e}");
}

#[test]
fn parallel_beam_matches_scikit_image_radon() {
    let image = fixture("shepp_logan_128.npy");
    let angles: Vec<f64> = Vec::try_from(&fixture("angles_deg.npy")).unwrap();
    let reference = fixture("sinogram_skimage.npy"); // [detector, angle]
    assert_eq!(reference.size(), [128, angles.len() as i64]);
    // scikit-image rotates about pixel (64, 64): pad to 129² (zero row at the bottom,
    // zero column at the right) and put u = 0 on detector 64 (see the fixture script).
    let padded = image
        .reshape([1, 1, 128, 128])
        .constant_pad_nd([0, 1, 0, 1]);
    let g = CtGeometry::parallel(129, angles)
        .with_detectors(128, 1.0)
        .with_detector_offset(0.5);
    let ours = Radon::new(&g, Device::Cpu).forward(&padded);
    let reference = reference.transpose(0, 1).reshape(ours.size());
    let err = rel_l2(&ours, &reference);
    assert!(err < 0.01, "relative L2 error vs scikit-image: {err}");
    // The angle convention is not a symmetry of the phantom: θ → −θ is far off.
    let mirrored_angles = g.angles_deg.iter().map(|a| -a).collect();
    let mirrored = Radon::new(
        &CtGeometry {
            angles_deg: mirrored_angles,
            ..g.clone()
        },
        Device::Cpu,
    )
    .forward(&padded);
    assert!(rel_l2(&mirrored, &reference) > 0.1);
}

/// Centroid (fractional detector index) of each view of a sinogram `[1, 1, V, D]`.
fn centroids(sinogram: &Tensor) -> Vec<f64> {
    let d = sinogram.size()[3];
    let p = sinogram.to_kind(Kind::Double).reshape([-1, d]);
    let k = Tensor::arange(d, (Kind::Double, Device::Cpu));
    let c = (&p * k).sum_dim_intlist(1, false, Kind::Double)
        / p.sum_dim_intlist(1, false, Kind::Double);
    Vec::try_from(&c).unwrap()
}

/// A small Gaussian blob (σ = 1.2 px) centred on row 5, column 20 of a 33² image
/// of 1 mm pixels: `(x, y) = (4, 11)` mm.
fn blob_image() -> Tensor {
    let rows = Tensor::arange(33, CPU).reshape([33, 1]) - 5.0;
    let cols = Tensor::arange(33, CPU).reshape([1, 33]) - 20.0;
    (-(rows.square() + cols.square()) / (2.0 * 1.2 * 1.2))
        .exp()
        .reshape([1, 1, 33, 33])
}

#[test]
fn parallel_orientation_follows_the_documented_convention() {
    let angles = vec![0.0, 30.0, 90.0, 135.0, 250.0];
    let g = CtGeometry::parallel(33, angles.clone());
    let p = Radon::new(&g, Device::Cpu).forward(&blob_image());
    // θ = 0: column sums, detector index = column; θ = 90°: index = 32 − row.
    let argmax = |v: i64| p.get(0).get(0).get(v).argmax(0, false).int64_value(&[]);
    assert_eq!(argmax(0), 20);
    assert_eq!(argmax(2), 27);
    let (x, y) = (4.0, 11.0);
    for (c, a) in centroids(&p).iter().zip(&angles) {
        let (s, co) = a.to_radians().sin_cos();
        let expected = 16.0 + x * co + y * s;
        assert!(
            (c - expected).abs() < 0.01,
            "θ = {a}: centroid {c}, expected {expected}"
        );
    }
}

#[test]
fn fan_orientation_follows_the_documented_convention() {
    let angles = vec![0.0, 90.0, 200.0, 315.0];
    let (dso, dsd) = (60.0, 100.0);
    let (x, y) = (4.0, 11.0);
    for g in [
        CtGeometry::fan_equiangular(33, angles.clone(), dso, dsd),
        CtGeometry::fan_flat(33, angles.clone(), dso, dsd),
    ] {
        let p = Radon::new(&g, Device::Cpu).forward(&blob_image());
        for (c, a) in centroids(&p).iter().zip(&angles) {
            // Source at −D_so e_r; the point is seen at fan angle atan2(a, b).
            let (s, co) = a.to_radians().sin_cos();
            let along_detector = x * co + y * s;
            let from_source = dso - x * s + y * co;
            let gamma = along_detector.atan2(from_source);
            let u = match g.beam {
                BeamGeometry::FanEquiangular { .. } => gamma.to_degrees(),
                _ => dsd * gamma.tan(),
            };
            let expected = g.detector_center() + u / g.detector_spacing;
            assert!(
                (c - expected).abs() < 0.05,
                "{:?} θ = {a}: centroid {c}, expected {expected}",
                g.beam
            );
        }
    }
}

/// Disc of attenuation `mu` (1/mm), radius `r` mm, centre `(x0, y0)` mm on a
/// `rows × cols` grid of `spacing` mm pixels, each pixel the area fraction covered
/// (8×8 samples). `[1, 1, rows, cols]`.
fn disc(rows: usize, cols: usize, spacing: f64, r: f64, x0: f64, y0: f64, mu: f64) -> Tensor {
    let (half_r, half_c) = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    let mut v = vec![0f32; rows * cols];
    for row in 0..rows {
        for col in 0..cols {
            let mut hits = 0;
            for i in 0..8 {
                for j in 0..8 {
                    let x = (col as f64 - half_c + (j as f64 + 0.5) / 8.0 - 0.5) * spacing;
                    let y = (half_r - row as f64 - (i as f64 + 0.5) / 8.0 + 0.5) * spacing;
                    if (x - x0).hypot(y - y0) <= r {
                        hits += 1;
                    }
                }
            }
            v[row * cols + col] = (mu * hits as f64 / 64.0) as f32;
        }
    }
    Tensor::from_slice(&v).reshape([1, 1, rows as i64, cols as i64])
}

/// Analytic line integrals of that disc for geometry `g`, `[1, 1, V, D]`.
fn disc_sinogram(g: &CtGeometry, r: f64, x0: f64, y0: f64, mu: f64) -> Tensor {
    let mut v = Vec::new();
    for a in &g.angles_deg {
        for k in 0..g.n_detectors {
            let u = (k as f64 - g.detector_center()) * g.detector_spacing;
            // Parallel-beam coordinates (φ, s) of the ray (see the module docs).
            let (phi, s) = match g.beam {
                BeamGeometry::Parallel => (a.to_radians(), u),
                BeamGeometry::FanEquiangular {
                    source_to_isocenter_mm: dso,
                    ..
                } => (a.to_radians() - u.to_radians(), dso * u.to_radians().sin()),
                BeamGeometry::FanFlat {
                    source_to_isocenter_mm: dso,
                    source_to_detector_mm: dsd,
                } => {
                    let gamma = (u / dsd).atan();
                    (a.to_radians() - gamma, dso * gamma.sin())
                }
            };
            let d = s - (x0 * phi.cos() + y0 * phi.sin());
            v.push((2.0 * mu * (r * r - d * d).max(0.0).sqrt()) as f32);
        }
    }
    Tensor::from_slice(&v).reshape([1, 1, g.n_views() as i64, g.n_detectors as i64])
}

/// 64² image of 0.5 mm pixels with an off-centre disc, μ = 0.02/mm.
const DISC: (usize, f64, f64, f64, f64, f64) = (64, 0.5, 9.0, 2.0, -3.0, 0.02);

fn disc_geometries() -> Vec<CtGeometry> {
    let (n, spacing, ..) = DISC;
    let parallel = CtGeometry::parallel(n, uniform_angles(180, 180.0))
        .with_pixel_spacing(spacing)
        .with_detectors(n, spacing);
    let equiangular = CtGeometry::fan_equiangular(n, uniform_angles(360, 360.0), 100.0, 150.0)
        .with_pixel_spacing(spacing)
        .with_detectors(95, 0.3);
    let flat = CtGeometry::fan_flat(n, uniform_angles(360, 360.0), 100.0, 150.0)
        .with_pixel_spacing(spacing)
        .with_detectors(93, 0.75)
        .with_detector_offset(-0.5);
    vec![parallel, equiangular, flat]
}

#[test]
fn line_integrals_are_in_mm() {
    let (n, spacing, r, x0, y0, mu) = DISC;
    let image = disc(n, n, spacing, r, x0, y0, mu);
    for g in disc_geometries() {
        let ours = Radon::new(&g, Device::Cpu).forward(&image);
        let exact = disc_sinogram(&g, r, x0, y0, mu);
        let err = rel_l2(&ours, &exact);
        // The sums agree to 0.05 %; the pointwise error (≈ 1.4 %) sits at the disc's
        // edge, blurred by the bilinear interpolation of the pixels.
        let ratio =
            ours.sum(Kind::Double).double_value(&[]) / exact.sum(Kind::Double).double_value(&[]);
        assert!(
            (ratio - 1.0).abs() < 2e-3,
            "{:?}: sum ratio {ratio}",
            g.beam
        );
        assert!(err < 0.02, "{:?}: relative L2 error {err}", g.beam);
    }
}

#[test]
fn fbp_recovers_attenuation_values() {
    let (n, spacing, r, x0, y0, mu) = DISC;
    let image = disc(n, n, spacing, r, x0, y0, mu);
    let half = (n as f64 - 1.0) / 2.0;
    let dist = |row: usize, col: usize| {
        ((col as f64 - half) * spacing - x0).hypot((half - row as f64) * spacing - y0)
    };
    let region_mean = |img: &Tensor, keep: &dyn Fn(f64) -> bool| {
        let v: Vec<f32> = Vec::try_from(&img.flatten(0, -1)).unwrap();
        let (mut sum, mut count) = (0.0, 0);
        for row in 0..n {
            for col in 0..n {
                if keep(dist(row, col)) {
                    sum += v[row * n + col] as f64;
                    count += 1;
                }
            }
        }
        sum / count as f64
    };
    for g in disc_geometries() {
        let op = Radon::new(&g, Device::Cpu);
        let sinogram = op.forward(&image);
        for filter in [FbpFilter::Ramp, FbpFilter::SheppLogan, FbpFilter::Hann] {
            let rec = op.fbp(&sinogram, filter);
            assert_eq!(rec.size(), image.size());
            let inside = region_mean(&rec, &|d| d < r - 2.0);
            let outside = region_mean(&rec, &|d| d > r + 2.0);
            assert!(
                (inside / mu - 1.0).abs() < 0.003,
                "{:?} {filter:?}: inside {inside}, μ = {mu}",
                g.beam
            );
            assert!(
                outside.abs() < 0.003 * mu,
                "{:?} {filter:?}: outside {outside}",
                g.beam
            );
        }
    }
}

#[test]
fn fbp_scaling_follows_the_arc() {
    let (n, spacing, r, x0, y0, mu) = DISC;
    let image = disc(n, n, spacing, r, x0, y0, mu);
    let at_centre = |angles: Vec<f64>| {
        let g = CtGeometry::parallel(n, angles)
            .with_pixel_spacing(spacing)
            .with_detectors(n, spacing);
        let op = Radon::new(&g, Device::Cpu);
        let rec = op.fbp(&op.forward(&image), FbpFilter::Ramp);
        // Mean over the 4×4 pixels around the disc centre (row 37.5, column 35.5).
        rec.narrow(2, 36, 4)
            .narrow(3, 34, 4)
            .mean(Kind::Double)
            .double_value(&[])
    };
    let half_turn = at_centre(uniform_angles(90, 180.0));
    let full_turn = at_centre(uniform_angles(180, 360.0));
    let shifted = at_centre(uniform_angles(90, 180.0).iter().map(|a| a - 77.0).collect());
    for v in [half_turn, full_turn, shifted] {
        assert!((v / mu - 1.0).abs() < 0.003, "centre {v}, μ = {mu}");
    }
    // A 90° arc of the same step: every view contributes alike to the centre of a
    // disc, and the integral covers half of the half turn, so half the value.
    let quarter = at_centre(uniform_angles(45, 90.0));
    assert!(
        (quarter / mu - 0.5).abs() < 0.005,
        "limited arc centre {quarter}"
    );
}

#[test]
fn fbp_handles_batches_channels_and_rectangular_images() {
    let (rows, cols) = (40, 56);
    let a = disc(rows, cols, 1.0, 10.0, 3.0, -2.0, 0.02);
    let b = disc(rows, cols, 1.0, 6.0, -12.0, 5.0, 0.03);
    let batch = Tensor::cat(&[&a, &b], 0);
    // 70 detectors of 1 mm: the field of view (35 mm) covers the 40 × 56 image.
    let g = CtGeometry::parallel(cols, uniform_angles(120, 180.0))
        .with_image_shape(rows, cols)
        .with_detectors(70, 1.0);
    let op = Radon::new(&g, Device::Cpu);
    let rec = op.fbp(&op.forward(&batch), FbpFilter::Hann);
    assert_eq!(rec.size(), [2, 1, rows as i64, cols as i64]);
    let alone = op.fbp(&op.forward(&b), FbpFilter::Hann);
    assert!(rel_l2(&rec.narrow(0, 1, 1), &alone) < 1e-6);
    let (r, c) = (rows as i64, cols as i64);
    let channels = op.fbp(&op.forward(&batch.reshape([1, 2, r, c])), FbpFilter::Hann);
    assert!(rel_l2(&channels, &rec.reshape([1, 2, r, c])) < 1e-6);
    // Disc centres: a at row 21.5, column 30.5; b at row 14.5, column 15.5.
    let centre = |item: i64, row: i64, col: i64| {
        rec.get(item)
            .narrow(1, row, 2)
            .narrow(2, col, 2)
            .mean(Kind::Double)
            .double_value(&[])
    };
    let (va, vb) = (centre(0, 21, 30), centre(1, 14, 15));
    assert!((va / 0.02 - 1.0).abs() < 0.01, "disc a: {va}");
    assert!((vb / 0.03 - 1.0).abs() < 0.01, "disc b: {vb}");
}

#[test]
fn forward_is_differentiable_and_adjoint_works_without_grad() {
    tch::manual_seed(9);
    for g in beams(20, &uniform_angles(8, 180.0)) {
        let op = Radon::new(&g, Device::Cpu);
        let x = Tensor::randn([2, 1, 20, 20], CPU).set_requires_grad(true);
        let y = op.forward(&x);
        (&y * &y).sum(Kind::Float).backward();
        let grad = x.grad();
        let normal = tch::no_grad(|| op.normal(&x.detach()) * 2.0);
        assert!(!normal.requires_grad());
        let err = rel_l2(&grad, &normal);
        assert!(err < 1e-5, "{:?}: autograd vs A*A x: {err:e}", g.beam);
    }
}

#[test]
fn adjoint_is_differentiable_in_the_sinogram() {
    tch::manual_seed(10);
    let g = CtGeometry::parallel(16, uniform_angles(6, 180.0));
    let op = Radon::new(&g, Device::Cpu);
    let x = Tensor::randn([1, 1, 16, 16], CPU);
    let y = Tensor::randn([1, 1, 6, 16], CPU).set_requires_grad(true);
    // d/dy ⟨x, A* y⟩ = A x.
    (op.adjoint(&y) * &x).sum(Kind::Float).backward();
    let err = rel_l2(&y.grad(), &op.forward(&x));
    assert!(err < 1e-5, "{err:e}");
}

#[test]
fn geometry_defaults_and_validation() {
    let g = CtGeometry::parallel(128, uniform_angles(30, 180.0));
    assert_eq!((g.rows, g.cols, g.n_detectors), (128, 128, 128));
    assert_eq!(g.detector_center(), 63.5);
    assert_eq!(g.field_of_view_radius_mm(), 64.0);
    assert_eq!(uniform_angles(4, 360.0), [0.0, 90.0, 180.0, 270.0]);
    for g in beams(64, &[0.0]).into_iter().skip(1) {
        assert!(g.validate().is_ok());
        assert_eq!(g.n_detectors % 2, 1);
        // The default fan covers the whole image with about one pixel per element.
        let r = g.image_radius_mm();
        assert!(g.field_of_view_radius_mm() >= r, "{g:?}");
        assert!(g.field_of_view_radius_mm() < r + 2.0, "{g:?}");
    }
    let too_close = CtGeometry {
        beam: BeamGeometry::FanFlat {
            source_to_isocenter_mm: 40.0,
            source_to_detector_mm: 80.0,
        },
        ..CtGeometry::fan_flat(64, vec![0.0], 100.0, 150.0)
    };
    assert!(too_close.validate().is_err());
    assert!(CtGeometry::parallel(8, vec![]).validate().is_err());
    assert!(CtGeometry::parallel(8, vec![f64::NAN]).validate().is_err());
    assert!(CtGeometry::parallel(8, vec![0.0])
        .with_detectors(8, 0.0)
        .validate()
        .is_err());
    let wide = CtGeometry::fan_equiangular(8, vec![0.0], 50.0, 80.0).with_detectors(200, 1.0);
    assert!(wide.validate().is_err());
}

#[test]
#[should_panic(expected = "invalid CT geometry")]
fn radon_rejects_an_invalid_geometry() {
    let _ = Radon::new(&CtGeometry::parallel(0, vec![0.0]), Device::Cpu);
}

/// `min_c ‖c z − x‖ / ‖x‖`: how far `z` is from a multiple of `x`.
fn misfit_up_to_scale(z: &Tensor, x: &Tensor) -> f64 {
    let c =
        (z * x).sum(Kind::Double).double_value(&[]) / (z * z).sum(Kind::Double).double_value(&[]);
    rel_l2(&(z * c), x)
}

#[test]
fn sqrt_ramp_preconditions_the_normal_operator() {
    // Shepp–Logan 128², 1 mm pixels, 180 parallel views: AᵀA blurs (a 1/r kernel),
    // AᵀHᵀHA ≈ c·I (a filtered backprojection of the projections). Measured: 0.79
    // and 0.22 from a multiple of x (the ramp removes the mean, hence not 0).
    let x = fixture("shepp_logan_128.npy")
        .to_kind(Kind::Float)
        .reshape([1, 1, 128, 128]);
    for g in beams(128, &uniform_angles(180, 180.0)).into_iter().take(1) {
        let a = Radon::new(&g, Device::Cpu);
        let h = SqrtRamp::new(&g, Device::Cpu);
        let sino = a.forward(&x);
        let plain = misfit_up_to_scale(&a.adjoint(&sino), &x);
        let preconditioned = misfit_up_to_scale(&a.adjoint(&h.apply(&h.apply(&sino))), &x);
        eprintln!(
            "{:?}: plain {plain:.3}, preconditioned {preconditioned:.3}",
            g.beam
        );
        assert!(plain > 0.7, "{plain}");
        assert!(preconditioned < 0.3, "{preconditioned}");
    }
    // H is linear and symmetric: ⟨H r, s⟩ = ⟨r, H s⟩.
    let g = CtGeometry::parallel(32, uniform_angles(10, 180.0));
    let h = SqrtRamp::new(&g, Device::Cpu);
    let r = Tensor::randn([2, 1, 10, 32], (Kind::Double, Device::Cpu));
    let s = Tensor::randn([2, 1, 10, 32], (Kind::Double, Device::Cpu));
    let lhs = (h.apply(&r) * &s).sum(Kind::Double).double_value(&[]);
    let rhs = (&r * h.apply(&s)).sum(Kind::Double).double_value(&[]);
    assert!(
        (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
}

/// A floor c under the ramp: H² = R + c, so H²'s response to a constant
/// detector row (DC) is c above the ramp's, and at high frequencies barely moves.
#[test]
fn sqrt_ramp_floor_adds_to_the_response() {
    let g = CtGeometry::parallel(64, uniform_angles(1, 180.0));
    // H²'s response to a detector row at the middle detector, away from the
    // zero-padded ends: for the ramp and for the ramp with a floor of 0.05.
    let responses = |row: &[f64]| {
        let row = Tensor::from_slice(row).reshape([1, 1, 1, 64]);
        let at = |h: SqrtRamp| h.apply(&h.apply(&row)).double_value(&[0, 0, 0, 32]);
        (
            at(SqrtRamp::new(&g, Device::Cpu)),
            at(SqrtRamp::with_floor(&g, 0.05, Device::Cpu)),
        )
    };
    let (ramp, floored) = responses(&[1.0; 64]);
    assert!(ramp.abs() < 0.01, "ramp at DC {ramp}");
    assert!(
        (floored - ramp - 0.05).abs() < 0.01,
        "{floored} vs {ramp} + 0.05"
    );
    // An alternating row (Nyquist): R = 0.5, so the floor adds 10 %.
    let alternating: Vec<f64> = (0..64)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let (ramp, floored) = responses(&alternating);
    assert!((floored / ramp - 1.1).abs() < 0.02, "{floored} / {ramp}");
}

/// A fan-beam short scan (180° plus the fan angle plus 2°, from 40°) reconstructs
/// the disc as a full turn does: Parker weights make every line count once.
/// (Without them the short scan is 43 % off the full turn's image; with them 0.26 %.)
#[test]
fn fbp_of_a_fan_beam_short_scan() {
    let (n, spacing, r, x0, y0, mu) = DISC;
    let image = disc(n, n, spacing, r, x0, y0, mu);
    let half = (n as f64 - 1.0) / 2.0;
    for g in disc_geometries().into_iter().skip(1) {
        let gamma_max = match g.beam {
            BeamGeometry::FanEquiangular { .. } => (g.detector_center() + 0.5) * g.detector_spacing,
            _ => ((g.detector_center() + 1.0) * g.detector_spacing / 150.0)
                .atan()
                .to_degrees(),
        };
        let arc = 180.0 + 2.0 * gamma_max + 2.0;
        let views = (arc / 0.5) as usize;
        let short = CtGeometry {
            angles_deg: (0..views).map(|k| 40.0 + 0.5 * k as f64).collect(),
            ..g.clone()
        };
        let op = Radon::new(&short, Device::Cpu);
        let rec = op.fbp(&op.forward(&image), FbpFilter::Hann);
        let full = Radon::new(&g, Device::Cpu);
        let reference = full.fbp(&full.forward(&image), FbpFilter::Hann);
        // Within the field of view, pixel by pixel.
        let fov = g.field_of_view_radius_mm() - 2.0;
        let mask: Vec<f32> = (0..n * n)
            .map(|i| {
                let (row, col) = ((i / n) as f64, (i % n) as f64);
                f32::from(((col - half) * spacing).hypot((half - row) * spacing) < fov)
            })
            .collect();
        let mask = Tensor::from_slice(&mask).reshape([1, 1, n as i64, n as i64]);
        let err = rel_l2(&(&rec * &mask), &(&reference * &mask));
        assert!(
            err < 0.01,
            "{:?}: relative L2 to the full turn {err}",
            g.beam
        );
        let truth = rel_l2(&(&rec * &mask), &(&image * &mask));
        let truth_full = rel_l2(&(&reference * &mask), &(&image * &mask));
        assert!(
            truth < truth_full * 1.1,
            "{:?}: short scan {truth}, full turn {truth_full}",
            g.beam
        );
    }
}
