//! From a raw measurement (the DICOM layer's plain data) to a reconstruction
//! problem on tensors: the forward operator, the data y, the likelihood, and the
//! map between the image unit of the operator and the unit written out.
//!
//! Units: CT operators act on μ (1/mm) and images are written in HU
//! (μ = μ_water · (1 + HU / 1000)); MRI operators act on the complex image
//! `x = ifft2c(k)` and the magnitude is written out, in the k-space's own scale.

use anyhow::Context;
use dps_operators::coils::estimate_from_acs;
use dps_operators::ct::{BeamGeometry, CtGeometry, Radon};
use dps_operators::mri::MultiCoilMri;
use dps_operators::LinearOperator;
use tch::{Device, Kind, Tensor};

use super::preset::LikelihoodChoice;
use crate::dicom::raw::{CtDataType, CtGeometry as RawGeometry, Measurement, RawMeasurement};
use crate::phantom::{hu_to_mu, mu_to_hu};
use crate::sampler::Likelihood;

/// Threshold (fraction of the maximum root-sum-of-squares) below which estimated
/// coil sensitivities are set to zero.
pub const SENSITIVITY_THRESHOLD: f64 = 0.02;

/// Which modality, with what its unit conversion needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Modality {
    /// Complex image, magnitude written out.
    Mri,
    /// Image in HU; the operator acts on μ = μ_water (1 + HU/1000).
    Ct { mu_water: f64 },
}

/// The forward model of a problem, by modality.
pub enum ForwardModel {
    Mri(MultiCoilMri),
    Ct(Radon),
}

/// One slice (or a batch of slices sharing one operator) ready to reconstruct.
pub struct Problem {
    pub model: ForwardModel,
    /// The data as stored: k-space `[B, C, ky, kx]` complex64, or a sinogram
    /// `[B, 1, views, detectors]` f32 (line integrals or counts).
    pub y: Tensor,
    pub likelihood: Likelihood,
    pub modality: Modality,
    /// Noise standard deviation per real component of y, when known.
    pub noise_sigma: Option<f64>,
    /// Image size `[rows, cols]`.
    pub image_size: [i64; 2],
    /// For CT counts: I0 (to turn counts into line integrals for the baselines).
    pub blank_scan_counts: Option<f64>,
}

impl Problem {
    /// Builds the problem for one raw slice on `device`.
    pub fn from_raw(raw: &RawMeasurement, device: Device) -> anyhow::Result<Self> {
        let image_size = [raw.recon_size[0] as i64, raw.recon_size[1] as i64];
        match &raw.data {
            Measurement::MriKspace(k) => {
                let (c, ky, kx) = (k.coils as i64, k.ky as i64, k.kx as i64);
                anyhow::ensure!(
                    image_size == [ky, kx],
                    "reconstruction size {image_size:?} differs from the k-space matrix [{ky}, {kx}]"
                );
                let y =
                    Tensor::view_as_complex(&Tensor::from_slice(&k.data).view([1, c, ky, kx, 2]));
                ensure_float32_sums(&y, "k-space")?;
                let mask = Tensor::from_slice(&k.mask)
                    .view([ky, kx])
                    .to_kind(Kind::Float);
                let sens = match &k.sensitivities {
                    Some(s) => Tensor::view_as_complex(&Tensor::from_slice(s).view([c, ky, kx, 2])),
                    None => estimate_from_acs(&y.get(0), &mask, SENSITIVITY_THRESHOLD)
                        .context("estimating coil sensitivities from the ACS region")?,
                };
                let op =
                    MultiCoilMri::new(&mask, &sens, device).context("building the MRI operator")?;
                Ok(Self {
                    model: ForwardModel::Mri(op),
                    y: y.to_device(device),
                    likelihood: Likelihood::Gaussian,
                    modality: Modality::Mri,
                    noise_sigma: raw.noise_sigma,
                    image_size,
                    blank_scan_counts: None,
                })
            }
            Measurement::CtSinogram(s) => {
                let beam = match s.geometry {
                    RawGeometry::Parallel => BeamGeometry::Parallel,
                    RawGeometry::FanEquiangular | RawGeometry::FanFlat => {
                        let dso = s
                            .source_to_isocenter_mm
                            .context("fan beam without SourceToIsocenter")?;
                        let dsd = s
                            .source_to_detector_mm
                            .context("fan beam without SourceToDetector")?;
                        if s.geometry == RawGeometry::FanFlat {
                            BeamGeometry::FanFlat {
                                source_to_isocenter_mm: dso,
                                source_to_detector_mm: dsd,
                            }
                        } else {
                            BeamGeometry::FanEquiangular {
                                source_to_isocenter_mm: dso,
                                source_to_detector_mm: dsd,
                            }
                        }
                    }
                };
                let [row_mm, col_mm] = raw.recon_pixel_spacing_mm;
                anyhow::ensure!(
                    (row_mm - col_mm).abs() <= 1e-6 * row_mm.abs().max(1.0),
                    "CT reconstruction needs square pixels, got {row_mm} × {col_mm} mm"
                );
                let geometry = CtGeometry {
                    rows: image_size[0] as usize,
                    cols: image_size[1] as usize,
                    pixel_spacing_mm: row_mm,
                    angles_deg: s.view_angles_deg.clone(),
                    n_detectors: s.detectors,
                    detector_spacing: s.detector_spacing,
                    detector_offset: s.detector_offset,
                    beam,
                };
                geometry
                    .validate()
                    .map_err(|e| anyhow::anyhow!("invalid CT geometry: {}", e.0))?;
                let y =
                    Tensor::from_slice(&s.data).view([1, 1, s.views as i64, s.detectors as i64]);
                ensure_float32_sums(&y, "sinogram")?;
                let (likelihood, i0) = match s.data_type {
                    CtDataType::LineIntegral => (Likelihood::Gaussian, None),
                    CtDataType::Counts { blank_scan_counts } => (
                        Likelihood::Transmission {
                            blank_scan_counts,
                            floor: dps_operators::noise::ZERO_COUNT_FLOOR,
                        },
                        Some(blank_scan_counts),
                    ),
                };
                Ok(Self {
                    model: ForwardModel::Ct(Radon::new(&geometry, device)),
                    y: y.to_device(device),
                    likelihood,
                    modality: Modality::Ct {
                        mu_water: s.water_attenuation_per_mm,
                    },
                    noise_sigma: raw.noise_sigma,
                    image_size,
                    blank_scan_counts: i0,
                })
            }
        }
    }

