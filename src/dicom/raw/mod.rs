//! The raw measurement profile (docs/dicom-raw-profile.md): one Raw Data Storage
//! object per slice holding MRI k-space or a CT sinogram in the private block
//! `DPSRECON 1` of group 0x0071.
//!
//! [`RawMeasurement`] is the plain-data contract with the rest of the program: no
//! DICOM or tensor types, arrays as flat `Vec`s in C order.

mod elements;
mod read;
mod validate;
mod write;

pub use elements::{PRIVATE_CREATOR, PRIVATE_GROUP};
pub(crate) use read::peek;
pub use read::{raw_from_bytes, read_raw};
pub use validate::{MAX_VIEWS, POSITIVE_RANGE};
pub use write::write_raw;

use super::context::{InstanceContext, Plane};

/// SOP Class UID of Raw Data Storage.
pub const RAW_DATA_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66";

/// One slice of raw measurements with what is needed to reconstruct and place it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMeasurement {
    /// The measured data and its acquisition geometry.
    pub data: Measurement,
    /// Standard deviation of the additive measurement noise per real component
    /// (MRI: of the real and of the imaginary part of each k-space sample; CT: of
    /// each line integral or count), in data units. `None`: unknown.
    pub noise_sigma: Option<f64>,
    /// Size of the reconstructed image, `[rows, columns]`.
    pub recon_size: [u32; 2],
    /// Pixel spacing of the reconstructed image, `[between rows, between
    /// columns]` in mm (the order of PixelSpacing (0028,0030)).
    pub recon_pixel_spacing_mm: [f64; 2],
    /// Patient, study, series, frame of reference and equipment attributes.
    pub context: InstanceContext,
    /// Where the reconstructed slice lies: the position of its first pixel and
    /// the directions of its rows and columns.
    pub plane: Plane,
    /// SliceLocation (0020,1041), mm.
    pub slice_location_mm: Option<f64>,
    /// SliceThickness (0018,0050), mm.
    pub slice_thickness_mm: Option<f64>,
    /// InstanceNumber (0020,0013).
    pub instance_number: Option<i32>,
    /// SOPInstanceUID (0008,0018) of this raw object.
    pub sop_instance_uid: String,
}

/// The measured data, by modality.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// Cartesian MRI k-space (Modality `MR`).
    MriKspace(MriKspace),
    /// A 2-D CT sinogram (Modality `CT`).
    CtSinogram(CtSinogram),
}

/// Cartesian multi-coil MRI k-space of one slice.
///
/// Centred k-space with orthonormal FFTs: the image is `x = ifft2c(k)` with
/// `ifft2c(k) = fftshift(ifft2(ifftshift(k), norm = "ortho"))`, the zero
/// frequency at index `ky / 2`, `kx / 2` (integer division). `ky` runs along the
/// image rows (phase encoding: increasing row index of the image), `kx` along the
/// image columns (readout).
#[derive(Debug, Clone, PartialEq)]
pub struct MriKspace {
    /// Receive coils.
    pub coils: usize,
    /// Phase-encoding lines (image rows).
    pub ky: usize,
    /// Readout samples (image columns).
    pub kx: usize,
    /// `[coils, ky, kx]` complex samples, C order, interleaved `(re, im)`:
    /// `2 · coils · ky · kx` floats. Zero where `mask` is 0.
    pub data: Vec<f32>,
    /// `[ky, kx]`, 1 where the sample was acquired, 0 where not.
    pub mask: Vec<u8>,
    /// Coil sensitivities `[coils, ky, kx]` on the image grid of `ifft2c(k)`
    /// (rows, columns), complex interleaved like `data`.
    pub sensitivities: Option<Vec<f32>>,
}

/// A 2-D CT sinogram of one slice (conventions in docs/dicom-raw-profile.md and
/// `dps_operators::ct`).
#[derive(Debug, Clone, PartialEq)]
pub struct CtSinogram {
    /// Views (sinogram rows).
    pub views: usize,
    /// Detector elements per view (sinogram columns).
    pub detectors: usize,
    /// `[views, detectors]`, C order: row `v` is view `v`, column `d` detector
    /// element `d`. Line integrals of μ (1/mm) along mm, or counts.
    pub data: Vec<f32>,
    /// Beam shape.
    pub geometry: CtGeometry,
    /// View angle of each view, degrees.
    pub view_angles_deg: Vec<f64>,
    /// Distance between neighbouring detector elements: mm (parallel, flat fan;
    /// at the detector) or degrees of fan angle (equiangular fan).
    pub detector_spacing: f64,
    /// Source to isocentre, mm (fan beam only).
    pub source_to_isocenter_mm: Option<f64>,
    /// Source to detector, mm (fan beam only).
    pub source_to_detector_mm: Option<f64>,
    /// Shift of the detector centre in elements: the central ray hits element
    /// `(detectors − 1) / 2 + detector_offset`.
    pub detector_offset: f64,
    /// What the values are.
    pub data_type: CtDataType,
    /// μ of water in 1/mm (HU = 1000 · (μ / μ_water − 1)).
    pub water_attenuation_per_mm: f64,
}

/// CT beam shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtGeometry {
    /// Parallel rays onto a straight detector.
    Parallel,
    /// Fan beam onto a detector arc centred on the source, elements equally
    /// spaced in fan angle.
    FanEquiangular,
    /// Fan beam onto a flat detector, elements equally spaced in mm.
    FanFlat,
}

impl CtGeometry {
    /// The defined term of (0071,1010) Geometry.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Parallel => "PARALLEL",
            Self::FanEquiangular => "FAN_EQUIANGULAR",
            Self::FanFlat => "FAN_FLAT",
        }
    }

    /// Whether rays diverge from a point source.
    pub fn is_fan(&self) -> bool {
        !matches!(self, Self::Parallel)
    }
}

/// What CT sinogram values are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CtDataType {
    /// Line integrals of μ (1/mm) along the ray (mm): dimensionless, `−ln(I / I0)`.
    LineIntegral,
    /// Detected photon counts `I`; the line integral is `ln(I0 / I)`.
    Counts {
        /// Counts without an object, I0 (per detector element and view).
        blank_scan_counts: f64,
    },
}

impl CtDataType {
    /// The defined term of (0071,1016) DataType.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LineIntegral => "LINE_INTEGRAL",
            Self::Counts { .. } => "COUNTS",
        }
    }
}

impl Measurement {
    /// The defined term of (0071,1001) MeasurementKind.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::MriKspace(_) => "MRI_KSPACE",
            Self::CtSinogram(_) => "CT_SINOGRAM",
        }
    }

    /// The Modality (0008,0060) this kind requires.
    pub fn modality(&self) -> &'static str {
        match self {
            Self::MriKspace(_) => "MR",
            Self::CtSinogram(_) => "CT",
        }
    }

    /// (0071,1002) Dimensions: `[coils, ky, kx]` or `[views, detectors]`.
    pub fn dimensions(&self) -> Vec<usize> {
        match self {
            Self::MriKspace(k) => vec![k.coils, k.ky, k.kx],
            Self::CtSinogram(s) => vec![s.views, s.detectors],
        }
    }
}
