//! What every object dps-recon writes shares: the SOP Common module, the file
//! meta information and the atomic Part 10 file write.

use std::path::Path;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use super::encode::put_str;
use super::error::{error_chain, DicomError};
use super::fsio::write_atomic;
use super::uid::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// SpecificCharacterSet of every written object: UTF-8.
pub const CHARACTER_SET: &str = "ISO_IR 192";

/// A creation time stamp in UTC: DICOM DA and TM strings.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `YYYYMMDD`.
    pub date: String,
    /// `HHMMSS.FFFFFF`.
    pub time: String,
}

impl Stamp {
    /// Now, in UTC.
    pub fn now() -> Self {
        let (date, time) = super::encode::now_utc();
        Self { date, time }
    }
}

/// Puts the SOP Common module: SpecificCharacterSet (UTF-8), SOP Class and
/// Instance UIDs, InstanceCreationDate/Time and TimezoneOffsetFromUTC `+0000`.
pub fn put_sop_common(
    obj: &mut InMemDicomObject,
    sop_class: &str,
    sop_instance: &str,
    stamp: &Stamp,
) {
    put_str(obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, CHARACTER_SET);
    put_str(obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(obj, tags::SOP_INSTANCE_UID, VR::UI, sop_instance);
    put_str(obj, tags::INSTANCE_CREATION_DATE, VR::DA, &stamp.date);
    put_str(obj, tags::INSTANCE_CREATION_TIME, VR::TM, &stamp.time);
    put_str(obj, tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");
}

/// Wraps `obj` with file meta information: Explicit VR Little Endian, the
/// Media Storage SOP Class/Instance from the object, dps-recon's implementation
/// UID and version name.
pub fn into_file(obj: InMemDicomObject) -> Result<DefaultDicomObject, DicomError> {
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
    )
    .map_err(|e| DicomError::Write(error_chain(&e)))
}

/// Writes `file` to `path` atomically (see [`write_atomic`]).
pub fn write_file(path: &Path, file: &DefaultDicomObject) -> Result<(), DicomError> {
    write_atomic(path, |out| {
        file.write_all(out)
            .map_err(|e| DicomError::Write(error_chain(&e)))
    })
}