    /// Applies a preset's likelihood choice to the likelihood [`Self::from_raw`]
    /// picked from the data (which is `auto`): `gaussian` post-logs CT counts to
    /// line integrals. Errs, changing nothing, where `transmission` meets line
    /// integrals.
    pub fn choose_likelihood(&mut self, choice: LikelihoodChoice) -> Result<(), NeedsCounts> {
        match (choice, self.blank_scan_counts) {
            (LikelihoodChoice::Gaussian, Some(_)) => {
                self.y = self.linearised_data();
                self.blank_scan_counts = None;
                self.likelihood = Likelihood::Gaussian;
            }
            (LikelihoodChoice::Transmission, None) => return Err(NeedsCounts),
            _ => {}
        }
        Ok(())
    }

    /// The forward operator, in operator units.
    pub fn op(&self) -> &dyn LinearOperator {
        match &self.model {
            ForwardModel::Mri(op) => op,
            ForwardModel::Ct(op) => op,
        }
    }

    /// The data as line integrals (CT counts are post-logged), else `y` itself.
    pub fn linearised_data(&self) -> Tensor {
        match self.blank_scan_counts {
            Some(i0) => dps_operators::noise::post_log(&self.y, i0),
            None => self.y.shallow_clone(),
        }
    }

    /// Output-unit image (HU or MR magnitude scale) → operator image (μ, or a real
    /// image promoted to complex by the operator).
    pub fn to_operator_units(&self, image: &Tensor) -> Tensor {
        match self.modality {
            Modality::Ct { mu_water } => hu_to_mu(image, mu_water),
            Modality::Mri => image.shallow_clone(),
        }
    }

    /// Operator image → output-unit image `[B, 1, H, W]` real (HU, or magnitude).
    pub fn to_output_units(&self, image: &Tensor) -> Tensor {
        match self.modality {
            Modality::Ct { mu_water } => mu_to_hu(image, mu_water),
            Modality::Mri => image.abs().to_kind(Kind::Float),
        }
    }
}

/// The transmission likelihood was asked for data that are not CT counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsCounts;

/// Fails unless the sum of the squared magnitudes of `y` (the `what` of the raw
/// file) fits in float32, as every norm, CG step and data term computes it.
/// Before, k-space of magnitude 1e30 passed the reader, its CG-SENSE estimate
/// came out zero, and the error blamed "empty" k-space.
fn ensure_float32_sums(y: &Tensor, what: &str) -> anyhow::Result<()> {
    let magnitude = y.abs();
    anyhow::ensure!(
        magnitude
            .square()
            .sum(Kind::Float)
            .isfinite()
            .int64_value(&[])
            == 1,
        "the {what} is too large for float32 arithmetic: the sum of its squared magnitudes \
         overflows (largest magnitude {:e}); scale the data down",
        magnitude.max().double_value(&[])
    );
    Ok(())
}
