//! Deblurring: 2-D convolution with a fixed kernel, zero boundary, "same" size.
//!
//! `y = k * x`, i.e. `y[i, j] = Σ_{a, b} k[a, b] · x[i + ch − a, j + cw − b]` with
//! `(ch, cw) = (kh / 2, kw / 2)` the kernel centre and `x = 0` outside the image. The
//! output has the shape of the input, `[B, C, H, W]`, each channel blurred on its own.
//! The adjoint is the correlation with the same kernel (the convolution with the
//! flipped kernel) under the same zero boundary, exact to float precision.

use crate::op::{LinearOperator, Operator};
use tch::{Device, Tensor};

/// Convolution with an odd-sized kernel `[kh, kw]` (see the module docs).
///
/// Real (`f32`, `f64`) and complex images are accepted; a complex image is blurred
/// in its real and imaginary parts. The kernel is cast to the image's precision at
/// each call and must live on the image's device ([`Blur::to_device`]).
#[derive(Debug)]
pub struct Blur {
    /// Kernel `[1, 1, kh, kw]`, as given (not flipped).
    kernel: Tensor,
}

impl Blur {
    /// Blur with `kernel` (`[kh, kw]`, any real kind; kernels from
    /// [`crate::kernels`] sum to 1). The operator keeps a copy on the kernel's device.
    ///
    /// # Panics
    /// If the kernel is not 2-D with odd height and width.
    pub fn new(kernel: &Tensor) -> Self {
        let size = kernel.size();
        assert!(
            size.len() == 2 && size[0] % 2 == 1 && size[1] % 2 == 1,
            "Blur: the kernel must be [kh, kw] with odd kh and kw, got {size:?}"
        );
        Self {
            kernel: kernel.detach().copy().reshape([1, 1, size[0], size[1]]),
        }
    }

    /// The kernel `[kh, kw]`.
    pub fn kernel(&self) -> Tensor {
        self.weight().squeeze_dim(0).squeeze_dim(0)
    }

    /// The same operator with its kernel on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            kernel: self.weight().to_device(device),
        }
    }

    /// The kernel `[1, 1, kh, kw]` (a shallow clone).
    fn weight(&self) -> Tensor {
        self.kernel.shallow_clone()
    }
}

impl Operator for Blur {
    /// `[B, C, H, W]` → `[B, C, H, W]`: convolution with the kernel.
    fn forward(&self, x: &Tensor) -> Tensor {
        // conv2d correlates, so a true convolution correlates with the flipped kernel.
        correlate(x, &self.weight().flip([2, 3]))
    }
}

impl LinearOperator for Blur {
    /// `[B, C, H, W]` → `[B, C, H, W]`: correlation with the kernel.
    fn adjoint(&self, y: &Tensor) -> Tensor {
        correlate(y, &self.weight())
    }
}

/// Correlates every channel of `x` with `weight` (`[1, 1, kh, kw]`), zero-padded.
fn correlate(x: &Tensor, weight: &Tensor) -> Tensor {
    if x.is_complex() {
        return Tensor::complex(&correlate(&x.real(), weight), &correlate(&x.imag(), weight));
    }
    let size = x.size();
    assert!(
        size.len() == 4,
        "Blur: expected an image batch [B, C, H, W], got {size:?}"
    );
    let (b, c, h, w) = (size[0], size[1], size[2], size[3]);
    let (kh, kw) = (weight.size()[2], weight.size()[3]);
    x.reshape([b * c, 1, h, w])
        .conv2d::<Tensor>(
            &weight.to_kind(x.kind()),
            None,
            [1, 1],
            [kh / 2, kw / 2],
            [1, 1],
            1,
        )
        .reshape([b, c, h, w])
}
