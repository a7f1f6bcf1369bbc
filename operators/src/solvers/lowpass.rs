//! Low-frequency data consistency: moves an image's smooth component, and only
//! that, towards the data.
//!
//! Given an image `x` (e.g. a DPS sample), measurements `y`, a linear operator `A`
//! and optional nonnegative weights `W` (PWLS, e.g. CT counts from
//! [`crate::noise::pwls_weights`]; absent = `W = I`), it returns `x + G z` where
//! `G` is the Gaussian blur of standard deviation `σ` pixels ([`Blur`] with
//! [`gaussian_kernel`], zero boundary, self-adjoint) and `z` approximately solves
//!
//! `min_z ½‖W^{1/2}(y − A(x + G z))‖²`,
//!
//! by `iterations` steps of conjugate gradient on the normal equations
//! `G A* W A G z = G A* W (y − A x)`, started at `z = 0`. Structures finer than `σ`
//! are left as they are; the iteration count is the regularisation (CG fits the
//! best-determined smooth components first, the noise last), as for CG-SENSE.
//!
//! Why: DPS's guidance step has the same length ζ whatever the residual, so the
//! sample ends with the residual at the noise level but a low-frequency error hidden
//! under the white noise, which the norm barely sees (e.g. a 14 HU offset over a
//! 2500-pixel region and lost contrast of large, faint structures on low-dose CT).
//! The data determine those components well, and this puts them back.
//!
//! Images are `[B, C, H, W]` real; `y` and `W` are shaped like `A x`. Batch elements
//! are solved independently (see [`super::cg`]). Runs on the device of `x`; wrap
//! calls in `tch::no_grad`.

use tch::Tensor;

use super::cg::conjugate_gradient;
use crate::blur::Blur;
use crate::kernels::gaussian_kernel;
use crate::op::{LinearOperator, Operator};

/// Width and iteration count of [`low_frequency_correction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowpassOptions {
    /// Standard deviation of the Gaussian that defines "smooth", in pixels (> 0).
    pub sigma_px: f64,
    /// Conjugate-gradient iterations (0 returns `x` unchanged).
    pub iterations: usize,
}

/// `x + G z`, the image with its smooth component fitted to the data (see the
/// module documentation).
///
/// # Panics
/// If `sigma_px` is not positive and finite.
pub fn low_frequency_correction(
    op: &dyn LinearOperator,
    x: &Tensor,
    y: &Tensor,
    weights: Option<&Tensor>,
    options: &LowpassOptions,
) -> Tensor {
    let radius = (3.0 * options.sigma_px).ceil() as i64;
    let blur = Blur::new(&gaussian_kernel(2 * radius + 1, options.sigma_px)).to_device(x.device());
    let weigh = |r: Tensor| match weights {
        Some(w) => r * w,
        None => r,
    };
    let rhs = blur.adjoint(&op.adjoint(&weigh(y - op.forward(x))));
    let system = |z: &Tensor| blur.adjoint(&op.adjoint(&weigh(op.forward(&blur.forward(z)))));
    let z = conjugate_gradient(&system, &rhs, &rhs.zeros_like(), options.iterations, 0.0).x;
    x + blur.forward(&z)
}
