//! What an instance says about its patient, study, series, frame of reference and
//! equipment, and where its slice lies: the context carried from the input
//! (raw data or images) to the reconstructed series.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::encode::{clean_text, put_ds, put_str};
use super::error::DicomError;
use super::values::{f64_array, int, std_name, text};

/// Patient, General Study, General Series, Frame of Reference and General
/// Equipment attributes of an instance, as text exactly as stored (trimmed).
/// Empty strings stand for absent or empty elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceContext {
    /// PatientName (0010,0010), DICOM PN text (`Family^Given^...`).
    pub patient_name: String,
    /// PatientID (0010,0020).
    pub patient_id: String,
    /// PatientBirthDate (0010,0030), `YYYYMMDD`.
    pub patient_birth_date: String,
    /// PatientSex (0010,0040): `M`, `F`, `O` or empty.
    pub patient_sex: String,
    /// StudyInstanceUID (0020,000D).
    pub study_instance_uid: String,
    /// StudyDate (0008,0020), `YYYYMMDD`.
    pub study_date: String,
    /// StudyTime (0008,0030), `HHMMSS.FFFFFF`.
    pub study_time: String,
    /// StudyID (0020,0010).
    pub study_id: String,
    /// AccessionNumber (0008,0050).
    pub accession_number: String,
    /// ReferringPhysicianName (0008,0090).
    pub referring_physician_name: String,
    /// StudyDescription (0008,1030).
    pub study_description: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_instance_uid: String,
    /// SeriesNumber (0020,0011).
    pub series_number: Option<i32>,
    /// SeriesDescription (0008,103E).
    pub series_description: String,
    /// Modality (0008,0060), e.g. `MR` or `CT`.
    pub modality: String,
    /// BodyPartExamined (0018,0015).
    pub body_part_examined: String,
    /// PatientPosition (0018,5100), e.g. `HFS`.
    pub patient_position: String,
    /// FrameOfReferenceUID (0020,0052).
    pub frame_of_reference_uid: String,
    /// PositionReferenceIndicator (0020,1040).
    pub position_reference_indicator: String,
    /// Manufacturer (0008,0070).
    pub manufacturer: String,
    /// InstitutionName (0008,0080).
    pub institution_name: String,
    /// StationName (0008,1010).
    pub station_name: String,
    /// ManufacturerModelName (0008,1090).
    pub manufacturer_model_name: String,
    /// DeviceSerialNumber (0018,1000).
    pub device_serial_number: String,
    /// SoftwareVersions (0018,1020), values joined by `\`.
    pub software_versions: String,
}

