//! Reading a raw measurement object into a [`RawMeasurement`].

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use super::super::context::{InstanceContext, Plane};
use super::super::error::{DicomError, ElementName};
use super::super::load::{self, Extent, ReadLimits};
use super::super::scan::FileKind;
use super::super::values::{f64_first, int, std_name, text};
use super::elements::*;
use super::validate::product;
use super::{
    CtDataType, CtGeometry, CtSinogram, Measurement, MriKspace, RawMeasurement, RAW_DATA_STORAGE,
};

/// Reads and validates the raw measurement object at `path`.
pub fn read_raw(path: &Path, limits: ReadLimits) -> Result<RawMeasurement, DicomError> {
    RawMeasurement::from_object(load::open(path, limits, Extent::Full)?, limits)
}

/// Reads and validates a raw measurement object held in memory (a whole Part 10
/// file).
pub fn raw_from_bytes(bytes: &[u8], limits: ReadLimits) -> Result<RawMeasurement, DicomError> {
    RawMeasurement::from_object(load::from_bytes(bytes, limits, Extent::Full)?, limits)
}

impl RawMeasurement {
    /// Converts a parsed Raw Data Storage object of the profile, checking every
    /// rule of docs/dicom-raw-profile.md. Array sizes are checked against
    /// `limits` before the arrays are converted.
    pub fn from_object(obj: DefaultDicomObject, limits: ReadLimits) -> Result<Self, DicomError> {
        let mut obj = obj.into_inner();
        let sop_class = text(&obj, tags::SOP_CLASS_UID);
        if sop_class != RAW_DATA_STORAGE {
            return Err(DicomError::invalid(
                std_name(tags::SOP_CLASS_UID),
                format!("is {sop_class:?}, not Raw Data Storage ({RAW_DATA_STORAGE})"),
            ));
        }
        let block = find_block(&obj).ok_or(DicomError::Missing(ElementName::new(
            PRIVATE_GROUP,
            0x0010,
            "PrivateCreator \"DPSRECON 1\"",
        )))?;
        let common = Common::read(&obj, block)?;
        let data = {
            let b = Block { obj: &obj, block };
            match b.required_code(&MEASUREMENT_KIND)?.as_str() {
                "MRI_KSPACE" => Measurement::MriKspace(read_mri(&mut obj, block, limits)?),
                "CT_SINOGRAM" => Measurement::CtSinogram(read_ct(&mut obj, block, limits)?),
                other => {
                    return Err(DicomError::invalid(
                        MEASUREMENT_KIND.name(block),
                        format!("{other:?} is neither MRI_KSPACE nor CT_SINOGRAM"),
                    ))
                }
            }
        };
        let raw = RawMeasurement {
            data,
            noise_sigma: common.noise_sigma,
            recon_size: common.recon_size,
            recon_pixel_spacing_mm: common.recon_pixel_spacing_mm,
            context: common.context,
            plane: common.plane,
            slice_location_mm: common.slice_location_mm,
            slice_thickness_mm: common.slice_thickness_mm,
            instance_number: common.instance_number,
            sop_instance_uid: common.sop_instance_uid,
        };
        raw.validate()?;
        Ok(raw)
    }
}

/// The attributes both kinds share.
struct Common {
    noise_sigma: Option<f64>,
    recon_size: [u32; 2],
    recon_pixel_spacing_mm: [f64; 2],
    context: InstanceContext,
    plane: Plane,
    slice_location_mm: Option<f64>,
    slice_thickness_mm: Option<f64>,
    instance_number: Option<i32>,
    sop_instance_uid: String,
}

