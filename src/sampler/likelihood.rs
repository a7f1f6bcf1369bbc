//! Measurement likelihoods as weighted data-fidelity distances
//! `d(x) = ‖y − A(x)‖_Λ = sqrt(Σ_j Λ_jj |y_j − A(x)_j|²)`, one per batch element.
//!
//! DPS guides each step with ∇ d(x̂_0) (the plain, not squared, norm, as Algorithm 1
//! with ζ_i = ζ / ‖r‖ on the squared norm). The operator and `y` are in physical
//! units; the sampler's map from the prior's range is applied before `d`.

use dps_operators::{LinearOperator, Operator};
use tch::{Kind, Tensor};

/// The noise model of the measurement, which sets Λ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Likelihood {
    /// Additive Gaussian noise: Λ = I.
    Gaussian,
    /// Poisson counts y, in the paper's Gaussian approximation: Λ_jj = 1 / (2 y_j),
    /// with y_j floored at `floor` (> 0) where nothing was counted.
    Poisson { floor: f64 },
    /// CT transmission counts N_j ~ Poisson(I0 · exp(−[A x]_j)). Guidance uses the
    /// post-log line integrals p̂_j = −ln(max(N_j, floor) / I0) with the weights of
    /// penalised weighted least squares, Λ_jj = N_j / 2 (var p̂_j ≈ 1 / N_j).
    Transmission { blank_scan_counts: f64, floor: f64 },
}

/// `y`, the forward model and the weights Λ: everything the sampler needs to
/// measure how well an image explains the data.
pub struct DataTerm<'a> {
    op: &'a dyn Operator,
    /// The target compared with `A(x)` (post-log line integrals for transmission).
    target: Tensor,
    /// Diagonal of Λ^{1/2}, shaped like `target`; `None` means Λ = I.
    sqrt_weights: Option<Tensor>,
    /// A linear filter `H` of the weighted residual (see [`DataTerm::with_filter`]).
    filter: Option<&'a dyn Fn(&Tensor) -> Tensor>,
}

impl<'a> DataTerm<'a> {
    /// `y`: the measurement as stored (counts for `Poisson` and `Transmission`),
    /// batched like the images given to [`DataTerm::distance`].
    pub fn new(op: &'a dyn Operator, y: &Tensor, likelihood: Likelihood) -> Self {
        let (target, weights) = match likelihood {
            Likelihood::Gaussian => (y.shallow_clone(), None),
            Likelihood::Poisson { floor } => {
                let w = (y.clamp_min(floor) * 2.0).reciprocal();
                (y.shallow_clone(), Some(w))
            }
            Likelihood::Transmission {
                blank_scan_counts,
                floor,
            } => {
                let counts = y.clamp_min(floor);
                let post_log = -(counts.shallow_clone() / blank_scan_counts).log();
                (post_log, Some(counts * 0.5))
            }
        };
        Self {
            op,
            target,
            sqrt_weights: weights.map(|w| w.sqrt()),
            filter: None,
        }
    }

    /// Measures `‖H Λ^{1/2} (y − A(x))‖` instead: `H` (real, linear, applied to the
    /// residual shaped like `y`) preconditions the guidance, e.g. the square root
    /// of the ramp filter for CT ([`dps_operators::ct::SqrtRamp`]), whose gradient is
    /// a filtered backprojection of the residual instead of a plain one.
    pub fn with_filter(self, filter: &'a dyn Fn(&Tensor) -> Tensor) -> Self {
        Self {
            filter: Some(filter),
            ..self
        }
    }

    /// The target after `n` repetitions of each batch element (for n posterior
    /// samples per slice: sample k of slice b is batch row b·n + k).
    pub fn repeat_samples(self, n: i64) -> Self {
        let rep = |t: &Tensor| t.repeat_interleave_self_int(n, Some(0), None);
        Self {
            target: rep(&self.target),
            sqrt_weights: self.sqrt_weights.as_ref().map(rep),
            ..self
        }
    }

