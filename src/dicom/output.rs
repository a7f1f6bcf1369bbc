//! Writing a reconstructed series: classic MR Image Storage or CT Image Storage,
//! one file per slice, 16-bit pixels mapped to the values by RescaleSlope/
//! Intercept (CT, in HU) or by a Real World Value Mapping (MR, whose IOD has no
//! Modality LUT), the window in the values viewers apply it to.

use std::fs;
use std::path::{Path, PathBuf};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::common::{into_file, put_sop_common, write_file, Stamp};
use super::context::{InstanceContext, Plane};
use super::encode::{
    clean_text, ds_round_trip, put_ds, put_empty, put_is, put_str, put_strs, put_us,
};
use super::error::DicomError;
use super::raw::RAW_DATA_STORAGE;
use super::uid::new_uid;

/// Which storage class, and the unit of the pixel values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageModality {
    /// MR Image Storage; values in arbitrary units (e.g. image magnitude).
    Mr,
    /// CT Image Storage; values in Hounsfield units (RescaleType `HU`).
    Ct,
}

/// What the images are, which fixes ImageType: values 1 and 2 by role, value 3
/// `AXIAL` (CT) or `OTHER` (MR) as the CT and MR Image modules require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRole {
    /// Reconstructed from raw data: `ORIGINAL\PRIMARY\…`.
    Reconstruction,
    /// A map computed from images (e.g. a pixel-wise uncertainty):
    /// `DERIVED\SECONDARY\…`.
    DerivedMap,
}

/// A display window in pixel units (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// WindowCenter.
    pub center: f64,
    /// WindowWidth (> 0).
    pub width: f64,
}

/// A reference to another instance: SOP Class UID and SOP Instance UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    /// ReferencedSOPClassUID.
    pub sop_class_uid: String,
    /// ReferencedSOPInstanceUID.
    pub sop_instance_uid: String,
}

impl InstanceRef {
    /// A reference to a Raw Data Storage instance.
    pub fn raw(sop_instance_uid: &str) -> Self {
        Self {
            sop_class_uid: RAW_DATA_STORAGE.to_owned(),
            sop_instance_uid: sop_instance_uid.to_owned(),
        }
    }
}

/// What is common to all slices of the series to write.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// Storage class and units.
    pub modality: ImageModality,
    /// Reconstruction or derived map.
    pub role: ImageRole,
    /// Patient, study, frame of reference (and institution) of the input; its
    /// series attributes are not used: the series is new.
    pub context: InstanceContext,
    /// SeriesNumber of the new series.
    pub series_number: i32,
    /// SeriesDescription, naming the method (at most 64 characters are kept).
    pub series_description: String,
    /// DerivationDescription: the method and its key parameters (at most 1024
    /// characters are kept).
    pub derivation_description: String,
    /// Display window; `None`: from the 1st to the 99th percentile of the values.
    pub window: Option<Window>,
}

/// One slice to write.
#[derive(Debug, Clone)]
pub struct OutputSlice {
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub cols: usize,
    /// `[rows, cols]` values, row-major, in the unit of [`ImageModality`].
    pub pixels: Vec<f32>,
    /// PixelSpacing `[between rows, between columns]`, mm.
    pub pixel_spacing_mm: [f64; 2],
    /// Where the slice lies.
    pub plane: Plane,
    /// SliceLocation, mm.
    pub slice_location_mm: Option<f64>,
    /// SliceThickness, mm.
    pub slice_thickness_mm: Option<f64>,
    /// Raw data this slice was reconstructed from (SourceInstanceSequence,
    /// purpose DCM 128226 "Source raw data").
    pub source_raw: Vec<InstanceRef>,
    /// Images a derived map was computed from (SourceImageSequence, purpose DCM
    /// 121322 "Source image for image processing operation").
    pub source_images: Vec<InstanceRef>,
}

/// What [`write_series`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenSeries {
    /// The new SeriesInstanceUID.
    pub series_instance_uid: String,
    /// One file per slice, in slice order: `<dir>/slice_0001.dcm`, …
    pub files: Vec<PathBuf>,
    /// SOPInstanceUID of each file.
    pub sop_instance_uids: Vec<String>,
    /// The slope of the map from stored values to values, as a reader parses
    /// it: RescaleSlope (CT) or RealWorldValueSlope (MR).
    pub rescale_slope: f64,
    /// Its intercept: RescaleIntercept or RealWorldValueIntercept.
    pub rescale_intercept: f64,
}