impl Common {
    fn read(obj: &InMemDicomObject, block: u8) -> Result<Self, DicomError> {
        let b = Block { obj, block };
        let recon_size = b.required_u32s(&RECON_SIZE)?;
        let recon_size: [u32; 2] = recon_size.as_slice().try_into().map_err(|_| {
            DicomError::invalid(
                RECON_SIZE.name(block),
                format!("expected 2 values [rows, cols], found {}", recon_size.len()),
            )
        })?;
        let spacing = b.required_f64s(&RECON_PIXEL_SPACING)?;
        let recon_pixel_spacing_mm: [f64; 2] = spacing.as_slice().try_into().map_err(|_| {
            DicomError::invalid(
                RECON_PIXEL_SPACING.name(block),
                format!("expected 2 values [row, col], found {}", spacing.len()),
            )
        })?;
        for tag in [
            tags::IMAGE_POSITION_PATIENT,
            tags::IMAGE_ORIENTATION_PATIENT,
        ] {
            if obj.get(tag).is_none() {
                return Err(DicomError::Missing(std_name(tag)));
            }
        }
        let plane = Plane::from_object(obj)?
            .ok_or(DicomError::Missing(std_name(tags::IMAGE_POSITION_PATIENT)))?;
        let instance_number = int(obj, tags::INSTANCE_NUMBER)?
            .map(|n| {
                i32::try_from(n).map_err(|_| {
                    DicomError::invalid(std_name(tags::INSTANCE_NUMBER), "out of range")
                })
            })
            .transpose()?;
        Ok(Self {
            noise_sigma: b.f64_single(&NOISE_SIGMA)?,
            recon_size,
            recon_pixel_spacing_mm,
            context: InstanceContext::from_object(obj)?,
            plane,
            slice_location_mm: f64_first(obj, tags::SLICE_LOCATION)?,
            slice_thickness_mm: f64_first(obj, tags::SLICE_THICKNESS)?,
            instance_number,
            sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID),
        })
    }
}

/// Dimensions as `N` sizes.
fn dimensions<const N: usize>(b: &Block<'_>, what: &str) -> Result<[usize; N], DicomError> {
    let dims = b.required_u32s(&DIMENSIONS)?;
    let dims: [u32; N] = dims.as_slice().try_into().map_err(|_| {
        DicomError::invalid(
            DIMENSIONS.name(b.block),
            format!("expected {N} values {what}, found {}", dims.len()),
        )
    })?;
    Ok(dims.map(|d| d as usize))
}

/// Checks that `e` stores `expected` bytes before its value is converted.
fn check_stored(b: &Block<'_>, e: &PrivateElement, expected: usize) -> Result<(), DicomError> {
    let stored = b.byte_len(e)?;
    if stored != expected {
        return Err(DicomError::invalid(
            e.name(b.block),
            format!("holds {stored} bytes, Dimensions need {expected}"),
        ));
    }
    Ok(())
}

fn read_mri(
    obj: &mut InMemDicomObject,
    block: u8,
    limits: ReadLimits,
) -> Result<MriKspace, DicomError> {
    let b = Block { obj, block };
    let [coils, ky, kx] = dimensions::<3>(&b, "[coils, ky, kx]")?;
    let samples = product(&[coils, ky, kx])?;
    let plane = product(&[ky, kx])?;
    let has_sensitivities = b.byte_len(&COIL_SENSITIVITIES)? > 0;
    let float_bytes = samples
        .checked_mul(8)
        .ok_or_else(|| DicomError::invalid(DIMENSIONS.name(block), "k-space size overflows"))?;
    let needed = float_bytes as u64 * (1 + u64::from(has_sensitivities)) + plane as u64;
    limits.check(|| format!("k-space [{coils}, {ky}, {kx}]"), needed)?;
    if b.byte_len(&DATA)? == 0 {
        return Err(DicomError::Missing(DATA.name(block)));
    }
    check_stored(&b, &DATA, float_bytes)?;
    if has_sensitivities {
        check_stored(&b, &COIL_SENSITIVITIES, float_bytes)?;
    }
    let data = take_f32s(obj, block, &DATA)?.ok_or(DicomError::Missing(DATA.name(block)))?;
    let mut mask = take_bytes(obj, block, &SAMPLING_MASK)?
        .ok_or(DicomError::Missing(SAMPLING_MASK.name(block)))?;
    if plane % 2 == 1 && mask.len() == plane + 1 && mask[plane] == 0 {
        mask.truncate(plane);
    }
    let sensitivities = take_f32s(obj, block, &COIL_SENSITIVITIES)?;
    Ok(MriKspace {
        coils,
        ky,
        kx,
        data,
        mask,
        sensitivities,
    })
}

