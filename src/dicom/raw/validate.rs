//! The rules of the profile that a [`RawMeasurement`] must satisfy, checked by
//! both the reader and the writer.

use dicom_dictionary_std::tags;

use super::super::error::{DicomError, ElementName};
use super::super::uid::is_valid_uid;
use super::super::values::{readable, std_name};
use super::elements::*;
use super::{CtDataType, CtSinogram, Measurement, MriKspace, RawMeasurement};

fn name(e: &PrivateElement) -> ElementName {
    e.name(WRITE_BLOCK)
}

fn invalid(e: &PrivateElement, reason: impl Into<String>) -> DicomError {
    DicomError::invalid(name(e), reason)
}

/// Index of the first NaN or infinite value.
fn first_non_finite<T: Copy + Into<f64>>(values: &[T]) -> Option<usize> {
    values.iter().position(|&x| !x.into().is_finite())
}

fn check_finite<T: Copy + Into<f64>>(values: &[T], e: &PrivateElement) -> Result<(), DicomError> {
    match first_non_finite(values) {
        Some(i) => Err(invalid(e, format!("value {i} is NaN or infinite"))),
        None => Ok(()),
    }
}

/// The range of the positive quantities of the profile (lengths in mm, angles in
/// degrees, counts, attenuation in 1/mm): wide enough for any measurement, and
/// narrow enough that their squares and reciprocals stay normal f32 numbers in
/// the operators.
pub const POSITIVE_RANGE: std::ops::RangeInclusive<f64> = 1e-6..=1e12;

/// The most views a file of the profile holds: ViewAngles is FD, and an FD
/// value's length is a 16-bit field in Explicit VR (65 535 bytes, 8191 doubles).
pub const MAX_VIEWS: usize = 8191;

fn check_positive(x: f64, e: &PrivateElement) -> Result<(), DicomError> {
    if POSITIVE_RANGE.contains(&x) {
        Ok(())
    } else {
        Err(invalid(
            e,
            format!("must be a number in 1e-6…1e12 (> 0), is {}", readable(x)),
        ))
    }
}

fn check_uid(uid: &str, element: ElementName) -> Result<(), DicomError> {
    if uid.is_empty() {
        return Err(DicomError::Missing(element));
    }
    if !is_valid_uid(uid) {
        return Err(DicomError::invalid(
            element,
            format!("{uid:?} is not a valid UID"),
        ));
    }
    Ok(())
}

/// `a · b · …` with overflow reported as an invalid Dimensions element.
pub fn product(dims: &[usize]) -> Result<usize, DicomError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(&DIMENSIONS, format!("{dims:?} overflows")))
}

impl RawMeasurement {
    /// Checks every rule of docs/dicom-raw-profile.md that concerns values:
    /// identifiers, modality, placement, sizes, array lengths, finiteness, signs
    /// and the geometry combinations.
    pub fn validate(&self) -> Result<(), DicomError> {
        check_uid(&self.sop_instance_uid, std_name(tags::SOP_INSTANCE_UID))?;
        let ctx = &self.context;
        check_uid(&ctx.study_instance_uid, std_name(tags::STUDY_INSTANCE_UID))?;
        check_uid(
            &ctx.series_instance_uid,
            std_name(tags::SERIES_INSTANCE_UID),
        )?;
        check_uid(
            &ctx.frame_of_reference_uid,
            std_name(tags::FRAME_OF_REFERENCE_UID),
        )?;
        ctx.check_default_repertoire()?;
        if ctx.modality != self.data.modality() {
            return Err(DicomError::invalid(
                std_name(tags::MODALITY),
                format!(
                    "is {:?}, but {} needs {}",
                    ctx.modality,
                    self.data.kind_str(),
                    self.data.modality()
                ),
            ));
        }
        self.plane.check().map_err(|reason| {
            DicomError::invalid(std_name(tags::IMAGE_ORIENTATION_PATIENT), reason)
        })?;
        if let Some(x) = self.slice_location_mm.filter(|x| !x.is_finite()) {
            return Err(DicomError::invalid(
                std_name(tags::SLICE_LOCATION),
                format!("{x}"),
            ));
        }
        if let Some(x) = self
            .slice_thickness_mm
            .filter(|x| !(x.is_finite() && *x > 0.0))
        {
            return Err(DicomError::invalid(
                std_name(tags::SLICE_THICKNESS),
                format!("must be > 0, is {x}"),
            ));
        }
        if let Some(sigma) = self.noise_sigma {
            if !(sigma.is_finite() && sigma >= 0.0) {
                return Err(invalid(
                    &NOISE_SIGMA,
                    format!("must be finite and ≥ 0, is {sigma}"),
                ));
            }
        }
        if self.recon_size.contains(&0) {
            return Err(invalid(
                &RECON_SIZE,
                format!("{:?} has a zero", self.recon_size),
            ));
        }
        for x in self.recon_pixel_spacing_mm {
            check_positive(x, &RECON_PIXEL_SPACING)?;
        }
        match &self.data {
            Measurement::MriKspace(k) => validate_mri(k, self.recon_size),
            Measurement::CtSinogram(s) => validate_ct(s, self.recon_pixel_spacing_mm),
        }
    }
}