/// Linear map of the series' values onto unsigned 16-bit stored values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantizer {
    slope: f64,
    intercept: f64,
}

impl Quantizer {
    /// Spans `[min, max]` with 65536 levels; slope and intercept are the values
    /// their 16-character decimal strings hold, so that readers get exactly
    /// `intercept + slope · stored`. Integer values within a 65535 range keep
    /// slope 1 and are stored exactly.
    fn spanning(min: f64, max: f64, integral: bool) -> Result<Self, DicomError> {
        let fail = || DicomError::Write(format!("cannot scale values in [{min}, {max}]"));
        let intercept = ds_round_trip(min.floor()).ok_or_else(fail)?;
        let range = max - intercept;
        let slope = if (integral && range <= 65535.0) || range <= 0.0 {
            1.0
        } else {
            let mut slope = ds_round_trip(range / 65535.0).ok_or_else(fail)?;
            // Grow the slope until the 16-character string covers the range; the
            // relative step doubles because a fixed one can round back to the same
            // string forever (small slopes keep few significant digits).
            let mut bump = 1e-12;
            while intercept + slope * 65535.0 < max {
                slope = ds_round_trip(slope * (1.0 + bump)).ok_or_else(fail)?;
                bump *= 2.0;
            }
            slope
        };
        Ok(Self { slope, intercept })
    }

    fn store(&self, v: f32) -> u16 {
        ((f64::from(v) - self.intercept) / self.slope)
            .round()
            .clamp(0.0, 65535.0) as u16
    }
}

/// Writes `slices` as a new series in `dir` (created when missing): files
/// `slice_0001.dcm`, `slice_0002.dcm`, … in the order given, InstanceNumber 1,
/// 2, …. File names never depend on attribute text. All slices share one
/// linear map of stored values spanning the series' values (RescaleSlope/
/// Intercept for CT, RealWorldValueSlope/Intercept for MR). Each file is
/// written atomically.
pub fn write_series(
    dir: &Path,
    spec: &SeriesSpec,
    slices: &[OutputSlice],
) -> Result<WrittenSeries, DicomError> {
    if slices.is_empty() {
        return Err(DicomError::Write("no slices to write".into()));
    }
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut integral = true;
    for (i, s) in slices.iter().enumerate() {
        if s.rows == 0 || s.cols == 0 || s.rows > 65535 || s.cols > 65535 {
            return Err(DicomError::Write(format!(
                "slice {i}: {}×{} pixels (1 to 65535 rows and columns)",
                s.rows, s.cols
            )));
        }
        if s.pixels.len() != s.rows * s.cols {
            return Err(DicomError::Write(format!(
                "slice {i}: {} values for {}×{} pixels",
                s.pixels.len(),
                s.rows,
                s.cols
            )));
        }
        for &v in &s.pixels {
            if !v.is_finite() {
                return Err(DicomError::Write(format!(
                    "slice {i}: NaN or infinite pixel value"
                )));
            }
            let v = f64::from(v);
            min = min.min(v);
            max = max.max(v);
            integral &= v.fract() == 0.0;
        }
    }
    let quantizer = Quantizer::spanning(min, max, integral)?;
    let window = match spec.window {
        Some(w) => w,
        None => percentile_window(slices),
    };
    fs::create_dir_all(dir)?;
    let series_instance_uid = new_uid();
    let stamp = Stamp::now();
    let mut files = Vec::with_capacity(slices.len());
    let mut sop_instance_uids = Vec::with_capacity(slices.len());
    for (i, slice) in slices.iter().enumerate() {
        let sop_instance_uid = new_uid();
        let number =
            i32::try_from(i + 1).map_err(|_| DicomError::Write("more than 2^31 slices".into()))?;
        let obj = slice_object(
            spec,
            slice,
            &SliceIds {
                series_instance_uid: &series_instance_uid,
                sop_instance_uid: &sop_instance_uid,
                instance_number: number,
            },
            quantizer,
            window,
            &stamp,
        )?;
        let path = dir.join(format!("slice_{:04}.dcm", i + 1));
        write_file(&path, &into_file(obj)?)?;
        files.push(path);
        sop_instance_uids.push(sop_instance_uid);
    }
    Ok(WrittenSeries {
        series_instance_uid,
        files,
        sop_instance_uids,
        rescale_slope: quantizer.slope,
        rescale_intercept: quantizer.intercept,
    })
}