    /// `‖y − A(x)‖_Λ` (or `‖H Λ^{1/2} (y − A(x))‖` with a filter) for each batch
    /// element: f32 `[B]`, differentiable w.r.t. `x`.
    ///
    /// For an operator that asks for it ([`Operator::gradient_by_adjoint`]) and an
    /// `x` that requires grad, `A` runs without a graph and the gradient w.r.t. `x`
    /// is `A*` of the gradient w.r.t. `A x`; the value and the gradient are those of
    /// autograd through `A` (up to float rounding).
    pub fn distance(&self, x: &Tensor) -> Tensor {
        match self.op.gradient_by_adjoint() {
            Some(a) if x.requires_grad() => self.distance_by_adjoint(a, x),
            _ => self.distance_from(&self.op.forward(x)),
        }
    }

    /// [`DataTerm::distance`] with the gradient through `a`'s adjoint: autograd
    /// runs only on the measurement side (weights, filter, norm).
    fn distance_by_adjoint(&self, a: &dyn LinearOperator, x: &Tensor) -> Tensor {
        let ax = tch::no_grad(|| a.forward(&x.detach())).set_requires_grad(true);
        let (d, grad_ax) = tch::with_grad(|| {
            let d = self.distance_from(&ax);
            let g = Tensor::run_backward(&[d.sum(d.kind())], &[&ax], false, false)
                .pop()
                .expect("one gradient per input");
            (d.detach(), g)
        });
        let grad_x = tch::no_grad(|| a.adjoint(&grad_ax));
        // d + (⟨x, g⟩ − ⟨x, g⟩ detached) has d's value and, for each batch row, the
        // gradient g w.r.t. x (for complex x, Re⟨g, x⟩ has gradient g as autograd
        // defines it).
        let real = |t: &Tensor| {
            if t.is_complex() {
                t.view_as_real()
            } else {
                t.shallow_clone()
            }
        };
        let link = (real(x) * real(&grad_x)).flatten(1, -1).sum_dim_intlist(
            &[1i64][..],
            false,
            Kind::Float,
        );
        d + (&link - link.detach())
    }