fn validate_mri(k: &MriKspace, recon_size: [u32; 2]) -> Result<(), DicomError> {
    let dims = [k.coils, k.ky, k.kx];
    if dims.contains(&0) {
        return Err(invalid(&DIMENSIONS, format!("{dims:?} has a zero")));
    }
    let samples = product(&dims)?;
    let plane = k.ky * k.kx;
    if k.data.len() != 2 * samples {
        return Err(invalid(
            &DATA,
            format!(
                "holds {} floats, expected 2·{}·{}·{} = {}",
                k.data.len(),
                k.coils,
                k.ky,
                k.kx,
                2 * samples
            ),
        ));
    }
    check_finite(&k.data, &DATA)?;
    if k.mask.len() != plane {
        return Err(invalid(
            &SAMPLING_MASK,
            format!(
                "holds {} bytes, expected {}·{} = {plane}",
                k.mask.len(),
                k.ky,
                k.kx
            ),
        ));
    }
    if let Some(i) = k.mask.iter().position(|&m| m > 1) {
        return Err(invalid(
            &SAMPLING_MASK,
            format!("value {i} is {}, not 0 or 1", k.mask[i]),
        ));
    }
    if !k.mask.contains(&1) {
        return Err(invalid(&SAMPLING_MASK, "marks no sample as acquired"));
    }
    for (i, pair) in k.data.chunks_exact(2).enumerate() {
        if k.mask[i % plane] == 0 && (pair[0] != 0.0 || pair[1] != 0.0) {
            let (c, y, x) = (i / plane, (i % plane) / k.kx, i % k.kx);
            return Err(invalid(
                &DATA,
                format!("sample (coil {c}, ky {y}, kx {x}) is not zero but the mask marks it not acquired"),
            ));
        }
    }
    if let Some(s) = &k.sensitivities {
        if s.len() != 2 * samples {
            return Err(invalid(
                &COIL_SENSITIVITIES,
                format!("holds {} floats, expected {}", s.len(), 2 * samples),
            ));
        }
        check_finite(s, &COIL_SENSITIVITIES)?;
    }
    if recon_size[0] as usize > k.ky || recon_size[1] as usize > k.kx {
        return Err(invalid(
            &RECON_SIZE,
            format!(
                "{recon_size:?} exceeds the k-space grid [{}, {}]",
                k.ky, k.kx
            ),
        ));
    }
    Ok(())
}

fn validate_ct(s: &CtSinogram, spacing: [f64; 2]) -> Result<(), DicomError> {
    let dims = [s.views, s.detectors];
    if dims.contains(&0) {
        return Err(invalid(&DIMENSIONS, format!("{dims:?} has a zero")));
    }
    let n = product(&dims)?;
    if s.data.len() != n {
        return Err(invalid(
            &DATA,
            format!(
                "holds {} floats, expected {}·{} = {n}",
                s.data.len(),
                s.views,
                s.detectors
            ),
        ));
    }
    if s.views > MAX_VIEWS {
        return Err(invalid(
            &VIEW_ANGLES,
            format!(
                "would hold {} angles; at most {MAX_VIEWS} fit (FD values have a 16-bit length \
                 in Explicit VR)",
                s.views
            ),
        ));
    }
    check_finite(&s.data, &DATA)?;
    if s.view_angles_deg.len() != s.views {
        return Err(invalid(
            &VIEW_ANGLES,
            format!(
                "holds {} angles for {} views",
                s.view_angles_deg.len(),
                s.views
            ),
        ));
    }
    check_finite(&s.view_angles_deg, &VIEW_ANGLES)?;
    check_positive(s.detector_spacing, &DETECTOR_SPACING)?;
    if !s.detector_offset.is_finite() {
        return Err(invalid(&DETECTOR_OFFSET, "is NaN or infinite"));
    }
    match (
        s.geometry.is_fan(),
        s.source_to_isocenter_mm,
        s.source_to_detector_mm,
    ) {
        (true, Some(sic), Some(sdd)) => {
            check_positive(sic, &SOURCE_TO_ISOCENTER)?;
            check_positive(sdd, &SOURCE_TO_DETECTOR)?;
            if sdd <= sic {
                return Err(invalid(
                    &SOURCE_TO_DETECTOR,
                    format!("{sdd} mm must exceed SourceToIsocenter {sic} mm"),
                ));
            }
        }
        (true, None, _) => return Err(DicomError::Missing(name(&SOURCE_TO_ISOCENTER))),
        (true, _, None) => return Err(DicomError::Missing(name(&SOURCE_TO_DETECTOR))),
        (false, None, None) => {}
        (false, _, _) => {
            return Err(invalid(
                &GEOMETRY,
                "PARALLEL must not carry SourceToIsocenter or SourceToDetector",
            ))
        }
    }
    if let CtDataType::Counts { blank_scan_counts } = s.data_type {
        check_positive(blank_scan_counts, &BLANK_SCAN_COUNTS)?;
        if let Some(i) = s.data.iter().position(|&x| x < 0.0) {
            return Err(invalid(
                &DATA,
                format!("count {i} is negative ({})", s.data[i]),
            ));
        }
    }
    check_positive(s.water_attenuation_per_mm, &WATER_ATTENUATION)?;
    let [row, col] = spacing;
    if (row - col).abs() > 1e-9 * row.max(col) {
        return Err(invalid(
            &RECON_PIXEL_SPACING,
            format!("CT needs square pixels, got [{row}, {col}] mm"),
        ));
    }
    Ok(())
}
