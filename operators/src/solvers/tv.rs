//! Total-variation regularised (weighted) least squares with the primal–dual hybrid
//! gradient method (Chambolle & Pock, 2011):
//!
//! `min_x ½‖W^{1/2}(A x − y)‖² + λ·TV(x) [+ ι(x ≥ 0)]`
//!
//! for any [`LinearOperator`] `A`, measurements `y`, optional nonnegative weights `W`
//! (PWLS; absent = the Gaussian data term `W = I`, e.g. CT counts from
//! [`crate::noise::pwls_weights`]) and an optional nonnegativity constraint.
//!
//! `TV(x) = Σ_{b,c,i,j} sqrt(|D_h x|² + |D_w x|²)` is isotropic, per image and
//! channel, with forward differences and a Neumann boundary (the difference leaving
//! the image is 0), see [`Gradient`]. Images are `[B, C, H, W]`, real or complex;
//! for complex images (MRI) the differences are complex and `|·|` is the complex
//! modulus, i.e. the TV of the complex image (not of its magnitude), and the
//! nonnegativity constraint is not available.
//!
//! Steps: the weights are first divided by their mean `c` and `λ` by the same `c`
//! (same minimiser; the steps no longer depend on the weights' scale, e.g. on `I0`
//! for CT counts). `‖W^{1/2} A‖` is then estimated by power iteration
//! ([`operator_norm_estimate`], enlarged by 2 % for safety) and the gradient block
//! is scaled by `μ = ‖W^{1/2}A‖ / √8` (`√8 ≥ ‖∇‖`) so both blocks of
//! `K = [W^{1/2}A; μ∇]` have the same norm; then
//! `τ = σ = 1 / (√2 ‖W^{1/2}A‖) ≤ 1 / ‖K‖` and `θ = 1`. Each iteration costs one
//! `A`, one `A*` and a few elementwise passes; the iterates are not monitored (no
//! stopping rule besides the iteration count).

use crate::op::{LinearOperator, Operator};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

/// Forward differences with a Neumann boundary, `[B, C, H, W] → [B, C, H, W, 2]`:
/// `[..., i, j, 0] = x[i+1, j] − x[i, j]` (down the rows, 0 on the last row) and
/// `[..., i, j, 1] = x[i, j+1] − x[i, j]` (along the columns, 0 on the last column).
/// The adjoint is the negative divergence; `‖∇‖ < √8`. Real or complex.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gradient;

impl Operator for Gradient {
    /// `[B, C, H, W]` → `[B, C, H, W, 2]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::stack(&[forward_difference(x, 2), forward_difference(x, 3)], -1)
    }
}

impl LinearOperator for Gradient {
    /// `[B, C, H, W, 2]` → `[B, C, H, W]`: `−div`.
    fn adjoint(&self, q: &Tensor) -> Tensor {
        forward_difference_adjoint(&q.select(-1, 0), 2)
            + forward_difference_adjoint(&q.select(-1, 1), 3)
    }
}

/// `x[i+1] − x[i]` along `dim`, 0 at the last index.
fn forward_difference(x: &Tensor, dim: i64) -> Tensor {
    let n = x.size()[dim as usize];
    let d = x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1);
    Tensor::cat(&[d, x.narrow(dim, 0, 1).zeros_like()], dim)
}

/// Adjoint of [`forward_difference`]: `q[i−1] − q[i]` with `q[−1] = q[n−1] = 0`.
fn forward_difference_adjoint(q: &Tensor, dim: i64) -> Tensor {
    let n = q.size()[dim as usize];
    let inner = q.narrow(dim, 0, n - 1);
    let zero = q.narrow(dim, 0, 1).zeros_like();
    Tensor::cat(&[&zero, &inner], dim) - Tensor::cat(&[&inner, &zero], dim)
}

/// Isotropic total variation `Σ sqrt(|D_h x|² + |D_w x|²)` of `x` (`[B, C, H, W]`,
/// real or complex), summed over the batch and channels, in double precision.
pub fn total_variation(x: &Tensor) -> f64 {
    gradient_magnitude(&Gradient.forward(x))
        .sum(Kind::Double)
        .double_value(&[])
}

/// `sqrt(|q_h|² + |q_w|²)` of `q` (`[B, C, H, W, 2]`), keeping a trailing dim of 1.
fn gradient_magnitude(q: &Tensor) -> Tensor {
    q.abs()
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, None)
        .sqrt()
}

/// Estimates the operator norm `‖A‖ = sqrt(λ_max(A* A))` by `iterations` steps of
/// power iteration on `A* A`, from a seeded standard normal start of shape `shape`
/// (the shape of the images `A` takes) with `options = (kind, device)` (a complex
/// kind for complex images). The estimate approaches `‖A‖` from below; enlarge it a
/// little before using it for step sizes. Returns 0 for the zero operator.
pub fn operator_norm_estimate(
    op: &dyn LinearOperator,
    shape: &[i64],
    options: (Kind, Device),
    iterations: usize,
) -> f64 {
    tch::no_grad(|| power_iteration(|x| op.normal(x), &seeded_normal(shape, options), iterations))
}

/// Power iteration on the self-adjoint positive `normal` from `start`; returns the
/// square root of the largest-eigenvalue estimate `‖N x‖` for unit `x`.
fn power_iteration(normal: impl Fn(&Tensor) -> Tensor, start: &Tensor, iterations: usize) -> f64 {
    let mut x = start / crate::op::norm(start);
    let mut estimate = 0.0;
    for _ in 0..iterations.max(1) {
        let nx = normal(&x);
        estimate = crate::op::norm(&nx);
        if estimate == 0.0 {
            return 0.0;
        }
        x = nx / estimate;
    }
    estimate.sqrt()
}

