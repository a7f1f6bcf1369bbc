//! Inpainting: `y = m ⊙ x` with a 0/1 mask `m` (1 = observed pixel, 0 = missing).
//!
//! The measurement keeps the image shape `[B, C, H, W]`, missing pixels set to 0;
//! the operator is self-adjoint (`A* = A`) and, for a 0/1 mask, an orthogonal
//! projection (`A A = A`). Any real mask is accepted (e.g. soft weights in [0, 1]),
//! which gives the diagonal operator `x ↦ m ⊙ x`.
//! The masks of the DPS paper come from [`box_mask`] (a missing square, 128 × 128
//! of a 256 × 256 image in the paper) and [`random_pixel_mask`] (a fraction of
//! the pixels missing, 92 % in the paper), kept apart from the operator. Masks are
//! `f32` tensors `[1, 1, H, W]` on the CPU, drawn from a ChaCha8 generator seeded
//! with a `u64`, so a seed gives the same mask on every machine and device.

use crate::op::{LinearOperator, Operator};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Masking by a fixed 0/1 mask (see the module docs).
#[derive(Debug)]
pub struct Inpainting {
    /// Mask broadcastable to the images, `[H, W]`, `[1, 1, H, W]` or `[B, C, H, W]`.
    mask: Tensor,
}

impl Inpainting {
    /// Inpainting with `mask` (real; 1 = observed, 0 = missing), which must broadcast
    /// against the images `[B, C, H, W]` (e.g. `[H, W]`, `[1, 1, H, W]`, or one mask
    /// per image `[B, 1, H, W]`). The operator keeps a copy on the mask's device;
    /// build it on the images' device ([`Inpainting::to_device`]). Real images of
    /// any float kind and complex images are accepted: the mask is cast to the
    /// image's real precision at each call.
    ///
    /// # Panics
    /// If the mask is complex or has fewer than 2 or more than 4 dimensions.
    pub fn new(mask: &Tensor) -> Self {
        let dims = mask.dim();
        assert!(
            !mask.is_complex() && (2..=4).contains(&dims),
            "Inpainting: the mask must be a real [H, W] to [B, C, H, W] tensor, got {:?} of {:?}",
            mask.size(),
            mask.kind()
        );
        Self {
            mask: mask.detach().copy(),
        }
    }

    /// The mask, as given to [`Inpainting::new`].
    pub fn mask(&self) -> Tensor {
        self.mask.shallow_clone()
    }

    /// The same operator with its mask on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            mask: self.mask().to_device(device),
        }
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        let real_kind = if x.is_complex() {
            x.real().kind()
        } else {
            x.kind()
        };
        x * self.mask().to_kind(real_kind)
    }
}

impl Operator for Inpainting {
    /// `[B, C, H, W]` → `[B, C, H, W]`: `m ⊙ x`.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.apply(x)
    }
}

impl LinearOperator for Inpainting {
    /// `[B, C, H, W]` → `[B, C, H, W]`: `m ⊙ y` (self-adjoint).
    fn adjoint(&self, y: &Tensor) -> Tensor {
        self.apply(y)
    }
}

/// Where [`box_mask`] puts the missing square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxPlacement {
    /// Centred: top-left corner at `((H − s) / 2, (W − s) / 2)`, rounded down.
    Centred,
    /// Top-left corner at the given row and column.
    At { top: i64, left: i64 },
    /// Top-left corner drawn uniformly among the positions that keep the square
    /// inside the image, from a ChaCha8 generator seeded with `seed`.
    Random { seed: u64 },
}

/// Box-inpainting mask `[1, 1, height, width]` (f32, CPU): 0 on a `size × size`
/// square placed by `placement`, 1 elsewhere.
///
/// # Panics
/// If `size` is not positive or the square does not fit inside the image.
pub fn box_mask(height: i64, width: i64, size: i64, placement: BoxPlacement) -> Tensor {
    assert!(
        size > 0 && size <= height && size <= width,
        "box_mask: a {size}×{size} box does not fit a {height}×{width} image"
    );
    let (top, left) = match placement {
        BoxPlacement::Centred => ((height - size) / 2, (width - size) / 2),
        BoxPlacement::At { top, left } => (top, left),
        BoxPlacement::Random { seed } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (
                rng.gen_range(0..=height - size),
                rng.gen_range(0..=width - size),
            )
        }
    };
    assert!(
        top >= 0 && left >= 0 && top + size <= height && left + size <= width,
        "box_mask: a {size}×{size} box at (top {top}, left {left}) leaves the {height}×{width} image"
    );
    let mut values = vec![1f32; (height * width) as usize];
    for row in top..top + size {
        let start = (row * width + left) as usize;
        values[start..start + size as usize].fill(0.0);
    }
    Tensor::from_slice(&values).reshape([1, 1, height, width])
}

/// Random-pixel inpainting mask `[1, 1, height, width]` (f32, CPU) with exactly
/// `round(missing_fraction · height · width)` missing pixels (0), chosen uniformly
/// without replacement from a ChaCha8 generator seeded with `seed`; the rest are 1.
///
/// # Panics
/// If `missing_fraction` is outside `[0, 1]` or a size is not positive.
pub fn random_pixel_mask(height: i64, width: i64, missing_fraction: f64, seed: u64) -> Tensor {
    assert!(
        height > 0 && width > 0,
        "random_pixel_mask: sizes must be positive, got {height}×{width}"
    );
    assert!(
        (0.0..=1.0).contains(&missing_fraction),
        "random_pixel_mask: missing_fraction must be in [0, 1], got {missing_fraction}"
    );
    let n = (height * width) as usize;
    let missing = (missing_fraction * n as f64).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = vec![1f32; n];
    for i in rand::seq::index::sample(&mut rng, n, missing) {
        values[i] = 0.0;
    }
    Tensor::from_slice(&values).reshape([1, 1, height, width])
}