/// From the 1st to the 99th percentile of all values (of at most 65536
/// evenly spaced samples); width at least 1e-6.
fn percentile_window(slices: &[OutputSlice]) -> Window {
    let total: usize = slices.iter().map(|s| s.pixels.len()).sum();
    let step = total.div_ceil(65536).max(1);
    let mut sample: Vec<f32> = slices
        .iter()
        .flat_map(|s| s.pixels.iter().copied())
        .step_by(step)
        .collect();
    sample.sort_by(f32::total_cmp);
    let at = |q: f64| f64::from(sample[((sample.len() - 1) as f64 * q).round() as usize]);
    let (low, high) = (at(0.01), at(0.99));
    Window {
        center: (low + high) / 2.0,
        width: (high - low).max(1e-6),
    }
}

struct SliceIds<'a> {
    series_instance_uid: &'a str,
    sop_instance_uid: &'a str,
    instance_number: i32,
}

fn slice_object(
    spec: &SeriesSpec,
    slice: &OutputSlice,
    ids: &SliceIds<'_>,
    quantizer: Quantizer,
    window: Window,
    stamp: &Stamp,
) -> Result<InMemDicomObject, DicomError> {
    let mut obj = InMemDicomObject::new_empty();
    let (sop_class, modality) = match spec.modality {
        ImageModality::Mr => (uids::MR_IMAGE_STORAGE, "MR"),
        ImageModality::Ct => (uids::CT_IMAGE_STORAGE, "CT"),
    };
    put_sop_common(&mut obj, sop_class, ids.sop_instance_uid, stamp);
    spec.context.put_patient_study_frame(&mut obj);

    // General Series
    put_str(&mut obj, tags::MODALITY, VR::CS, modality);
    put_str(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        ids.series_instance_uid,
    );
    put_is(&mut obj, tags::SERIES_NUMBER, spec.series_number);
    put_str(&mut obj, tags::SERIES_DATE, VR::DA, &stamp.date);
    put_str(&mut obj, tags::SERIES_TIME, VR::TM, &stamp.time);
    put_str(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &clean_text(&spec.series_description, 64),
    );
    if spec.context.patient_position.is_empty() {
        put_empty(&mut obj, tags::PATIENT_POSITION, VR::CS);
    }
    // Laterality is Type 2C: required when BodyPartExamined does not say a paired
    // structure is not involved; empty is its "unknown".
    if spec.context.body_part_examined.is_empty() {
        put_empty(&mut obj, tags::LATERALITY, VR::CS);
    }

    // General Equipment: dps-recon made these images.
    put_str(&mut obj, tags::MANUFACTURER, VR::LO, "dps-recon");
    put_str(&mut obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "dps-recon");
    put_str(
        &mut obj,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    );
    if !spec.context.institution_name.is_empty() {
        put_str(
            &mut obj,
            tags::INSTITUTION_NAME,
            VR::LO,
            &clean_text(&spec.context.institution_name, 64),
        );
    }

    // General Image
    put_is(&mut obj, tags::INSTANCE_NUMBER, ids.instance_number);
    put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &stamp.date);
    put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &stamp.time);
    let (pixel_data, examination) = match spec.role {
        ImageRole::Reconstruction => ("ORIGINAL", "PRIMARY"),
        ImageRole::DerivedMap => ("DERIVED", "SECONDARY"),
    };
    let third = match spec.modality {
        ImageModality::Ct => "AXIAL",
        ImageModality::Mr => "OTHER",
    };
    put_strs(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        &[pixel_data, examination, third],
    );
    put_str(
        &mut obj,
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        &clean_text(&spec.derivation_description, 1024),
    );
    put_str(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
    put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put_references(
        &mut obj,
        tags::SOURCE_INSTANCE_SEQUENCE,
        &slice.source_raw,
        SOURCE_RAW_DATA,
    );
    put_references(
        &mut obj,
        tags::SOURCE_IMAGE_SEQUENCE,
        &slice.source_images,
        SOURCE_IMAGE_FOR_PROCESSING,
    );

    // Image Plane
    put_ds(&mut obj, tags::PIXEL_SPACING, &slice.pixel_spacing_mm)?;
    slice.plane.put(&mut obj)?;
    match slice.slice_thickness_mm {
        Some(t) => put_ds(&mut obj, tags::SLICE_THICKNESS, &[t])?,
        None => put_empty(&mut obj, tags::SLICE_THICKNESS, VR::DS),
    }
    if let Some(x) = slice.slice_location_mm {
        put_ds(&mut obj, tags::SLICE_LOCATION, &[x])?;
    }

    // Image Pixel
    put_us(&mut obj, tags::SAMPLES_PER_PIXEL, 1);
    put_str(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_us(&mut obj, tags::ROWS, slice.rows as u16);
    put_us(&mut obj, tags::COLUMNS, slice.cols as u16);
    put_us(&mut obj, tags::BITS_ALLOCATED, 16);
    put_us(&mut obj, tags::BITS_STORED, 16);
    put_us(&mut obj, tags::HIGH_BIT, 15);
    put_us(&mut obj, tags::PIXEL_REPRESENTATION, 0);
    let stored: Vec<u16> = slice.pixels.iter().map(|&v| quantizer.store(v)).collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(stored.into()),
    ));

    // The map from stored values to the series' values, and the VOI LUT
    // (window). CT: the Modality LUT (RescaleSlope/Intercept, in HU), the window
    // in HU. MR: the MR Image IOD has no Modality LUT, so viewers apply the window
    // to the stored values; the map is a Real World Value Mapping instead, and the
    // window is in stored values.
    let window = match spec.modality {
        ImageModality::Ct => {
            put_ds(&mut obj, tags::RESCALE_INTERCEPT, &[quantizer.intercept])?;
            put_ds(&mut obj, tags::RESCALE_SLOPE, &[quantizer.slope])?;
            window
        }
        ImageModality::Mr => {
            put_real_world_value_mapping(&mut obj, quantizer);
            Window {
                center: (window.center - quantizer.intercept) / quantizer.slope,
                width: window.width / quantizer.slope,
            }
        }
    };
    put_ds(&mut obj, tags::WINDOW_CENTER, &[window.center])?;
    put_ds(&mut obj, tags::WINDOW_WIDTH, &[window.width])?;
    if window.width < 1.0 {
        put_str(&mut obj, tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT");
    }

    match spec.modality {
        ImageModality::Ct => {
            put_str(&mut obj, tags::RESCALE_TYPE, VR::LO, "HU");
            put_empty(&mut obj, tags::KVP, VR::DS);
            put_empty(&mut obj, tags::ACQUISITION_NUMBER, VR::IS);
        }
        ImageModality::Mr => {
            put_str(&mut obj, tags::SCANNING_SEQUENCE, VR::CS, "RM");
            put_str(&mut obj, tags::SEQUENCE_VARIANT, VR::CS, "NONE");
            put_empty(&mut obj, tags::SCAN_OPTIONS, VR::CS);
            put_str(&mut obj, tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
            put_empty(&mut obj, tags::REPETITION_TIME, VR::DS);
            put_empty(&mut obj, tags::ECHO_TIME, VR::DS);
            put_empty(&mut obj, tags::ECHO_TRAIN_LENGTH, VR::IS);
        }
    }
    Ok(obj)
}

/// A code: (CodeValue, CodingSchemeDesignator, CodeMeaning).
type Code = (&'static str, &'static str, &'static str);

/// DCM 128226, CID 7013 "Non-Image Source Instance Purposes of Reference".
const SOURCE_RAW_DATA: Code = ("128226", "DCM", "Source raw data");
/// DCM 121322, CID 7202 "Source Image Purposes of Reference".
const SOURCE_IMAGE_FOR_PROCESSING: Code = (
    "121322",
    "DCM",
    "Source image for image processing operation",
);

/// UCUM "1", no units: MR intensities are relative.
const NO_UNITS: Code = ("1", "UCUM", "no units");

/// The Real World Value Mapping Sequence with one linear item that maps every
/// stored value v to `intercept + slope · v` (MR intensity, no units).
fn put_real_world_value_mapping(obj: &mut InMemDicomObject, quantizer: Quantizer) {
    let mut units = InMemDicomObject::new_empty();
    put_str(&mut units, tags::CODE_VALUE, VR::SH, NO_UNITS.0);
    put_str(
        &mut units,
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        NO_UNITS.1,
    );
    put_str(&mut units, tags::CODE_MEANING, VR::LO, NO_UNITS.2);
    let mut item = InMemDicomObject::new_empty();
    put_us(&mut item, tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED, 0);
    put_us(
        &mut item,
        tags::REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
        u16::MAX,
    );
    let fd = |v: f64| PrimitiveValue::F64([v].into_iter().collect());
    item.put(DataElement::new(
        tags::REAL_WORLD_VALUE_INTERCEPT,
        VR::FD,
        fd(quantizer.intercept),
    ));
    item.put(DataElement::new(
        tags::REAL_WORLD_VALUE_SLOPE,
        VR::FD,
        fd(quantizer.slope),
    ));
    put_str(
        &mut item,
        tags::LUT_EXPLANATION,
        VR::LO,
        "MR signal intensity",
    );
    put_str(&mut item, tags::LUT_LABEL, VR::SH, "INTENSITY");
    item.put(DataElement::new(
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![units]),
    ));
    obj.put(DataElement::new(
        tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
}

fn put_references(
    obj: &mut InMemDicomObject,
    tag: dicom_core::Tag,
    refs: &[InstanceRef],
    purpose: Code,
) {
    if refs.is_empty() {
        return;
    }
    let items: Vec<InMemDicomObject> = refs
        .iter()
        .map(|r| {
            let mut code = InMemDicomObject::new_empty();
            put_str(&mut code, tags::CODE_VALUE, VR::SH, purpose.0);
            put_str(&mut code, tags::CODING_SCHEME_DESIGNATOR, VR::SH, purpose.1);
            put_str(&mut code, tags::CODE_MEANING, VR::LO, purpose.2);
            let mut item = InMemDicomObject::new_empty();
            put_str(
                &mut item,
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                &r.sop_class_uid,
            );
            put_str(
                &mut item,
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &r.sop_instance_uid,
            );
            item.put(DataElement::new(
                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![code]),
            ));
            item
        })
        .collect();
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizer_spans_the_range_and_round_trips() {
        let q = Quantizer::spanning(-1024.0, 3071.0, true).unwrap();
        assert_eq!((q.slope, q.intercept), (1.0, -1024.0));
        assert_eq!(q.store(-1024.0), 0);
        assert_eq!(q.store(3071.0), 4095);
        let q = Quantizer::spanning(0.0, 1.0, false).unwrap();
        assert!(q.intercept + q.slope * 65535.0 >= 1.0);
        for v in [0.0f32, 0.123_456, 0.5, 1.0] {
            let back = q.intercept + q.slope * f64::from(q.store(v));
            assert!(
                (back - f64::from(v)).abs() <= q.slope / 2.0 + 1e-12,
                "{v} -> {back}"
            );
        }
        let q = Quantizer::spanning(2.5, 2.5, false).unwrap();
        assert_eq!(q.intercept, 2.0);
        let back = q.intercept + q.slope * f64::from(q.store(2.5));
        assert!((back - 2.5).abs() <= q.slope / 2.0 + 1e-12, "{back}");
    }
}

#[cfg(test)]
mod quantizer_tests {
    use super::*;

    /// Small ranges (MR magnitudes ~1) once looped forever: the slope's decimal
    /// string could not grow by a fixed relative step.
    #[test]
    fn quantizer_covers_small_and_large_ranges() {
        for (min, max) in [
            (0.0, 1.37),
            (0.0, 2.0),
            (-0.004, 0.011),
            (-1024.0, 3071.0),
            (0.0, 1e-3),
        ] {
            let q = Quantizer::spanning(min, max, false).unwrap();
            assert!(
                q.intercept + q.slope * 65535.0 >= max,
                "[{min}, {max}]: {q:?}"
            );
            assert!(
                q.slope <= 1.01 * (max - q.intercept) / 65535.0 + 1e-12,
                "[{min}, {max}]: {q:?}"
            );
            let back = q.intercept + q.slope * f64::from(q.store(max as f32));
            assert!((back - max).abs() <= q.slope, "[{min}, {max}]: {back}");
        }
        let hu = Quantizer::spanning(-1000.0, 1500.0, true).unwrap();
        assert_eq!((hu.slope, hu.intercept), (1.0, -1000.0));
    }
}
