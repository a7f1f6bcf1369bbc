//! NIfTI-1 volumes (read with the `nifti` crate) as 2-D axial slices, for training
//! priors and simulating measurements.
//!
//! Slice orientation: for the axial slice at voxel index z, image row r is the
//! volume's y index `ny − 1 − r` (so that, for an RAS-oriented volume, anterior is
//! at the top) and column c is the x index c (patient left at the left of the
//! image, the neurological convention). Values keep the file's units after its
//! `scl_slope`/`scl_inter`.

pub mod nifti;

use std::path::Path;

use tch::{Kind, Tensor};

/// A 3-D volume in memory: `data[[x, y, z]]`, voxel sizes in mm.
pub struct Volume {
    /// `[nx, ny, nz]` as `f32`, stored as a tensor `[nz, ny, nx]` (C order).
    zyx: Tensor,
    pub dims: [i64; 3],
    /// Voxel sizes along x, y, z, finite and > 0.
    pub voxel_mm: [f64; 3],
}

impl Volume {
    /// Reads a NIfTI-1 file (`.nii`, `.nii.gz`, `.hdr`/`.img`); errors name the
    /// file and the problem (see [`nifti::read_file`]).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let voxels = nifti::read_file(path)?;
        let dims = voxels.dims.map(|d| d as i64);
        Ok(Self {
            zyx: Tensor::from_slice(&voxels.zyx).reshape([dims[2], dims[1], dims[0]]),
            dims,
            voxel_mm: voxels.voxel_mm,
        })
    }

    /// The axial slice at index `z` as `[ny, nx]` in the orientation described in
    /// the module documentation, at the file's resolution.
    pub fn axial(&self, z: i64) -> Tensor {
        assert!(
            (0..self.dims[2]).contains(&z),
            "slice z = {z} outside 0..{}",
            self.dims[2]
        );
        self.zyx.get(z).flip([0])
    }

    /// The axial slice at `z`, zero-padded to a centred square and resampled
    /// (antialiased bilinear) to `size × size`: `[size, size]`.
    pub fn axial_resampled(&self, z: i64, size: i64) -> Tensor {
        square_resample(&self.axial(z), size)
    }
}

/// Zero-pads a 2-D image `[h, w]` to a centred square and resamples it with
/// antialiased bilinear interpolation to `[size, size]`.
pub fn square_resample(img: &Tensor, size: i64) -> Tensor {
    let (h, w) = (img.size()[0], img.size()[1]);
    let n = h.max(w);
    let (top, left) = ((n - h) / 2, (n - w) / 2);
    let sq = img
        .to_kind(Kind::Float)
        .view([1, 1, h, w])
        .constant_pad_nd([left, n - w - left, top, n - h - top]);
    Tensor::internal_upsample_bilinear2d_aa(&sq, [size, size], false, None, None).view([size, size])
}