    /// The distance for `ax = A(x)` (differentiable w.r.t. `ax`).
    fn distance_from(&self, ax: &Tensor) -> Tensor {
        let r = &self.target - ax;
        let r = match &self.sqrt_weights {
            Some(w) => r * w,
            None => r,
        };
        let r = match self.filter {
            Some(h) => h(&r),
            None => r,
        };
        let sq = if r.is_complex() {
            r.view_as_real()
                .square()
                .sum_dim_intlist(&[-1i64][..], false, None)
        } else {
            r.square()
        };
        let dims: Vec<i64> = (1..sq.dim() as i64).collect();
        // The tiny floor keeps the gradient of sqrt finite at an exact fit.
        (sq.sum_dim_intlist(&dims[..], false, Kind::Float) + 1e-20).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A(x) = 2x.
    struct Double;
    impl Operator for Double {
        fn forward(&self, x: &Tensor) -> Tensor {
            x * 2.0
        }
    }

    fn grad_of(term: &DataTerm, x: &Tensor) -> (Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let d = term.distance(&x);
        let g = Tensor::run_backward(&[d.sum(Kind::Float)], &[&x], false, false);
        (d.detach(), g[0].shallow_clone())
    }

    #[test]
    fn gaussian_distance_and_gradient() {
        let y = Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([1, 1, 2, 2]);
        let x = Tensor::zeros([1, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let term = DataTerm::new(&Double, &y, Likelihood::Gaussian);
        let (d, g) = grad_of(&term, &x);
        let norm = 30f64.sqrt();
        assert!((d.double_value(&[0]) - norm).abs() < 1e-5);
        // ∇ ‖y − 2x‖ = −2 (y − 2x) / ‖y − 2x‖.
        let expect = &y * (-2.0 / norm);
        assert!((g - expect).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn filtered_distance_and_gradient() {
        // H = diag(1, 0, 0, 2) on the weighted residual of y = (1, 2, 3, 4), x = 0,
        // Poisson weights 1 / 2y: H Λ^½ r = (1/√2, 0, 0, 2 · 4/√8) = (1/√2, 0, 0, √8).
        let y = Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([1, 1, 2, 2]);
        let x = Tensor::zeros([1, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let h_diag = Tensor::from_slice(&[1f32, 0., 0., 2.]).reshape([1, 1, 2, 2]);
        let h = |r: &Tensor| r * &h_diag;
        let term = DataTerm::new(&Double, &y, Likelihood::Poisson { floor: 0.5 }).with_filter(&h);
        let (d, g) = grad_of(&term, &x);
        let norm = 8.5f64.sqrt();
        assert!((d.double_value(&[0]) - norm).abs() < 1e-5);
        // ∇ = −2 Λ^½ H² Λ^½ r / d = −2 (1/2, 0, 0, 4 · 4/8) / d.
        let expect =
            Tensor::from_slice(&[0.5f32, 0., 0., 2.]).reshape([1, 1, 2, 2]) * (-2.0 / norm);
        assert!((g - expect).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn poisson_weights_with_floor() {
        let y = Tensor::from_slice(&[0f32, 2., 8.]).reshape([1, 3]);
        let x = Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu));
        let term = DataTerm::new(&Double, &y, Likelihood::Poisson { floor: 0.5 });
        let (d, g) = grad_of(&term, &x);
        // Λ = 1/(2·max(y, 0.5)) = [1, 1/4, 1/16]; r = y.
        let d2 = 0.0 + 4.0 / 4.0 + 64.0 / 16.0;
        assert!((d.double_value(&[0]) - f64::sqrt(d2)).abs() < 1e-5);
        // ∂d/∂x_j = −2 Λ_j r_j / d.
        let expect = [0.0, -2.0 * 0.25 * 2.0, -2.0 / 16.0 * 8.0].map(|v| v / d2.sqrt());
        for (j, e) in expect.iter().enumerate() {
            assert!((g.double_value(&[0, j as i64]) - e).abs() < 1e-6);
        }
    }

    #[test]
    fn transmission_uses_post_log_and_counts() {
        // Counts of noiseless line integrals p = 2x at x = 0.5: N = I0·e^{−1}.
        let i0 = 1e4;
        let counts = Tensor::from_slice(&[(i0 * (-1f64).exp()) as f32; 2]).reshape([1, 2]);
        let term = DataTerm::new(
            &Double,
            &counts,
            Likelihood::Transmission {
                blank_scan_counts: i0,
                floor: 1.0,
            },
        );
        let at_truth = Tensor::full([1, 2], 0.5, (Kind::Float, tch::Device::Cpu));
        assert!(term.distance(&at_truth).double_value(&[0]) < 1e-2);
        // Away from the truth: d = sqrt(Σ N/2 · (1 − 2x)²) at x = 0.
        let at_zero = at_truth.zeros_like();
        let n = i0 * (-1f64).exp();
        let expect = (2.0 * n / 2.0).sqrt();
        let d = term.distance(&at_zero).double_value(&[0]);
        assert!((d - expect).abs() / expect < 1e-4, "{d} vs {expect}");
    }

    #[test]
    fn complex_residuals_per_sample() {
        let y = Tensor::complex(
            &Tensor::from_slice(&[3f32, 0.]).reshape([2, 1]),
            &Tensor::from_slice(&[4f32, 1.]).reshape([2, 1]),
        );
        let x = Tensor::zeros([2, 1], (Kind::ComplexFloat, tch::Device::Cpu));
        let term = DataTerm::new(&Double, &y, Likelihood::Gaussian);
        let d = term.distance(&x);
        assert!((d.double_value(&[0]) - 5.0).abs() < 1e-5);
        assert!((d.double_value(&[1]) - 1.0).abs() < 1e-5);
        let rep = DataTerm::new(&Double, &y, Likelihood::Gaussian).repeat_samples(3);
        let d = rep.distance(&Tensor::zeros(
            [6, 1],
            (Kind::ComplexFloat, tch::Device::Cpu),
        ));
        assert_eq!(d.size(), [6]);
        assert!((d.double_value(&[2]) - 5.0).abs() < 1e-5);
        assert!((d.double_value(&[3]) - 1.0).abs() < 1e-5);
    }

    /// A linear operator whose data terms take gradients through autograd
    /// (`Autograd`) or through its adjoint (`ByAdjoint`).
    struct Autograd<T>(T);
    struct ByAdjoint<T>(T);
    impl<T: LinearOperator> Operator for Autograd<T> {
        fn forward(&self, x: &Tensor) -> Tensor {
            self.0.forward(x)
        }
    }
    impl<T: LinearOperator> Operator for ByAdjoint<T> {
        fn forward(&self, x: &Tensor) -> Tensor {
            self.0.forward(x)
        }
        fn gradient_by_adjoint(&self) -> Option<&dyn LinearOperator> {
            Some(&self.0)
        }
    }

    /// Distance and gradient of the two data terms, two samples per slice of `y`,
    /// at `x`: equal to float rounding, and the gradient not zero.
    fn assert_same_gradient(
        (autograd, by_adjoint): (&dyn Operator, &dyn Operator),
        y: &Tensor,
        likelihood: Likelihood,
        filter: Option<&dyn Fn(&Tensor) -> Tensor>,
        x: &Tensor,
    ) {
        let term = |op| {
            let t = DataTerm::new(op, y, likelihood).repeat_samples(2);
            match filter {
                Some(h) => t.with_filter(h),
                None => t,
            }
        };
        let (d_auto, g_auto) = grad_of(&term(autograd), x);
        let (d_adj, g_adj) = grad_of(&term(by_adjoint), x);
        let norm = dps_operators::op::norm;
        let rel = |a: &Tensor, b: &Tensor| norm(&(a - b)) / norm(b);
        assert!(
            rel(&d_adj, &d_auto) < 1e-5,
            "distance {d_adj:?} vs {d_auto:?}"
        );
        assert!(
            rel(&g_adj, &g_auto) < 1e-4,
            "gradient: {}",
            rel(&g_adj, &g_auto)
        );
        assert!(norm(&g_auto) > 0.0);
    }

    /// Distance and gradient through the adjoint equal those of autograd through
    /// the operator: CT counts with the ramp filter (the projector samples its rays
    /// when autograd runs through it, and uses its sparse matrix otherwise), and
    /// complex MRI data.
    #[test]
    fn gradient_by_adjoint_matches_autograd() {
        use dps_operators::ct::{uniform_angles, CtGeometry, Radon, SqrtRamp};
        use dps_operators::masks::random_lines;
        use dps_operators::mri::SingleCoilMri;
        let cpu = tch::Device::Cpu;
        tch::manual_seed(3);

        let geometry = CtGeometry::parallel(24, uniform_angles(10, 180.0));
        let radon = || Radon::new(&geometry, cpu);
        let ramp = SqrtRamp::with_floor(&geometry, 0.02, cpu);
        let filter = |r: &Tensor| ramp.apply(r);
        let mu = Tensor::rand([2, 1, 24, 24], (Kind::Float, cpu)) * 0.05;
        let counts = (radon().forward(&mu).neg().exp() * 1e4).round();
        let transmission = Likelihood::Transmission {
            blank_scan_counts: 1e4,
            floor: 0.5,
        };
        let x = Tensor::rand([4, 1, 24, 24], (Kind::Float, cpu)) * 0.05;
        assert_same_gradient(
            (&Autograd(radon()), &ByAdjoint(radon())),
            &counts,
            transmission,
            Some(&filter),
            &x,
        );

        let mask = random_lines(24, 24, 4.0, 0.25, 1).expect("mask");
        let mri = || SingleCoilMri::new(&mask, cpu).expect("operator");
        let kspace = mri().forward(&Tensor::randn([2, 1, 24, 24], (Kind::ComplexFloat, cpu)));
        let z = Tensor::randn([4, 1, 24, 24], (Kind::ComplexFloat, cpu));
        assert_same_gradient(
            (&Autograd(mri()), &ByAdjoint(mri())),
            &kspace,
            Likelihood::Gaussian,
            None,
            &z,
        );
    }
}
