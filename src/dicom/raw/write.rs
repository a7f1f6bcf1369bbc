//! Writing a [`RawMeasurement`] as a Raw Data Storage object of the profile.

use std::path::Path;

use dicom_core::value::{DataSetSequence, C};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use super::super::common::{into_file, put_sop_common, write_file, Stamp};
use super::super::encode::{clean_text, put_ds, put_empty, put_is, put_str};
use super::super::error::DicomError;
use super::super::uid::creator_version_uid;
use super::elements::*;
use super::{CtDataType, Measurement, RawMeasurement, RAW_DATA_STORAGE};

/// Validates `raw` and writes it to `path` atomically.
pub fn write_raw(path: &Path, raw: &RawMeasurement) -> Result<(), DicomError> {
    write_file(path, &raw.to_object()?)
}

fn f64s(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::F64(values.iter().copied().collect())
}

fn f32s(values: &[f32]) -> PrimitiveValue {
    PrimitiveValue::F32(values.iter().copied().collect())
}

fn u32s(values: &[u32]) -> PrimitiveValue {
    PrimitiveValue::U32(values.iter().copied().collect())
}

fn code(value: &str) -> PrimitiveValue {
    PrimitiveValue::from(value)
}

/// Dimensions as UL values; sizes above `u32::MAX` cannot be stored.
fn dims_u32(dims: &[usize]) -> Result<Vec<u32>, DicomError> {
    dims.iter()
        .map(|&d| {
            u32::try_from(d).map_err(|_| {
                DicomError::Write(format!(
                    "dimension {d} does not fit in UL (Dimensions {dims:?})"
                ))
            })
        })
        .collect()
}

impl RawMeasurement {
    /// The validated Part 10 object: Raw Data Storage with the Patient, General
    /// Study, General Series, Frame of Reference, General Equipment, Acquisition
    /// Context, Raw Data and SOP Common modules, the slice placement, and the
    /// private block (0071,10xx).
    pub fn to_object(&self) -> Result<DefaultDicomObject, DicomError> {
        self.validate()?;
        let stamp = Stamp::now();
        let mut obj = InMemDicomObject::new_empty();
        put_sop_common(&mut obj, RAW_DATA_STORAGE, &self.sop_instance_uid, &stamp);
        let ctx = &self.context;
        ctx.put_patient_study_frame(&mut obj);

        put_str(&mut obj, tags::MODALITY, VR::CS, self.data.modality());
        put_str(
            &mut obj,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &ctx.series_instance_uid,
        );
        match ctx.series_number {
            Some(n) => put_is(&mut obj, tags::SERIES_NUMBER, n),
            None => put_empty(&mut obj, tags::SERIES_NUMBER, VR::IS),
        }
        if !ctx.series_description.is_empty() {
            put_str(
                &mut obj,
                tags::SERIES_DESCRIPTION,
                VR::LO,
                &clean_text(&ctx.series_description, 64),
            );
        }

        put_str(
            &mut obj,
            tags::MANUFACTURER,
            VR::LO,
            &clean_text(&ctx.manufacturer, 64),
        );
        for (tag, vr, value, max) in [
            (tags::INSTITUTION_NAME, VR::LO, &ctx.institution_name, 64),
            (tags::STATION_NAME, VR::SH, &ctx.station_name, 16),
            (
                tags::MANUFACTURER_MODEL_NAME,
                VR::LO,
                &ctx.manufacturer_model_name,
                64,
            ),
            (
                tags::DEVICE_SERIAL_NUMBER,
                VR::LO,
                &ctx.device_serial_number,
                64,
            ),
        ] {
            if !value.is_empty() {
                put_str(&mut obj, tag, vr, &clean_text(value, max));
            }
        }
        if !ctx.software_versions.is_empty() {
            put_str(
                &mut obj,
                tags::SOFTWARE_VERSIONS,
                VR::LO,
                &ctx.software_versions,
            );
        }

        obj.put(DataElement::new(
            tags::ACQUISITION_CONTEXT_SEQUENCE,
            VR::SQ,
            DataSetSequence::<InMemDicomObject>::empty(),
        ));

        match self.instance_number {
            Some(n) => put_is(&mut obj, tags::INSTANCE_NUMBER, n),
            None => put_empty(&mut obj, tags::INSTANCE_NUMBER, VR::IS),
        }
        put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &stamp.date);
        put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &stamp.time);
        put_str(
            &mut obj,
            tags::CREATOR_VERSION_UID,
            VR::UI,
            &creator_version_uid(),
        );

        self.plane.put(&mut obj)?;
        if let Some(x) = self.slice_location_mm {
            put_ds(&mut obj, tags::SLICE_LOCATION, &[x])?;
        }
        if let Some(x) = self.slice_thickness_mm {
            put_ds(&mut obj, tags::SLICE_THICKNESS, &[x])?;
        }

        self.put_private(&mut obj)?;
        into_file(obj)
    }

    fn put_private(&self, obj: &mut InMemDicomObject) -> Result<(), DicomError> {
        put_creator(obj);
        put(obj, &MEASUREMENT_KIND, code(self.data.kind_str()));
        put(obj, &DIMENSIONS, u32s(&dims_u32(&self.data.dimensions())?));
        if let Some(sigma) = self.noise_sigma {
            put(obj, &NOISE_SIGMA, f64s(&[sigma]));
        }
        put(obj, &RECON_SIZE, u32s(&self.recon_size));
        put(
            obj,
            &RECON_PIXEL_SPACING,
            f64s(&self.recon_pixel_spacing_mm),
        );
        match &self.data {
            Measurement::MriKspace(k) => {
                put(obj, &DATA, f32s(&k.data));
                put(
                    obj,
                    &SAMPLING_MASK,
                    PrimitiveValue::U8(k.mask.iter().copied().collect::<C<u8>>()),
                );
                if let Some(s) = &k.sensitivities {
                    put(obj, &COIL_SENSITIVITIES, f32s(s));
                }
            }
            Measurement::CtSinogram(s) => {
                put(obj, &DATA, f32s(&s.data));
                put(obj, &GEOMETRY, code(s.geometry.as_str()));
                put(obj, &VIEW_ANGLES, f64s(&s.view_angles_deg));
                put(obj, &DETECTOR_SPACING, f64s(&[s.detector_spacing]));
                if let Some(x) = s.source_to_isocenter_mm {
                    put(obj, &SOURCE_TO_ISOCENTER, f64s(&[x]));
                }
                if let Some(x) = s.source_to_detector_mm {
                    put(obj, &SOURCE_TO_DETECTOR, f64s(&[x]));
                }
                put(obj, &DETECTOR_OFFSET, f64s(&[s.detector_offset]));
                put(obj, &DATA_TYPE, code(s.data_type.as_str()));
                if let CtDataType::Counts { blank_scan_counts } = s.data_type {
                    put(obj, &BLANK_SCAN_COUNTS, f64s(&[blank_scan_counts]));
                }
                put(obj, &WATER_ATTENUATION, f64s(&[s.water_attenuation_per_mm]));
            }
        }
        Ok(())
    }
}