/// Standard normal tensor of `shape` drawn on the CPU from a fixed seed, cast to
/// `kind` (complex kinds: both components normal) and moved to `device`.
fn seeded_normal(shape: &[i64], (kind, device): (Kind, Device)) -> Tensor {
    const SEED: u64 = 0x7f4a_7c15;
    let complex = matches!(
        kind,
        Kind::ComplexFloat | Kind::ComplexDouble | Kind::ComplexHalf
    );
    let count = shape.iter().product::<i64>() as usize * if complex { 2 } else { 1 };
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let values: Vec<f64> = (0..count)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let t = Tensor::from_slice(&values);
    let t = if complex {
        let mut pairs = shape.to_vec();
        pairs.push(2);
        t.reshape(pairs).view_as_complex()
    } else {
        t.reshape(shape)
    };
    t.to_kind(kind).to_device(device)
}

/// Options of [`tv_pdhg`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TvOptions {
    /// TV weight `λ ≥ 0`, in units of the data term: with weights `W`, `λ` must grow
    /// with them (e.g. ∝ `I0` for CT counts).
    pub lambda: f64,
    /// Number of PDHG iterations (one `A` and one `A*` each).
    pub iterations: usize,
    /// Project onto `x ≥ 0` (real images only).
    pub nonnegative: bool,
    /// Power iterations for the step-size estimate of `‖W^{1/2}A‖`.
    pub norm_iterations: usize,
}

impl Default for TvOptions {
    /// `λ = 0.01`, 200 iterations, no constraint, 30 power iterations.
    fn default() -> Self {
        Self {
            lambda: 0.01,
            iterations: 200,
            nonnegative: false,
            norm_iterations: 30,
        }
    }
}

/// Solves `min_x ½‖W^{1/2}(A x − y)‖² + λ TV(x) [+ ι(x ≥ 0)]` by PDHG (see the
/// module docs) and returns `x`, shaped, typed and placed like `A* y`.
///
/// - `op`: the forward model `A`; `y`: measurements in its range, on its device.
/// - `weights`: `W`, nonnegative, broadcastable to `y` (`None` = identity).
/// - `init`: starting image (`None` = zeros).
///
/// Runs without autograd.
///
/// # Panics
/// If `lambda < 0`, or `nonnegative` is asked for a complex image.
pub fn tv_pdhg(
    op: &dyn LinearOperator,
    y: &Tensor,
    weights: Option<&Tensor>,
    init: Option<&Tensor>,
    options: &TvOptions,
) -> Tensor {
    assert!(
        options.lambda >= 0.0,
        "tv_pdhg: lambda must be ≥ 0, got {}",
        options.lambda
    );
    tch::no_grad(|| {
        // ½‖W^{1/2}(Ax − y)‖² + λ TV = c·(½‖(W/c)^{1/2}(Ax − y)‖² + (λ/c) TV): solving
        // with weights of mean 1 keeps the step sizes independent of their scale.
        let mut lambda = options.lambda;
        let sqrt_w = weights.map(|w| {
            let w = w.clamp_min(0.0);
            let mean = w.mean(Kind::Double).double_value(&[]);
            if mean > 0.0 {
                lambda /= mean;
                (w / mean).sqrt()
            } else {
                w
            }
        });
        let weigh = |t: Tensor| match &sqrt_w {
            Some(s) => t * s,
            None => t,
        };
        let weighted_y = weigh(y.shallow_clone());
        let aty = op.adjoint(&weighted_y);
        assert!(
            !(options.nonnegative && aty.is_complex()),
            "tv_pdhg: nonnegativity needs a real image, the operator gives {:?}",
            aty.kind()
        );
        let mut x = match init {
            Some(x0) => x0.to_kind(aty.kind()),
            None => aty.zeros_like(),
        };

        let data_norm = 1.02
            * power_iteration(
                |v| op.adjoint(&weigh(weigh(op.forward(v)))),
                &seeded_normal(&aty.size(), (aty.kind(), aty.device())),
                options.norm_iterations,
            );
        if data_norm == 0.0 {
            return x;
        }
        let mu = data_norm / 8f64.sqrt();
        let step = 1.0 / (2f64.sqrt() * data_norm);
        let radius = lambda / mu;

        let mut x_bar = x.shallow_clone();
        let mut p = weighted_y.zeros_like();
        let mut q = Gradient.forward(&x).zeros_like();
        for _ in 0..options.iterations {
            p = (p + (weigh(op.forward(&x_bar)) - &weighted_y) * step) / (1.0 + step);
            q = if radius > 0.0 {
                let q_new = q + Gradient.forward(&x_bar) * (step * mu);
                let shrink = (gradient_magnitude(&q_new) / radius).clamp_min(1.0);
                q_new / shrink
            } else {
                q.zeros_like()
            };
            let update = op.adjoint(&weigh(p.shallow_clone())) + Gradient.adjoint(&q) * mu;
            let mut x_new = &x - update * step;
            if options.nonnegative {
                x_new = x_new.clamp_min(0.0);
            }
            x_bar = &x_new * 2.0 - &x;
            x = x_new;
        }
        x
    })
}
