//! Cartesian MRI forward models: single-coil `y = M ⊙ F x` and multi-coil (SENSE)
//! `y_c = M ⊙ F (S_c ⊙ x)`.
//!
//! - `x`: image, complex `[B, 1, H, W]` (real input is promoted, see
//!   [`crate::fft::to_complex`]).
//! - `y`: k-space, complex `[B, C, H, W]` (`C = 1` for single coil), centred as by
//!   [`crate::fft::fft2c`] (unitary), zero where `M` is zero.
//! - `M`: sampling mask `[H, W]`, real (normally 0/1, see [`crate::masks`]), shared
//!   by all coils and batch elements.
//! - `S`: coil sensitivities, complex64 `[C, H, W]` (see [`crate::coils`]).
//!
//! Adjoints: `A* y = F⁻¹(M ⊙ y)` and `A* y = Σ_c conj(S_c) ⊙ F⁻¹(M ⊙ y_c)`, so the
//! zero-filled reconstruction is `adjoint(y)`. `normal` keeps the trait default: the
//! FFTs dominate and no cheaper form exists.

use tch::{Device, Kind, Tensor};

use crate::fft::{fft2c, ifft2c, to_complex};
use crate::op::{LinearOperator, Operator};

/// Why an MRI operator could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MriError {
    #[error("the sampling mask must be [H, W], got {0:?}")]
    MaskShape(Vec<i64>),
    #[error("the sampling mask must be real, got {0:?}")]
    MaskKind(Kind),
    #[error("the coil sensitivities must be [C, H, W] matching the mask {mask:?}, got {sens:?}")]
    SensitivityShape { sens: Vec<i64>, mask: Vec<i64> },
}

/// Single-coil Cartesian MRI, `y = M ⊙ fft2c(x)`: `[B, 1, H, W] → [B, 1, H, W]`.
#[derive(Debug)]
pub struct SingleCoilMri {
    /// `[1, 1, H, W]` `f32` on the operator's device.
    mask: Tensor,
}

impl SingleCoilMri {
    /// Builds the operator for a real mask `[H, W]`, stored as `f32` on `device`.
    pub fn new(mask: &Tensor, device: Device) -> Result<Self, MriError> {
        Ok(Self {
            mask: prepare_mask(mask, device)?,
        })
    }

    /// The sampling mask, `f32` `[H, W]` (a copy).
    pub fn mask(&self) -> Tensor {
        self.mask.squeeze_dim(0).squeeze_dim(0).copy()
    }

    /// Image size `(H, W)`.
    pub fn image_size(&self) -> (i64, i64) {
        let s = self.mask.size();
        (s[2], s[3])
    }
}

impl Operator for SingleCoilMri {
    fn forward(&self, x: &Tensor) -> Tensor {
        check_image(x, self.image_size());
        fft2c(x) * &self.mask
    }
}

impl LinearOperator for SingleCoilMri {
    fn adjoint(&self, y: &Tensor) -> Tensor {
        check_kspace(y, 1, self.image_size());
        ifft2c(&(to_complex(y) * &self.mask))
    }
}

/// Multi-coil Cartesian MRI with known sensitivities (SENSE model),
/// `y_c = M ⊙ fft2c(S_c ⊙ x)`: `[B, 1, H, W] → [B, C, H, W]`.
#[derive(Debug)]
pub struct MultiCoilMri {
    /// `[1, 1, H, W]` `f32` on the operator's device.
    mask: Tensor,
    /// `[1, C, H, W]` complex64 on the operator's device.
    sens: Tensor,
}

impl MultiCoilMri {
    /// Builds the operator for a real mask `[H, W]` and sensitivities `[C, H, W]`
    /// (promoted to complex64), stored on `device`.
    pub fn new(mask: &Tensor, sensitivities: &Tensor, device: Device) -> Result<Self, MriError> {
        let mask = prepare_mask(mask, device)?;
        let sens_size = sensitivities.size();
        if sens_size.len() != 3 || sens_size[1..] != mask.size()[2..] {
            return Err(MriError::SensitivityShape {
                sens: sens_size,
                mask: mask.size()[2..].to_vec(),
            });
        }
        let sens = to_complex(sensitivities)
            .to_kind(Kind::ComplexFloat)
            .to_device(device)
            .unsqueeze(0)
            .contiguous();
        Ok(Self { mask, sens })
    }

    /// The sampling mask, `f32` `[H, W]` (a copy).
    pub fn mask(&self) -> Tensor {
        self.mask.squeeze_dim(0).squeeze_dim(0).copy()
    }

    /// The coil sensitivities, complex64 `[C, H, W]` (a copy).
    pub fn sensitivities(&self) -> Tensor {
        self.sens.squeeze_dim(0).copy()
    }

    /// Number of coils `C`.
    pub fn num_coils(&self) -> i64 {
        self.sens.size()[1]
    }

    /// Image size `(H, W)`.
    pub fn image_size(&self) -> (i64, i64) {
        let s = self.mask.size();
        (s[2], s[3])
    }
}

impl Operator for MultiCoilMri {
    fn forward(&self, x: &Tensor) -> Tensor {
        check_image(x, self.image_size());
        fft2c(&(to_complex(x) * &self.sens)) * &self.mask
    }
}

impl LinearOperator for MultiCoilMri {
    fn adjoint(&self, y: &Tensor) -> Tensor {
        check_kspace(y, self.num_coils(), self.image_size());
        (ifft2c(&(to_complex(y) * &self.mask)) * self.sens.conj()).sum_dim_intlist(
            [1i64].as_slice(),
            true,
            None::<Kind>,
        )
    }
}

fn prepare_mask(mask: &Tensor, device: Device) -> Result<Tensor, MriError> {
    let size = mask.size();
    if size.len() != 2 {
        return Err(MriError::MaskShape(size));
    }
    if mask.is_complex() {
        return Err(MriError::MaskKind(mask.kind()));
    }
    Ok(mask
        .to_kind(Kind::Float)
        .to_device(device)
        .view([1, 1, size[0], size[1]])
        .contiguous())
}

fn check_image(x: &Tensor, (h, w): (i64, i64)) {
    let s = x.size();
    assert!(
        s.len() == 4 && s[1] == 1 && s[2] == h && s[3] == w,
        "MRI image must be [B, 1, {h}, {w}], got {s:?}"
    );
}

fn check_kspace(y: &Tensor, coils: i64, (h, w): (i64, i64)) {
    let s = y.size();
    assert!(
        s.len() == 4 && s[1] == coils && s[2] == h && s[3] == w,
        "MRI k-space must be [B, {coils}, {h}, {w}], got {s:?}"
    );
}
