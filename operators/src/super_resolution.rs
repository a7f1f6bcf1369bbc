//! Super-resolution: `y = avg_pool2d(x, k)`, the mean over non-overlapping `k × k`
//! blocks, `[B, C, H, W] → [B, C, H/k, W/k]`.
//!
//! The adjoint is nearest-neighbour upsampling divided by `k²`,
//! `[B, C, H/k, W/k] → [B, C, H, W]`, so that `A A* = I / k²` and `‖A‖ = 1/k`.
//! Image sizes must be multiples of `k`: the operator is built for one image size and
//! rejects others at construction ([`SuperResolution::new`]); crop the image first
//! if needed. Real and complex images are accepted (the block mean is computed by a
//! reshape, which avoids `avg_pool2d`'s restriction to real kinds).

use crate::op::{LinearOperator, Operator};
use tch::Tensor;

/// Average pooling by `factor` for images of size `height × width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuperResolution {
    factor: i64,
    height: i64,
    width: i64,
}

impl SuperResolution {
    /// Average pooling by `factor` for `height × width` images.
    ///
    /// # Panics
    /// If `factor < 1`, or `height` or `width` is not a positive multiple of `factor`.
    pub fn new(factor: i64, height: i64, width: i64) -> Self {
        assert!(
            factor >= 1,
            "SuperResolution: factor must be ≥ 1, got {factor}"
        );
        assert!(
            height > 0 && width > 0 && height % factor == 0 && width % factor == 0,
            "SuperResolution: the image size {height}×{width} is not a multiple of the factor \
             {factor}; crop the image to {}×{} first",
            height / factor * factor,
            width / factor * factor
        );
        Self {
            factor,
            height,
            width,
        }
    }

    /// The downsampling factor `k`.
    pub fn factor(&self) -> i64 {
        self.factor
    }

    /// The high-resolution image size `(H, W)`.
    pub fn image_size(&self) -> (i64, i64) {
        (self.height, self.width)
    }

    /// The low-resolution measurement size `(H/k, W/k)`.
    pub fn measurement_size(&self) -> (i64, i64) {
        (self.height / self.factor, self.width / self.factor)
    }

    /// Leading dimensions `[B, C]` of `t`, after checking its trailing `[rows, cols]`.
    fn batch_dims(&self, t: &Tensor, rows: i64, cols: i64, what: &str) -> (i64, i64) {
        let size = t.size();
        assert!(
            size.len() == 4 && size[2] == rows && size[3] == cols,
            "SuperResolution ×{}: expected {what} [B, C, {rows}, {cols}], got {size:?}",
            self.factor
        );
        (size[0], size[1])
    }
}

impl Operator for SuperResolution {
    /// `[B, C, H, W]` → `[B, C, H/k, W/k]`: mean over `k × k` blocks.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c) = self.batch_dims(x, self.height, self.width, "an image");
        let (h, w) = self.measurement_size();
        let k = self.factor;
        x.reshape([b, c, h, k, w, k])
            .mean_dim([3i64, 5].as_slice(), false, None)
    }
}

impl LinearOperator for SuperResolution {
    /// `[B, C, H/k, W/k]` → `[B, C, H, W]`: nearest-neighbour upsampling `/ k²`.
    fn adjoint(&self, y: &Tensor) -> Tensor {
        let (h, w) = self.measurement_size();
        self.batch_dims(y, h, w, "a measurement");
        let k = self.factor;
        y.repeat_interleave_self_int(k, 2, None)
            .repeat_interleave_self_int(k, 3, None)
            / (k * k) as f64
    }
}
