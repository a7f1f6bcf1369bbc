//! Conjugate gradient for Hermitian positive (semi-)definite systems, batched, and its
//! use on the regularised normal equations `(A*A + λI) x = A* y`.
//!
//! With [`crate::mri::MultiCoilMri`] this is CG-SENSE; zero-filled reconstruction is
//! simply `op.adjoint(y)`.
//!
//! Batching: dimension 0 of the unknown is the batch. Every inner product is taken
//! per batch element (over all other dimensions, real part of `Σ conj(a)·b`, summed in
//! double precision), so each element runs its own CG recurrence as if solved alone,
//! and stops updating once its relative residual is below the tolerance. The loop
//! ends when all elements have converged or after `max_iter` iterations.
//!
//! The solver runs on the device of its inputs and does not switch autograd off:
//! wrap calls in `tch::no_grad` unless gradients through the iterations are wanted.

use tch::{Kind, Tensor};

use crate::op::LinearOperator;

/// Stopping rule and Tikhonov weight of [`solve_normal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgOptions {
    /// Largest number of iterations (each applies the system operator once).
    pub max_iter: usize,
    /// Relative residual `‖b − K x‖ / ‖b‖` at which a batch element has converged.
    pub tol: f64,
    /// Tikhonov weight `λ ≥ 0` in `(A*A + λI) x = A* y`.
    pub lambda: f64,
}

impl Default for CgOptions {
    /// 50 iterations, tolerance `1e-6`, `λ = 0`.
    fn default() -> Self {
        Self {
            max_iter: 50,
            tol: 1e-6,
            lambda: 0.0,
        }
    }
}

/// Result of a CG solve.
#[derive(Debug)]
pub struct CgResult {
    /// The solution, shaped and typed like the initial guess.
    pub x: Tensor,
    /// Iterations run (the same count for the whole batch).
    pub iterations: usize,
    /// Final relative residual `‖b − K x‖ / ‖b‖` per batch element, from the CG
    /// recurrence (0 for an element with `b = 0` solved exactly).
    pub relative_residuals: Vec<f64>,
}

impl CgResult {
    /// The largest relative residual over the batch.
    pub fn max_relative_residual(&self) -> f64 {
        self.relative_residuals.iter().cloned().fold(0.0, f64::max)
    }
}

/// Solves `(A*A + λI) x = A* y` by conjugate gradient, starting from `x0` (zeros
/// shaped like `A* y` when `None`). `y` lives in the measurement space of `op`;
/// `x0`, when given, must be shaped like `A* y`.
pub fn solve_normal(
    op: &dyn LinearOperator,
    y: &Tensor,
    x0: Option<&Tensor>,
    options: &CgOptions,
) -> CgResult {
    let b = op.adjoint(y);
    let x0 = x0.map_or_else(|| b.zeros_like(), Tensor::shallow_clone);
    let lambda = options.lambda;
    let system = |x: &Tensor| {
        if lambda == 0.0 {
            op.normal(x)
        } else {
            op.normal(x) + x * lambda
        }
    };
    conjugate_gradient(&system, &b, &x0, options.max_iter, options.tol)
}

/// Conjugate gradient for `K x = b` with `K` Hermitian positive (semi-)definite,
/// applied by `apply`, batched over dimension 0 (see the module documentation).
/// `b` and `x0` share a shape with at least one dimension.
pub fn conjugate_gradient(
    apply: &dyn Fn(&Tensor) -> Tensor,
    b: &Tensor,
    x0: &Tensor,
    max_iter: usize,
    tol: f64,
) -> CgResult {
    assert_eq!(b.size(), x0.size(), "CG: b and x0 must have the same shape");
    let bnorm = batch_dot(b, b).sqrt();
    let mut x = x0.shallow_clone();
    let mut r = b - apply(&x);
    let mut p = r.shallow_clone();
    let mut rs = batch_dot(&r, &r);
    let mut iterations = 0;
    let relative = |rs: &Tensor| {
        let norm = rs.clamp_min(0.0).sqrt();
        norm.where_self(&norm.eq(0.0), &(&norm / &bnorm))
    };
    while iterations < max_iter {
        let active = relative(&rs).gt(tol);
        if active.any().int64_value(&[]) == 0 {
            break;
        }
        let ap = apply(&p);
        let pap = batch_dot(&p, &ap);
        let step = active.logical_and(&pap.gt(0.0));
        let alpha = (&rs / pap.where_scalarother(&step, 1.0)) * &step;
        x = &x + &p * broadcast(&alpha, &x);
        r = &r - &ap * broadcast(&alpha, &r);
        let rs_new = batch_dot(&r, &r);
        let beta = (&rs_new / rs.where_scalarother(&step, 1.0)) * &step;
        p = &r + &p * broadcast(&beta, &p);
        rs = rs_new;
        iterations += 1;
    }
    let relative_residuals = Vec::<f64>::try_from(&relative(&rs).to_kind(Kind::Double))
        .expect("one residual per batch element");
    CgResult {
        x,
        iterations,
        relative_residuals,
    }
}

/// Per-batch-element `Re Σ conj(a)·b` over all dimensions but the first, in double
/// precision: `[B]`.
fn batch_dot(a: &Tensor, b: &Tensor) -> Tensor {
    let p = if a.is_complex() {
        (a.conj() * b).real()
    } else {
        a * b
    };
    let dims: Vec<i64> = (1..p.dim() as i64).collect();
    if dims.is_empty() {
        p.to_kind(Kind::Double)
    } else {
        p.sum_dim_intlist(dims.as_slice(), false, Kind::Double)
    }
}

/// Reshapes per-element coefficients `[B]` to `[B, 1, …, 1]` in the real kind of `t`.
fn broadcast(coef: &Tensor, t: &Tensor) -> Tensor {
    let mut shape = vec![1i64; t.dim()];
    shape[0] = -1;
    let kind = match t.kind() {
        Kind::ComplexDouble | Kind::Double => Kind::Double,
        _ => Kind::Float,
    };
    coef.to_kind(kind).view(shape.as_slice())
}
