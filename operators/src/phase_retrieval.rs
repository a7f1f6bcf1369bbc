//! Fourier phase retrieval: `y = |F(pad(x))|`, a nonlinear operator.
//!
//! `pad` centres the `H × W` image in a zero `s·H × s·W` field (`s` the
//! oversampling; `(s−1)·H / 2` zero rows above, rounded down, the rest below; the
//! same for columns). `F` is the orthonormal 2-D DFT (`‖F z‖ = ‖z‖`) with the zero
//! frequency moved to index `(s·H / 2, s·W / 2)` (numpy's `fftshift`, as in
//! [`crate::fft`]). Input `[B, C, H, W]` real or complex, output the magnitudes
//! `[B, C, s·H, s·W]` in the input's real precision.
//!
//! Differentiability: the magnitude is torch's complex `abs`, whose autograd rule is
//! `∂|z| = Re(conj(sgn z)·∂z)` with `sgn 0 = 0`, so the gradient is finite (a
//! subgradient, 0) where a Fourier coefficient vanishes, e.g. at `x = 0`; no `ε` is
//! added and the forward values are exact. Only [`Operator`] is implemented.

use crate::op::Operator;
use tch::Tensor;

/// `|F(pad(x))|` with oversampling `oversampling` (see the module docs); the DPS
/// paper uses 2. Stateless, so it works on every device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseRetrieval {
    /// Ratio of the padded field to the image size, per axis (≥ 1).
    pub oversampling: i64,
}

impl PhaseRetrieval {
    /// Phase retrieval with the given oversampling.
    ///
    /// # Panics
    /// If `oversampling < 1`.
    pub fn new(oversampling: i64) -> Self {
        let op = Self { oversampling };
        op.check();
        op
    }

    /// Zero-pads `x` (`[..., H, W]`) to `[..., s·H, s·W]`, centred as in the module
    /// docs.
    pub fn pad(&self, x: &Tensor) -> Tensor {
        self.check();
        let size = x.size();
        assert!(
            size.len() == 4,
            "PhaseRetrieval: expected an image batch [B, C, H, W], got {size:?}"
        );
        let (h, w) = (size[2], size[3]);
        let (extra_h, extra_w) = ((self.oversampling - 1) * h, (self.oversampling - 1) * w);
        x.constant_pad_nd([
            extra_w / 2,
            extra_w - extra_w / 2,
            extra_h / 2,
            extra_h - extra_h / 2,
        ])
    }

    fn check(&self) {
        assert!(
            self.oversampling >= 1,
            "PhaseRetrieval: oversampling must be ≥ 1, got {}",
            self.oversampling
        );
    }
}

impl Operator for PhaseRetrieval {
    /// `[B, C, H, W]` → `[B, C, s·H, s·W]`: Fourier magnitudes, DC at the centre.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.pad(x)
            .fft_fft2(None::<&[i64]>, [-2, -1], "ortho")
            .abs()
            .fft_fftshift(&[-2i64, -1][..])
    }
}