impl InstanceContext {
    /// Reads the context attributes of `obj`. Only SeriesNumber can fail (when
    /// it is not an integer).
    pub fn from_object(obj: &InMemDicomObject) -> Result<Self, DicomError> {
        let series_number = int(obj, tags::SERIES_NUMBER)?
            .map(|n| {
                i32::try_from(n)
                    .map_err(|_| DicomError::invalid(std_name(tags::SERIES_NUMBER), "out of range"))
            })
            .transpose()?;
        Ok(Self {
            patient_name: text(obj, tags::PATIENT_NAME),
            patient_id: text(obj, tags::PATIENT_ID),
            patient_birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
            patient_sex: text(obj, tags::PATIENT_SEX),
            study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID),
            study_date: text(obj, tags::STUDY_DATE),
            study_time: text(obj, tags::STUDY_TIME),
            study_id: text(obj, tags::STUDY_ID),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            referring_physician_name: text(obj, tags::REFERRING_PHYSICIAN_NAME),
            study_description: text(obj, tags::STUDY_DESCRIPTION),
            series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID),
            series_number,
            series_description: text(obj, tags::SERIES_DESCRIPTION),
            modality: text(obj, tags::MODALITY),
            body_part_examined: text(obj, tags::BODY_PART_EXAMINED),
            patient_position: text(obj, tags::PATIENT_POSITION),
            frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
            position_reference_indicator: text(obj, tags::POSITION_REFERENCE_INDICATOR),
            manufacturer: text(obj, tags::MANUFACTURER),
            institution_name: text(obj, tags::INSTITUTION_NAME),
            station_name: text(obj, tags::STATION_NAME),
            manufacturer_model_name: text(obj, tags::MANUFACTURER_MODEL_NAME),
            device_serial_number: text(obj, tags::DEVICE_SERIAL_NUMBER),
            software_versions: text(obj, tags::SOFTWARE_VERSIONS),
        })
    }

    /// Checks that the attributes whose VR (DA, TM, CS) admits only the DICOM
    /// default character repertoire hold only printable ASCII: a value decoded
    /// from another character set (e.g. a date with Latin-1 or Korean bytes) could
    /// be read but not written back, so it is refused where it is read.
    pub fn check_default_repertoire(&self) -> Result<(), DicomError> {
        for (tag, vr, value) in [
            (tags::PATIENT_BIRTH_DATE, "DA", &self.patient_birth_date),
            (tags::PATIENT_SEX, "CS", &self.patient_sex),
            (tags::STUDY_DATE, "DA", &self.study_date),
            (tags::STUDY_TIME, "TM", &self.study_time),
            (tags::MODALITY, "CS", &self.modality),
            (tags::BODY_PART_EXAMINED, "CS", &self.body_part_examined),
            (tags::PATIENT_POSITION, "CS", &self.patient_position),
        ] {
            if let Some(c) = value
                .chars()
                .find(|c| !c.is_ascii() || c.is_ascii_control())
            {
                return Err(DicomError::invalid(
                    std_name(tag),
                    format!(
                        "{value:?} holds {c:?}, outside the DICOM default character \
                         repertoire that a {vr} value is limited to"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Puts the Patient, General Study and Frame of Reference modules, and
    /// BodyPartExamined and PatientPosition of General Series. The other General
    /// Series and General Equipment attributes belong to the writer of each object.
    pub(crate) fn put_patient_study_frame(&self, obj: &mut InMemDicomObject) {
        put_str(obj, tags::PATIENT_NAME, VR::PN, &self.patient_name);
        put_str(
            obj,
            tags::PATIENT_ID,
            VR::LO,
            &clean_text(&self.patient_id, 64),
        );
        put_str(
            obj,
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            &self.patient_birth_date,
        );
        put_str(obj, tags::PATIENT_SEX, VR::CS, &self.patient_sex);
        put_str(
            obj,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &self.study_instance_uid,
        );
        put_str(obj, tags::STUDY_DATE, VR::DA, &self.study_date);
        put_str(obj, tags::STUDY_TIME, VR::TM, &self.study_time);
        put_str(obj, tags::STUDY_ID, VR::SH, &clean_text(&self.study_id, 16));
        put_str(
            obj,
            tags::ACCESSION_NUMBER,
            VR::SH,
            &clean_text(&self.accession_number, 16),
        );
        put_str(
            obj,
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &self.referring_physician_name,
        );
        if !self.study_description.is_empty() {
            put_str(
                obj,
                tags::STUDY_DESCRIPTION,
                VR::LO,
                &clean_text(&self.study_description, 64),
            );
        }
        if !self.body_part_examined.is_empty() {
            put_str(
                obj,
                tags::BODY_PART_EXAMINED,
                VR::CS,
                &clean_text(&self.body_part_examined, 16),
            );
        }
        if !self.patient_position.is_empty() {
            put_str(
                obj,
                tags::PATIENT_POSITION,
                VR::CS,
                &clean_text(&self.patient_position, 16),
            );
        }
        put_str(
            obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &self.frame_of_reference_uid,
        );
        put_str(
            obj,
            tags::POSITION_REFERENCE_INDICATOR,
            VR::LO,
            &clean_text(&self.position_reference_indicator, 64),
        );
    }
}

/// An image plane in the patient coordinate system (DICOM LPS: +x towards the
/// patient's left, +y posterior, +z head), as ImagePositionPatient and
/// ImageOrientationPatient place it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    /// ImagePositionPatient (0020,0032): centre of the first pixel (row 0,
    /// column 0), mm.
    pub position_mm: [f64; 3],
    /// ImageOrientationPatient (0020,0037): direction cosines of a row (the
    /// direction of increasing column index), then of a column (increasing row
    /// index).
    pub orientation: [f64; 6],
}

impl Plane {
    /// Unit vector along a row (increasing column index).
    pub fn row_direction(&self) -> [f64; 3] {
        [
            self.orientation[0],
            self.orientation[1],
            self.orientation[2],
        ]
    }

    /// Unit vector along a column (increasing row index).
    pub fn column_direction(&self) -> [f64; 3] {
        [
            self.orientation[3],
            self.orientation[4],
            self.orientation[5],
        ]
    }

    /// Slice normal: row direction × column direction.
    pub fn normal(&self) -> [f64; 3] {
        let (r, c) = (self.row_direction(), self.column_direction());
        [
            r[1] * c[2] - r[2] * c[1],
            r[2] * c[0] - r[0] * c[2],
            r[0] * c[1] - r[1] * c[0],
        ]
    }

    /// Signed distance of the plane from the origin along `normal`, mm.
    pub fn distance_along(&self, normal: [f64; 3]) -> f64 {
        dot(self.position_mm, normal)
    }

    /// Checks that the orientation holds two orthogonal unit vectors (to 1e-4)
    /// and all numbers are finite.
    pub fn check(&self) -> Result<(), String> {
        if self
            .position_mm
            .iter()
            .chain(&self.orientation)
            .any(|x| !x.is_finite())
        {
            return Err("holds a non-finite number".into());
        }
        let (r, c) = (self.row_direction(), self.column_direction());
        if (dot(r, r) - 1.0).abs() > 1e-4 || (dot(c, c) - 1.0).abs() > 1e-4 {
            return Err("direction cosines are not unit vectors".into());
        }
        if dot(r, c).abs() > 1e-4 {
            return Err("row and column directions are not orthogonal".into());
        }
        Ok(())
    }

    /// The plane of `obj` from its top-level ImagePositionPatient and
    /// ImageOrientationPatient; `None` when either is absent.
    pub(crate) fn from_object(obj: &InMemDicomObject) -> Result<Option<Self>, DicomError> {
        let position = f64_array::<3>(obj, tags::IMAGE_POSITION_PATIENT)?;
        let orientation = f64_array::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)?;
        match (position, orientation) {
            (Some(position_mm), Some(orientation)) => {
                let plane = Self {
                    position_mm,
                    orientation,
                };
                plane.check().map_err(|reason| {
                    DicomError::invalid(std_name(tags::IMAGE_ORIENTATION_PATIENT), reason)
                })?;
                Ok(Some(plane))
            }
            _ => Ok(None),
        }
    }

    /// Puts ImagePositionPatient and ImageOrientationPatient.
    pub(crate) fn put(&self, obj: &mut InMemDicomObject) -> Result<(), DicomError> {
        put_ds(obj, tags::IMAGE_POSITION_PATIENT, &self.position_mm)?;
        put_ds(obj, tags::IMAGE_ORIENTATION_PATIENT, &self.orientation)
    }
}

/// Dot product.
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
