//! The two traits every forward model implements, and the inner product they share.

use tch::{Kind, Tensor};

/// A forward model `y = A(x)`, possibly nonlinear. Gradients of anything built on
/// [`Operator::forward`] come from autograd, so `forward` must stay differentiable
/// with respect to `x` (no `no_grad`, no detaching inside).
pub trait Operator: Send {
    /// Applies the forward model to a batch `x` of shape `[B, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// `Some(self)` for a linear operator whose forward and adjoint are much
    /// cheaper without a graph than autograd through `forward` (e.g. the CT
    /// projector, a sparse matrix product): gradients of data terms are then taken
    /// as `A*` applied to the gradient with respect to `A x`. `None` (the default):
    /// autograd through `forward`.
    fn gradient_by_adjoint(&self) -> Option<&dyn LinearOperator> {
        None
    }
}

/// A linear forward model with its exact adjoint `A*`, so that
/// `⟨A x, y⟩ = ⟨x, A* y⟩` for the inner product of [`inner`].
pub trait LinearOperator: Operator {
    /// Applies the adjoint `A*` to a batch `y` in measurement space.
    fn adjoint(&self, y: &Tensor) -> Tensor;

    /// The normal operator `A* A x`; override when a cheaper form exists.
    fn normal(&self, x: &Tensor) -> Tensor {
        self.adjoint(&self.forward(x))
    }
}

/// Real inner product `Re Σ conj(a)·b` over all elements, for real or complex
/// tensors, accumulated in double precision. Returns a scalar `f64`.
pub fn inner(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(promote(a.kind())), b.to_kind(promote(b.kind())));
    let p = if a.is_complex() || b.is_complex() {
        let a = to_complex(&a);
        let b = to_complex(&b);
        (a.conj() * b).real()
    } else {
        a * b
    };
    p.sum(Kind::Double).double_value(&[])
}

/// Euclidean norm `‖a‖₂` over all elements (complex modulus for complex tensors).
pub fn norm(a: &Tensor) -> f64 {
    inner(a, a).max(0.0).sqrt()
}

/// Relative mismatch of the dot-product test,
/// `|⟨Ax, y⟩ − ⟨x, A*y⟩| / (‖Ax‖ ‖y‖)`, for given `x` and `y`.
/// Below ~1e-5 in single precision means the adjoint is right.
pub fn adjoint_mismatch(op: &dyn LinearOperator, x: &Tensor, y: &Tensor) -> f64 {
    let ax = op.forward(x);
    let aty = op.adjoint(y);
    let lhs = inner(&ax, y);
    let rhs = inner(x, &aty);
    (lhs - rhs).abs() / (norm(&ax) * norm(y)).max(f64::MIN_POSITIVE)
}

fn promote(kind: Kind) -> Kind {
    match kind {
        Kind::ComplexFloat | Kind::ComplexDouble | Kind::ComplexHalf => Kind::ComplexDouble,
        _ => Kind::Double,
    }
}

fn to_complex(t: &Tensor) -> Tensor {
    if t.is_complex() {
        t.shallow_clone()
    } else {
        Tensor::complex(t, &t.zeros_like())
    }
}
