//! Image-quality metrics against a reference: PSNR, SSIM, NMSE.
//!
//! All take tensors of equal shape (any device); values are compared in double
//! precision. `data_range` is the span of possible values (e.g. 1.0 for images in
//! [0, 1], or max − min of the reference), as in scikit-image.

use tch::{Kind, Tensor};

/// Peak signal-to-noise ratio in dB: `10 log10(data_range² / MSE)`.
pub fn psnr(x: &Tensor, reference: &Tensor, data_range: f64) -> f64 {
    let mse = mse(x, reference);
    10.0 * (data_range * data_range / mse).log10()
}

/// Mean squared error.
pub fn mse(x: &Tensor, reference: &Tensor) -> f64 {
    let d = x.to_kind(Kind::Double) - reference.to_kind(Kind::Double);
    d.square().mean(Kind::Double).double_value(&[])
}

/// Normalised mean squared error `‖x − ref‖² / ‖ref‖²`.
pub fn nmse(x: &Tensor, reference: &Tensor) -> f64 {
    let r = reference.to_kind(Kind::Double);
    let d = x.to_kind(Kind::Double) - &r;
    d.square().sum(Kind::Double).double_value(&[]) / r.square().sum(Kind::Double).double_value(&[])
}
