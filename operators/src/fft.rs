//! Centred, orthonormal 2-D Fourier transforms over the last two dimensions.
//!
//! `fft2c(x) = fftshift(fft2(ifftshift(x), norm = "ortho"))` and
//! [`ifft2c`] is its inverse, which is also its adjoint (the transform is unitary:
//! `‖fft2c(x)‖ = ‖x‖`).
//!
//! Centre convention (numpy's `fftshift`): along an axis of length `n` the zero
//! frequency (DC) of `fft2c(x)` sits at index [`center`]`(n) = n / 2` (integer
//! division), i.e. `n/2` for even `n` and `(n-1)/2` for odd `n`; index `k` holds the
//! frequency `k - n/2` cycles per field of view. The image origin is the same index:
//! `fft2c` of a point at `(H/2, W/2)` is constant and real.
//!
//! Both transforms work on any tensor with at least two dimensions, on the device of
//! the input, and are differentiable (autograd passes through).

use tch::{Kind, Tensor};

const LAST_TWO: [i64; 2] = [-2, -1];

/// Index of the zero frequency (and of the image origin) along an axis of length `n`:
/// `n / 2` rounded down, as numpy's `fftshift` places it.
pub fn center(n: usize) -> usize {
    n / 2
}

/// Centred orthonormal 2-D FFT over the last two dimensions, `[..., H, W] → [..., H, W]`.
///
/// Complex input keeps its kind; real input is promoted by [`to_complex`]
/// (`f64` to `complex128`, any other real kind to `complex64`).
pub fn fft2c(x: &Tensor) -> Tensor {
    to_complex(x)
        .fft_ifftshift(&LAST_TWO[..])
        .fft_fft2(None::<&[i64]>, LAST_TWO, "ortho")
        .fft_fftshift(&LAST_TWO[..])
}

/// Inverse (and adjoint) of [`fft2c`]:
/// `ifft2c(k) = fftshift(ifft2(ifftshift(k), norm = "ortho"))`, same promotion rules.
pub fn ifft2c(k: &Tensor) -> Tensor {
    to_complex(k)
        .fft_ifftshift(&LAST_TWO[..])
        .fft_ifft2(None::<&[i64]>, LAST_TWO, "ortho")
        .fft_fftshift(&LAST_TWO[..])
}

/// Returns complex tensors unchanged (a shallow clone) and promotes real ones to
/// complex with zero imaginary part: `f64` to `complex128`, every other real kind
/// (`f32`, `f16`, integers, bool) to `complex64`. Differentiable.
pub fn to_complex(x: &Tensor) -> Tensor {
    if x.is_complex() {
        return x.shallow_clone();
    }
    let real = match x.kind() {
        Kind::Double | Kind::Float => x.shallow_clone(),
        _ => x.to_kind(Kind::Float),
    };
    Tensor::complex(&real, &real.zeros_like())
}