fn read_ct(
    obj: &mut InMemDicomObject,
    block: u8,
    limits: ReadLimits,
) -> Result<CtSinogram, DicomError> {
    let b = Block { obj, block };
    let [views, detectors] = dimensions::<2>(&b, "[views, detectors]")?;
    let n = product(&[views, detectors])?;
    let data_bytes = n
        .checked_mul(4)
        .ok_or_else(|| DicomError::invalid(DIMENSIONS.name(block), "sinogram size overflows"))?;
    limits.check(
        || format!("sinogram [{views}, {detectors}]"),
        data_bytes as u64 + 8 * views as u64,
    )?;
    if b.byte_len(&DATA)? == 0 {
        return Err(DicomError::Missing(DATA.name(block)));
    }
    check_stored(&b, &DATA, data_bytes)?;
    let geometry = match b.required_code(&GEOMETRY)?.as_str() {
        "PARALLEL" => CtGeometry::Parallel,
        "FAN_EQUIANGULAR" => CtGeometry::FanEquiangular,
        "FAN_FLAT" => CtGeometry::FanFlat,
        other => {
            return Err(DicomError::invalid(
                GEOMETRY.name(block),
                format!("{other:?} is not PARALLEL, FAN_EQUIANGULAR or FAN_FLAT"),
            ))
        }
    };
    let data_type = match b.required_code(&DATA_TYPE)?.as_str() {
        "LINE_INTEGRAL" => {
            if b.f64_single(&BLANK_SCAN_COUNTS)?.is_some() {
                return Err(DicomError::invalid(
                    BLANK_SCAN_COUNTS.name(block),
                    "is only allowed with DataType COUNTS",
                ));
            }
            CtDataType::LineIntegral
        }
        "COUNTS" => CtDataType::Counts {
            blank_scan_counts: b.required_f64(&BLANK_SCAN_COUNTS)?,
        },
        other => {
            return Err(DicomError::invalid(
                DATA_TYPE.name(block),
                format!("{other:?} is not LINE_INTEGRAL or COUNTS"),
            ))
        }
    };
    let view_angles_deg = b.required_f64s(&VIEW_ANGLES)?;
    let detector_spacing = b.required_f64(&DETECTOR_SPACING)?;
    let source_to_isocenter_mm = b.f64_single(&SOURCE_TO_ISOCENTER)?;
    let source_to_detector_mm = b.f64_single(&SOURCE_TO_DETECTOR)?;
    let detector_offset = b.f64_single(&DETECTOR_OFFSET)?.unwrap_or(0.0);
    let water_attenuation_per_mm = b.required_f64(&WATER_ATTENUATION)?;
    let data = take_f32s(obj, block, &DATA)?.ok_or(DicomError::Missing(DATA.name(block)))?;
    Ok(CtSinogram {
        views,
        detectors,
        data,
        geometry,
        view_angles_deg,
        detector_spacing,
        source_to_isocenter_mm,
        source_to_detector_mm,
        detector_offset,
        data_type,
        water_attenuation_per_mm,
    })
}

/// The kind, dimensions and geometry of a raw object of the profile without
/// converting its arrays; `None` when it has no `DPSRECON 1` block.
pub(crate) fn peek(obj: &InMemDicomObject) -> Result<Option<FileKind>, DicomError> {
    let Some(block) = find_block(obj) else {
        return Ok(None);
    };
    let b = Block { obj, block };
    Ok(Some(FileKind::RawMeasurement {
        measurement: b.required_code(&MEASUREMENT_KIND)?,
        dimensions: b.required_u32s(&DIMENSIONS)?,
        geometry: b.code(&GEOMETRY)?,
    }))
}
